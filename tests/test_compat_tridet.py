"""Import of TriDet release checkpoints and configs (`rgbtad import-tridet`), against the
release's own numbers.

The oracle is ``tests/data/tridet_release_reference.pt`` (see its ``.md``): for three small
configs the YAML given to the release's ``load_config``, the merged model settings it made,
the release model's weights, fixed inputs and the release's detections. Each case's YAML and
a checkpoint written as the release's ``train.py`` saves one (raw weights, scheduler and
optimizer states, and the EMA weights that are imported) go through ``rgbtad import-tridet``;
the run directory, loaded as any run, must reproduce the release's outputs and detections
(labels equal, segments within 1e-3 s, scores within 1e-4, as ``test_detection_tridet.py``).
The release's own THUMOS14 and ActivityNet configs (their values, written out below) must
merge to the model settings the release built its models from, and map to rgbtad configs.
"""

import copy
import dataclasses
import logging

import pytest
import torch

from rgbtad.cli import main as cli_main
from rgbtad.compat.tridet import spec_from_release
from rgbtad.compat.tridet_config import read_tridet_config, tridet_config_from_release
from rgbtad.config import load_config
from rgbtad.core.errors import RgbtadError
from rgbtad.detection import TriDet
from rgbtad.detection.tridet import spec_from_config
from rgbtad.runs.run_dir import load_run
from test_compat_actionformer import CLASS_NAMES, _write_release  # the release formats' shared layout
from test_detection_tridet import REFERENCE, _assert_detections, _assert_outputs, _inputs, release_state

CASES = ("thumos-like", "anet-like", "conv-plain-head")
RECIPE = REFERENCE.parents[2] / "configs" / "thumos_i3d_tridet.yaml"


@pytest.fixture(scope="module")
def reference():
    return torch.load(REFERENCE, weights_only=True)


def _plain(value):
    """Tuples as lists, to compare YAML-read settings with the recorded ones."""
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _save_release_checkpoint(path, ema: dict[str, torch.Tensor], epoch: int = 39) -> None:
    """A checkpoint as the release's train.py saves it: the DataParallel model's raw weights,
    its scheduler and optimizer states, and the EMA model's weights (``module.`` keys)."""
    gen = torch.Generator().manual_seed(3)
    raw = {key: value + 0.05 * torch.randn(value.shape, generator=gen) for key, value in ema.items()}
    params = [torch.nn.Parameter(value.clone()) for value in raw.values()]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.025)
    for param in params:
        param.grad = torch.ones_like(param)
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 100, eta_min=1e-8)
    torch.save({"epoch": epoch, "state_dict": raw, "scheduler": scheduler.state_dict(),
                "optimizer": optimizer.state_dict(), "state_dict_ema": ema}, path)


def _import(release_yaml, checkpoint, run) -> int:
    """``rgbtad import-tridet``, the class names from the annotations beside the config."""
    return cli_main(["import-tridet", "--config", str(release_yaml), "--checkpoint", str(checkpoint),
                     "--ann", str(release_yaml.parent / "ann.json"), "--out", str(run)])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# ------------------------------------------------------------------ import, end to end

@pytest.mark.parametrize("name", CASES)
def test_release_config_merges_as_the_release(tmp_path, reference, name):
    case = reference["cases"][name]
    release = read_tridet_config(_write_release(tmp_path, case["release_config"]))
    assert _plain(release["model"]) == _plain(case["release_model"])


@pytest.mark.parametrize("name", CASES)
def test_imported_run_reproduces_release_detections(tmp_path, reference, name, capsys):
    case = reference["cases"][name]
    release_yaml = _write_release(tmp_path, case["release_config"])
    checkpoint = tmp_path / "epoch_039.pth.tar"
    _save_release_checkpoint(checkpoint, release_state(case))
    run = tmp_path / "run"
    assert _import(release_yaml, checkpoint, run) == 0
    assert f"run directory: {run}" in capsys.readouterr().out
    cfg, classes, model = load_run(run)
    assert cfg.model.name == "tridet" and isinstance(model, TriDet)
    assert classes == list(CLASS_NAMES[:case["release_config"]["dataset"]["num_classes"]])
    feats, mask = _inputs(case["inputs"])
    with torch.no_grad():
        out = model(feats, mask)
    _assert_outputs(out, case["outputs"])  # the EMA weights, not the raw ones
    # the run's test settings are the release config's: the release's detections
    _assert_detections(model.postprocess(out, case["metas"]), case)


def test_bad_checkpoint_is_one_error_naming_the_file(tmp_path, reference, capsys):
    case = reference["cases"]["thumos-like"]
    release_yaml = _write_release(tmp_path, case["release_config"])
    missing, misshapen = release_state(case), release_state(case)
    del missing["module.backbone.stem.0.convkw.weight"]
    misshapen["module.start_head.cls_head.conv.bias"] = torch.zeros(7)
    for label, state, problem in (("missing", missing, "encoder.stem.0.convkw.weight"),
                                  ("misshapen", misshapen, "shape mismatch: module.start_head.cls_head.conv.bias")):
        checkpoint = tmp_path / f"{label}.pth.tar"
        _save_release_checkpoint(checkpoint, state)
        run = tmp_path / label
        assert _import(release_yaml, checkpoint, run) == 2
        line = _one_error_line(capsys)
        assert line.startswith(f"rgbtad import-tridet: error: {checkpoint}: TriDet weights do not fit"), line
        assert problem in line
        assert not (run / "model.pt").exists()
    empty = tmp_path / "empty.pth.tar"
    torch.save({"epoch": 3}, empty)
    assert _import(release_yaml, empty, tmp_path / "run") == 2
    assert f"{empty}: neither 'state_dict_ema' nor 'state_dict'" in _one_error_line(capsys)


# ------------------------------------------------------------------ unsupported settings

def test_unsupported_release_settings_are_refused(tmp_path, reference):
    base = reference["cases"]["thumos-like"]["release_config"]

    def changed(section, key, value):
        release = copy.deepcopy(base)
        (release.setdefault(section, {}) if section else release)[key] = value
        return _write_release(tmp_path, release)

    with pytest.raises(RgbtadError, match="unknown TriDet config key 'model.n_mha_win_size'"):
        read_tridet_config(changed("model", "n_mha_win_size", 9))  # ActionFormer's, not TriDet's
    without_mlp = copy.deepcopy(base)
    del without_mlp["model"]["sgp_mlp_dim"]
    with pytest.raises(RgbtadError, match="'model.sgp_mlp_dim' is missing"):
        read_tridet_config(_write_release(tmp_path, without_mlp))
    for section, key, value, message in (
            ("", "model_name", "LocPointTransformer", "model_name 'LocPointTransformer' is not supported "
                                                      r"\(only TriDet\)"),
            ("model", "backbone_type", "convTransformer", "backbone_type 'convTransformer' is not supported"),
            ("", "train_split", ["training", "validation"], "'train_split' must name exactly one subset"),
            ("model", "n_sgp_win_size", -1, "tridet.sgp_win_size")):  # the release default builds no model
        path = changed(section, key, value)
        with pytest.raises(RgbtadError, match=message) as err:
            tridet_config_from_release(read_tridet_config(path), str(path))
        assert str(err.value).startswith(str(path))


def test_settings_not_imported_are_noted(tmp_path, reference, caplog):
    case = reference["cases"]["thumos-like"]
    release = copy.deepcopy(case["release_config"])
    release["opt"] = {"eta_min": 5e-5}
    release["dataset"]["backbone_type"] = "slowfast"
    release["test_cfg"]["ext_score_file"] = "cuhk_val_simp_share.json"
    release_yaml = _write_release(tmp_path, release)
    checkpoint = tmp_path / "epoch_039.pth.tar"
    _save_release_checkpoint(checkpoint, release_state(case))
    with caplog.at_level(logging.WARNING, logger="rgbtad.compat.tridet_import"):
        assert _import(release_yaml, checkpoint, tmp_path / "run") == 0
    notes = [record.getMessage() for record in caplog.records]
    assert len(notes) == 2 and all(note.startswith(f"{release_yaml}: ") for note in notes)
    for words in ("opt.eta_min 5e-05 is not supported", "dataset.backbone_type (slowfast)"):
        assert any(words in note for note in notes), words


# ------------------------------------------------------------------ the release's own configs

THUMOS_YAML = """\
dataset_name: thumos
train_split: [validation]
val_split: [test]
dataset:
  json_file: ./data/thumos/annotations/thumos14.json
  feat_folder: ./data/thumos/i3d_features
  file_prefix: null
  file_ext: .npy
  num_classes: 20
  input_dim: 2048
  feat_stride: 4
  num_frames: 16
  trunc_thresh: 0.5
  crop_ratio: [0.9, 1.0]
  max_seq_len: 2304
model:
  fpn_type: identity
  max_buffer_len_factor: 6.0
  backbone_arch: [2, 2, 5]
  n_sgp_win_size: 1
  regression_range: [[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10000]]
  num_bins: 16
  k: 5
  iou_weight_power: 0.2
  use_trident_head: true
  sgp_mlp_dim: 768
  input_noise: 0.0005
opt: {learning_rate: 0.0001, warmup_epochs: 20, epochs: 20, weight_decay: 0.025}
loader: {batch_size: 2}
train_cfg: {init_loss_norm: 100, clip_grad_l2norm: 1.0, cls_prior_prob: 0.01, center_sample: radius,
            center_sample_radius: 1.5}
test_cfg: {voting_thresh: 0.7, pre_nms_topk: 2000, max_seg_num: 2000, min_score: 0.001, multiclass_nms: true}
output_folder: ./ckpt/
"""

ANET_YAML = """\
dataset_name: anet
train_split: [training]
val_split: [validation]
dataset:
  json_file: ./data/anet_1.3/annotations/anet1.3_tsp_filtered.json
  feat_folder: ./data/anet_1.3/tsp_features
  file_prefix: v_
  file_ext: .npy
  num_classes: 1
  input_dim: 512
  feat_stride: 16
  num_frames: 16
  default_fps: 15
  trunc_thresh: 0.5
  crop_ratio: [0.9, 1.0]
  max_seq_len: 768
model:
  fpn_type: identity
  max_buffer_len_factor: 1.0
  backbone_arch: [2, 2, 5]
  n_sgp_win_size: 15
  regression_range: [[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10000]]
  embd_dim: 256
  sgp_mlp_dim: 2048
  fpn_dim: 256
  head_dim: 512
  use_abs_pe: true
  num_bins: 12
  iou_weight_power: 1
  input_noise: 0.5
  k: 1.3
  init_conv_vars: 0.2
opt: {learning_rate: 0.001, eta_min: 0.00005, warmup_epochs: 10, epochs: 5, weight_decay: 0.04}
loader: {batch_size: 16}
train_cfg: {init_loss_norm: 400, clip_grad_l2norm: 0.4, cls_prior_prob: 0.01, center_sample: radius,
            center_sample_radius: 1.5, label_smoothing: 0.1}
test_cfg: {voting_thresh: 0.95, pre_nms_topk: 2000, max_seg_num: 200, min_score: 0.001, multiclass_nms: false,
           nms_sigma: 0.70, ext_score_file: ./data/anet_1.3/annotations/cuhk_val_simp_share.json,
           duration_thresh: 0.1}
output_folder: ./ckpt/
"""


@pytest.mark.parametrize(("config", "text", "classes"), [("thumos_i3d", THUMOS_YAML, 20), ("anet_tsp", ANET_YAML, 1)])
def test_release_configs_map_to_the_release_models(tmp_path, reference, config, text, classes):
    path = tmp_path / f"{config}.yaml"
    path.write_text(text)
    release = read_tridet_config(path)
    recorded = reference["release_models"][config]  # what the release built its model from
    assert _plain(release["model"]) == _plain(recorded)
    cfg, _ = tridet_config_from_release(release, str(path))
    ours = spec_from_config(cfg, classes)
    assert ours == dataclasses.replace(spec_from_release(recorded), nms=ours.nms)
    assert ours.nms.voting_iou_weight is False


def test_release_thumos_config_is_the_thumos_recipe(tmp_path):
    path = tmp_path / "thumos_i3d.yaml"
    path.write_text(THUMOS_YAML)
    cfg, notes = tridet_config_from_release(read_tridet_config(path), str(path))
    assert notes == []
    recipe = load_config(RECIPE).to_dict()
    imported = cfg.to_dict()
    for section in ("model", "tridet", "train", "test"):
        assert imported[section] == recipe[section], section
    paths_and_workers = ("annotations", "features", "num_workers")
    assert {k: v for k, v in imported["data"].items() if k not in paths_and_workers} == \
        {k: v for k, v in recipe["data"].items() if k not in paths_and_workers}


def test_release_anet_config_notes_and_thresholds(tmp_path):
    path = tmp_path / "anet_tsp.yaml"
    path.write_text(ANET_YAML)
    cfg, notes = tridet_config_from_release(read_tridet_config(path), str(path))
    assert len(notes) == 1 and "opt.eta_min 5e-05" in notes[0]
    assert cfg.test.ext_score_file == "./data/anet_1.3/annotations/cuhk_val_simp_share.json"
    assert cfg.test.tiou_thresholds == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert (cfg.test.multiclass_nms, cfg.test.nms_sigma, cfg.test.voting_thresh) == (False, 0.7, 0.95)
    assert (cfg.data.file_prefix, cfg.data.default_fps, cfg.train.learning_rate) == ("v_", 15, 0.001)
    assert (cfg.tridet.sgp_win_size, cfg.tridet.sgp_k, cfg.tridet.init_conv_vars) == (15, 1.3, 0.2)
