"""Predicted segments that are reversed, empty or not finite never count as hits.

The reference evaluator scores a perfect prediction file written ``[end, start]`` as mAP 100
at every tIoU (its tIoU is 0/0 = NaN, and NaN passes "not below the threshold"). rgbtad
refuses such a file with one line naming the first bad detection, or with
``--drop-invalid`` leaves such detections out with one warning.
"""

import json
import logging
import math

import numpy as np
import pytest
import torch

from rgbtad.cli import main as cli_main
from rgbtad.core.errors import RgbtadError
from rgbtad.data.results import read_results_json, write_results_json
from rgbtad.detection.points import level_points
from rgbtad.detection.postprocess import NMSConfig, postprocess_video
from rgbtad.evaluation import detection
from rgbtad.evaluation.detection import evaluate_detections
from rgbtad.evaluation.ground_truth import load_ground_truth
from rgbtad.evaluation.predictions import Predictions

GT = {"v1": [(1.0, 4.0, "A"), (10.0, 12.0, "B")], "v2": [(3.0, 9.0, "A")]}


@pytest.fixture()
def gt_file(tmp_path):
    database = {vid: {"subset": "test", "duration": 20.0, "annotations": [
        {"label": lab, "label_id": "AB".index(lab), "segment": [s, e]} for s, e, lab in anns]}
        for vid, anns in GT.items()}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"database": database}))
    return path


def perfect(reverse=False):
    return {vid: [{"label": lab, "score": 0.9, "segment": [e, s] if reverse else [s, e]} for s, e, lab in anns]
            for vid, anns in GT.items()}


def test_reversed_perfect_predictions_are_refused_not_scored_100(gt_file):
    gt = load_ground_truth(gt_file)
    reversed_preds = Predictions.from_results(perfect(reverse=True))
    # the flaw, in the unchecked core (the reference's arithmetic): mAP 100 at recall 0
    flawed = detection._evaluate(gt, reversed_preds, [0.3, 0.7], (1,))
    assert flawed.mAP.tolist() == [1.0, 1.0] and flawed.recall.max() == 0.0
    with pytest.raises(RgbtadError, match=r"video 'v1': detection 0: segment \[4\.0, 1\.0\] is reversed "
                                          r"\(end must be greater than start\); 3 such detections in all"):
        evaluate_detections(gt, perfect(reverse=True))
    assert evaluate_detections(gt, perfect()).mAP.tolist() == [1.0] * 5


@pytest.mark.parametrize("segment, kind", [([2.0, 2.0], "empty"), ([math.nan, 3.0], "not finite"),
                                           ([1.0, math.inf], "not finite")])
def test_empty_and_non_finite_segments_are_refused(gt_file, segment, kind):
    results = perfect()
    results["v2"].append({"label": "A", "score": 0.5, "segment": segment})
    with pytest.raises(RgbtadError, match=rf"video 'v2': detection 1: segment .* is {kind}"):
        evaluate_detections(gt_file, results)


def test_drop_invalid_equals_evaluating_the_valid_detections(gt_file, caplog):
    rng = np.random.default_rng(0)
    valid = {vid: [{"label": "AB"[int(rng.integers(2))], "score": float(rng.random()),
                    "segment": sorted(rng.uniform(0, 20, 2).tolist())} for _ in range(30)] for vid in GT}
    mixed = json.loads(json.dumps(valid))
    for vid, dets in mixed.items():
        for i in (0, 7, 19):
            s, e = dets[i]["segment"]
            dets.insert(i, {"label": dets[i]["label"], "score": 0.95, "segment": [e, s]})
        dets.append({"label": "A", "score": 0.99, "segment": [5.0, 5.0]})
    expected = evaluate_detections(gt_file, valid, detection.ANET_TIOU)
    with caplog.at_level(logging.WARNING):
        got = evaluate_detections(gt_file, mixed, detection.ANET_TIOU, drop_invalid=True)
    assert np.array_equal(got.per_class_ap, expected.per_class_ap) and np.array_equal(got.recall, expected.recall)
    assert got.num_detections == expected.num_detections
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["<memory>: left out 8 detections whose segment is reversed, empty or not finite "
                        "(end <= start)"]


def test_cli_refuses_or_with_drop_invalid_leaves_out(gt_file, tmp_path, capsys):
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"results": perfect(reverse=True)}))
    assert cli_main(["evaluate", "--gt", str(gt_file), "--pred", str(pred)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rgbtad evaluate: error: {pred}: video 'v1': detection 0: segment [4.0, 1.0] is reversed "
                   "(end must be greater than start); 3 such detections in all (--drop-invalid leaves them out)"]
    out = tmp_path / "m.json"
    assert cli_main(["evaluate", "--gt", str(gt_file), "--pred", str(pred), "--drop-invalid", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["mAP"] == [0.0] * 5


def test_results_files_never_hold_such_segments(tmp_path):
    with pytest.raises(RgbtadError, match=r"video 'v': detection 0: 'segment' \[3\.0, 3\.0\] must end after"):
        write_results_json(tmp_path / "w.json", {"v": [{"label": "a", "score": 0.5, "segment": [3.0, 3.0]}]})
    assert not (tmp_path / "w.json").exists()
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"results": {"v": [{"label": "a", "score": 0.5, "segment": [4.0, 1.0]}]}}))
    with pytest.raises(RgbtadError, match=r"r\.json: video 'v': detection 0: 'segment' \[4\.0, 1\.0\] must end"):
        read_results_json(path)


def test_detections_past_the_video_end_are_dropped_not_emptied():
    """Clipping to [0, duration] empties a segment that starts after the end; the release
    writes it out as [duration, duration], rgbtad leaves it out."""
    points = level_points([4], [1], [(0, 10000)])
    logits = [torch.full((4, 1), -10.0)]
    logits[0][0, 0] = logits[0][3, 0] = 3.0
    offsets = [torch.ones(4, 2)]
    masks = [torch.ones(4, dtype=torch.bool)]
    meta = {"video_id": "v", "fps": 30.0, "feat_stride": 4, "feat_num_frames": 16, "duration": 0.5}
    # grid [-1, 1] -> [0.13, 0.4] s is kept; grid [2, 4] -> [0.53, 0.8] s clips to [0.5, 0.5] and goes
    out = postprocess_video(logits, offsets, masks, points, meta, NMSConfig(nms_method="none"))
    np.testing.assert_allclose(out.segments, [[4 / 30, 12 / 30]])
    assert out.scores.shape == (1,) and out.labels.tolist() == [0]
