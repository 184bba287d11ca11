"""`rgbtad ablate`: a 2-cell x 2-seed grid on toy features, the results table, reuse and
resume of finished runs, the grid format (cells, axes, paths) and its error messages."""

import json
import math
import os
import shutil
import statistics
from pathlib import Path

import pytest
import yaml
from scipy import stats

from rgbtad.apps.ablate import cell_config, load_grid, run_ablation
from rgbtad.apps.demo_detector_stages import synthetic_detector_defaults
from rgbtad.cli import main as cli_main
from rgbtad.config import build_config, save_config
from rgbtad.core.errors import RgbtadError
from rgbtad.synthetic.toy_features import make_toy_features

REPO = Path(__file__).resolve().parents[1]
TINY = {"embd_dim": 32, "fpn_dim": 32, "head_dim": 32, "n_head": 2, "n_mha_win_size": 9,
        "arch": [2, 1, 3], "regression_range": [[0, 4], [4, 8], [8, 16], [16, 10000]]}


def write_grid(folder: Path, **grid) -> Path:
    """A grid over toy features in `folder`, with paths relative to it."""
    values = {
        "base": {
            "data": {"annotations": "toy/annotations.json", "features": "toy/features", "train_split": "train",
                     "val_split": "test", "input_dim": 16, "max_seq_len": 256},
            "model": dict(TINY),
            "train": {"batch_size": 4, "epochs": 5, "warmup_epochs": 1, "learning_rate": 5e-3,
                      "init_loss_norm": 20, "ema_decay": 0.9, "droppath": 0.0},
            "test": {"max_seg_num": 30},
        },
        "baseline": "rgb_only",
        "cells": [{"name": "rgb_only", "set": []}, {"name": "conv", "set": ["model.backbone=conv"]}],
    }
    values.update(grid)
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ablate")
    make_toy_features(folder / "toy", num_train=16, num_test=4, num_classes=3, dim=16, seed=4,
                      min_len=100, max_len=160)
    grid = write_grid(folder)
    out = folder / "out"
    assert cli_main(["ablate", str(grid), "--out", str(out), "--seeds", "2"]) == 0
    return grid, out


def test_every_cell_and_seed_is_a_run_and_results_hold_them(ablation):
    grid, out = ablation
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == [0, 1] and results["baseline"] == "rgb_only"
    assert results["tiou"] == [0.3, 0.4, 0.5, 0.6, 0.7]
    cells = {cell["name"]: cell for cell in results["cells"]}
    assert list(cells) == ["rgb_only", "conv"]
    for name, cell in cells.items():
        averages = []
        for seed in (0, 1):
            run = out / "cells" / name / f"seed{seed}"
            summary = json.loads((run / "summary.json").read_text())
            assert yaml.safe_load((run / "config.yaml").read_text())["train"]["seed"] == seed
            assert cell["runs"][str(seed)] == {"mAP": summary["mAP"], "average_mAP": summary["average_mAP"]}
            averages.append(summary["average_mAP"])
        a, b = averages
        # of two seeds: the midpoint, and the sample (n - 1) spread |a - b| / sqrt(2) that the table
        # calls the standard deviation (a population spread would be |a - b| / 2)
        assert cell["average_mAP_mean"] == pytest.approx((a + b) / 2)
        assert cell["average_mAP_std"] == pytest.approx(abs(a - b) / math.sqrt(2))
        # the per-tIoU means and the mean of the averages describe the same runs: averaging over
        # tIoU and over seeds commute
        assert len(cell["mAP_mean"]) == 5
        assert statistics.fmean(cell["mAP_mean"]) == pytest.approx(cell["average_mAP_mean"])
    base = cells["rgb_only"]["runs"]
    # the gain is paired by seed: its mean is the difference of the cells' means, its spread that of
    # the per-seed differences (not of either cell); the baseline gains nothing over itself
    conv, rgb = cells["conv"], cells["rgb_only"]
    assert conv["gain_mean"] == pytest.approx(conv["average_mAP_mean"] - rgb["average_mAP_mean"])
    d0, d1 = (conv["runs"][s]["average_mAP"] - base[s]["average_mAP"] for s in ("0", "1"))
    assert conv["gain_std"] == pytest.approx(abs(d0 - d1) / math.sqrt(2))
    assert rgb["gain_mean"] == 0.0 and rgb["gain_std"] == 0.0
    # 95 % t intervals (1 degree of freedom: t = 12.706) around the mean and the paired gain
    half = stats.t.ppf(0.975, 1) * abs(d0 - d1) / math.sqrt(2) / math.sqrt(2)
    assert conv["gain_ci"] == pytest.approx([conv["gain_mean"] - half, conv["gain_mean"] + half])
    assert results["pairs"] == [{"a": "rgb_only", "b": "conv", "mean": pytest.approx(-conv["gain_mean"]),
                                 "ci": pytest.approx([-conv["gain_mean"] - half, -conv["gain_mean"] + half]),
                                 "num_seeds": 2}]
    # the two seeds really differ (the seed reaches the trainer)
    assert base["0"] != base["1"]


def test_results_table_layout(ablation):
    _, out = ablation
    results = json.loads((out / "results.json").read_text())
    lines = (out / "results.md").read_text().splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == "| Cell | 0.3 | 0.4 | 0.5 | 0.6 | 0.7 | Avg | 95 % CI | Δ | Seeds |"
    assert table[1] == "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    rows = {row.split("|")[1].strip(): [c.strip() for c in row.split("|")[2:-1]] for row in table[2:4]}
    assert list(rows) == ["rgb_only", "conv"]
    for cell in results["cells"]:
        row = rows[cell["name"]]
        assert row[:5] == [f"{100 * v:.1f}" for v in cell["mAP_mean"]]
        assert row[5] == f"{100 * cell['average_mAP_mean']:.1f} ± {100 * cell['average_mAP_std']:.1f}"
        low, high = cell["average_mAP_ci"]
        assert row[6] == f"[{100 * low:.1f}, {100 * high:.1f}]" and row[8] == "2"
    conv = results["cells"][1]
    assert rows["rgb_only"][7] == "—"
    assert rows["conv"][7] == (f"{100 * conv['gain_mean']:+.1f} "
                               f"[{100 * conv['gain_ci'][0]:+.1f}, {100 * conv['gain_ci'][1]:+.1f}]")
    # the paired differences: one row per two cells
    pair = results["pairs"][0]
    assert table[4] == "| a | b | a − b | 95 % CI |" and table[6].startswith(
        f"| rgb_only | conv | {100 * pair['mean']:+.1f}")
    assert "mean ± standard deviation over seeds" in lines[0] and "rgb_only" in lines[0]


def test_second_run_reuses_finished_runs_and_resumes_interrupted_ones(ablation, monkeypatch):
    grid, out = ablation
    before = json.loads((out / "results.json").read_text())
    weights = out / "cells" / "conv" / "seed1" / "model.pt"
    mtime = os.stat(weights).st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    with monkeypatch.context() as patch:
        patch.setattr("rgbtad.training.trainer.train", no_training)
        assert run_ablation(grid, out, seeds=2) == before
    assert os.stat(weights).st_mtime_ns == mtime
    # interrupted after its last checkpoint: resumed (nothing left to train), then evaluated
    (out / "cells" / "rgb_only" / "seed1" / "summary.json").unlink()
    again = run_ablation(grid, out, seeds=2)
    assert again["cells"][0]["runs"]["1"]["average_mAP"] == pytest.approx(
        before["cells"][0]["runs"]["1"]["average_mAP"], abs=1e-12)


def test_a_finished_run_with_another_config_is_not_reused(ablation, tmp_path):
    grid, out = ablation
    changed = yaml.safe_load(grid.read_text())
    changed["cells"][1]["set"].append("train.learning_rate=0.01")
    (grid.parent / "changed.yaml").write_text(yaml.safe_dump(changed))
    with pytest.raises(RgbtadError, match="seed0: finished with another config \\(changed: train.learning_rate\\)"):
        run_ablation(grid.parent / "changed.yaml", out, seeds=1)


def test_axes_expand_into_named_cells_with_paths_from_the_grid_folder(tmp_path):
    grid = write_grid(tmp_path, cells=None, baseline=None,
                      axes={"model.backbone": ["transformer", "conv"],
                            "distill.teacher_run": ["runs/a", "runs/b"]})
    loaded = load_grid(grid)
    assert [c.name for c in loaded.cells] == ["transformer_a", "transformer_b", "conv_a", "conv_b"]
    assert loaded.seeds == [0, 1, 2]  # the default
    cfg = cell_config(loaded, loaded.cells[1], seed=7)
    assert cfg.model.backbone == "transformer" and cfg.train.seed == 7
    assert cfg.distill.teacher_run == str(tmp_path / "runs" / "b")
    assert cfg.data.features == str(tmp_path / "toy" / "features")  # inline base: relative to the grid
    crossed = load_grid(write_grid(tmp_path, root="sub", seeds=[3, 5], baseline="rgb_only_sum", axes={"distill.fusion": ["sum", "laf"]}))
    assert [c.name for c in crossed.cells] == ["rgb_only_sum", "rgb_only_laf", "conv_sum", "conv_laf"]
    assert crossed.seeds == [3, 5]
    assert cell_config(crossed, crossed.cells[3], 3).data.features == str(tmp_path / "sub" / "toy" / "features")


@pytest.mark.parametrize("change, message", [
    ({"cellz": []}, "unknown grid key 'cellz'"),
    ({"cells": [{"name": "a", "set": ["model.backbone"]}]}, "grid key 'cells\\[0\\].set\\[0\\]': override"),
    ({"cells": [{"name": "a", "set": ["distill.fusoin=laf"]}]},
     "cell 'a': unknown config key 'distill.fusoin' \\(did you mean 'distill.fusion'\\?\\)"),
    ({"cells": [{"name": "a", "set": ["model.backbone=mlp"]}]}, "cell 'a': config key 'model.backbone'"),
    ({"cells": [{"name": "a b"}]}, "grid key 'cells\\[0\\].name'"),
    ({"cells": [{"name": "a", "sett": []}]}, "grid key 'cells\\[0\\].sett'"),
    ({"cells": [{"name": "a"}, {"name": "a"}]}, "cell name 'a' is used more than once"),
    ({"baseline": "rgb"}, "grid key 'baseline': 'rgb' is not one of the cells"),
    ({"seeds": 0}, "grid key 'seeds'"),
    ({"axes": {"distill.fusion": []}}, "grid key 'axes.distill.fusion'"),
    ({"base": "missing.yaml"}, "missing.yaml: base config file not found"),
    ({"set": ["data.features=nowhere"]}, "cell 'rgb_only': data.features .*nowhere does not exist"),
])
def test_bad_grids_name_the_file_and_the_key(tmp_path, change, message):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "features").mkdir()
    (tmp_path / "toy" / "annotations.json").write_text("{}")
    grid = write_grid(tmp_path, **{"baseline": None, **change})
    with pytest.raises(RgbtadError, match=message) as err:
        run_ablation(grid, tmp_path / "out")
    if "base config" not in message:
        assert str(grid) in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


def test_bad_grid_on_the_command_line_is_a_one_line_error(tmp_path, capsys):
    grid = write_grid(tmp_path, baseline="nope")
    assert cli_main(["ablate", str(grid), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rgbtad ablate: error: ") and "baseline" in err and "\n" not in err


def test_feature_level_grid_reads_the_plain_rgb_features_in_every_cell(tmp_path):
    """configs/ablate_feature_level.yaml: frozen plain-RGB features everywhere, the flow teacher."""
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs" / "ablate_feature_level.yaml", tmp_path / "configs")
    values = synthetic_detector_defaults()
    values["data"].update({"input_dim": 128, "feat_stride": 4, "num_frames": 8})
    save_config(build_config(values), tmp_path / "demo_out" / "runs" / "rgb_only" / "config.yaml")
    grid = load_grid(tmp_path / "configs" / "ablate_feature_level.yaml")
    assert grid.seeds == [0, 1, 2, 3, 4] and grid.baseline == "rgb_only"
    methods = {}
    for cell in grid.cells:
        cfg = cell_config(grid, cell, 0)
        assert cfg.data.features == str(tmp_path / "demo_out" / "features" / "rgb")
        methods[cell.name] = (cfg.distill.method, cfg.distill.feat_weight, cfg.distill.motion_weight)
        if cfg.distill.method != "none":
            assert cfg.distill.teacher_run == str(tmp_path / "demo_out" / "runs" / "motion_only")
    assert methods == {"rgb_only": ("none", 0.0, 1.0), "conventional_kd_plain_rgb": ("conventional", 1.0, 1.0),
                       "conventional_kd_outputs_plain_rgb": ("conventional", 0.0, 1.0),
                       "decomposed_laf_plain_rgb": ("decomposed", 0.0, 1.0),
                       "decomposed_laf_plain_rgb_mw03": ("decomposed", 0.0, 0.3),
                       "decomposed_laf_plain_rgb_mw3": ("decomposed", 0.0, 3.0)}


def test_example_grid_builds_every_cell_over_a_demo_folder(tmp_path):
    """configs/ablate_synthetic.yaml against a stand-in demo folder (config only)."""
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs" / "ablate_synthetic.yaml", tmp_path / "configs")
    values = synthetic_detector_defaults()
    values["data"].update({"input_dim": 128, "feat_stride": 2, "num_frames": 8})
    save_config(build_config(values), tmp_path / "demo_out" / "runs" / "rgb_only" / "config.yaml")
    grid = load_grid(tmp_path / "configs" / "ablate_synthetic.yaml")
    names = [cell.name for cell in grid.cells]
    assert names[:2] == ["rgb_only", "rgb_kd_features_only"] and "decomposed_laf_tg" in names
    features = tmp_path / "demo_out" / "features"
    fusions = {}
    for cell in grid.cells:
        cfg = cell_config(grid, cell, 0)
        if cfg.distill.method == "decomposed":
            fusions.setdefault(cfg.distill.fusion, []).append((cell.name, cfg.data.features, cfg.distill.teacher_run))
    assert {f for f in fusions} == {"concat", "sum", "self_attn", "cross_attn", "diff_attn", "laf"}
    # the fusion rows read the flow-distilled RGB backbone's features, with the flow teacher
    assert fusions["concat"] == [("decomposed", str(features / "rgb_kd"),
                                  str(tmp_path / "demo_out" / "runs" / "motion_only"))]
    laf = {name: feats for name, feats, _ in fusions["laf"]}
    assert laf == {"decomposed_laf_plain_rgb": str(features / "rgb"), "decomposed_laf": str(features / "rgb_kd"),
                   "decomposed_laf_tg": str(features / "rgb_kd_tg")}
    assert cell_config(grid, grid.cells[0], 0).data.features == str(features / "rgb")
    c2ms = cell_config(grid, grid.cells[names.index("c2ms_cross_modal")], 0).distill
    assert (c2ms.hard_weight, c2ms.kd_cls_weight, c2ms.init_from_teacher) == (0.4, 0.24, True)
