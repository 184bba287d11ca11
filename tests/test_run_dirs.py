"""Run directories never mix two runs: `train --out` and `import-actionformer --out` onto a
folder holding another run are refused, leaving it byte-identical, unless `--overwrite`
(the old run's files are removed) or, for train, `--resume`."""

import hashlib
import shutil

import pytest
import torch

from rgbtad.cli import main as cli_main
from rgbtad.config import build_config, save_config
from rgbtad.core.errors import RgbtadError
from rgbtad.synthetic.toy_features import make_toy_features
from rgbtad.training.trainer import train
from test_compat_actionformer import REFERENCE, _write_release, release_state  # the recorded release

TRAINED = {"checkpoints/last.pt", "classes.json", "config.yaml", "logs/train.csv", "logs/val.csv", "model.pt",
           "summary.json"}
IMPORTED = {"classes.json", "config.yaml", "model.pt"}


def toy_config(toy, **train):
    return build_config({
        "data": {"annotations": str(toy / "annotations.json"), "features": str(toy / "features"),
                 "train_split": "train", "val_split": "test", "input_dim": 16, "max_seq_len": 128},
        "model": {"embd_dim": 16, "fpn_dim": 16, "head_dim": 16, "n_head": 2, "n_mha_win_size": 5,
                  "arch": [2, 1, 3], "regression_range": [[0, 4], [4, 8], [8, 16], [16, 10000]]},
        "train": {"batch_size": 4, "epochs": 1, "warmup_epochs": 0, **train}})


def snapshot(folder):
    """Every file under `folder` (TensorBoard events aside: their names hold the time) with its hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "tensorboard" not in p.parts}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Toy features with their training config, and an ActionFormer release to import."""
    root = tmp_path_factory.mktemp("inputs")
    make_toy_features(root / "toy", num_train=8, num_test=4, num_classes=2, dim=16, seed=0, min_len=60, max_len=90)
    config = root / "train.yaml"
    save_config(toy_config(root / "toy"), config)
    case = torch.load(REFERENCE, weights_only=True)["cases"]["thumos-like"]
    release_yaml = _write_release(root, case["release_config"])
    checkpoint = root / "epoch_010.pth.tar"
    torch.save({"epoch": 10, "state_dict_ema": release_state(case)}, checkpoint)
    import_args = ["import-actionformer", "--config", str(release_yaml), "--checkpoint", str(checkpoint)]
    trained = root / "trained"
    assert cli_main(["train", str(config), "--out", str(trained), "--device", "cpu"]) == 0
    imported = root / "imported"
    assert cli_main([*import_args, "--out", str(imported)]) == 0
    assert set(snapshot(trained)) == TRAINED and set(snapshot(imported)) == IMPORTED
    return {"config": config, "import": import_args, "trained": trained, "imported": imported,
            "toy": root / "toy"}


def same_weights(a, b):
    """model.pt of two runs hold equal tensors (the bytes of two saves differ)."""
    a, b = (torch.load(run / "model.pt", weights_only=True)["model"] for run in (a, b))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_import_onto_a_trained_run(inputs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(inputs["trained"], run)
    before = snapshot(run)
    assert cli_main([*inputs["import"], "--out", str(run)]) == 2
    assert "already holds a run (config.yaml, classes.json, model.pt, summary.json, checkpoints, logs); " \
           "use --overwrite to replace it" in one_error_line(capsys)
    assert snapshot(run) == before

    assert cli_main([*inputs["import"], "--out", str(run), "--overwrite"]) == 0
    assert sorted(p.name for p in run.iterdir()) == sorted(IMPORTED)  # nothing of the trained run
    for name in ("config.yaml", "classes.json"):
        assert (run / name).read_bytes() == (inputs["imported"] / name).read_bytes()
    assert same_weights(run, inputs["imported"])


def test_train_onto_an_imported_run(inputs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(inputs["imported"], run)
    (run / "notes.txt").write_text("not a run file")
    before = snapshot(run)
    assert cli_main(["train", str(inputs["config"]), "--out", str(run), "--device", "cpu"]) == 2
    err = one_error_line(capsys)
    assert "already holds a run (config.yaml, classes.json, model.pt)" in err and "--overwrite" in err
    assert snapshot(run) == before

    assert cli_main(["train", str(inputs["config"]), "--out", str(run), "--device", "cpu", "--overwrite"]) == 0
    after = snapshot(run)
    assert set(after) == TRAINED | {"notes.txt"}  # files that are not a run's stay
    assert (run / "config.yaml").read_bytes() == (inputs["trained"] / "config.yaml").read_bytes()
    # training is seeded: the same weights as the run trained into an empty folder
    assert same_weights(run, inputs["trained"]) and not same_weights(run, inputs["imported"])


def test_train_onto_a_trained_run_and_resume(inputs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(inputs["trained"], run)
    before = snapshot(run)
    assert cli_main(["train", str(inputs["config"]), "--out", str(run), "--device", "cpu"]) == 2
    assert "use --resume to continue its training, --overwrite to replace it" in one_error_line(capsys)
    assert cli_main(["train", str(inputs["config"]), "--out", str(run), "--resume", "--overwrite"]) == 2
    assert "exclude each other" in one_error_line(capsys)
    assert snapshot(run) == before


def test_an_interrupted_start_of_the_same_config_starts_over(inputs, tmp_path):
    """What the demo and `ablate` rely on: a run stopped before its first checkpoint."""
    cfg = toy_config(inputs["toy"])
    run = tmp_path / "run"
    save_config(cfg, run / "config.yaml")
    (run / "logs").mkdir()
    (run / "logs" / "train.csv").write_text("epoch,step\n0,0\n")
    (run / "checkpoints").mkdir()  # empty: its checkpoint was never written
    with pytest.raises(RgbtadError, match=r"already holds a run \(config.yaml, logs\)"):
        train(toy_config(inputs["toy"], seed=1), run, device="cpu", progress=False)
    train(cfg, run, device="cpu", progress=False)
    assert set(snapshot(run)) == TRAINED and same_weights(run, inputs["trained"])
