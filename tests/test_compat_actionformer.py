"""Import of ActionFormer release checkpoints and configs, against the release's own numbers.

The oracle is the ActionFormer release (happyharrycn/actionformer_release) itself: its code
was run once outside the repository and only its numbers are committed, in
``tests/data/actionformer_release_reference.pt``; ``actionformer_release_reference.md``
next to it says exactly how they were made (release commit, configs, seeds, torch version).
For three small configs (``thumos-like``: window attention, identity neck, drop-path;
``anet-like``: global attention on the last level, absolute + relative position encodings,
FPN neck, class-agnostic NMS with voting; ``conv-fpn-noln``: conv backbone, FPN without
LayerNorm, hard NMS) it holds the release model's checkpoint-form state dict, fixed inputs,
and the release's per-level logits / offsets / masks / points, training losses for fixed
ground truth, and detections after its postprocessing (its C++ NMS). It also lists the
state-dict names and shapes of the release models for ``configs/thumos_i3d.yaml`` and
``configs/anet_tsp.yaml``.

The release state dict imported through ``convert_state_dict`` (or ``import_actionformer``
and the run directory) must make our detector reproduce:

* per-level logits and offsets to ``atol 1e-5`` (``rtol 0``); masks and points exactly;
* the losses (``cls``, ``reg``, ``final``) and the loss normaliser to ``rel 1e-5``;
* the detections: same count and labels, scores to ``atol 1e-6``, segments to ``atol 1e-5``
  seconds (the release converts to seconds in float32, we in float64) -- both from the
  release's own network outputs and end to end. One documented departure
  (``rgbtad.detection.postprocess``): the release keeps segments clipped to the empty
  ``[duration, duration]``, we drop them, so those rows are removed from the release's list.
"""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rgbtad.compat.actionformer import import_actionformer
from rgbtad.compat.actionformer_config import config_from_release, read_release_config
from rgbtad.compat.actionformer_weights import convert_state_dict
from rgbtad.core.errors import RgbtadError
from rgbtad.detection import DetectorOutput, build_detector
from rgbtad.runs.run_dir import load_run

REFERENCE = Path(__file__).parent / "data" / "actionformer_release_reference.pt"
CASES = ("thumos-like", "anet-like", "conv-fpn-noln")
ATOL = 1e-5  # logits / offsets
SCORE_ATOL = 1e-6  # detection scores
SECONDS_ATOL = 1e-5  # detection segments (seconds)
LOSS_REL = 1e-5
CLASS_NAMES = ("Run", "Jump", "Swim", "Dive", "Throw")


# ------------------------------------------------------------------ the recorded release

@pytest.fixture(scope="module")
def reference():
    return torch.load(REFERENCE, weights_only=True)


def release_state(case: dict) -> dict[str, torch.Tensor]:
    """The release model's state dict (``module.`` keys, float32) as a checkpoint holds it."""
    packed = case["state"]
    values = packed["values"].float()
    state, offset = {}, 0
    for key, shape in zip(packed["keys"], packed["shapes"]):
        size = int(np.prod(shape)) if shape else 1
        state[key] = values[offset:offset + size].reshape(shape).clone()
        offset += size
    assert offset == values.numel()
    return state


def _inputs(block: dict):
    feats = block["feats"].float()
    mask = torch.arange(feats.shape[-1])[None, :] < block["valid_lengths"][:, None]
    return feats, mask


def _write_release(tmp_path, release, classes=None):
    if classes is None:
        classes = CLASS_NAMES[:release["dataset"]["num_classes"]]
    ann = {"database": {
        "v1": {"subset": "validation", "duration": 10.0, "fps": 30.0,
               "annotations": [{"label": name, "label_id": i, "segment": [1.0 + i, 3.0 + i]}
                               for i, name in enumerate(classes)]},
    }}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(release))
    return path


def _imported(tmp_path, case):
    """Our detector for the case's release config, holding the release weights (eval)."""
    release = read_release_config(_write_release(tmp_path, case["release_config"]))
    cfg, _ = config_from_release(release)
    model = build_detector(cfg, release["dataset"]["num_classes"])
    model.load_state_dict(convert_state_dict(release_state(case), model), strict=True)
    return model.eval()


def _assert_outputs(out, expected):
    assert len(out.cls_logits) == len(expected["cls_logits"])
    for level, (logits, offsets, masks) in enumerate(
            zip(expected["cls_logits"], expected["offsets"], expected["masks"])):
        assert torch.equal(out.masks[level], masks), f"level {level}"
        torch.testing.assert_close(out.cls_logits[level], logits, atol=ATOL, rtol=0)
        torch.testing.assert_close(out.offsets[level], offsets, atol=ATOL, rtol=0)


def _release_detections(case):
    """The release's detections minus the rows clipped to ``[duration, duration]``."""
    kept = []
    for det in case["detections"]:
        segs = det["segments"].double()
        keep = segs[:, 1] > segs[:, 0]
        kept.append({"video_id": det["video_id"], "segments": segs[keep].numpy(),
                     "scores": det["scores"][keep].numpy(), "labels": det["labels"][keep].numpy()})
    return kept


def _assert_detections(ours, case):
    expected = _release_detections(case)
    assert len(ours) == len(expected)
    for got, want in zip(ours, expected):
        assert got.video_id == want["video_id"]
        assert len(got) == len(want["scores"]) > 0
        np.testing.assert_array_equal(got.labels, want["labels"])
        np.testing.assert_allclose(got.scores, want["scores"], atol=SCORE_ATOL, rtol=0)
        np.testing.assert_allclose(got.segments, want["segments"], atol=SECONDS_ATOL, rtol=0)


# ------------------------------------------------------------------ tests: weights

def test_reference_fixture_provenance(reference):
    assert len(reference["release_commit"]) == 40
    assert set(reference["cases"]) == set(CASES)
    assert reference["release_commit"] in REFERENCE.with_suffix(".md").read_text()


def test_thumos_release_key_list_matches_our_detector(reference, thumos_yaml):
    shapes = reference["key_shapes"]["thumos_i3d"]  # the release model's real state dict
    assert len(shapes) == 229  # 6 embedding + 7 x 27 transformer + 12 neck + 8 cls + 14 reg
    cfg, _ = config_from_release(read_release_config(thumos_yaml))
    model = build_detector(cfg, 20)
    assert len(list(model.named_parameters())) == len(shapes)
    assert sum(int(np.prod(s)) for s in shapes.values()) == \
        sum(p.numel() for p in model.parameters())
    state = {k: torch.zeros(s) for k, s in shapes.items()}
    converted = convert_state_dict(state, model)
    assert set(converted) == set(model.state_dict())


@pytest.mark.parametrize("name", CASES)
def test_imported_detector_reproduces_release_outputs(tmp_path, reference, name):
    case = reference["cases"][name]
    model = _imported(tmp_path, case)
    feats, mask = _inputs(case["inputs"])
    with torch.no_grad():
        out = model(feats, mask)
    _assert_outputs(out, case["outputs"])
    assert len(out.points) == len(case["outputs"]["points"])
    for ours, theirs in zip(out.points, case["outputs"]["points"]):
        assert torch.equal(ours, theirs)
    if "long" in case:  # longer than max_seq_len: the position table is interpolated
        feats, mask = _inputs(case["long"])
        with torch.no_grad():
            _assert_outputs(model(feats, mask), case["long"])


@pytest.mark.parametrize("name", CASES)
def test_imported_detector_reproduces_release_losses(tmp_path, reference, name):
    case = reference["cases"][name]
    model = _imported(tmp_path, case)
    feats, mask = _inputs(case["inputs"])
    with torch.no_grad():
        out = model(feats, mask)
    # the release's losses() always moves its normaliser once before use: training mode here
    model.train()
    losses = model.losses(out, case["gt"]["segments"], case["gt"]["labels"])
    for key in ("cls_loss", "reg_loss", "final_loss"):
        assert losses[key].item() == pytest.approx(case["losses"][key], rel=LOSS_REL), key
    assert model.criterion.normalizer.item() == pytest.approx(case["loss_normalizer"], rel=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_imported_detector_reproduces_release_detections(tmp_path, reference, name):
    case = reference["cases"][name]
    model = _imported(tmp_path, case)
    recorded = case["outputs"]
    # our postprocessing on the release's own network outputs
    release_out = DetectorOutput(cls_logits=recorded["cls_logits"], offsets=recorded["offsets"],
                                 masks=recorded["masks"], points=recorded["points"])
    _assert_detections(model.postprocess(release_out, case["metas"]), case)
    # end to end: our forward pass and postprocessing
    feats, mask = _inputs(case["inputs"])
    with torch.no_grad():
        out = model(feats, mask)
    _assert_detections(model.postprocess(out, case["metas"]), case)


def test_import_round_trip_through_run_dir(tmp_path, reference):
    case = reference["cases"]["thumos-like"]
    release_yaml = _write_release(tmp_path, case["release_config"])
    ema = release_state(case)
    gen = torch.Generator().manual_seed(9)
    raw = {k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in ema.items()}
    ckpt = tmp_path / "epoch_034.pth.tar"
    torch.save({"epoch": 34, "state_dict": raw, "state_dict_ema": ema,
                "optimizer": {"state": {}, "param_groups": []}}, ckpt)
    run = tmp_path / "run"
    import_actionformer(release_yaml, ckpt, run)
    cfg, classes, model = load_run(run)
    assert classes == list(CLASS_NAMES)
    assert model.criterion.normalizer.item() == 100.0
    direct = build_detector(cfg, 5)
    direct.load_state_dict(convert_state_dict(ema, direct))
    direct.eval()
    feats, mask = _inputs(case["inputs"])
    with torch.no_grad():
        a, b = model(feats, mask), direct(feats, mask)
    for level in range(len(a.cls_logits)):
        assert torch.equal(a.cls_logits[level], b.cls_logits[level])
    _assert_outputs(a, case["outputs"])  # the EMA weights, not the raw ones
    # the run's test settings are the release config's: same detections
    _assert_detections(model.postprocess(a, case["metas"]), case)


def test_raw_weights_fallback_warns(tmp_path, reference):
    case = reference["cases"]["thumos-like"]
    release_yaml = _write_release(tmp_path, case["release_config"])
    ckpt = tmp_path / "raw.pth.tar"
    torch.save({"state_dict": release_state(case)}, ckpt)
    with pytest.warns(UserWarning, match="state_dict_ema"):
        import_actionformer(release_yaml, ckpt, tmp_path / "run")
    assert (tmp_path / "run" / "model.pt").is_file()


def test_missing_and_unexpected_keys_are_reported(tmp_path, reference):
    case = reference["cases"]["thumos-like"]
    model = _imported(tmp_path, case)
    state = release_state(case)
    broken = dict(state)
    del broken["module.backbone.stem.0.attn.key.weight"]
    broken["module.backbone.stem.0.attn.extra.weight"] = torch.zeros(1)
    with pytest.raises(RgbtadError) as err:
        convert_state_dict(broken, model, "ckpt")
    text = str(err.value)
    assert "encoder.stem.0.attn.k_proj.weight" in text and "attn.extra.weight" in text
    wrong = dict(state)
    wrong["module.cls_head.cls_head.conv.bias"] = torch.zeros(7)
    with pytest.raises(RgbtadError, match="shape mismatch"):
        convert_state_dict(wrong, model, "ckpt")


# ------------------------------------------------------------------ tests: config

THUMOS_YAML = """\
dataset_name: thumos
train_split: ['validation']
val_split: ['test']
dataset: {
  json_file: ./data/thumos/annotations/thumos14.json,
  feat_folder: ./data/thumos/i3d_features,
  file_prefix: ~,
  file_ext: .npy,
  num_classes: 20,
  input_dim: 2048,
  feat_stride: 4,
  num_frames: 16,
  trunc_thresh: 0.5,
  crop_ratio: [0.9, 1.0],
  max_seq_len: 2304,
}
model: {
  fpn_type: identity,
  max_buffer_len_factor: 6.0,
  n_mha_win_size: 19,
}
opt: {
  learning_rate: 0.0001,
  epochs: 30,
  weight_decay: 0.05,
}
loader: {
  batch_size: 2,
}
train_cfg: {
  init_loss_norm: 100,
  clip_grad_l2norm: 1.0,
  cls_prior_prob: 0.01,
  center_sample: radius,
  center_sample_radius: 1.5,
}
test_cfg: {
  voting_thresh: 0.7,
  pre_nms_topk: 2000,
  max_seg_num: 200,
  min_score: 0.001,
  multiclass_nms: True,
}
output_folder: ./ckpt/
"""

@pytest.fixture(scope="module")
def thumos_yaml(tmp_path_factory):
    path = tmp_path_factory.mktemp("release") / "thumos_i3d.yaml"
    path.write_text(THUMOS_YAML)
    return path


def test_thumos_release_config_maps_to_our_config(thumos_yaml):
    cfg, notes = config_from_release(read_release_config(thumos_yaml))
    assert notes == []
    d, m, t, s = cfg.data, cfg.model, cfg.train, cfg.test
    assert (d.input_dim, d.feat_stride, d.num_frames, d.max_seq_len) == (2048, 4, 16, 2304)
    assert (d.train_split, d.val_split, d.file_prefix, d.file_ext) == ("validation", "test", "", ".npy")
    assert d.crop_ratio == (0.9, 1.0) and d.trunc_thresh == 0.5 and d.default_fps is None
    assert d.annotations == "./data/thumos/annotations/thumos14.json"
    assert (m.backbone, m.arch, m.n_head, m.n_mha_win_size, m.embd_dim) == ("transformer", (2, 2, 5), 4, 19, 512)
    assert (m.fpn_type, m.num_classes, m.use_abs_pe, m.use_rel_pe) == ("identity", 20, False, False)
    assert m.regression_range == [(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)]
    assert (t.learning_rate, t.epochs, t.warmup_epochs, t.weight_decay, t.batch_size) == (1e-4, 30, 5, 0.05, 2)
    assert (t.init_loss_norm, t.clip_grad_l2norm, t.droppath, t.dropout, t.loss_weight) == (100, 1.0, 0.1, 0.0, 1.0)
    assert t.head_empty_cls == [] and t.seed == 1234567891 and t.optimizer == "AdamW"
    assert (s.pre_nms_topk, s.max_seg_num, s.min_score, s.voting_thresh) == (2000, 200, 0.001, 0.7)
    assert (s.nms_method, s.nms_sigma, s.multiclass_nms, s.duration_thresh) == ("soft", 0.5, True, 0.05)
    assert (s.pre_nms_thresh, s.iou_threshold) == (0.001, 0.1)
    assert s.tiou_thresholds == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert build_detector(cfg, 20).max_div_factor == 576


def test_anet_release_config_and_agnostic_classes(tmp_path, reference):
    release = {
        "dataset_name": "anet", "train_split": ["training"], "val_split": ["validation"],
        "dataset": {"json_file": "ann.json", "feat_folder": "tsp", "file_prefix": "v_",
                    "file_ext": ".npy", "num_classes": 1, "input_dim": 512, "feat_stride": 16,
                    "num_frames": 16, "default_fps": 15, "trunc_thresh": 0.5,
                    "crop_ratio": [0.9, 1.0], "max_seq_len": 192, "force_upsampling": True},
        "model": {"fpn_type": "identity", "max_buffer_len_factor": 1.0,
                  "n_mha_win_size": [7, 7, 7, 7, 7, -1], "n_head": 4, "embd_dim": 256,
                  "fpn_dim": 256, "head_dim": 256, "use_abs_pe": True},
        "opt": {"learning_rate": 0.001, "epochs": 10, "weight_decay": 0.05},
        "loader": {"batch_size": 16},
        "train_cfg": {"init_loss_norm": 200, "clip_grad_l2norm": 1.0, "label_smoothing": 0.1,
                      "loss_weight": 2.0, "droppath": 0.1},
        "test_cfg": {"voting_thresh": 0.9, "pre_nms_topk": 2000, "max_seg_num": 100,
                     "min_score": 0.001, "multiclass_nms": False, "nms_sigma": 0.75,
                     "ext_score_file": "cuhk.json", "duration_thresh": 0.001},
    }
    path = _write_release(tmp_path, release, classes=("A", "B", "C"))
    cfg, notes = config_from_release(read_release_config(path))
    assert cfg.test.ext_score_file == "cuhk.json" and not any("ext_score_file" in n for n in notes)
    assert (cfg.test.ext_score_top_k, cfg.test.ext_score_num_pred, cfg.test.ext_score_combine) == (2, 200, "sqrt_product")
    assert cfg.model.n_mha_win_size == [7, 7, 7, 7, 7, -1] and cfg.model.use_abs_pe
    assert cfg.data.force_upsampling and cfg.data.default_fps == 15 and cfg.data.file_prefix == "v_"
    assert (cfg.test.multiclass_nms, cfg.test.nms_sigma, cfg.test.voting_thresh) == (False, 0.75, 0.9)
    assert cfg.train.head_empty_cls == [] and cfg.test.tiou_thresholds[0] == 0.5
    assert build_detector(cfg, 1).max_div_factor == 96
    # this mapping is configs/anet_tsp.yaml: the release model's real state-dict names
    shapes = reference["key_shapes"]["anet_tsp"]
    state = {k: torch.randn(s) * 0.01 for k, s in shapes.items()}
    ckpt = tmp_path / "anet.pth.tar"
    torch.save({"state_dict_ema": state}, ckpt)
    import_actionformer(path, ckpt, tmp_path / "run")
    _, classes, model = load_run(tmp_path / "run")
    assert classes == ["action"] and model.num_classes == 1


def test_bad_release_configs_are_clear_errors(tmp_path, reference):
    base = reference["cases"]["thumos-like"]["release_config"]
    bad_key = copy.deepcopy(base)
    bad_key["model"]["n_mha_window"] = 5
    with pytest.raises(RgbtadError, match="model.n_mha_window"):
        read_release_config(_write_release(tmp_path, bad_key))
    bad_top = copy.deepcopy(base)
    bad_top["datasets"] = {}
    with pytest.raises(RgbtadError, match="'datasets'"):
        read_release_config(_write_release(tmp_path, bad_top))
    other = copy.deepcopy(base)
    other["model"]["backbone_type"] = "SGP"
    with pytest.raises(RgbtadError, match="backbone_type 'SGP'"):
        config_from_release(read_release_config(_write_release(tmp_path, other)))
    splits = copy.deepcopy(base)
    splits["train_split"] = ["training", "validation"]
    with pytest.raises(RgbtadError, match="train_split"):
        config_from_release(read_release_config(_write_release(tmp_path, splits)))
    with pytest.raises(RgbtadError, match="not found"):
        read_release_config(tmp_path / "missing.yaml")


def test_class_count_mismatch_is_an_error(tmp_path, reference):
    case = reference["cases"]["thumos-like"]
    release_yaml = _write_release(tmp_path, case["release_config"], classes=("A", "B"))
    ckpt = tmp_path / "c.pth.tar"
    torch.save({"state_dict_ema": release_state(case)}, ckpt)
    with pytest.raises(RgbtadError, match="2 classes"):
        import_actionformer(release_yaml, ckpt, tmp_path / "run")
