"""Video-level class scores and their fusion with class-agnostic detections, against the
releases' own outputs (tests/data/video_scores_reference.{json,md}: ActionFormer's
``postprocess_results`` and G-TAD's ``gtad_postprocess.py`` on fixed inputs)."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from rgbtad.config import build_config
from rgbtad.core.errors import RgbtadError
from rgbtad.data.detections import Detections
from rgbtad.detection.score_fusion import ScoreFusion, fuse_video_scores, score_fusion
from rgbtad.detection.video_scores import THUMOS14_UCF101_INDEX, load_video_scores

REFERENCE = json.loads((Path(__file__).parent / "data" / "video_scores_reference.json").read_text())
THUMOS_CLASSES = sorted(THUMOS14_UCF101_INDEX)  # rgbtad's THUMOS'14 label ids (alphabetical)


def _detections(video_id: str) -> Detections:
    det = REFERENCE["detections"][video_id]
    return Detections(video_id, np.array(det["segments"]), np.array(det["scores"], dtype=np.float32),
                      np.zeros(len(det["scores"]), dtype=np.int64))


def _assert_release(ours: Detections, release: dict, label_ids: dict | None = None) -> None:
    """`ours` equals the release's output for one video, which rgbtad sorts (stably) best first."""
    order = np.argsort(-np.array(release["scores"]), kind="stable")
    labels = [release["labels"][i] for i in order]
    if label_ids is not None:
        labels = [label_ids[name] for name in labels]
    assert ours.labels.tolist() == labels
    np.testing.assert_allclose(ours.scores, np.array(release["scores"])[order], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(ours.segments, np.array(release["segments"])[order])


def _actionformer_file(tmp_path: Path, layout: str) -> Path:
    """The class score file of an ActionFormer case, as the release read it."""
    if layout == "pkl":
        path = tmp_path / "scores.pkl"
        table = REFERENCE["actionformer_class_scores_float32"]
        path.write_bytes(pickle.dumps({vid: np.array(s, dtype=np.float32) for vid, s in table.items()}))
        return path
    path = tmp_path / "scores.json"
    path.write_text(json.dumps({"results": REFERENCE["actionformer_class_scores"],
                                "class": REFERENCE["actionformer_classes"], "external_data": {}}))
    return path


@pytest.mark.parametrize("case", ["actionformer_json", "actionformer_pkl", "actionformer_json_top3_pred10"])
def test_actionformer_fusion_equals_the_release(tmp_path, case):
    expected = REFERENCE["cases"][case]
    path = _actionformer_file(tmp_path, "pkl" if case.endswith("pkl") else "json")
    classes = REFERENCE["actionformer_classes"]
    table = load_video_scores(path).aligned(classes)
    assert table.classes == tuple(classes)
    for video_id, release in expected["videos"].items():
        ours = fuse_video_scores(_detections(video_id), table.for_video(video_id), expected["top_k"],
                                 "sqrt_product", expected["num_pred"])
        _assert_release(ours, release)
    # the cap applies to the detections, before they are copied per class
    assert len(expected["videos"]["video_test_0000026"]["scores"]) == expected["num_pred"] * expected["top_k"]


def test_gtad_fusion_equals_the_release():
    expected = REFERENCE["cases"]["gtad_unet"]
    label_ids = {name: i for i, name in enumerate(THUMOS_CLASSES)}
    for video_id, release in expected["videos"].items():
        ours = fuse_video_scores(_detections(video_id), expected["class_scores"][video_id], 2, "product", 200)
        _assert_release(ours, release, label_ids)


def test_untrimmednet_file_is_read_as_gtad_reads_it(shared_data):
    path = shared_data / "thumos14" / "uNet_test.npy"
    table = load_video_scores(path)
    assert table.classes == tuple(name for _, name in REFERENCE["gtad_ucf101_columns"])
    assert [THUMOS14_UCF101_INDEX[name] for name in table.classes] == [i for i, _ in REFERENCE["gtad_ucf101_columns"]]
    assert len(table.scores) == 1574 and "video_test_0001574" in table.scores
    # the type_idx of every THUMOS class in the annotation CSV is its column + 1
    import csv

    with open(shared_data / "thumos14" / "test_Annotation.csv") as handle:
        pairs = {(row["type"], int(row["type_idx"])) for row in csv.DictReader(handle) if row["type"] != "Ambiguous"}
    assert pairs == set(THUMOS14_UCF101_INDEX.items())
    expected = REFERENCE["cases"]["gtad_unet"]
    fusion = ScoreFusion(table.aligned(THUMOS_CLASSES), top_k=2, combine="product")
    for video_id, release in expected["videos"].items():
        np.testing.assert_array_equal(table.for_video(video_id), expected["class_scores"][video_id])
        ours = fusion.apply(_detections(video_id))
        assert [fusion.class_names[i] for i in ours.labels] == \
            [release["labels"][i] for i in np.argsort(-np.array(release["scores"]), kind="stable")]


def test_own_format_ordered_by_the_dataset_and_v_prefix(tmp_path):
    path = tmp_path / "own.json"
    path.write_text(json.dumps({"classes": ["b", "a"], "scores": {"x": [0.9, 0.1], "v_y": [0.2, 0.8]}}))
    table = load_video_scores(path).aligned(["a", "b"])
    assert table.classes == ("a", "b")
    assert table.for_video("x").tolist() == [0.1, 0.9] and table.for_video("y").tolist() == [0.8, 0.2]
    det = Detections("x", np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0.4, 0.9]), np.zeros(2, dtype=np.int64))
    fused = fuse_video_scores(det, table.for_video("x"), top_k=1)
    assert fused.labels.tolist() == [1, 1] and fused.scores.tolist() == pytest.approx([0.9, 0.6])
    assert fused.segments.tolist() == [[3.0, 4.0], [1.0, 2.0]]
    empty = fuse_video_scores(Detections("x", np.zeros((0, 2)), np.zeros(0), np.zeros(0, dtype=np.int64)),
                              table.for_video("x"), top_k=2)
    assert len(empty) == 0


@pytest.mark.parametrize(("name", "content", "message"), [
    ("s.txt", "", "unknown class score format '.txt'"),
    ("s.json", {"videos": {}}, "unknown class score layout"),
    ("s.json", {"classes": ["a", "b"], "scores": {"x": [0.1]}}, "video 'x' has 1 scores, the file names 2 classes"),
    ("s.json", {"results": {"x": [0.1, 0.2], "y": [0.3]}}, "video 'y' has 1 scores, others have 2"),
    ("s.json", {"classes": ["a"], "scores": {"x": ["high"]}}, "video 'x': scores are not a list of numbers"),
    ("s.json", {"classes": ["a", "a"], "scores": {"x": [0.1, 0.2]}}, "class 'a' is named more than once"),
    ("s.json", {"classes": ["a"], "scores": {}}, "non-empty mapping of video ids"),
    ("s.pkl", {"x": np.array([0.1, np.nan])}, "video 'x': non-finite class score"),
    ("s.pkl", {"x": print}, "not a pickle of class scores .*refusing to load builtins.print"),
    ("s.npy", np.zeros((3, 20), dtype=np.float32), r"UntrimmedNet's videos x 101 UCF101 class scores, got float32 \(3, 20\)"),
    ("missing.json", None, "class score file not found"),
])
def test_bad_score_files_name_the_file_and_the_problem(tmp_path, name, content, message):
    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text(json.dumps(content))
    elif name.endswith(".pkl"):
        path.write_bytes(pickle.dumps(content))
    elif name.endswith(".npy"):
        np.save(path, content)
    elif content is not None:
        path.write_text(content)
    if name.startswith("missing"):
        path.unlink()
    with pytest.raises(RgbtadError, match=message) as err:
        load_video_scores(path)
    assert str(path) in str(err.value)


def test_mismatches_with_the_dataset_are_errors(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"classes": ["a", "zebra"], "scores": {"x": [0.1, 0.2]}}))
    table = load_video_scores(path)
    with pytest.raises(RgbtadError, match="class 'zebra' is not a class of the dataset"):
        table.aligned(["a", "b"])
    with pytest.raises(RgbtadError, match="no scores for the dataset's class 'c'"):
        table.aligned(["a", "zebra", "c"])
    with pytest.raises(RgbtadError, match=f"{path}: no class scores for video 'y'"):
        table.for_video("y")
    unnamed = tmp_path / "u.pkl"
    unnamed.write_bytes(pickle.dumps({"x": [0.1, 0.2]}))
    with pytest.raises(RgbtadError, match="2 scores per video, the dataset has 3 classes"):
        load_video_scores(unnamed).aligned(["a", "b", "c"])
    with pytest.raises(RgbtadError, match="does not name its classes"):
        load_video_scores(unnamed).aligned(None)
    det = Detections("x", np.array([[0.0, 1.0]]), np.array([0.5]), np.zeros(1, dtype=np.int64))
    with pytest.raises(RgbtadError, match="top_k 3 of 2 classes"):
        fuse_video_scores(det, [0.1, 0.2], top_k=3)
    with pytest.raises(RgbtadError, match="combine 'mean' is not one of"):
        fuse_video_scores(det, [0.1, 0.2], combine="mean")
    with pytest.raises(RgbtadError, match="negative class score"):
        fuse_video_scores(det, [-0.1, 0.2])


def test_config_keys_are_checked(tmp_path):
    assert build_config({}).test.ext_score_file is None and score_fusion(build_config({}).test, ["a"]) is None
    with pytest.raises(RgbtadError, match="'test.ext_score_combine'"):
        build_config({"test": {"ext_score_combine": "mean"}})
    with pytest.raises(RgbtadError, match="'test.ext_score_top_k' must be positive"):
        build_config({"test": {"ext_score_top_k": 0}})
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"classes": ["a", "b"], "scores": {"x": [0.1, 0.2]}}))
    with pytest.raises(RgbtadError, match="'test.ext_score_top_k' .3. exceeds the 2 classes"):
        score_fusion(build_config({"test": {"ext_score_file": str(path), "ext_score_top_k": 3}}).test, None)


def test_class_agnostic_run_gives_class_aware_map(tmp_path, caplog):
    """A 1-class detector + a score file, through `rgbtad infer` and the training evaluation:
    labels are the file's classes (with no warning that the run's class count differs from the
    annotation file's: the fusion names them) and the class-aware mAP is finite."""
    from rgbtad.data.annotations import load_annotations
    from rgbtad.detection import build_detector
    from rgbtad.evaluation.detection import evaluate_detections
    from rgbtad.inference.predict import infer_features
    from rgbtad.runs.run_dir import load_run, save_run
    from rgbtad.training.trainer import evaluate_model

    classes = ["jump", "run", "throw"]
    rng = np.random.default_rng(0)
    (tmp_path / "feats").mkdir()
    database, scores = {}, {}
    for index in range(4):
        vid = f"vid{index}"
        np.save(tmp_path / "feats" / f"{vid}.npy", rng.standard_normal((40, 16)).astype(np.float32))
        label = classes[index % 3]
        database[vid] = {"subset": "test", "duration": 20.0, "fps": 8.0, "annotations": [
            {"label": label, "label_id": classes.index(label), "segment": [2.0, 9.0]}]}
        scores[vid] = [0.05, 0.05, 0.05]
        scores[vid][classes.index(label)] = 0.9
    (tmp_path / "ann.json").write_text(json.dumps({"database": database}))
    (tmp_path / "cls.json").write_text(json.dumps({"classes": classes[::-1], "scores": {v: s[::-1] for v, s in scores.items()}}))
    cfg = build_config({
        "data": {"annotations": str(tmp_path / "ann.json"), "features": str(tmp_path / "feats"), "input_dim": 16,
                 "feat_stride": 4, "num_frames": 4, "max_seq_len": 64, "val_split": "test"},
        "model": {"arch": [1, 1, 2], "embd_dim": 16, "fpn_dim": 16, "head_dim": 16, "n_head": 2,
                  "n_mha_win_size": 5, "regression_range": [[0, 4], [4, 8], [8, 10000]]},
        "test": {"pre_nms_thresh": 0.0001, "min_score": 0.0001, "ext_score_file": str(tmp_path / "cls.json")},
    })
    torch.manual_seed(0)
    save_run(tmp_path / "run", cfg, ["action"], build_detector(cfg, 1).state_dict())
    with caplog.at_level("WARNING"):
        infer_features(tmp_path / "run", features_dir=tmp_path / "feats", annotations=tmp_path / "ann.json",
                       split="test", out_path=tmp_path / "out.json", progress=False)
    assert "naming labels" not in caplog.text
    results = json.loads((tmp_path / "out.json").read_text())["results"]
    assert all(results[v] for v in results) and all(d["label"] in classes for v in results for d in results[v])
    # vid1: "run" best; of the tied others the later dataset class ("throw") comes second
    assert results["vid1"][0]["label"] == "run" and {d["label"] for d in results["vid1"]} == {"run", "throw"}
    truth = load_annotations(tmp_path / "ann.json").split("test")
    metrics = evaluate_detections(truth, results, cfg.test.tiou_thresholds)
    assert np.isfinite(metrics.average_mAP) and metrics.class_names == classes
    assert metrics.num_detections == sum(len(r) for r in results.values())  # every label is a dataset class
    _, _, model = load_run(tmp_path / "run", torch.device("cpu"))
    trained, train_metrics = evaluate_model(model, cfg, load_annotations(tmp_path / "ann.json"), ["action"],
                                            torch.device("cpu"), progress=False)
    assert trained == results and train_metrics.average_mAP == pytest.approx(metrics.average_mAP)
