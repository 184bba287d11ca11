"""Distillation end to end on toy features: train a teacher on a "motion" feature set, then a
decomposed (LAF) and a conventional student on weaker "RGB" features through `train`; the
students learn, log every teacher term, and predict with `rgbtad infer` after their teacher
and the teacher's features are gone."""

import csv
import json
import math
import shutil

import numpy as np
import pytest

from rgbtad.cli import main as cli_main
from rgbtad.config import build_config
from rgbtad.core.timebase import SnippetGrid
from rgbtad.features.paired import PairedFeatureStore
from rgbtad.synthetic.toy_features import TOY_FEAT_STRIDE, TOY_FPS, TOY_NUM_FRAMES, make_toy_features
from rgbtad.distill import DecomposedStudent, FrozenTeacher
from rgbtad.runs.run_dir import load_run
from rgbtad.training.trainer import train

DIM = 32
NUM_CLASSES = 4
WEAK_CLASSES = (0, 1)  # the "RGB" features keep 20% of these classes' signal
TINY_MODEL = {"embd_dim": 32, "fpn_dim": 32, "head_dim": 32, "n_head": 2, "n_mha_win_size": 9,
              "arch": [2, 1, 3], "regression_range": [[0, 4], [4, 8], [8, 16], [16, 10000]]}


def _weaken(features: dict[str, np.ndarray], database: dict, keep: float) -> dict[str, np.ndarray]:
    """Scale the weak classes' directions (estimated from the training actions) by `keep`."""
    sums = np.zeros((NUM_CLASSES, DIM))
    for video_id, video in database.items():
        if video["subset"] != "train":
            continue
        for action in video["annotations"]:
            grid = SnippetGrid(TOY_FEAT_STRIDE, TOY_NUM_FRAMES, TOY_FPS).to_grid(np.array(action["segment"]))
            start, end = np.round(grid).astype(int)
            sums[action["label_id"]] += features[video_id][start:end + 1].mean(0)
    basis, _ = np.linalg.qr(sums[list(WEAK_CLASSES)].T)  # DIM x 2, orthonormal
    return {vid: (x - (1 - keep) * (x @ basis) @ basis.T).astype(np.float32) for vid, x in features.items()}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """motion/features: the teacher's modality; rgb/: the student's; both/: THUMOS layout
    (one file per video, student channels 0:32, teacher channels 32:64)."""
    root = tmp_path_factory.mktemp("distill_toy")
    ann = make_toy_features(root / "motion", num_train=32, num_test=10, num_classes=NUM_CLASSES,
                            dim=DIM, seed=3, min_len=120, max_len=240)
    database = json.loads(ann.read_text())["database"]
    motion = {vid: np.load(root / "motion" / "features" / f"{vid}.npy") for vid in database}
    rgb = _weaken(motion, database, keep=0.2)
    (root / "rgb").mkdir()
    (root / "both").mkdir()
    for vid in database:
        np.save(root / "rgb" / f"{vid}.npy", rgb[vid])
        np.save(root / "both" / f"{vid}.npy", np.concatenate([rgb[vid], motion[vid]], axis=1))
    return root, ann


def config(toy, features, **distill):
    root, ann = toy
    return build_config({
        "data": {"annotations": str(ann), "features": str(features), "train_split": "train",
                 "val_split": "test", "input_dim": DIM, "max_seq_len": 256},
        "model": dict(TINY_MODEL),
        "train": {"batch_size": 4, "epochs": 10, "warmup_epochs": 1, "learning_rate": 2e-3,
                  "init_loss_norm": 20, "ema_decay": 0.9, "droppath": 0.0, "log_every": 2},
        "test": {"max_seg_num": 50},
        "distill": distill,
    })


@pytest.fixture(scope="module")
def teacher_run(toy, tmp_path_factory):
    run = tmp_path_factory.mktemp("teacher")
    return run, train(config(toy, toy[0] / "motion" / "features"), run, device="cpu")


@pytest.fixture(scope="module")
def decomposed_run(toy, teacher_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("decomposed")
    cfg = config(toy, toy[0] / "rgb", method="decomposed", fusion="laf", teacher_run=str(teacher_run[0]),
                 teacher_features=str(toy[0] / "motion" / "features"), teacher_input_dim=DIM)
    return run, train(cfg, run, device="cpu")


@pytest.fixture(scope="module")
def conventional_run(toy, teacher_run, tmp_path_factory):
    """Conventional KD plus Dai et al.'s terms, from THUMOS-layout files (both halves in one)."""
    run = tmp_path_factory.mktemp("conventional")
    cfg = config(toy, toy[0] / "both", method="conventional", teacher_run=str(teacher_run[0]),
                 teacher_channels="32:64", teacher_input_dim=DIM, feat_weight=1.0, atom_weight=1.0,
                 gcr_weight=1.0, abs_weight=1.0)
    cfg.data.channels = "0:32"
    return run, train(cfg, run, device="cpu")


def _train_log(run):
    with (run / "logs" / "train.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_teacher_learns(teacher_run):
    assert teacher_run[1]["average_mAP"] > 0.5


@pytest.mark.parametrize("which, terms", [
    ("decomposed_run", ["app_cls_loss", "app_reg_loss", "kd_cls_loss", "kd_reg_loss"]),
    ("conventional_run", ["kd_cls_loss", "kd_reg_loss", "feat_loss", "atom_loss", "gcr_loss", "abs_loss"]),
])
def test_students_learn_and_log_every_term(which, terms, request):
    run, summary = request.getfixturevalue(which)
    assert summary["average_mAP"] > 0.3  # random detections score 0.03 to 0.13 here
    rows = _train_log(run)
    assert list(rows[0])[:6] == ["epoch", "step", "lr", "cls_loss", "reg_loss", "final_loss"]
    for name in terms:
        values = [float(row[name]) for row in rows]
        assert all(math.isfinite(v) for v in values), name
        assert values[-1] < values[0], name  # each teacher term goes down
    _, _, model = load_run(run)
    assert model.teacher is None and not model.training


def test_student_predicts_without_its_teacher(toy, teacher_run, decomposed_run, tmp_path, monkeypatch):
    root, ann = toy
    run, summary = decomposed_run
    _, _, model = load_run(run)
    assert isinstance(model, DecomposedStudent)

    def forbidden(*args, **kwargs):
        raise AssertionError("the teacher path ran at inference")

    monkeypatch.setattr(FrozenTeacher, "__call__", forbidden)
    monkeypatch.setattr("rgbtad.distill.teachers.load_teacher", forbidden)
    monkeypatch.setattr("rgbtad.distill.load_teacher", forbidden)
    monkeypatch.setattr(PairedFeatureStore, "load", forbidden)
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    shutil.move(teacher_run[0], hidden / "teacher_run")
    shutil.move(root / "motion" / "features", hidden / "motion_features")
    try:
        pred = tmp_path / "pred.json"
        assert cli_main(["infer", str(run), "--features", str(root / "rgb"), "--ann", str(ann),
                         "--split", "test", "--out", str(pred)]) == 0
        metrics = tmp_path / "metrics.json"
        assert cli_main(["evaluate", "--gt", str(ann), "--pred", str(pred), "--split", "test",
                         "--json", str(metrics)]) == 0
    finally:
        shutil.move(hidden / "teacher_run", teacher_run[0])
        shutil.move(hidden / "motion_features", root / "motion" / "features")
    assert json.loads(metrics.read_text())["average_mAP"] == pytest.approx(summary["average_mAP"], abs=1e-9)
