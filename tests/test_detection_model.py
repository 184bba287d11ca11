"""The assembled detector: config defaults, shapes, padding invariance, optimizer groups."""

import pytest
import torch

from rgbtad.config import build_config
from rgbtad.core.errors import RgbtadError
from rgbtad.detection import ActionFormer, build_detector
from rgbtad.detection.blocks import ChannelLayerNorm, LayerScaleDropPath, Scale


def tiny_cfg(**model):
    values = {
        "data": {"input_dim": 8, "max_seq_len": 64},
        "model": {"embd_dim": 32, "fpn_dim": 32, "head_dim": 32, "n_head": 2, "n_mha_win_size": 5,
                  "arch": [2, 2, 3], "regression_range": [[0, 4], [4, 8], [8, 16], [16, 10000]]},
    }
    values["model"].update(model)
    return build_config(values)


def test_thumos_defaults():
    model = build_detector(build_config({}), 20)
    assert model.max_div_factor == 576
    assert model.strides == [1, 2, 4, 8, 16, 32]
    assert model.windows == [19] * 6
    assert isinstance(model, ActionFormer)
    assert model.criterion.normalizer.item() == 100.0
    assert model.nms.max_seg_num == 200 and model.nms.sigma == 0.5 and model.nms.multiclass
    # layer scale (drop-path 0.1) initialised at 1e-4; classifier prior 0.01
    assert torch.allclose(model.encoder.stem[0].attn_scale.gamma, torch.full((512,), 1e-4))
    assert model.cls_head.logits.bias[0].item() == pytest.approx(-4.59512, abs=1e-4)


@pytest.mark.parametrize("variant", [
    {}, {"backbone": "conv"}, {"fpn_type": "fpn"},
    {"n_mha_win_size": [5, 5, 5, -1], "use_abs_pe": True, "use_rel_pe": True},
])
def test_forward_shapes_and_padding_invariance(variant):
    torch.manual_seed(0)
    model = build_detector(tiny_cfg(**variant), 3).eval()
    feats = torch.randn(1, 8, 50)
    short = torch.zeros(1, 8, 64)
    short[..., :50] = feats
    long = torch.zeros(1, 8, 128)
    long[..., :50] = feats
    with torch.no_grad():
        a = model(short, torch.arange(64)[None] < 50)
        b = model(long, torch.arange(128)[None] < 50)
    assert [x.shape for x in a.cls_logits] == [torch.Size([1, n, 3]) for n in (64, 32, 16, 8)]
    assert [x.shape for x in a.offsets] == [torch.Size([1, n, 2]) for n in (64, 32, 16, 8)]
    assert [p.shape for p in a.points] == [torch.Size([n, 4]) for n in (64, 32, 16, 8)]
    for level, valid in enumerate((50, 25, 13, 7)):
        assert int(a.masks[level].sum()) == valid
        # outputs on real steps do not depend on how much padding follows
        # (the abs position table is only stretched for inputs >= max_seq_len: compare
        # without it there)
        if not variant.get("use_abs_pe"):
            torch.testing.assert_close(a.cls_logits[level][:, :valid], b.cls_logits[level][:, :valid],
                                       atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(a.offsets[level][:, :valid], b.offsets[level][:, :valid],
                                       atol=1e-5, rtol=1e-5)
        assert torch.all(a.cls_logits[level][:, valid:] == 0)
        assert torch.all(a.offsets[level][:, valid:] == 0)
        assert torch.all(a.offsets[level] >= 0)


def test_param_groups_follow_the_release_rules():
    """The release's rule, seen through the optimizer: weight decay shrinks the weights of
    convolutions and linear layers, and nothing else (biases, LayerNorms, per-level scales,
    layer scales, relative position biases)."""
    torch.manual_seed(0)
    model = build_detector(tiny_cfg(use_rel_pe=True), 3)
    groups = model.param_groups(0.05)
    grouped = [id(p) for group in groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each parameter once
    # every kind of no-decay parameter is present, so the check below covers them
    kinds = {type(m) for m in model.modules()}
    assert {ChannelLayerNorm, Scale, LayerScaleDropPath} <= kinds
    assert any(name.endswith("rel_pos") for name, _ in model.named_parameters())

    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    lr, wd = 0.1, 0.05
    opt = torch.optim.AdamW(groups, lr=lr)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only the decay moves a parameter
    opt.step()
    conv_linear_weights = {f"{mname}.weight" for mname, m in model.named_modules()
                           if isinstance(m, (torch.nn.Conv1d, torch.nn.Linear))}
    assert conv_linear_weights
    for name, p in model.named_parameters():
        if name in conv_linear_weights:
            torch.testing.assert_close(p.detach(), before[name] * (1 - lr * wd), msg=name)
        else:
            assert torch.equal(p.detach(), before[name]), f"{name} was decayed"
    assert "encoder.stem.0.attn.q_conv.weight" in conv_linear_weights


def test_input_length_checks_and_config_errors():
    model = build_detector(tiny_cfg(), 3)
    with pytest.raises(ValueError, match="not divisible"):
        model(torch.zeros(1, 8, 60), torch.ones(1, 60, dtype=torch.bool))
    with pytest.raises(RgbtadError, match="max_seq_len"):
        build_detector(build_config({"data": {"max_seq_len": 1000}}), 20)
    with pytest.raises(RgbtadError):
        build_detector(tiny_cfg(), 0)


def test_longer_inference_inputs_work_with_abs_pe():
    torch.manual_seed(1)
    model = build_detector(tiny_cfg(use_abs_pe=True, n_mha_win_size=[5, 5, 5, -1]), 2).eval()
    x = torch.randn(1, 8, 192)
    with torch.no_grad():
        out = model(x, torch.ones(1, 192, dtype=torch.bool))
    assert out.cls_logits[0].shape == (1, 192, 2)
    model.train()
    with pytest.raises(ValueError, match="max_seq_len"):
        model(x, torch.ones(1, 192, dtype=torch.bool))


def test_same_seed_same_model_and_losses_only_update_in_training():
    torch.manual_seed(5)
    a = build_detector(tiny_cfg(), 3)
    torch.manual_seed(5)
    b = build_detector(tiny_cfg(), 3)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)
    x = torch.randn(1, 8, 64)
    mask = torch.ones(1, 64, dtype=torch.bool)
    gt, labels = [torch.tensor([[10.0, 30.0]])], [torch.tensor([2])]
    a.eval()
    a.losses(a(x, mask), gt, labels)
    assert a.criterion.normalizer.item() == 100.0
    a.train()
    a.losses(a(x, mask), gt, labels)
    assert a.criterion.normalizer.item() != 100.0


def test_shipped_detector_configs_build():
    from pathlib import Path

    from rgbtad.config import load_config

    root = Path(__file__).resolve().parents[1] / "configs"
    thumos = load_config(root / "thumos_i3d.yaml")
    rgb = load_config(root / "thumos_i3d_rgb.yaml")
    anet = load_config(root / "anet_tsp.yaml")
    assert (thumos.data.input_dim, thumos.data.channels, thumos.model.n_mha_win_size) == (2048, "all", 19)
    assert (rgb.data.input_dim, rgb.data.channels) == (1024, "rgb")
    assert anet.model.n_mha_win_size == [7, 7, 7, 7, 7, -1] and anet.data.force_upsampling
    assert (anet.train.loss_weight, anet.train.label_smoothing, anet.train.init_loss_norm) == (2.0, 0.1, 200)
    assert (anet.test.nms_sigma, anet.test.voting_thresh, anet.test.max_seg_num) == (0.75, 0.9, 100)
    assert not anet.test.multiclass_nms and anet.model.num_classes == 1
    assert build_detector(thumos, 20).max_div_factor == 576
    assert build_detector(anet, 1).max_div_factor == 96
