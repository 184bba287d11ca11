"""Import of ActionFormer release checkpoints and configs.

The release code is not installed here, so this file carries two independent stand-ins,
written from a reading of the release's modules (libs/modeling/*.py):

* ``release_param_shapes``: the names and shapes of the parameters a release
  ``PtTransformer`` holds for a given config (DataParallel adds ``module.``);
* ``release_forward``: the release's forward pass written functionally on those names, with
  brute-force dense attention (band-limited, padded keys -1e4, out-of-window -inf).

A random release-named state dict is imported and the imported detector must reproduce
``release_forward``; this checks both that every key is consumed and that each lands in the
right place.
"""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from rgbtad.compat.actionformer import (
    config_from_release,
    convert_state_dict,
    import_actionformer,
    read_release_config,
)
from rgbtad.detection import build_detector
from rgbtad.runs.run_dir import load_run
from rgbtad.core.errors import RgbtadError


# ------------------------------------------------------------------ release stand-ins

def _windows(m):
    w = m["n_mha_win_size"]
    return list(w) if isinstance(w, list) else [w] * (m["backbone_arch"][2] + 1)


def release_param_shapes(cfg: dict) -> dict[str, tuple]:
    """Parameter names/shapes of the release model for a merged release config."""
    m, d, t = cfg["model"], cfg["dataset"], cfg["train_cfg"]
    D, arch, k = m["embd_dim"], m["backbone_arch"], m["embd_kernel_size"]
    shapes: dict[str, tuple] = {}

    def ln(prefix, c):
        shapes[prefix + ".weight"] = (1, c, 1)
        shapes[prefix + ".bias"] = (1, c, 1)

    for i in range(arch[0]):
        shapes[f"backbone.embd.{i}.conv.weight"] = (D, d["input_dim"] if i == 0 else D, k)
        if m["embd_with_ln"]:
            ln(f"backbone.embd_norm.{i}", D)
        else:
            shapes[f"backbone.embd.{i}.conv.bias"] = (D,)
    windows = _windows(m)
    blocks = [(f"backbone.stem.{i}", 1, windows[0]) for i in range(arch[1])]
    blocks += [(f"backbone.branch.{i}", m["scale_factor"], windows[1 + i]) for i in range(arch[2])]
    for prefix, stride, win in blocks:
        if m["backbone_type"] == "conv":
            shapes[f"{prefix}.conv1.conv.weight"] = (2 * D, D, 3)
            shapes[f"{prefix}.conv1.conv.bias"] = (2 * D,)
            shapes[f"{prefix}.conv2.conv.weight"] = (D, 2 * D, 3)
            shapes[f"{prefix}.conv2.conv.bias"] = (D,)
            if stride > 1:
                shapes[f"{prefix}.downsample.conv.weight"] = (D, D, 1)
                shapes[f"{prefix}.downsample.conv.bias"] = (D,)
            continue
        ln(f"{prefix}.ln1", D)
        ln(f"{prefix}.ln2", D)
        kernel = stride + 1 if stride > 1 else 3
        for name in ("query", "key", "value"):
            shapes[f"{prefix}.attn.{name}_conv.conv.weight"] = (D, 1, kernel)
            ln(f"{prefix}.attn.{name}_norm", D)
        for name in ("key", "query", "value", "proj"):
            shapes[f"{prefix}.attn.{name}.weight"] = (D, D, 1)
            shapes[f"{prefix}.attn.{name}.bias"] = (D,)
        if m["use_rel_pe"] and win > 1:
            shapes[f"{prefix}.attn.rel_pe"] = (1, 1, m["n_head"], win)
        shapes[f"{prefix}.mlp.0.weight"] = (4 * D, D, 1)
        shapes[f"{prefix}.mlp.0.bias"] = (4 * D,)
        shapes[f"{prefix}.mlp.3.weight"] = (D, 4 * D, 1)
        shapes[f"{prefix}.mlp.3.bias"] = (D,)
        if t["droppath"] > 0:
            shapes[f"{prefix}.drop_path_attn.scale"] = (1, D, 1)
            shapes[f"{prefix}.drop_path_mlp.scale"] = (1, D, 1)
    Fd, levels = m["fpn_dim"], arch[2] + 1
    for i in range(levels - m["fpn_start_level"]):
        if m["fpn_type"] == "fpn":
            shapes[f"neck.lateral_convs.{i}.conv.weight"] = (Fd, D, 1)
            shapes[f"neck.fpn_convs.{i}.conv.weight"] = (Fd, 1, 3)
            if not m["fpn_with_ln"]:
                shapes[f"neck.lateral_convs.{i}.conv.bias"] = (Fd,)
                shapes[f"neck.fpn_convs.{i}.conv.bias"] = (Fd,)
        if m["fpn_with_ln"]:
            ln(f"neck.fpn_norms.{i}", Fd)
    H, hk = m["head_dim"], m["head_kernel_size"]
    for head in ("cls_head", "reg_head"):
        for i in range(m["head_num_layers"] - 1):
            shapes[f"{head}.head.{i}.conv.weight"] = (H, Fd if i == 0 else H, hk)
            if m["head_with_ln"]:
                ln(f"{head}.norm.{i}", H)
            else:
                shapes[f"{head}.head.{i}.conv.bias"] = (H,)
    shapes["cls_head.cls_head.conv.weight"] = (d["num_classes"], H, hk)
    shapes["cls_head.cls_head.conv.bias"] = (d["num_classes"],)
    for level in range(levels - m["fpn_start_level"]):
        shapes[f"reg_head.scale.{level}.scale"] = ()
    shapes["reg_head.offset_head.conv.weight"] = (2, H, hk)
    shapes["reg_head.offset_head.conv.bias"] = (2,)
    return shapes


def random_release_state(cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in release_param_shapes(cfg).items():
        value = torch.randn(shape, generator=gen)
        if name.endswith(("_norm.weight", "ln1.weight", "ln2.weight")) or ".norm." in name \
                or "fpn_norms" in name or "embd_norm" in name:
            value = 1.0 + 0.1 * value if name.endswith("weight") else 0.1 * value
        elif name.endswith(".scale"):
            value = 0.5 + 0.1 * value.abs()
        else:
            fan_in = max(1, int(np.prod(shape[1:]))) if len(shape) > 1 else 1
            value = value / math.sqrt(fan_in) if len(shape) > 1 else 0.1 * value
        state["module." + name] = value
    return state


def _r_conv(sd, prefix, x, mask, stride=1, groups=1):
    w, b = sd[prefix + ".conv.weight"], sd.get(prefix + ".conv.bias")
    y = F.conv1d(x, w, b, stride=stride, padding=w.shape[-1] // 2, groups=groups)
    m = mask.float() if stride == 1 else F.interpolate(mask.float(), size=y.shape[-1], mode="nearest")
    return y * m, m.bool()


def _r_ln(sd, prefix, x):
    if prefix + ".weight" not in sd:
        return x
    mu = x.mean(1, keepdim=True)
    r = x - mu
    return r / torch.sqrt((r ** 2).mean(1, keepdim=True) + 1e-5) * sd[prefix + ".weight"] + sd[prefix + ".bias"]


def _r_attention(sd, p, x, mask, heads, window, stride):
    D = x.shape[1]
    q, q_mask = _r_conv(sd, p + ".query_conv", x, mask, stride, D)
    k, kv_mask = _r_conv(sd, p + ".key_conv", x, mask, stride, D)
    v, _ = _r_conv(sd, p + ".value_conv", x, mask, stride, D)
    q = F.conv1d(_r_ln(sd, p + ".query_norm", q), sd[p + ".query.weight"], sd[p + ".query.bias"])
    k = F.conv1d(_r_ln(sd, p + ".key_norm", k), sd[p + ".key.weight"], sd[p + ".key.bias"])
    v = F.conv1d(_r_ln(sd, p + ".value_norm", v), sd[p + ".value.weight"], sd[p + ".value.bias"])
    B, C, T = q.shape
    hd = C // heads
    q, k, v = (t.view(B, heads, hd, T).transpose(2, 3) for t in (q, k, v))
    s = (q / math.sqrt(hd)) @ k.transpose(-1, -2)
    valid_key = kv_mask[:, :, None, :]
    if window > 1:
        w = window // 2
        off = torch.arange(T)[None, :] - torch.arange(T)[:, None]
        if p + ".rel_pe" in sd:
            s = s + sd[p + ".rel_pe"][0, 0][:, (off + w).clamp(0, 2 * w)][None]
        s = torch.where(valid_key, s, s - 1e4).masked_fill(off.abs() > w, float("-inf"))
    else:
        s = s.masked_fill(~valid_key, float("-inf"))
    a = s.softmax(-1).masked_fill(~kv_mask[:, :, :, None], 0.0)
    out = (a @ (v * kv_mask[:, :, :, None])).transpose(2, 3).reshape(B, C, T)
    return F.conv1d(out, sd[p + ".proj.weight"], sd[p + ".proj.bias"]) * q_mask, q_mask


def _r_block(sd, p, x, mask, heads, window, stride):
    out, om = _r_attention(sd, p + ".attn", _r_ln(sd, p + ".ln1", x), mask, heads, window, stride)
    skip = x if stride == 1 else F.max_pool1d(x, stride + 1, stride, (stride + 1) // 2)
    if p + ".drop_path_attn.scale" in sd:
        out = sd[p + ".drop_path_attn.scale"] * out
    out = skip * om + out
    h = F.conv1d(_r_ln(sd, p + ".ln2", out), sd[p + ".mlp.0.weight"], sd[p + ".mlp.0.bias"])
    h = F.conv1d(F.gelu(h), sd[p + ".mlp.3.weight"], sd[p + ".mlp.3.bias"]) * om
    if p + ".drop_path_mlp.scale" in sd:
        h = sd[p + ".drop_path_mlp.scale"] * h
    return out + h, om


def _r_convblock(sd, p, x, mask, stride):
    out, om = _r_conv(sd, p + ".conv1", x, mask, stride)
    out, om = _r_conv(sd, p + ".conv2", F.relu(out), om)
    identity = _r_conv(sd, p + ".downsample", x, mask, stride)[0] if stride > 1 else x
    return F.relu(out + identity), om


def _r_table(length, dim):
    pos = np.arange(length)[:, None] / np.power(10000.0, 2 * (np.arange(dim) // 2) / dim)[None]
    pos[:, 0::2], pos[:, 1::2] = np.sin(pos[:, 0::2]), np.cos(pos[:, 1::2])
    return torch.tensor(pos.T[None], dtype=torch.float32) / dim ** 0.5


def release_forward(cfg: dict, state: dict, x: torch.Tensor, mask: torch.Tensor):
    """The release's eval-mode forward, functionally: per-level (logits, offsets)."""
    sd = {k[len("module."):]: v for k, v in state.items()}
    m = cfg["model"]
    arch, heads, sf = m["backbone_arch"], m["n_head"], m["scale_factor"]
    mask = mask[:, None, :]
    for i in range(arch[0]):
        x, mask = _r_conv(sd, f"backbone.embd.{i}", x, mask)
        x = F.relu(_r_ln(sd, f"backbone.embd_norm.{i}", x))
    if m["use_abs_pe"] and m["backbone_type"] == "convTransformer":
        T, max_len = x.shape[-1], cfg["dataset"]["max_seq_len"]
        table = _r_table(max_len, x.shape[1])
        if T >= max_len:
            table = F.interpolate(table, T, mode="linear", align_corners=False)
        x = x + table[:, :, :T] * mask.float()
    windows = _windows(m)
    for i in range(arch[1]):
        if m["backbone_type"] == "conv":
            x, mask = _r_convblock(sd, f"backbone.stem.{i}", x, mask, 1)
        else:
            x, mask = _r_block(sd, f"backbone.stem.{i}", x, mask, heads, windows[0], 1)
    feats, masks = [x], [mask]
    for i in range(arch[2]):
        if m["backbone_type"] == "conv":
            x, mask = _r_convblock(sd, f"backbone.branch.{i}", x, mask, sf)
        else:
            x, mask = _r_block(sd, f"backbone.branch.{i}", x, mask, heads, windows[1 + i], sf)
        feats.append(x)
        masks.append(mask)
    if m["fpn_type"] == "fpn":
        lat = [_r_conv(sd, f"neck.lateral_convs.{i}", f, mk)[0] for i, (f, mk) in enumerate(zip(feats, masks))]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], scale_factor=sf, mode="nearest")
        feats = [_r_ln(sd, f"neck.fpn_norms.{i}",
                       _r_conv(sd, f"neck.fpn_convs.{i}", lat[i], masks[i], groups=lat[i].shape[1])[0])
                 for i in range(len(lat))]
    else:
        feats = [_r_ln(sd, f"neck.fpn_norms.{i}", f) for i, f in enumerate(feats)]
    outputs = []
    for level, (f, mk) in enumerate(zip(feats, masks)):
        c, r = f, f
        for i in range(m["head_num_layers"] - 1):
            c = F.relu(_r_ln(sd, f"cls_head.norm.{i}", _r_conv(sd, f"cls_head.head.{i}", c, mk)[0]))
            r = F.relu(_r_ln(sd, f"reg_head.norm.{i}", _r_conv(sd, f"reg_head.head.{i}", r, mk)[0]))
        logits = _r_conv(sd, "cls_head.cls_head", c, mk)[0]
        offsets = F.relu(_r_conv(sd, "reg_head.offset_head", r, mk)[0] * sd[f"reg_head.scale.{level}.scale"])
        outputs.append((logits.permute(0, 2, 1), offsets.permute(0, 2, 1)))
    return outputs


# ------------------------------------------------------------------ fixtures

TINY = {
    "dataset_name": "epic",
    "train_split": ["training"],
    "val_split": ["validation"],
    "dataset": {"json_file": "ann.json", "feat_folder": "feats", "file_prefix": None,
                "file_ext": ".npy", "num_classes": 3, "input_dim": 8, "feat_stride": 4,
                "num_frames": 16, "max_seq_len": 64},
    "model": {"backbone_arch": [2, 1, 3], "n_head": 2, "n_mha_win_size": 5, "embd_dim": 16,
              "fpn_dim": 16, "head_dim": 16,
              "regression_range": [[0, 4], [4, 8], [8, 16], [16, 10000]]},
    "train_cfg": {"init_loss_norm": 100, "droppath": 0.1},
    "test_cfg": {"max_seg_num": 50, "min_score": 0.001, "pre_nms_topk": 2000},
}

VARIANTS = {
    "local-identity": {},
    "anet-like": {"model": {"n_mha_win_size": [5, 5, 5, -1], "use_abs_pe": True,
                            "use_rel_pe": True, "fpn_type": "fpn"},
                  "train_cfg": {"droppath": 0.0}},
    "conv-fpn-noln": {"model": {"backbone_type": "conv", "fpn_type": "fpn", "fpn_with_ln": False,
                                "embd_with_ln": False, "head_with_ln": False,
                                "head_num_layers": 2}},
}


def _variant(name):
    release = json.loads(json.dumps(TINY))
    for section, values in VARIANTS[name].items():
        release[section].update(values)
    return release


def _write_release(tmp_path, release, classes=("Run", "Jump", "Swim")):
    ann = {"database": {
        "v1": {"subset": "validation", "duration": 10.0, "fps": 30.0,
               "annotations": [{"label": name, "label_id": i, "segment": [1.0 + i, 3.0 + i]}
                               for i, name in enumerate(classes)]},
    }}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(release))
    return path


def _inputs(input_dim, length=64, valid=(64, 41), seed=3):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(valid), input_dim, length, generator=gen)
    mask = torch.arange(length)[None, :] < torch.tensor(valid)[:, None]
    return x * mask[:, None, :], mask


# ------------------------------------------------------------------ tests: weights

def test_thumos_release_key_list_matches_our_detector(thumos_yaml):
    release = read_release_config(thumos_yaml)
    shapes = release_param_shapes(release)
    assert len(shapes) == 229  # 6 embedding + 7 x 27 transformer + 12 neck + 8 cls + 14 reg
    cfg, _ = config_from_release(release)
    model = build_detector(cfg, 20)
    assert len(list(model.named_parameters())) == len(shapes)
    assert sum(int(np.prod(s)) for s in shapes.values()) == sum(p.numel() for p in model.parameters())
    state = {"module." + k: torch.zeros(s) for k, s in shapes.items()}
    converted = convert_state_dict(state, model)
    assert set(converted) == set(model.state_dict())


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_imported_detector_reproduces_release_forward(tmp_path, variant):
    release_yaml = _write_release(tmp_path, _variant(variant))
    release = read_release_config(release_yaml)
    state = random_release_state(release, seed=1)
    cfg, _ = config_from_release(release)
    model = build_detector(cfg, 3)
    model.load_state_dict(convert_state_dict(state, model), strict=True)
    model.eval()
    x, mask = _inputs(8)
    with torch.no_grad():
        out = model(x, mask)
        expected = release_forward(release, state, x, mask)
    for level, (logits, offsets) in enumerate(expected):
        torch.testing.assert_close(out.cls_logits[level], logits, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(out.offsets[level], offsets, atol=2e-5, rtol=1e-4)


def test_import_round_trip_through_run_dir(tmp_path):
    release_yaml = _write_release(tmp_path, _variant("local-identity"))
    release = read_release_config(release_yaml)
    ema = random_release_state(release, seed=2)
    raw = random_release_state(release, seed=9)
    ckpt = tmp_path / "epoch_034.pth.tar"
    torch.save({"epoch": 34, "state_dict": raw, "state_dict_ema": ema,
                "optimizer": {"state": {}, "param_groups": []}}, ckpt)
    run = tmp_path / "run"
    import_actionformer(release_yaml, ckpt, run)
    cfg, classes, model = load_run(run)
    assert classes == ["Run", "Jump", "Swim"]
    assert model.criterion.normalizer.item() == 100.0
    direct = build_detector(cfg, 3)
    direct.load_state_dict(convert_state_dict(ema, direct))
    direct.eval()
    x, mask = _inputs(8)
    with torch.no_grad():
        a, b = model(x, mask), direct(x, mask)
        expected = release_forward(release, ema, x, mask)
    for level in range(4):
        assert torch.equal(a.cls_logits[level], b.cls_logits[level])
        torch.testing.assert_close(a.cls_logits[level], expected[level][0], atol=2e-5, rtol=1e-4)
    meta = {"fps": 30.0, "duration": 10.0, "feat_stride": 4, "feat_num_frames": 16}
    dets = model.postprocess(a, [dict(meta, video_id="v1"), dict(meta, video_id="v2")])
    assert len(dets[0]["scores"]) <= 50


def test_raw_weights_fallback_warns(tmp_path):
    release_yaml = _write_release(tmp_path, _variant("local-identity"))
    release = read_release_config(release_yaml)
    ckpt = tmp_path / "raw.pth.tar"
    torch.save({"state_dict": random_release_state(release)}, ckpt)
    with pytest.warns(UserWarning, match="state_dict_ema"):
        import_actionformer(release_yaml, ckpt, tmp_path / "run")
    assert (tmp_path / "run" / "model.pt").is_file()


def test_missing_and_unexpected_keys_are_reported(tmp_path):
    release_yaml = _write_release(tmp_path, _variant("local-identity"))
    release = read_release_config(release_yaml)
    cfg, _ = config_from_release(release)
    model = build_detector(cfg, 3)
    state = random_release_state(release)
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


def test_anet_release_config_and_agnostic_classes(tmp_path):
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
    assert any("ext_score_file" in n for n in notes)
    assert cfg.model.n_mha_win_size == [7, 7, 7, 7, 7, -1] and cfg.model.use_abs_pe
    assert cfg.data.force_upsampling and cfg.data.default_fps == 15 and cfg.data.file_prefix == "v_"
    assert (cfg.test.multiclass_nms, cfg.test.nms_sigma, cfg.test.voting_thresh) == (False, 0.75, 0.9)
    assert cfg.train.head_empty_cls == [] and cfg.test.tiou_thresholds[0] == 0.5
    assert build_detector(cfg, 1).max_div_factor == 96
    shapes = release_param_shapes(read_release_config(path))
    state = {"module." + k: torch.randn(s) * 0.01 for k, s in shapes.items()}
    ckpt = tmp_path / "anet.pth.tar"
    torch.save({"state_dict_ema": state}, ckpt)
    import_actionformer(path, ckpt, tmp_path / "run")
    _, classes, model = load_run(tmp_path / "run")
    assert classes == ["action"] and model.num_classes == 1


def test_bad_release_configs_are_clear_errors(tmp_path):
    bad_key = json.loads(json.dumps(TINY))
    bad_key["model"]["n_mha_window"] = 5
    with pytest.raises(RgbtadError, match="model.n_mha_window"):
        read_release_config(_write_release(tmp_path, bad_key))
    bad_top = json.loads(json.dumps(TINY))
    bad_top["datasets"] = {}
    with pytest.raises(RgbtadError, match="'datasets'"):
        read_release_config(_write_release(tmp_path, bad_top))
    other = json.loads(json.dumps(TINY))
    other["model"]["backbone_type"] = "SGP"
    with pytest.raises(RgbtadError, match="backbone_type 'SGP'"):
        config_from_release(read_release_config(_write_release(tmp_path, other)))
    splits = json.loads(json.dumps(TINY))
    splits["train_split"] = ["training", "validation"]
    with pytest.raises(RgbtadError, match="train_split"):
        config_from_release(read_release_config(_write_release(tmp_path, splits)))
    with pytest.raises(RgbtadError, match="not found"):
        read_release_config(tmp_path / "missing.yaml")


def test_class_count_mismatch_is_an_error(tmp_path):
    release_yaml = _write_release(tmp_path, _variant("local-identity"), classes=("A", "B"))
    release = read_release_config(release_yaml)
    ckpt = tmp_path / "c.pth.tar"
    torch.save({"state_dict_ema": random_release_state(release)}, ckpt)
    with pytest.raises(RgbtadError, match="2 classes"):
        import_actionformer(release_yaml, ckpt, tmp_path / "run")
