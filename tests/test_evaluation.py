"""The mAP evaluator: hand-computed cases, an independent slow oracle, real files, the CLI.

The oracle below is a deliberately plain transcription of the protocol (Python loops over
detections, ground truth and thresholds). The only numpy it uses is `np.argsort`, because
the protocol *defines* tie-breaking as "whatever numpy's default argsort does on that
array" (that is what ActionFormer's evaluator does), so the oracle must break ties the
same way to be comparable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rgbtad.core.errors import RgbtadError
from rgbtad.evaluation.detection import (
    ANET_TIOU,
    THUMOS_TIOU,
    evaluate_detection_files,
    evaluate_detections,
    parse_tiou,
)
from rgbtad.evaluation.ground_truth import GroundTruth, load_ground_truth
from rgbtad.evaluation.metrics import DetectionMetrics
from rgbtad.evaluation.predictions import Predictions

TOL = 1e-3


# ----------------------------------------------------------------------------------------
# Oracle


def _tiou(ps: float, pe: float, gs: float, ge: float) -> float:
    inter = max(0.0, min(pe, ge) - max(ps, gs))
    union = (ge - gs) + (pe - ps) - inter
    return inter / union


def oracle(database: dict, results: dict, thresholds, split=None, top_k=(1, 5)):
    """Returns (ap[class][t], mAP[t], average, recall[t][k], class label ids)."""
    name_to_id = {a["label"]: a["label_id"] for v in database.values() for a in v["annotations"]}
    gt = []  # (video, start, end, label_id) in file order
    for vid, video in database.items():
        if split is not None and video["subset"].lower() != split.lower():
            continue
        kept = []
        for a in video["annotations"]:
            s, e, lab = float(a["segment"][0]), float(a["segment"][1]), a["label_id"]
            if e - s < TOL:
                continue
            if any(abs(s - k[0]) <= TOL and abs(e - k[1]) <= TOL and lab == k[2] for k in kept):
                continue
            kept.append((s, e, lab))
        gt += [(vid, s, e, lab) for s, e, lab in kept]
    classes = sorted({g[3] for g in gt})
    dets = [(vid, float(d["segment"][0]), float(d["segment"][1]), name_to_id[d["label"]],
             float(d["score"])) for vid, ds in results.items() for d in ds]
    n_t, n_k = len(thresholds), len(top_k)
    ap_all, rec_all = [], []
    for c in classes:
        g_c = [g for g in gt if g[3] == c]
        d_c = [d for d in dets if d[3] == c]
        order = np.argsort(np.array([d[4] for d in d_c], dtype=np.float64))[::-1]
        locked = [[False] * len(g_c) for _ in thresholds]
        tp = [[0] * len(d_c) for _ in thresholds]
        for r, i in enumerate(order.tolist()):
            vid, ps, pe = d_c[i][0], d_c[i][1], d_c[i][2]
            cands = [j for j, g in enumerate(g_c) if g[0] == vid]
            if not cands:
                continue
            tious = [_tiou(ps, pe, g_c[j][1], g_c[j][2]) for j in cands]
            by_tiou = np.argsort(np.array(tious))[::-1].tolist()
            for t, thr in enumerate(thresholds):
                for q in by_tiou:
                    if tious[q] < thr:
                        break
                    if not locked[t][cands[q]]:
                        locked[t][cands[q]] = True
                        tp[t][r] = 1
                        break
        aps = []
        for t in range(n_t):
            prec, rec, hits = [], [], 0
            for r in range(len(d_c)):
                hits += tp[t][r]
                prec.append(hits / (r + 1))
                rec.append(hits / len(g_c))
            mprec = [0.0] + prec + [0.0]
            mrec = [0.0] + rec + [1.0]
            for i in range(len(mprec) - 2, -1, -1):
                mprec[i] = max(mprec[i], mprec[i + 1])
            aps.append(sum((mrec[i] - mrec[i - 1]) * mprec[i]
                           for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]))
        ap_all.append(aps)
        # Recall@kx
        recalled = [[0] * n_k for _ in thresholds]
        for vid in {g[0] for g in g_c}:
            g_v = [g for g in g_c if g[0] == vid]
            d_v = [d for d in d_c if d[0] == vid]
            if not d_v:
                continue
            top = np.argsort(np.array([d[4] for d in d_v]))[::-1].tolist()
            for t, thr in enumerate(thresholds):
                for j, k in enumerate(top_k):
                    chosen = [d_v[i] for i in top[:k * len(g_v)]]
                    recalled[t][j] += sum(
                        any(_tiou(d[1], d[2], g[1], g[2]) >= thr for d in chosen) for g in g_v)
        rec_all.append([[recalled[t][j] / len(g_c) for j in range(n_k)] for t in range(n_t)])
    m_ap = [sum(ap_all[c][t] for c in range(len(classes))) / len(classes) for t in range(n_t)]
    recall = [[sum(rec_all[c][t][j] for c in range(len(classes))) / len(classes)
               for j in range(n_k)] for t in range(n_t)]
    return ap_all, m_ap, sum(m_ap) / n_t, recall, classes


def assert_matches_oracle(metrics: DetectionMetrics, database, results, thresholds, split=None,
                          tol=1e-9):
    ap, m_ap, avg, recall, classes = oracle(database, results, thresholds, split)
    np.testing.assert_allclose(metrics.per_class_ap, np.array(ap), atol=tol, rtol=0)
    np.testing.assert_allclose(metrics.mAP, m_ap, atol=tol, rtol=0)
    assert abs(metrics.average_mAP - avg) <= tol
    np.testing.assert_allclose(metrics.recall, np.array(recall), atol=tol, rtol=0)
    assert len(metrics.class_names) == len(classes)


# ----------------------------------------------------------------------------------------
# Helpers


def make_db(videos: dict[str, list[tuple[float, float, str]]], classes=("A", "B", "C"),
            subset="test", duration=100.0) -> dict:
    return {vid: {"subset": subset, "duration": duration, "fps": 30.0,
                  "annotations": [{"label": lab, "label_id": classes.index(lab), "segment": [s, e]}
                                  for s, e, lab in anns]}
            for vid, anns in videos.items()}


def det(label: str, score: float, s: float, e: float) -> dict:
    return {"label": label, "score": score, "segment": [s, e]}


def run(database: dict, results: dict, thresholds=(0.5,), split=None) -> DetectionMetrics:
    gt = GroundTruth.from_database(database, split=split, source="gt")
    return evaluate_detections(gt, Predictions.from_results(results, source="pred"),
                               list(thresholds))


# ----------------------------------------------------------------------------------------
# Hand-computed cases


def test_perfect_predictions_score_one():
    db = make_db({"v1": [(1, 3, "A"), (5, 9, "B")], "v2": [(0, 2, "A")]})
    res = {"v1": [det("A", 0.9, 1, 3), det("B", 0.8, 5, 9)], "v2": [det("A", 0.7, 0, 2)]}
    m = run(db, res, THUMOS_TIOU)
    np.testing.assert_array_equal(m.mAP, 1.0)
    assert m.average_mAP == 1.0
    np.testing.assert_array_equal(m.recall, 1.0)
    assert m.class_names == ["A", "B"]


def test_false_positive_ranked_above_the_true_positive_halves_ap():
    db = make_db({"v1": [(10, 20, "A")]})
    res = {"v1": [det("A", 0.9, 50, 60), det("A", 0.8, 10, 20)]}
    # ranks: FP (p=0, r=0), TP (p=1/2, r=1) -> AP = 1 * 1/2
    assert run(db, res).average_mAP == pytest.approx(0.5, abs=1e-12)


def test_duplicate_detection_is_a_false_positive():
    db = make_db({"v1": [(0, 10, "A"), (20, 30, "A")]})
    res = {"v1": [det("A", 0.9, 0, 10), det("A", 0.8, 0.5, 10), det("A", 0.7, 20, 30)]}
    # tp = 1, 0, 1 -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = 1/2 + 1/2 * 2/3
    assert run(db, res).average_mAP == pytest.approx(0.5 + 1 / 3, abs=1e-12)


def test_detection_on_a_video_without_that_class_is_a_false_positive():
    db = make_db({"v1": [(0, 10, "A")], "v2": [(0, 10, "B")]})
    res = {"v2": [det("A", 0.9, 0, 10), det("B", 0.9, 0, 10)], "v1": [det("A", 0.8, 0, 10)]}
    m = run(db, res)
    assert m.per_class_ap[:, 0].tolist() == pytest.approx([0.5, 1.0], abs=1e-12)


def test_detection_on_a_video_outside_the_split_is_a_false_positive(caplog):
    db = make_db({"v1": [(0, 10, "A")]})
    db.update(make_db({"train1": [(0, 10, "A")]}, subset="train"))
    res = {"train1": [det("A", 0.9, 0, 10)], "nowhere": [det("A", 0.85, 0, 10)],
           "v1": [det("A", 0.8, 0, 10)]}
    with caplog.at_level("WARNING"):
        m = run(db, res, split="TEST")
    assert m.average_mAP == pytest.approx(1 / 3, abs=1e-12)
    assert m.num_videos == 1
    assert "2 detections on 2 videos" in caplog.text


def test_class_absent_from_the_split_is_not_counted():
    db = make_db({"v1": [(0, 10, "A")]})
    db.update(make_db({"t1": [(0, 10, "B")]}, subset="train"))
    res = {"v1": [det("A", 0.9, 0, 10), det("B", 0.95, 0, 10)]}
    m = run(db, res, split="test")
    assert m.class_names == ["A"]
    assert m.average_mAP == 1.0
    assert m.num_detections == 1


def test_class_without_detections_scores_zero():
    db = make_db({"v1": [(0, 10, "A"), (20, 30, "B")]})
    m = run(db, {"v1": [det("A", 0.9, 0, 10)]})
    assert m.per_class_ap[:, 0].tolist() == [1.0, 0.0]
    assert m.average_mAP == 0.5


def test_equal_scores_are_ranked_by_numpys_default_argsort():
    db = make_db({"v1": [(0, 10, "A")]})
    res = {"v1": [det("A", 0.5, 0, 10), det("A", 0.5, 40, 50), det("A", 0.5, 60, 70)]}
    # the only true positive is detection 0; its rank is where numpy's argsort puts it
    rank_of_tp = np.argsort(np.array([0.5, 0.5, 0.5]))[::-1].tolist().index(0)
    m = run(db, res)
    assert m.average_mAP == pytest.approx(1.0 / (rank_of_tp + 1), abs=1e-12)
    assert_matches_oracle(m, db, res, [0.5])


def test_tiou_threshold_boundary_is_inclusive():
    db = make_db({"v1": [(0, 2, "A")]})
    res = {"v1": [det("A", 0.9, 0, 1)]}  # inter 1, union 2: tIoU exactly 0.5
    m = run(db, res, [0.5, 0.6])
    assert m.mAP.tolist() == [1.0, 0.0]


def test_greedy_match_takes_the_best_unmatched_ground_truth():
    # d1 takes g1 (tIoU 1). d2 overlaps g1 best (0.905), but g1 is taken, so it falls back
    # to g2 (tIoU 8.5 / 11.5 = 0.739): a match at 0.5, a false positive at 0.75.
    db = make_db({"v1": [(0, 10, "A"), (2, 12, "A")]})
    res = {"v1": [det("A", 0.9, 0, 10), det("A", 0.8, 0.5, 10.5)]}
    m = run(db, res, [0.5, 0.75])
    assert m.mAP.tolist() == pytest.approx([1.0, 0.5], abs=1e-12)
    assert_matches_oracle(m, db, res, [0.5, 0.75])


def test_duplicate_and_too_short_ground_truth_are_dropped():
    db = make_db({"v1": [(0, 10, "A"), (0.0005, 9.9995, "A"), (20, 20.0005, "A"), (30, 40, "A")]})
    gt = GroundTruth.from_database(db)
    assert gt.num_instances == 2 and gt.num_dropped == 2
    res = {"v1": [det("A", 0.9, 0, 10), det("A", 0.8, 30, 40)]}
    assert run(db, res).average_mAP == 1.0


def test_near_duplicates_of_another_class_are_kept():
    db = make_db({"v1": [(0, 10, "A"), (0, 10, "B")]})
    assert GroundTruth.from_database(db).num_instances == 2


def test_ground_truth_past_the_video_end_is_not_clipped():
    db = make_db({"v1": [(8, 12, "A")]}, duration=10.0)
    res = {"v1": [det("A", 0.9, 8, 12)]}
    assert run(db, res, [0.9]).average_mAP == 1.0  # clipped to [8, 10] it would be tIoU 0.5


def test_recall_at_kx():
    # 2 instances; top 1x = 2 detections, top 5x = 10 (all 3 here)
    db = make_db({"v1": [(0, 10, "A"), (20, 30, "A")]})
    res = {"v1": [det("A", 0.9, 0, 10), det("A", 0.8, 0, 10), det("A", 0.1, 20, 30)]}
    m = run(db, res, [0.5])
    assert m.recall.tolist() == [[0.5, 1.0]]
    assert m.to_json()["recall"] == {"1x": [0.5], "5x": [1.0]}


def test_unknown_label_is_ignored_or_with_strict_an_error_naming_the_file_and_label(caplog):
    db = make_db({"v1": [(0, 10, "A")]})
    res = {"v1": [det("Zebra", 0.9, 0, 10), det("A", 0.8, 0, 10)]}
    gt = GroundTruth.from_database(db, source="gt")
    with caplog.at_level("WARNING"):
        m = evaluate_detections(gt, Predictions.from_results(res, source="pred"), [0.5])
    assert m.average_mAP == 1.0 and m.num_detections == 1
    assert "1 detections with 1 label that is not a class of the ground truth gt" in caplog.text
    with pytest.raises(RgbtadError, match=r"pred: label 'Zebra' \(video 'v1'\) is not a class"):
        evaluate_detections(gt, Predictions.from_results(res, source="pred"), [0.5], strict=True)


def test_in_memory_inputs_agree():
    db = make_db({"v1": [(0, 10, "A"), (20, 25, "B")], "v2": [(3, 8, "A")]})
    res = {"v1": [det("A", 0.9, 0, 9), det("B", 0.3, 19, 25), det("A", 0.2, 20, 25)],
           "v2": [det("A", 0.6, 3, 7)]}
    gt = GroundTruth.from_database(db)
    ref = evaluate_detections(gt, res, THUMOS_TIOU)
    rows = [(vid, d) for vid, ds in res.items() for d in ds]
    by_name = Predictions.from_arrays([v for v, _ in rows], [d["segment"][0] for _, d in rows],
                                      [d["segment"][1] for _, d in rows],
                                      [d["label"] for _, d in rows], [d["score"] for _, d in rows])
    by_id = Predictions.from_arrays([v for v, _ in rows], np.array([d["segment"][0] for _, d in rows]),
                                    np.array([d["segment"][1] for _, d in rows]),
                                    np.array([("A", "B", "C").index(d["label"]) for _, d in rows]),
                                    np.array([d["score"] for _, d in rows], dtype=np.float32))
    for preds in (by_name, by_id):
        m = evaluate_detections(gt, preds, THUMOS_TIOU)
        np.testing.assert_array_equal(m.per_class_ap, ref.per_class_ap)
    assert_matches_oracle(ref, db, res, THUMOS_TIOU)


def test_from_annotation_set_duck_typed():
    seg = SimpleNamespace
    ann = SimpleNamespace(
        class_names=["A", "B"], source="ann.json",
        videos={"v1": SimpleNamespace(video_id="v1", subset="Test", segments=[
            seg(start=0.0, end=10.0, label="A", label_id=0), seg(start=20.0, end=30.0, label="B", label_id=1)]),
            "v2": SimpleNamespace(video_id="v2", subset="Train", segments=[
                seg(start=0.0, end=10.0, label="B", label_id=1)])})
    m = evaluate_detections(ann, {"v1": [det("A", 0.9, 0, 10)]}, [0.5], split="test")
    assert m.class_names == ["A", "B"] and m.mAP.tolist() == [0.5]


# ----------------------------------------------------------------------------------------
# Randomised comparison with the oracle


def _random_case(rng: np.random.Generator):
    classes = ("A", "B", "C", "D")
    n_cls = int(rng.integers(1, 5))
    step = float(rng.choice([0.0, 0.5, 1.0]))  # coarse times make tIoU ties

    def t(x):
        return float(np.round(x / step) * step) if step else float(x)

    videos = {}
    for v in range(int(rng.integers(1, 6))):
        anns = []
        for _ in range(int(rng.integers(0 if v else 1, 10))):
            lab = classes[int(rng.integers(n_cls))]
            s = t(rng.uniform(0, 20))
            e = t(s + rng.exponential(3.0))
            anns.append((s, e, lab))
            if rng.random() < 0.15:  # exact or near duplicate
                j = float(rng.choice([0.0, 4e-4, 2e-3]))
                anns.append((s + j, e - j, lab))
        videos[f"v{v}"] = anns
    db = make_db(videos, classes)
    db.update(make_db({"other": [(1, 2, c) for c in classes]}, classes, subset="train"))
    if not any(e - s >= TOL for anns in videos.values() for s, e, _ in anns):
        db["v0"]["annotations"].append({"label": "A", "label_id": 0, "segment": [1.0, 5.0]})
    results = {}
    for v in list(videos) + ["other", "unseen"]:
        dets = []
        for _ in range(int(rng.integers(0, 20))):
            s = t(rng.uniform(0, 20))
            e = t(s + rng.exponential(3.0))
            if e - s == 0:
                e = s + 0.25
            score = float(rng.choice([0.2, 0.5, 0.9])) if rng.random() < 0.6 else float(rng.random())
            dets.append(det(classes[int(rng.integers(n_cls))], score, s, e))
        results[v] = dets
    return db, results


@pytest.mark.parametrize("seed", range(8))
def test_random_cases_match_the_oracle(seed):
    rng = np.random.default_rng(1000 + seed)
    for _ in range(25):
        db, res = _random_case(rng)
        thresholds = ANET_TIOU if rng.random() < 0.5 else THUMOS_TIOU
        m = run(db, res, thresholds, split="test")
        assert_matches_oracle(m, db, res, thresholds, split="test")


# ----------------------------------------------------------------------------------------
# Real files


def _anet_fixture_as_actionformer(shared_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """mmaction2's ActivityNet fixture: GT keys carry 'v_', detections do not, no label ids."""
    raw = json.loads((shared_data / "eval_fixtures" / "mmaction2_anet_gt.json").read_text())
    names = sorted({a["label"] for v in raw.values() for a in v["annotations"]})
    database = {
        (vid[2:] if vid.startswith("v_") else vid): {
            "subset": v["subset"], "duration": v["duration"], "fps": 30.0,
            "annotations": [{"label": a["label"], "label_id": names.index(a["label"]),
                             "segment": a["segment"]} for a in v["annotations"]]}
        for vid, v in raw.items()}
    gt_path = tmp_path / "anet_gt.json"
    gt_path.write_text(json.dumps({"database": database}))
    return gt_path, shared_data / "eval_fixtures" / "mmaction2_anet_result.json"


def test_mmaction2_fixture_matches_oracle_and_reference_values(shared_data, tmp_path):
    gt_path, pred_path = _anet_fixture_as_actionformer(shared_data, tmp_path)
    database = json.loads(gt_path.read_text())["database"]
    results = json.loads(pred_path.read_text())["results"]
    m = evaluate_detection_files(gt_path, pred_path, split="validation", tiou_thresholds=ANET_TIOU)
    assert_matches_oracle(m, database, results, ANET_TIOU, split="validation")
    # Values printed by ActionFormer's ANETdetection (libs/utils/metrics.py) on this input.
    expected = [0.7142857142857143, 0.7142857142857143, 0.7142857142857143, 0.6875, 0.6875,
                0.5972222222222222, 0.5208333333333334, 0.5208333333333334, 0.5208333333333334, 0.5]
    np.testing.assert_allclose(m.mAP, expected, atol=1e-12, rtol=0)
    assert m.average_mAP == pytest.approx(0.6177579365079365, abs=1e-12)
    np.testing.assert_allclose(m.recall[:, 1], [1.0] * 5 + [5 / 6, 2 / 3, 2 / 3, 2 / 3, 0.5], atol=1e-12)
    m = evaluate_detection_files(gt_path, pred_path, split="Validation")
    np.testing.assert_allclose(m.mAP, [0.9583333333333333, 0.7380952380952381, 0.7142857142857143,
                                       0.7142857142857143, 0.6875], atol=1e-12, rtol=0)


def test_without_the_prefix_fix_every_detection_is_off_the_ground_truth(shared_data, tmp_path):
    raw = json.loads((shared_data / "eval_fixtures" / "mmaction2_anet_gt.json").read_text())
    names = sorted({a["label"] for v in raw.values() for a in v["annotations"]})
    for v in raw.values():
        for a in v["annotations"]:
            a["label_id"] = names.index(a["label"])
    gt_path = tmp_path / "gt_prefixed.json"
    gt_path.write_text(json.dumps({"database": raw}))
    m = evaluate_detection_files(gt_path, shared_data / "eval_fixtures" / "mmaction2_anet_result.json")
    assert m.average_mAP == 0.0 and "count as false positives" in m.notes[-1]


def _thumos_predictions(database: dict, per_video: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    names = sorted({(a["label_id"], a["label"]) for v in database.values() for a in v["annotations"]})
    names = [n for _, n in names]
    results = {}
    for vid, v in database.items():
        if v["subset"].lower() != "test":
            continue
        dets = []
        for i in range(per_video):
            if i % 2 == 0 and v["annotations"]:
                a = v["annotations"][int(rng.integers(len(v["annotations"])))]
                s, e = a["segment"]
                length = e - s
                s, e = s + rng.normal(0, 0.2 * length), e + rng.normal(0, 0.2 * length)
                lab = a["label"]
            else:
                s = rng.uniform(0, v["duration"])
                e = s + rng.exponential(5.0)
                lab = names[int(rng.integers(len(names)))]
            dets.append(det(lab, round(float(rng.random()), 2), float(s), float(max(e, s + 0.1))))
        results[vid] = dets
    return results


def test_thumos14_ground_truth_and_oracle(shared_data, tmp_path):
    gt_path = shared_data / "thumos14" / "thumos14.json"
    database = json.loads(gt_path.read_text())["database"]
    gt = load_ground_truth(gt_path, "test")
    assert len(gt.video_ids) == 212 and gt.num_instances == 3358 and len(gt.class_names) == 20
    assert gt.class_names[0] == "BaseballPitch" and gt.class_names[-1] == "VolleyballSpiking"
    results = _thumos_predictions(database, per_video=12)  # scores rounded: many ties
    pred_path = tmp_path / "pred.json"
    pred_path.write_text(json.dumps({"results": results}))
    m = evaluate_detection_files(gt_path, pred_path, split="Test", tiou_thresholds=THUMOS_TIOU)
    assert m.num_detections == 212 * 12
    assert_matches_oracle(m, database, results, THUMOS_TIOU, split="test")


def test_thumos14_reader_keeps_raw_segments_unlike_the_clipping_loader(shared_data):
    annotations = pytest.importorskip("rgbtad.data.annotations")
    gt_path = shared_data / "thumos14" / "thumos14.json"
    ours = load_ground_truth(gt_path, "test")
    raw = annotations.load_annotations(gt_path, clip_to_duration=False)
    via_set = GroundTruth.from_annotation_set(raw, "test")
    np.testing.assert_array_equal(via_set.instance_end, ours.instance_end)
    assert via_set.class_names == ours.class_names
    database = json.loads(gt_path.read_text())["database"]
    durations = np.array([database[v]["duration"] for v in ours.video_ids])
    assert int((ours.instance_end > durations[ours.instance_video]).sum()) == 26


# ----------------------------------------------------------------------------------------
# Ground truth and parsing errors


def test_parse_tiou():
    assert parse_tiou("thumos") == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert parse_tiou("ANET") == np.linspace(0.5, 0.95, 10).tolist()
    assert parse_tiou("0.3,0.5") == [0.3, 0.5]
    assert parse_tiou([0.5]) == [0.5]
    for bad in ("", "0.3,,0.5", "abc", "1.5", "0", "nan"):
        with pytest.raises(RgbtadError, match="tIoU thresholds"):
            parse_tiou(bad)


def test_unknown_split_names_the_subsets(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"database": make_db({"v1": [(0, 1, "A")]}, subset="Test")}))
    with pytest.raises(RgbtadError, match=r"gt.json: no videos in subset 'val'; subsets present: 'Test'"):
        load_ground_truth(path, "val")


def test_bad_ground_truth_files(tmp_path):
    cases = {
        "nodb.json": ({"videos": {}}, "no top-level 'database'"),
        "noid.json": ({"database": {"v": {"subset": "t", "annotations": [
            {"label": "A", "label_id": 0, "segment": [0, 1]}, {"label": "B", "segment": [0, 1]}]}}},
            "video 'v': label 'B' has no integer 'label_id'"),
        "seg.json": ({"database": {"v": {"subset": "t", "annotations": [
            {"label": "A", "label_id": 0, "segment": [0]}]}}}, "'segment' must be"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_text(json.dumps(content))
        with pytest.raises(RgbtadError, match=message) as err:
            load_ground_truth(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_ground_truth_without_label_ids_numbers_sorted_names():
    db = {"v": {"subset": "t", "annotations": [{"label": "Zed", "segment": [0, 1]},
                                               {"label": "Alpha", "segment": [2, 3]}]}}
    gt = GroundTruth.from_database(db)
    assert gt.class_names == ["Alpha", "Zed"] and gt.class_ids == [0, 1]


# ----------------------------------------------------------------------------------------
# Command line


HANG_GUARD_S = 1800  # subprocess timeout: a hang guard, not a speed check (loaded machines are slow)


def _cli(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    argv = ["evaluate", *args]
    script = code or "import sys; from rgbtad.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True,
                          timeout=HANG_GUARD_S)


@pytest.fixture()
def small_files(tmp_path):
    db = make_db({"v1": [(1, 3, "A"), (5, 9, "B")], "v2": [(0, 2, "A")]}, subset="Test")
    db.update(make_db({"t1": [(0, 2, "C")]}, subset="Validation"))
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"database": db}))
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"version": "VERSION 1.3", "results": {
        "v1": [det("A", 0.9, 1, 3), det("B", 0.8, 5, 8), det("A", 0.95, 20, 30)],
        "v2": [det("A", 0.7, 0, 2)]}}))
    return gt, pred


def test_cli_evaluate_writes_json(small_files, tmp_path):
    gt, pred = small_files
    out = tmp_path / "sub" / "metrics.json"
    proc = _cli("--gt", str(gt), "--pred", str(pred), "--split", "test", "--tiou", "0.5,0.75",
                "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "mAP" in proc.stdout and "R@5x" in proc.stdout and "avg" in proc.stdout
    data = json.loads(out.read_text())
    assert data["tiou"] == [0.5, 0.75]
    # class A: FP (0.95) then two TPs: precision 0, 1/2, 2/3, made monotone -> AP = 2/3;
    # class B: tIoU 0.75 passes both thresholds (the test is "not below").
    ap_a = 2 / 3
    assert data["mAP"] == pytest.approx([(ap_a + 1.0) / 2, (ap_a + 1.0) / 2], abs=1e-12)
    assert data["average_mAP"] == pytest.approx(np.mean(data["mAP"]), abs=1e-12)
    assert set(data["per_class_ap"]) == {"A", "B"}
    assert all(0.0 <= x <= 1.0 for x in data["mAP"] + data["recall"]["1x"] + data["recall"]["5x"])
    assert list(tmp_path.joinpath("sub").iterdir()) == [out]  # nothing temporary left


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"database": {}}', "no top-level 'results'"),
    ('{"results": {"v1": [{"label": "A", "segment": [0, 1]}]}}', "video 'v1': detection 0: missing field 'score'"),
    ('{"results": {"v1": [{"label": "A", "score": "high", "segment": [0, 1]}]}}', "'score' is not a finite number"),
    ('{"results": {"v1": {"label": "A"}}}', "video 'v1': expected a list"),
    ('{"results": {"v1": [{"label": "Q", "score": 1, "segment": [0, 1]}]}}', "label 'Q' (video 'v1') is not a class"),
])
def test_cli_malformed_prediction_file(small_files, tmp_path, content, message):
    gt, _ = small_files
    pred = tmp_path / "bad.json"
    pred.write_text(content)
    proc = _cli("--gt", str(gt), "--pred", str(pred), "--strict")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(pred) in lines[0] and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_missing_files_and_bad_tiou(small_files, tmp_path):
    gt, pred = small_files
    for args, name in (((str(gt), str(tmp_path / "nope.json")), "nope.json"),
                       ((str(tmp_path / "nogt.json"), str(pred)), "nogt.json")):
        proc = _cli("--gt", args[0], "--pred", args[1])
        assert proc.returncode == 2 and name in proc.stderr and "not found" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = _cli("--gt", str(gt), "--pred", str(pred), "--tiou", "0.3;0.5")
    assert proc.returncode == 2 and "tIoU thresholds" in proc.stderr


def test_cli_evaluate_never_imports_torch(small_files):
    gt, pred = small_files
    code = ("import sys; from rgbtad.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH_LOADED' if 'torch' in sys.modules else 'TORCH_ABSENT'); sys.exit(rc)")
    proc = _cli("--gt", str(gt), "--pred", str(pred), code=code)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH_ABSENT" in proc.stdout
