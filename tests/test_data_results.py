"""ActivityNet results JSON / CSV: exact round trips, atomic writes, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rgbtad.core.errors import RgbtadError
from rgbtad.data.results import (
    read_results,
    read_results_csv,
    read_results_json,
    write_results,
    write_results_csv,
    write_results_json,
)

DETS = {
    "video_test_0000004": [
        {"label": "CricketBowling", "score": 0.912345678901234, "segment": [0.2000000001, 1.123456789012]},
        {"label": "CricketShot", "score": np.float32(0.25), "segment": (np.float64(11.4), 12.2)},
    ],
    "video_test_0000006": [],
    "v_a,b": [{"label": "Label, with comma", "score": 1e-9, "segment": [0, 3]}],
}


def test_json_round_trip_is_exact(tmp_path):
    path = write_results_json(tmp_path / "out" / "results.json", DETS)
    raw = json.loads(path.read_text())
    assert raw["version"] == "VERSION 1.3"
    assert raw["external_data"] == {"used": False, "details": ""}
    back = read_results_json(path)
    assert list(back) == list(DETS)
    first = back["video_test_0000004"][0]
    assert first == {"label": "CricketBowling", "score": 0.912345678901234,
                     "segment": [0.2000000001, 1.123456789012]}
    assert back["video_test_0000004"][1]["score"] == 0.25
    assert back["video_test_0000006"] == []
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temporary left


def test_csv_round_trip_is_exact(tmp_path):
    path = write_results_csv(tmp_path / "results.csv", DETS)
    lines = path.read_text().splitlines()
    assert lines[0] == "video_id,start,end,label,score"
    back = read_results_csv(path)
    assert back["video_test_0000004"][0]["segment"] == [0.2000000001, 1.123456789012]
    assert back["video_test_0000004"][0]["score"] == 0.912345678901234
    assert back["v_a,b"][0]["label"] == "Label, with comma"
    assert "video_test_0000006" not in back  # videos without detections have no rows
    # extension dispatch
    assert read_results(path) == back
    write_results(tmp_path / "r.json", DETS)
    assert read_results(tmp_path / "r.json")["v_a,b"][0]["score"] == 1e-9


def test_write_rejects_bad_detections_and_leaves_nothing(tmp_path):
    target = tmp_path / "results.json"
    with pytest.raises(RgbtadError, match=r"video 'x': detection 0: 'score' is not a finite number"):
        write_results_json(target, {"x": [{"label": "a", "score": float("nan"), "segment": [0, 1]}]})
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_reads_the_mmaction2_fixture(shared_data):
    results = read_results_json(shared_data / "eval_fixtures" / "mmaction2_anet_result.json")
    assert set(results) == {"bYUmtLBL7W4", "hDPLy21Yyuk"}
    assert all(isinstance(d["score"], float) for dets in results.values() for d in dets)


@pytest.mark.parametrize("content, expected", [
    ("{oops", "not valid JSON"),
    ('{"foo": {}}', "no top-level 'results'"),
    ('{"results": []}', "'results' must be an object"),
    ('{"results": {"v": {}}}', "video 'v': expected a list"),
    ('{"results": {"v": [{"label": "a", "score": 0.5}]}}', "video 'v': detection 0: missing field 'segment'"),
    ('{"results": {"v": [{"label": "a", "score": "0.5", "segment": [0, 1]}]}}', "'score' is not a finite number"),
    ('{"results": {"v": [{"label": "a", "score": 0.5, "segment": [0]}]}}', "'segment' must be [start, end]"),
    ('{"results": {"v": [{"label": 3, "score": 0.5, "segment": [0, 1]}]}}', "'label' must be a non-empty"),
])
def test_malformed_json_results(tmp_path, content, expected):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(RgbtadError) as err:
        read_results_json(path)
    assert str(err.value).startswith(str(path)) and expected in str(err.value)


@pytest.mark.parametrize("content, expected", [
    ("video,start,end,label,score\n", "header must be video_id,start,end,label,score"),
    ("video_id,start,end,label,score\nv,0,1,a\n", "line 2: expected 5 columns"),
    ("video_id,start,end,label,score\nv,zero,1,a,0.5\n", "line 2: 'segment' has a non-numeric value"),
])
def test_malformed_csv_results(tmp_path, content, expected):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(RgbtadError) as err:
        read_results_csv(path)
    assert str(err.value).startswith(str(path)) and expected in str(err.value)


def test_missing_results_file(tmp_path):
    with pytest.raises(RgbtadError, match="results file not found"):
        read_results(tmp_path / "none.json")


def test_a_results_csv_that_is_not_utf8_is_one_error_naming_the_file(tmp_path):
    path = tmp_path / "dets.csv"
    path.write_bytes("video-id,t-start,t-end,label,score\nv,1,2,caf\u00e9,0.5\n".encode("latin-1"))
    with pytest.raises(RgbtadError, match="dets.csv: not a UTF-8 text file"):
        read_results_csv(path)
