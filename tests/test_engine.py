"""Training and inference engine: schedule, EMA, end-to-end learning, exact resume, DDP,
`rgbtad infer` on real I3D features."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from rgbtad.cli import main as cli_main
from rgbtad.config import TrainConfig, build_config
from rgbtad.core.errors import RgbtadError
from rgbtad.runs.run_dir import load_run, save_run
from rgbtad.synthetic.toy_features import make_toy_features
from rgbtad.training.engine import changed_keys
from rgbtad.training.optim import ModelEma, lr_factor
from rgbtad.training.trainer import train

TINY_MODEL = {
    "embd_dim": 32, "fpn_dim": 32, "head_dim": 32, "n_head": 2, "n_mha_win_size": 9,
    "arch": [2, 1, 3], "regression_range": [[0, 4], [4, 8], [8, 16], [16, 10000]],
}


def tiny_config(toy_dir, **train_overrides):
    train_cfg = {"batch_size": 4, "epochs": 6, "warmup_epochs": 1, "learning_rate": 2e-3,
                 "init_loss_norm": 20, "ema_decay": 0.9, "droppath": 0.0}
    train_cfg.update(train_overrides)
    return build_config({
        "data": {"annotations": str(toy_dir / "annotations.json"), "features": str(toy_dir / "features"),
                 "train_split": "train", "val_split": "test", "input_dim": 32, "max_seq_len": 256},
        "model": dict(TINY_MODEL),
        "train": train_cfg,
        "test": {"max_seg_num": 50},
    })


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    make_toy_features(out, num_train=24, num_test=10, num_classes=3, dim=32, seed=3,
                      min_len=120, max_len=240)
    return out


@pytest.fixture(scope="module")
def trained_run(toy_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    summary = train(tiny_config(toy_dir), run_dir, device="cpu")
    return run_dir, summary


def test_schedule_warms_up_linearly_then_anneals():
    cfg = TrainConfig(learning_rate=1e-3, epochs=4, warmup_epochs=1)
    iters = 10
    assert lr_factor(0, cfg, iters) == 0.0
    assert lr_factor(9, cfg, iters) == pytest.approx(1.0)  # base LR at the last warmup step
    assert lr_factor(10, cfg, iters) == pytest.approx(1.0)
    assert lr_factor(30, cfg, iters) == pytest.approx(0.5, abs=1e-4)  # half way down the cosine
    assert lr_factor(50, cfg, iters) == pytest.approx(1e-8 / 1e-3)
    steps = TrainConfig(learning_rate=1.0, epochs=4, warmup_epochs=0, schedule="multistep",
                        schedule_steps=[2], schedule_gamma=0.1)
    assert lr_factor(19, steps, iters) == 1.0 and lr_factor(20, steps, iters) == pytest.approx(0.1)


def test_ema_tracks_the_model():
    model = torch.nn.Linear(2, 1)
    ema = ModelEma(model, decay=0.5)
    before = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(2.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, before + 1.0)
    assert not ema.module.weight.requires_grad


def _chance_average_map(toy_dir, seed=0, per_video=50):
    """Average mAP of random detections (uniform segments, labels and scores) on the test split."""
    from rgbtad.evaluation.detection import evaluate_detections

    rng = np.random.default_rng(seed)
    database = json.loads((toy_dir / "annotations.json").read_text())["database"]
    random_dets = {}
    for video_id, video in database.items():
        if video["subset"] != "test":
            continue
        ends = rng.uniform(0, video["duration"], size=(per_video, 2))
        random_dets[video_id] = [
            {"label": f"action_{rng.integers(3)}", "score": float(rng.random()),
             "segment": [float(min(a, b)), float(max(a, b))]} for a, b in ends]
    return evaluate_detections(toy_dir / "annotations.json", random_dets, split="test").average_mAP


def test_training_learns_far_above_chance(trained_run, toy_dir):
    run_dir, summary = trained_run
    chance = _chance_average_map(toy_dir)
    assert summary["average_mAP"] > max(5 * chance, chance + 0.25), (summary, chance)
    assert summary["mAP"][0] > 0.5  # mAP at tIoU 0.3
    for name in ("config.yaml", "classes.json", "model.pt", "summary.json",
                 "logs/train.csv", "logs/val.csv", "checkpoints/last.pt"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "logs" / "tensorboard").iterdir())
    rows = (run_dir / "logs" / "train.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,lr,cls_loss,reg_loss,final_loss")
    first, last = float(rows[1].split(",")[-1]), float(rows[-1].split(",")[-1])
    assert last < first


def test_infer_and_evaluate_reproduce_the_training_summary(trained_run, toy_dir, tmp_path, capsys):
    run_dir, summary = trained_run
    pred = tmp_path / "pred.json"
    ann = toy_dir / "annotations.json"
    assert cli_main(["infer", str(run_dir), "--features", str(toy_dir / "features"), "--ann", str(ann),
                     "--split", "test", "--out", str(pred)]) == 0
    results = json.loads(pred.read_text())["results"]
    assert len(results) == 10
    durations = {k: v["duration"] for k, v in json.loads(ann.read_text())["database"].items()}
    for video_id, dets in results.items():
        assert dets and len(dets) <= 50
        scores = [d["score"] for d in dets]
        assert scores == sorted(scores, reverse=True)
        for det in dets:
            start, end = det["segment"]
            assert 0 <= start <= end <= durations[video_id] + 1e-6
            assert det["label"] in {"action_0", "action_1", "action_2"}
    metrics = tmp_path / "metrics.json"
    assert cli_main(["evaluate", "--gt", str(ann), "--pred", str(pred), "--split", "test",
                     "--json", str(metrics)]) == 0
    assert json.loads(metrics.read_text())["average_mAP"] == pytest.approx(summary["average_mAP"], abs=1e-9)


def test_tridet_trains_and_infers_through_the_same_commands(toy_dir, tmp_path, capsys):
    """model.name=tridet: the same trainer, run directory and `rgbtad infer` as ActionFormer."""
    cfg = tiny_config(toy_dir)
    cfg.model.name, cfg.model.backbone, cfg.tridet.sgp_mlp_dim = "tridet", "sgp", 64
    summary = train(cfg, tmp_path / "run", device="cpu", progress=False)
    chance = _chance_average_map(toy_dir)
    assert summary["average_mAP"] > max(3 * chance, chance + 0.15), (summary, chance)
    pred, metrics = tmp_path / "pred.json", tmp_path / "metrics.json"
    ann = toy_dir / "annotations.json"
    assert cli_main(["infer", str(tmp_path / "run"), "--features", str(toy_dir / "features"), "--ann", str(ann),
                     "--split", "test", "--out", str(pred)]) == 0
    assert cli_main(["evaluate", "--gt", str(ann), "--pred", str(pred), "--split", "test",
                     "--json", str(metrics)]) == 0
    assert json.loads(metrics.read_text())["average_mAP"] == pytest.approx(summary["average_mAP"], abs=1e-9)
    capsys.readouterr()
    assert cli_main(["export", str(tmp_path / "run"), str(tmp_path / "model.onnx")]) == 0
    assert (tmp_path / "model.onnx").is_file()


def test_resume_after_interruption_is_exact(toy_dir, tmp_path):
    cfg = tiny_config(toy_dir, epochs=2, warmup_epochs=1, droppath=0.1)
    straight = tmp_path / "straight"
    train(cfg, straight, device="cpu")

    # An "interrupted" run: the same config stopped after its first epoch.
    interrupted = tmp_path / "interrupted"
    first_part = tiny_config(toy_dir, epochs=0, warmup_epochs=1, droppath=0.1)
    train(first_part, interrupted, device="cpu")
    # Rewrite the run's config as the full one, then resume: it continues at epoch 2.
    from rgbtad.config import save_config

    save_config(cfg, interrupted / "config.yaml")
    ckpt = torch.load(interrupted / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["epoch"] == 0
    _schedule_state_for(ckpt, cfg)
    torch.save(ckpt, interrupted / "checkpoints" / "last.pt")
    train(cfg, interrupted, resume=True, device="cpu")

    a = torch.load(straight / "model.pt", weights_only=True)
    b = torch.load(interrupted / "model.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["raw_model"]:
        assert torch.equal(a["raw_model"][key], b["raw_model"][key]), key
    epochs = [int(r.split(",")[0]) for r in (interrupted / "logs" / "train.csv").read_text().splitlines()[1:]]
    assert epochs == sorted(epochs) and set(epochs) == {0, 1, 2}


def _schedule_state_for(ckpt, cfg):
    """The shortened run's scheduler lambda is rebuilt from the resumed config; only its
    step counter is restored, which is what an interrupted full run would have saved."""
    assert "last_epoch" in ckpt["scheduler"]


def test_train_refuses_to_overwrite_and_checks_resume_config(trained_run, toy_dir):
    run_dir, _ = trained_run
    with pytest.raises(RgbtadError, match=r"already holds a run \(.*checkpoints.*\); use --resume"):
        train(tiny_config(toy_dir), run_dir, device="cpu")
    with pytest.raises(RgbtadError, match=r"changed: train.learning_rate"):
        train(tiny_config(toy_dir, learning_rate=1e-2), run_dir, resume=True, device="cpu")


def test_changed_keys_names_every_difference_of_nested_configs():
    saved = {"train": {"epochs": 5, "lr": 1e-3}, "model": {"kwargs": {"width": 8}}, "old": 1}
    current = {"train": {"epochs": 6, "lr": 1e-3}, "model": {"kwargs": {"width": 8, "depth": 2}}}
    assert changed_keys(saved, current) == ["train.epochs", "model.kwargs.depth", "old"]
    assert changed_keys(current, current) == []


def test_cli_train_reports_config_typos(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epocs: 3\n")
    assert cli_main(["train", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rgbtad train: error: {cfg}: unknown config key 'train.epocs' (did you mean 'train.epochs'?)"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(run_dir, key):
    state = torch.load(run_dir / "model.pt", weights_only=True)[key]
    return {k: v.double() for k, v in state.items() if v.is_floating_point() and not k.endswith("normalizer")}


def _distance(a, b):
    return float(torch.sqrt(sum(((a[k] - b[k]) ** 2).sum() for k in a)))


def test_distributed_training_with_two_gloo_processes(toy_dir, tmp_path):
    """Two gloo processes with the global batch of 4 train as one process with batch 4.

    Each global step reads the same 4 videos (the distributed sampler splits the
    single-process order of (seed, epoch) between the ranks; crops depend on (seed, epoch,
    index)), from the same initial weights, with gradients averaged. It is not bit-equal:
    the focal/DIoU normaliser is an EMA of each process's own positives (as in the
    ActionFormer release; DDP copies rank 0's buffer to the others at each forward), so the
    early steps' gradients are scaled and weighted slightly differently (after this run:
    normaliser 20.2 on rank 0, 33.4 alone), and float sums run in another order. Measured
    here: the DDP weights are 4 % of the single process's distance travelled away from it
    (raw and EMA). The tolerance, 15 %, is far below what a broken split gives: one process
    with batch 2 (what a per-process batch of 4 or no gradient averaging would train like)
    ends 65 % away, and another seed 20x away."""
    from rgbtad.config import save_config
    from rgbtad.distill import build_model

    cfg = tiny_config(toy_dir, epochs=1, warmup_epochs=1)
    cfg_path = tmp_path / "ddp.yaml"
    save_config(cfg, cfg_path)
    run_dir = tmp_path / "ddp_run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
         f"--master_port={_free_port()}", "-m", "rgbtad", "train", str(cfg_path), "--out", str(run_dir),
         "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=1800,  # a hang guard, not a speed check
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = tmp_path / "single_run"
    train(cfg, single, device="cpu", progress=False)

    # the same schedule: 24 videos / global batch 4 = 6 steps per epoch in both
    steps = {name: [int(row.split(",")[1]) for row in (run / "logs" / "train.csv").read_text().splitlines()[1:]]
             for name, run in (("ddp", run_dir), ("single", single))}
    assert steps["ddp"] == steps["single"] and max(steps["single"]) == 11
    torch.manual_seed(cfg.train.seed)  # the trainer's initial weights (it seeds, then builds)
    init = {k: v.double() for k, v in build_model(cfg, 3).state_dict().items()
            if v.is_floating_point() and not k.endswith("normalizer")}
    for key in ("raw_model", "model"):  # trained and EMA weights
        ddp, alone = _weights(run_dir, key), _weights(single, key)
        assert ddp.keys() == alone.keys() == init.keys()
        travelled = _distance(alone, init)
        assert 0 < travelled < 0.25 * float(torch.sqrt(sum((v ** 2).sum() for v in init.values())))
        assert _distance(ddp, alone) < 0.15 * travelled, (key, _distance(ddp, alone), travelled)
    # (the mAP of two epochs is near chance here, so the weights are compared instead); the
    # DDP run is a complete run directory
    _, _, model = load_run(run_dir)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert set(json.loads((run_dir / "summary.json").read_text())) >= {"average_mAP", "mAP", "epochs"}


def test_infer_on_real_i3d_features(shared_data, tmp_path):
    """The two real clips' I3D features (stored [flow | rgb]) through a detector on the RGB half."""
    features = shared_data / "features"
    database = {}
    for video_id, duration in (("highjump_i3d", 24.2), ("tennis26_i3d", 11.3)):
        database[video_id] = {"subset": "test", "duration": duration, "fps": 30.0, "annotations": []}
    database["highjump_i3d"]["annotations"] = [
        {"label": "HighJump", "label_id": 0, "segment": [8.86, 15.01]}]
    database["tennis26_i3d"]["annotations"] = [
        {"label": "TennisSwing", "label_id": 1, "segment": [2.0, 4.0]}]
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"database": database}))
    cfg = build_config({"data": {"channels": "1024:2048", "input_dim": 1024, "max_seq_len": 128},
                        "model": TINY_MODEL, "test": {"max_seg_num": 20}})
    torch.manual_seed(0)
    from rgbtad.detection import build_detector

    save_run(tmp_path / "run", cfg, ["HighJump", "TennisSwing"], build_detector(cfg, 2).state_dict())
    pred = tmp_path / "pred.json"
    assert cli_main(["infer", str(tmp_path / "run"), "--features", str(features), "--ann", str(ann),
                     "--split", "TEST", "--out", str(pred)]) == 0
    results = json.loads(pred.read_text())["results"]
    assert set(results) == {"highjump_i3d", "tennis26_i3d"}
    for video_id, dets in results.items():
        assert 0 < len(dets) <= 20
        assert all(0 <= d["segment"][0] <= d["segment"][1] <= database[video_id]["duration"] for d in dets)


def test_infer_errors_name_the_missing_feature_file(trained_run, toy_dir, tmp_path, capsys):
    run_dir, _ = trained_run
    ann = json.loads((toy_dir / "annotations.json").read_text())
    ann["database"]["ghost_video"] = {"subset": "test", "duration": 10.0, "fps": 30.0, "annotations": []}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(ann))
    code = cli_main(["infer", str(run_dir), "--features", str(toy_dir / "features"), "--ann", str(path),
                     "--split", "test", "--out", str(tmp_path / "pred.json")])
    assert code == 2
    assert "ghost_video.npy" in capsys.readouterr().err
    assert not (tmp_path / "pred.json").exists()
