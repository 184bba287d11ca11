"""Detections whose label is not a class of the ground truth, or whose video is not in it.

The oracle here is ActionFormer's own evaluator (``ANETdetection``), run once outside the
repository on the prediction files that `write_cases` builds from the real ground truth;
only its numbers are committed, in ``tests/data/evaluation_unknown_reference.json``, whose
``note`` says exactly how they were made. What the reference does, and what these cases
check that we do too:

* a label that is not a class of the ground truth is never mapped to a class index, so
  the detection joins no class: it is ignored (not a false positive);
* a detection of a ground-truth class on a video without ground truth in the evaluated
  split (absent from the file, or in another subset) is a false positive of its class.

Scores are continuous random numbers with no ties, so the committed numbers do not depend
on how numpy breaks ties on the machine that made them.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rgbtad.core.errors import RgbtadError
from rgbtad.evaluation.detection import evaluate_detection_files, parse_tiou

REFERENCE = Path(__file__).parent / "data" / "evaluation_unknown_reference.json"
UNKNOWN_LABELS = ("Juggling", "Surfing", "RockClimbing")


# ----------------------------------------------------------------------------------------
# Cases: prediction files built from the real ground truth (also used to make the fixture)


def _det(label: str, score: float, s: float, e: float) -> dict:
    return {"label": label, "score": score, "segment": [s, e]}


def _thumos_results(database: dict) -> dict:
    """Noisy detections on every test video, with unknown labels and unknown videos mixed in."""
    rng = np.random.default_rng(20240611)
    names = [n for _, n in sorted({(a["label_id"], a["label"]) for v in database.values()
                                   for a in v["annotations"]})]
    results: dict[str, list] = {}
    for vid, v in database.items():
        if v["subset"].lower() != "test":
            continue
        anns = v["annotations"]
        dets = []
        for i in range(6):
            if i % 2 == 0 and anns:
                a = anns[int(rng.integers(len(anns)))]
                s, e = a["segment"]
                length = e - s
                s, e = s + rng.normal(0, 0.2 * length), e + rng.normal(0, 0.2 * length)
                lab = a["label"]
            else:
                s = rng.uniform(0, v["duration"])
                e = s + rng.exponential(5.0)
                lab = names[int(rng.integers(len(names)))]
            dets.append(_det(lab, float(rng.random()), float(s), float(max(e, s + 0.1))))
        if anns and rng.random() < 0.4:  # an unknown label exactly on a ground-truth instance
            a = anns[int(rng.integers(len(anns)))]
            dets.insert(int(rng.integers(len(dets) + 1)),
                        _det(UNKNOWN_LABELS[int(rng.integers(3))], float(0.5 + 0.5 * rng.random()),
                             float(a["segment"][0]), float(a["segment"][1])))
        results[vid] = dets
    extra: dict[str, list] = {}
    # videos of the other subset: known labels on their own ground truth, one unknown label
    for vid in [k for k, v in database.items() if v["subset"].lower() == "validation"][:8]:
        anns = database[vid]["annotations"][:3]
        extra[vid] = [_det(a["label"], float(rng.random()), float(a["segment"][0]),
                           float(a["segment"][1])) for a in anns]
        extra[vid].append(_det(UNKNOWN_LABELS[0], float(rng.random()), 1.0, 5.0))
    # a video absent from the file, with known labels; another with unknown labels only
    extra["video_test_9999999"] = [
        _det(names[int(rng.integers(len(names)))], float(rng.random()), float(s), float(s + 4.0))
        for s in rng.uniform(0, 100, 5)]
    extra["not_a_video"] = [_det(UNKNOWN_LABELS[1], float(rng.random()), 0.0, 3.0) for _ in range(3)]
    keys = list(results)
    for vid, dets in extra.items():
        keys.insert(int(rng.integers(len(keys) + 1)), vid)
    merged = {**results, **extra}
    return {k: merged[k] for k in keys}


def _anet_database(shared_data: Path) -> dict:
    """mmaction2's ActivityNet fixture as ActionFormer reads it (no 'v_', sorted label ids)."""
    raw = json.loads((shared_data / "eval_fixtures" / "mmaction2_anet_gt.json").read_text())
    names = sorted({a["label"] for v in raw.values() for a in v["annotations"]})
    return {
        (vid[2:] if vid.startswith("v_") else vid): {
            "subset": v["subset"], "duration": v["duration"], "fps": 30.0,
            "annotations": [{"label": a["label"], "label_id": names.index(a["label"]),
                             "segment": a["segment"]} for a in v["annotations"]]}
        for vid, v in raw.items()}


def _anet_results(shared_data: Path, database: dict) -> dict:
    results = json.loads((shared_data / "eval_fixtures" / "mmaction2_anet_result.json").read_text())["results"]
    out: dict[str, list] = {}
    for i, (vid, dets) in enumerate(results.items()):
        dets = list(dets)
        a = database[vid]["annotations"][0]
        dets.insert(1 + i, _det("Zumba", 0.97 - 0.01 * i, *map(float, a["segment"])))
        out[vid] = dets
        # the same video under its 'v_' name: not in the ground truth, so false positives
        out["v_" + vid] = [dict(d, score=d["score"] * 0.999) for d in dets[:3] if d["label"] != "Zumba"]
    out["brand_new_video"] = [_det("Zumba", 0.5, 0.0, 10.0), _det("Cleaning shoes", 0.991, 0.0, 10.0)]
    return out


def write_cases(shared_data: Path, out_dir: Path) -> list[dict]:
    """Write every case's files under `out_dir`; returns [{name, gt, split, pred, tiou}]."""
    out_dir.mkdir(parents=True, exist_ok=True)
    thumos_gt = shared_data / "thumos14" / "thumos14.json"
    thumos_pred = out_dir / "thumos_pred.json"
    thumos_pred.write_text(json.dumps({"results": _thumos_results(
        json.loads(thumos_gt.read_text())["database"])}))
    anet_db = _anet_database(shared_data)
    anet_gt = out_dir / "anet_gt.json"
    anet_gt.write_text(json.dumps({"database": anet_db}))
    anet_pred = out_dir / "anet_pred.json"
    anet_pred.write_text(json.dumps({"results": _anet_results(shared_data, anet_db)}))
    return [
        {"name": "thumos_test", "gt": str(thumos_gt), "split": "test", "pred": str(thumos_pred), "tiou": "thumos"},
        {"name": "thumos_validation", "gt": str(thumos_gt), "split": "validation", "pred": str(thumos_pred),
         "tiou": "thumos"},
        {"name": "thumos_all", "gt": str(thumos_gt), "split": None, "pred": str(thumos_pred), "tiou": "thumos"},
        {"name": "anet_validation", "gt": str(anet_gt), "split": "validation", "pred": str(anet_pred),
         "tiou": "anet"},
    ]


@pytest.fixture(scope="module")
def cases(shared_data, tmp_path_factory) -> dict[str, dict]:
    made = write_cases(shared_data, tmp_path_factory.mktemp("unknown_cases"))
    for case in made:  # no equal scores anywhere: the reference's numbers are machine-independent
        scores = [d["score"] for ds in json.loads(Path(case["pred"]).read_text())["results"].values()
                  for d in ds]
        assert len(set(scores)) == len(scores)
    return {case["name"]: case for case in made}


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())["cases"]


# ----------------------------------------------------------------------------------------
# Against the reference's numbers


@pytest.mark.parametrize("name", ["thumos_test", "thumos_validation", "thumos_all", "anet_validation"])
def test_matches_the_reference_evaluator(cases, reference, name):
    case, ref = cases[name], reference[name]
    m = evaluate_detection_files(case["gt"], case["pred"], split=case["split"],
                                 tiou_thresholds=parse_tiou(case["tiou"]))
    np.testing.assert_allclose(m.mAP, ref["mAP"], atol=1e-6, rtol=0)
    assert abs(m.average_mAP - ref["average_mAP"]) <= 1e-6
    np.testing.assert_allclose(m.recall, ref["recall"], atol=1e-6, rtol=0)
    assert m.num_detections == ref["num_known_label_detections"]


def test_unknown_labels_are_ignored_not_false_positives(cases):
    """Removing the unknown-label detections from the file changes nothing at all."""
    case = cases["thumos_test"]
    results = json.loads(Path(case["pred"]).read_text())["results"]
    pruned = {vid: [d for d in ds if d["label"] not in UNKNOWN_LABELS] for vid, ds in results.items()}
    path = Path(case["pred"]).with_name("pruned.json")
    path.write_text(json.dumps({"results": pruned}))
    full = evaluate_detection_files(case["gt"], case["pred"], split="test")
    np.testing.assert_array_equal(full.per_class_ap, evaluate_detection_files(case["gt"], path, split="test").per_class_ap)


def test_one_warning_line_names_labels_videos_and_counts(cases, caplog):
    case = cases["thumos_test"]
    results = json.loads(Path(case["pred"]).read_text())["results"]
    counts = {lab: sum(d["label"] == lab for ds in results.values() for d in ds) for lab in UNKNOWN_LABELS}
    database = json.loads(Path(case["gt"]).read_text())["database"]
    off = [vid for vid in results if database.get(vid, {}).get("subset") != "Test"
           and any(d["label"] not in UNKNOWN_LABELS for d in results[vid])]
    n_off = sum(d["label"] not in UNKNOWN_LABELS for vid in off for d in results[vid])
    with caplog.at_level(logging.WARNING, logger="rgbtad"):
        evaluate_detection_files(case["gt"], case["pred"], split="test")
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == 1
    line = records[0].getMessage()
    assert "\n" not in line and case["pred"] in line
    assert f"{sum(counts.values())} detections with 3 labels that are not classes" in line
    for lab, n in counts.items():
        assert f"'{lab}' ({n})" in line
    assert f"{n_off} detections on {len(off)} videos that are not in the evaluated ground truth" in line
    assert "count as false positives" in line
    for vid in off[:5]:
        assert f"'{vid}'" in line
    assert f"and {len(off) - 5} more" in line
    assert "'not_a_video'" not in line  # only unknown labels there: ignored, not false positives


def test_strict_keeps_the_error(cases):
    case = cases["anet_validation"]
    with pytest.raises(RgbtadError) as err:
        evaluate_detection_files(case["gt"], case["pred"], split="validation", strict=True)
    assert str(err.value) == (f"{case['pred']}: label 'Zumba' (video 'bYUmtLBL7W4') is not a class "
                              f"of the ground truth {case['gt']}")


# ----------------------------------------------------------------------------------------
# Command line


def _cli(*args: str) -> subprocess.CompletedProcess:
    script = "import sys; from rgbtad.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", script, "evaluate", *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_default_warns_once_and_exits_zero(cases, reference, tmp_path):
    case = cases["anet_validation"]
    out = tmp_path / "metrics.json"
    proc = _cli("--gt", case["gt"], "--pred", case["pred"], "--split", "validation", "--tiou", "anet",
                "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("WARNING: "), proc.stderr
    assert "3 detections with 1 label that is not a class" in lines[0] and "'Zumba' (3)" in lines[0]
    assert ("5 detections on 3 videos that are not in the evaluated ground truth (split 'validation') "
            "count as false positives: 'v_bYUmtLBL7W4', 'v_hDPLy21Yyuk', 'brand_new_video'") in lines[0]
    assert json.loads(out.read_text())["average_mAP"] == pytest.approx(
        reference["anet_validation"]["average_mAP"], abs=1e-6)


def test_cli_strict_fails_with_one_line(cases):
    case = cases["thumos_test"]
    proc = _cli("--gt", case["gt"], "--pred", case["pred"], "--split", "test", "--strict")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"rgbtad evaluate: error: {case['pred']}: label '")
    assert f"is not a class of the ground truth {case['gt']} (and 2 other unknown labels)" in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
