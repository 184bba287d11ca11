"""Annotation readers on the real THUMOS14 / ActivityNet files and on malformed inputs."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import pytest

from rgbtad.core.errors import RgbtadError
from rgbtad.data.annotations import (
    AnnotationSet,
    AnnotationWarning,
    Segment,
    VideoAnnotation,
    load_annotations,
)


@pytest.fixture(scope="module")
def thumos(shared_data):
    path = shared_data / "thumos14" / "thumos14.json"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ann = load_annotations(path)
    return path, ann, [w for w in caught if issubclass(w.category, AnnotationWarning)]


@pytest.fixture(scope="module")
def anet(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        return load_annotations(shared_data / "activitynet13")


# --------------------------------------------------------------------------- real THUMOS14

def test_thumos_counts_and_classes(thumos):
    path, ann, _ = thumos
    assert isinstance(ann, AnnotationSet)
    assert ann.source == str(path)
    assert len(ann.videos) == 412
    assert ann.subsets == ["Test", "Validation"]
    val, test = ann.split("validation"), ann.split("test")
    assert len(val.videos) == 200 and len(test.videos) == 212
    assert val.num_segments == 3007 and test.num_segments == 3358
    assert len(ann.class_names) == 20
    assert ann.class_names[0] == "BaseballPitch" and ann.class_names[19] == "VolleyballSpiking"
    assert ann.label_to_id["CliffDiving"] == 4
    # every segment's id names its label
    for video in ann.videos.values():
        for seg in video.segments:
            assert isinstance(seg, Segment)
            assert ann.class_names[seg.label_id] == seg.label
            assert 0 <= seg.start <= seg.end <= video.duration


def test_thumos_keeps_file_order_and_fields(thumos, shared_data):
    _, ann, _ = thumos
    raw = json.loads((shared_data / "thumos14" / "thumos14.json").read_text())["database"]
    assert list(ann.videos) == list(raw)
    video = ann.videos["video_test_0000004"]
    assert isinstance(video, VideoAnnotation)
    assert video.subset == "Test" and video.fps == 30.0 and video.duration == pytest.approx(33.83)
    assert video.segments[0] == Segment(0.2, 1.1, "CricketBowling", 5)
    # the split keeps the class list whole and the file order
    test = ann.split("Test")
    assert test.class_names == ann.class_names
    assert list(test.videos) == [v for v in raw if raw[v]["subset"] == "Test"]


def test_thumos_bad_video_is_clipped_with_a_warning(thumos):
    _, ann, caught = thumos
    messages = [str(w.message) for w in caught]
    bad = [m for m in messages if "video_test_0000270" in m]
    assert len(bad) == 1  # one warning per video
    assert "22 segment(s)" in bad[0] and "thumos14.json" in bad[0]
    video = ann.videos["video_test_0000270"]
    assert len(video.segments) == 29
    assert max(s.end for s in video.segments) == video.duration == 176.25
    # a segment entirely past the end becomes zero-length at the end (kept)
    assert sum(1 for s in video.segments if s.start == s.end == 176.25) == 22


def test_clipping_can_be_turned_off(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either
        ann = load_annotations(shared_data / "thumos14" / "thumos14.json", clip_to_duration=False)
    assert max(s.end for s in ann.videos["video_test_0000270"].segments) == pytest.approx(713.7)


def test_split_is_case_insensitive_and_unknown_subset_lists_present(thumos):
    path, ann, _ = thumos
    assert list(ann.split("VALIDATION").videos) == list(ann.split("validation").videos)
    both = ann.split(["validation", "test"])
    assert len(both.videos) == 412
    assert len(ann.split("validation,test").videos) == 412
    with pytest.raises(RgbtadError) as err:
        ann.split("train")
    message = str(err.value)
    assert str(path) in message and "'train'" in message and "'Test'" in message and "'Validation'" in message


def test_plain_thumos_layout_matches(thumos, shared_data):
    _, ann, _ = thumos
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        plain = load_annotations(shared_data / "thumos14" / "thumos14_plain_with_frames.json")
    assert len(plain.videos) == 412
    assert plain.class_names == ann.class_names  # alphabetical == THUMOS label_id order
    assert plain.split("Validation").num_segments == 3007
    assert all(v.fps is None for v in plain.videos.values())


# --------------------------------------------------------------------------- ActivityNet

def test_activitynet_bsn_folder(anet, shared_data):
    assert len(anet.videos) == 19228
    assert {s: len(anet.split(s).videos) for s in anet.subsets} == {
        "training": 9649, "validation": 4728, "testing": 4851,
    }
    assert len(anet.class_names) == 200
    names = (shared_data / "activitynet13" / "action_name.csv").read_text().splitlines()[1:]
    assert anet.class_names == [n.strip() for n in names if n.strip()]  # file order
    assert anet.split("training").num_segments == 14859
    assert anet.split("validation").num_segments == 7293
    assert anet.split("testing").num_segments == 0  # kept without annotations
    video = anet.videos["v_---9CpRcKoU"]  # ids keep the v_ prefix
    assert video.subset == "training" and video.fps == 30.0
    assert video.duration == pytest.approx(14.07, abs=0.1)


def test_activitynet_json_path_is_the_same_as_the_folder(anet, shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        again = load_annotations(shared_data / "activitynet13" / "anet_anno_action.json")
    assert list(again.videos) == list(anet.videos)
    assert again.class_names == anet.class_names


def test_activitynet_rounding_overshoot_is_silent(shared_data):
    """About 200 ANet videos end milliseconds after their duration: clipped, not warned."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_annotations(shared_data / "activitynet13")
    assert 0 < len(caught) <= 5
    assert all("v_" in str(w.message) for w in caught)


def _write_bsn(folder: Path, anno: dict, info_rows: list[str], classes: list[str] | None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "anet_anno_action.json").write_text(json.dumps(anno))
    (folder / "video_info_new.csv").write_text(
        "video,numFrame,seconds,fps,rfps,subset,featureFrame\n" + "\n".join(info_rows) + "\n"
    )
    if classes is not None:
        (folder / "action_name.csv").write_text("action\n" + "\n".join(classes) + "\n")


BSN_ANNO = {
    "v_a": {"duration_second": 10.0, "duration_frame": 300, "feature_frame": 288,
            "annotations": [{"segment": [1.0, 2.0], "label": "Zumba"}]},
    "v_b": {"duration_second": 20.0, "duration_frame": 500, "feature_frame": 496,
            "annotations": [{"segment": [3.0, 4.0], "label": "Archery"}]},
}


def test_bsn_small_folder(tmp_path):
    _write_bsn(tmp_path, BSN_ANNO, ["v_a,300,10,30.0,29.9,training,288",
                                    "v_b,500,20,25.0,25.0,Validation,496"], ["Zumba", "Archery"])
    ann = load_annotations(tmp_path)
    assert ann.class_names == ["Zumba", "Archery"]  # action_name.csv order, not sorted
    assert ann.videos["v_b"].fps == 25.0 and ann.videos["v_b"].segments[0].label_id == 1
    assert list(ann.split("validation").videos) == ["v_b"]
    # without action_name.csv: sorted labels
    (tmp_path / "action_name.csv").unlink()
    assert load_annotations(tmp_path).class_names == ["Archery", "Zumba"]


def test_bsn_errors(tmp_path):
    _write_bsn(tmp_path / "a", BSN_ANNO, ["v_a,300,10,30.0,29.9,training,288"], None)
    with pytest.raises(RgbtadError, match=r"anet_anno_action\.json: video 'v_b': not listed"):
        load_annotations(tmp_path / "a")
    _write_bsn(tmp_path / "b", BSN_ANNO, ["v_a,300,10,30.0,29.9,training,288",
                                          "v_b,500,20,25.0,25.0,validation,496"], ["Zumba"])
    with pytest.raises(RgbtadError, match=r"video 'v_b': label 'Archery' is not in .*action_name\.csv"):
        load_annotations(tmp_path / "b")
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "anet_anno_action.json").write_text(json.dumps(BSN_ANNO))
    with pytest.raises(RgbtadError, match="video_info_new.csv"):
        load_annotations(folder)
    (folder / "info.csv").write_text("video,fps\nv_a,30\n")
    with pytest.raises(RgbtadError, match=r"info\.csv: missing column\(s\) subset"):
        load_annotations(folder, subset_csv=folder / "info.csv")
    (folder / "info.csv").write_text("video,subset,fps\nv_a,training,abc\n")
    with pytest.raises(RgbtadError, match=r"info\.csv: line 2: fps 'abc' is not a number"):
        load_annotations(folder, subset_csv=folder / "info.csv")
    (folder / "info.csv").write_text("video,subset\nv_a,training\nv_b,testing\n")
    ann = load_annotations(folder / "anet_anno_action.json", subset_csv=folder / "info.csv")
    assert ann.subsets == ["training", "testing"] and ann.videos["v_a"].fps is None
    with pytest.raises(RgbtadError, match="not an ActivityNet BSN annotation folder"):
        load_annotations(tmp_path)


def test_official_activitynet_layout(tmp_path):
    data = {
        "version": "VERSION 1.3",
        "taxonomy": [{"nodeName": "Root", "parentName": None}],
        "database": {
            "vid1": {"subset": "training", "duration": 30.0, "url": "x",
                     "annotations": [{"label": "Zumba", "segment": [1.0, 5.0]},
                                     {"label": "Archery", "segment": [6.0, 6.0]}]},
            "vid2": {"subset": "testing", "duration": 12.5, "annotations": []},
            "vid3": {"subset": "validation", "duration": 8.0},
        },
    }
    path = tmp_path / "anet.json"
    path.write_text(json.dumps(data))
    ann = load_annotations(path)
    assert ann.class_names == ["Archery", "Zumba"]  # no label_id: sorted
    assert [s.label_id for s in ann.videos["vid1"].segments] == [1, 0]
    assert ann.videos["vid1"].segments[1].start == ann.videos["vid1"].segments[1].end  # zero-length kept
    assert ann.videos["vid2"].segments == [] and ann.videos["vid3"].segments == []
    assert ann.videos["vid1"].fps is None


def test_label_id_gaps_get_placeholder_names(shared_data, tmp_path):
    gt = json.loads((shared_data / "features" / "highjump_tennis_gt.json").read_text())["GT"]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"database": {k.replace(".npy", ""): v for k, v in gt.items()}}))
    with pytest.warns(AnnotationWarning, match="no annotation uses label_id 0"):
        ann = load_annotations(path)
    assert len(ann.class_names) == 18
    assert ann.class_names[11] == "HighJump" and ann.class_names[17] == "TennisSwing"
    assert ann.class_names[0] == "unnamed_class_0"


# --------------------------------------------------------------------------- malformed files

GOOD = {
    "database": {
        "v1": {"subset": "Validation", "duration": 20.0, "fps": 30.0,
               "annotations": [{"label": "Jump", "label_id": 0, "segment": [1.0, 2.0]},
                               {"label": "Run", "label_id": 1, "segment": [3.0, 4.0]}]},
        "v2": {"subset": "Test", "duration": 10.0, "fps": 25.0,
               "annotations": [{"label": "Run", "label_id": 1, "segment": [0.0, 9.0]}]},
    }
}


def _video(data):
    return data["database"]["v1"]


def _ann(data):
    return data["database"]["v1"]["annotations"][0]


MALFORMED = [
    ("missing subset", lambda d: _video(d).pop("subset"), "missing field 'subset'"),
    ("missing duration", lambda d: _video(d).pop("duration"), "missing field 'duration'"),
    ("text duration", lambda d: _video(d).update(duration="long"), "'duration' is not a number"),
    ("negative duration", lambda d: _video(d).update(duration=-1), "'duration' is negative"),
    ("zero fps", lambda d: _video(d).update(fps=0), "'fps' must be a positive number"),
    ("text fps", lambda d: _video(d).update(fps="30"), "'fps' must be a positive number"),
    ("annotations not a list", lambda d: _video(d).update(annotations={}), "'annotations' must be a list"),
    ("annotation not an object", lambda d: _video(d)["annotations"].append(3), "annotation 2: expected an object"),
    ("missing segment", lambda d: _ann(d).pop("segment"), "annotation 0: missing field 'segment'"),
    ("missing label", lambda d: _ann(d).pop("label"), "annotation 0: missing field 'label'"),
    ("label not text", lambda d: _ann(d).update(label=7), "'label' must be a non-empty string"),
    ("non-numeric segment", lambda d: _ann(d).update(segment=["a", 2]), "non-numeric value"),
    ("nan segment", lambda d: _ann(d).update(segment=[float("nan"), 2]), "non-numeric value"),
    ("short segment", lambda d: _ann(d).update(segment=[1.0]), "'segment' must be [start, end]"),
    ("negative start", lambda d: _ann(d).update(segment=[-0.5, 2.0]), "starts before 0"),
    ("reversed", lambda d: _ann(d).update(segment=[5.0, 3.0]), "reversed (start 5.0 > end 3.0)"),
    ("bad label_id", lambda d: _ann(d).update(label_id="0"), "'label_id' must be a non-negative integer"),
    ("id with two labels",
     lambda d: d["database"]["v2"]["annotations"].append({"label": "Walk", "label_id": 0, "segment": [1, 2]}),
     "video 'v2': label_id 0 is 'Walk' here but 'Jump'"),
    ("label with two ids", lambda d: _ann(d).update(label="Run"), "label 'Run' has label_id"),
    ("mixed label_id", lambda d: _ann(d).pop("label_id"), "lack 'label_id'"),
    ("video not an object", lambda d: d["database"].update(v1=[1, 2]), "expected an object"),
]


@pytest.mark.parametrize("name, mutate, expected", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_annotation_errors(tmp_path, name, mutate, expected):
    data = copy.deepcopy(GOOD)
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RgbtadError) as err:
        load_annotations(path)
    message = str(err.value)
    assert message.startswith(str(path)), message
    assert expected in message, message
    if name not in ("id with two labels", "mixed label_id"):
        assert "video 'v1'" in message
    assert "\n" not in message


def test_good_small_file_loads(tmp_path):
    path = tmp_path / "good.json"
    path.write_text(json.dumps(GOOD))
    ann = load_annotations(path)
    assert ann.class_names == ["Jump", "Run"]
    assert ann.videos["v2"].fps == 25.0


@pytest.mark.parametrize("content, expected", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"something": 1}', "unknown annotation layout"),
    ('{"database": [1]}', "'database' must be an object"),
])
def test_unreadable_annotation_files(tmp_path, content, expected):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(RgbtadError, match=expected) as err:
        load_annotations(path)
    assert str(path) in str(err.value)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(RgbtadError, match="annotation file not found"):
        load_annotations(tmp_path / "nope.json")


def test_annotations_do_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, rgbtad.data.annotations, rgbtad.data.results, rgbtad.features.store; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
