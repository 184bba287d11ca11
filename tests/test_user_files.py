"""Files a user hands us: a crafted pickle runs nothing at any entry point, and JSON or
YAML that repeats a key is refused instead of silently keeping the last value."""

import argparse
import collections
import json
import os

import numpy as np
import pytest
import torch

from rgbtad.cli import main as cli_main
from rgbtad.compat.actionformer import import_actionformer
from rgbtad.config import build_config, load_config, save_config
from rgbtad.core.errors import RgbtadError
from rgbtad.core.torchio import load_torch_file
from rgbtad.core.yamlio import read_yaml_mapping
from rgbtad.detection import build_detector
from rgbtad.runs.run_dir import save_run
from rgbtad.synthetic.toy_features import make_toy_features
from test_compat_actionformer import REFERENCE, _write_release, release_state  # the recorded release

TINY_MODEL = {"embd_dim": 16, "fpn_dim": 16, "head_dim": 16, "n_head": 2, "n_mha_win_size": 5,
              "arch": [2, 1, 3], "regression_range": [[0, 4], [4, 8], [8, 16], [16, 10000]]}


class Payload:
    """Unpickling this runs `touch MARKER`: what a crafted checkpoint does to a full-pickle
    `torch.load`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.fixture()
def marker(tmp_path):
    return tmp_path / "code_ran"


def crafted(path, obj, marker):
    """Save `obj` (holding a `Payload`) to `path` and check that the payload is live."""
    torch.save(obj, path)
    torch.load(path, weights_only=False)  # what the old fallbacks did
    assert marker.exists(), "the payload must really run under a full pickle load"
    marker.unlink()
    return path


def refused(capsys, argv, marker, *expected):
    """Run the CLI: exit code 2, one line on stderr naming `expected`, and the payload not run."""
    assert cli_main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for text in expected:
        assert str(text) in err[0], err[0]
    assert not marker.exists()
    return err[0]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    make_toy_features(out, num_train=8, num_test=4, num_classes=2, dim=16, seed=0, min_len=60, max_len=90)
    return out


def toy_config(toy):
    return build_config({
        "data": {"annotations": str(toy / "annotations.json"), "features": str(toy / "features"),
                 "train_split": "train", "val_split": "test", "input_dim": 16, "max_seq_len": 128},
        "model": dict(TINY_MODEL), "train": {"batch_size": 4, "epochs": 1, "warmup_epochs": 0}})


# --- the loader -----------------------------------------------------------------------------

def test_loader_reads_tensors_numpy_and_containers_and_refuses_anything_else(tmp_path, marker):
    ok = tmp_path / "ok.pt"
    torch.save({"t": torch.arange(3), "rng": np.random.get_state(), "x": np.float32(2.5),
                "c": collections.Counter("aab"), "nested": [(1, "a"), {"b": None}]}, ok)
    state = load_torch_file(ok)
    assert torch.equal(state["t"], torch.arange(3)) and state["rng"][1].dtype == np.uint32
    assert state["x"] == 2.5 and state["c"]["a"] == 2
    evil = crafted(tmp_path / "evil.pt", {"t": torch.ones(1), "meta": Payload(marker)}, marker)
    with pytest.raises(RgbtadError, match=r"evil\.pt: refused: loading this run weights file would need "
                                          r"posix\.system"):
        load_torch_file(evil, "run weights file")
    # a third-party release: the foreign object becomes an inert stand-in, the tensors load
    state = load_torch_file(evil, foreign_metadata=True)
    assert torch.equal(state["t"], torch.ones(1)) and not marker.exists()


# --- one test per entry point ----------------------------------------------------------------

def _release_case() -> dict:
    return torch.load(REFERENCE, weights_only=True)["cases"]["thumos-like"]


def test_import_actionformer_checkpoint(tmp_path, marker, capsys):
    release_yaml = _write_release(tmp_path, _release_case()["release_config"])
    ckpt = crafted(tmp_path / "epoch_010.pth.tar", Payload(marker), marker)
    out = tmp_path / "run"
    refused(capsys, ["import-actionformer", "--config", release_yaml, "--checkpoint", ckpt, "--out", out],
            marker, ckpt, "expected a dict checkpoint, got posix.system")
    assert not out.exists()


def test_import_actionformer_keeps_working_with_foreign_release_metadata(tmp_path, marker):
    """Release checkpoints pickle argparse, numpy and scheduler objects beside the weights."""
    case = _release_case()
    release_yaml = _write_release(tmp_path, case["release_config"])
    state = release_state(case)
    ckpt = crafted(tmp_path / "epoch_010.pth.tar", {
        "epoch": np.int64(10), "args": argparse.Namespace(config="thumos.yaml"), "state_dict_ema": state,
        "scheduler": {"milestones": collections.Counter([30])}, "hook": Payload(marker)}, marker)
    import_actionformer(release_yaml, ckpt, tmp_path / "run")
    assert not marker.exists()
    model = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["model"]
    assert torch.equal(model["embed.convs.0.weight"], state["module.backbone.embd.0.conv.weight"])


def test_train_resume_checkpoint(tmp_path, toy, marker, capsys):
    cfg = toy_config(toy)
    config_path = tmp_path / "cfg.yaml"
    save_config(cfg, config_path)
    run = tmp_path / "run"
    save_config(cfg, run / "config.yaml")
    (run / "checkpoints").mkdir()
    last = crafted(run / "checkpoints" / "last.pt", {"epoch": 0, "model": Payload(marker)}, marker)
    refused(capsys, ["train", config_path, "--out", run, "--resume", "--device", "cpu"], marker,
            last, "refused: loading this training checkpoint would need posix.system")
    assert sorted(p.name for p in run.rglob("*")) == ["checkpoints", "config.yaml", "last.pt"]


@pytest.mark.parametrize("command", ["infer", "detect"])
def test_run_weights_model_pt(tmp_path, toy, marker, capsys, command):
    cfg = toy_config(toy)
    run = tmp_path / "run"
    save_run(run, cfg, ["action_0", "action_1"], {})
    model_pt = crafted(run / "model.pt", {"model": Payload(marker), "raw_model": None}, marker)
    out = tmp_path / "pred.json"
    if command == "infer":
        argv = ["infer", run, "--features", toy / "features", "--ann", toy / "annotations.json", "--out", out]
    else:
        video = tmp_path / "clip.mp4"
        video.write_bytes(b"never decoded: the run is refused first")
        argv = ["detect", run, video, "--out", out, "--quiet"]
    refused(capsys, argv + ["--device", "cpu"], marker, model_pt, "refused", "posix.system")
    assert not out.exists()


def test_extract_weights(tmp_path, marker, capsys):
    weights = crafted(tmp_path / "tsm.pth", {"state_dict": Payload(marker)}, marker)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"never decoded: the weights are refused first")
    out = tmp_path / "features"
    refused(capsys, ["extract", video, "--backbone", "tsm_tiny", "--weights", weights, "--snippet-frames", 8,
                     "--stride", 8, "--out", out, "--device", "cpu"], marker, weights, "no tensors found")
    assert not out.exists()


def test_detect_backbone_weights(tmp_path, toy, marker, capsys):
    cfg = toy_config(toy)
    run = tmp_path / "run"
    save_run(run, cfg, ["action_0", "action_1"], build_detector(cfg, 2).state_dict())
    crafted(run / "backbone.pt", {"state_dict": Payload(marker)}, marker)
    (run / "backbone.json").write_text(json.dumps(
        {"backbone": "tsm_tiny", "snippet_frames": 8, "stride": 8, "weights": "backbone.pt"}))
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"never decoded: the backbone is refused first")
    refused(capsys, ["detect", run, video, "--out", tmp_path / "pred.json", "--device", "cpu", "--quiet"],
            marker, run / "backbone.pt", "no tensors found")


# --- duplicate keys --------------------------------------------------------------------------

def test_duplicate_video_in_predictions_is_refused(tmp_path, capsys):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"database": {"v1": {"subset": "test", "duration": 20.0, "annotations": [
        {"label": "A", "label_id": 0, "segment": [1.0, 4.0]}]}}}))
    pred = tmp_path / "pred.json"
    det = '{"label": "A", "score": 0.9, "segment": [1.0, 4.0]}'
    pred.write_text(f'{{"results": {{"v1": [{det}, {det}], "v2": [], "v1": [{det}]}}}}')
    assert cli_main(["evaluate", "--gt", str(gt), "--pred", str(pred)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rgbtad evaluate: error: {pred}: duplicate key 'v1' in a JSON object (each key may appear once)"]


def test_second_data_section_in_a_config_is_refused(tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text("data:\n  input_dim: 16\nmodel:\n  embd_dim: 16\ndata:\n  max_seq_len: 128\n")
    with pytest.raises(RgbtadError, match=r"cfg\.yaml: not valid YAML \(duplicate key 'data' at line 5\)"):
        load_config(path)
    assert cli_main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "duplicate key 'data' at line 5" in err[0]
    # nested keys and --set values too; YAML merge keys may still be overridden
    path.write_text("train:\n  epochs: 2\n  epochs: 3\n")
    with pytest.raises(RgbtadError, match="duplicate key 'epochs' at line 3"):
        load_config(path)
    with pytest.raises(RgbtadError, match="duplicate key 'a'"):
        load_config(None, ["model.embd_dim={a: 1, a: 2}"])
    path.write_text("base: &b {epochs: 2, batch_size: 4}\ntrain:\n  <<: *b\n  epochs: 5\n")
    assert read_yaml_mapping(path, "f", "s")["train"] == {"epochs": 5, "batch_size": 4}
