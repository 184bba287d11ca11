"""Backbones: shapes, temporal shift, checkpoint layouts, channel adaptation, bf16, errors."""

from __future__ import annotations

import functools

import pytest
import torch

from rgbtad.backbones import (
    BACKBONES,
    create_backbone,
    detect_layout,
    load_checkpoint,
    release_state_dict,
    temporal_shift,
)
from rgbtad.backbones.i3d_resnet import I3DResNet
from rgbtad.backbones.layers import fold_batch_norms
from rgbtad.backbones.slowfast import SlowFast, slow_frame_indices
from rgbtad.backbones.tsm import BasicBlock2d, Bottleneck2d, TSMResNet
from rgbtad.core.errors import RgbtadError

FEATURE_DIMS = {"tsm_tiny": 128, "tsm_r18": 512, "tsm_r50": 2048,
                "i3d_inception": 1024, "i3d_r50": 2048, "slowfast_r50": 2304}
FRAME_HINTS = {"tsm_tiny": 8, "tsm_r18": 8, "tsm_r50": 8,
               "i3d_inception": 16, "i3d_r50": 16, "slowfast_r50": 32}
# Small clips that every architecture accepts (I3D-R50 needs 5 frames at least; 32 x 32
# frames leave a 1 x 1 map after the ResNets' stride 32).
SMALL_T, SMALL_HW = 8, 32


@pytest.fixture(autouse=True, scope="module")
def clear_net_cache():
    yield
    shared_net.cache_clear()


@functools.lru_cache(maxsize=None)
def shared_net(name: str):
    """A read-only RGB network per architecture, built once for the whole module."""
    torch.manual_seed(0)
    return create_backbone(name, "rgb")


def narrow_net(name: str, modality: str = "rgb", seed: int = 0):
    """The same architecture (same parameter names) with fewer channels, for cheap round trips."""
    torch.manual_seed(seed)
    narrow = {
        "tsm_r18": lambda: TSMResNet("tsm_r18", modality, BasicBlock2d, (2, 2, 2, 2), width=8),
        "tsm_r50": lambda: TSMResNet("tsm_r50", modality, Bottleneck2d, (3, 4, 6, 3), width=8),
        "i3d_r50": lambda: I3DResNet("i3d_r50", modality, width=8),
        "slowfast_r50": lambda: SlowFast("slowfast_r50", modality, width=16),
    }
    net = narrow[name]() if name in narrow else create_backbone(name, modality)
    return net.eval()


def clip(net, t: int = SMALL_T, hw: int = SMALL_HW, batch: int = 1, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, net.in_channels, t, hw, hw, generator=g)


def scramble(net, seed: int = 0):
    """Random batch-norm parameters *and* statistics, so that a round trip checks every tensor
    (convolutions already differ between seeds)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(7)
            elif t.dim() == 1 and name.endswith(("weight", "running_var")):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() == 1:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return net


def outputs(net, x):
    with torch.inference_mode():
        return net(x)


# --- architecture ---------------------------------------------------------------------------

@pytest.mark.parametrize("modality", ["rgb", "flow", "tg"])
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_and_modality_gives_finite_features(name, modality):
    torch.manual_seed(0)
    net = create_backbone(name, modality)
    assert not net.training
    assert net.in_channels == (2 if modality == "flow" else 3)
    assert net.feature_dim == FEATURE_DIMS[name]
    assert net.num_frames_hint == FRAME_HINTS[name]
    assert len(net.input_mean) == len(net.input_std) == net.in_channels
    y = outputs(net, clip(net, batch=2))
    assert y.shape == (2, FEATURE_DIMS[name])
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert y.std() > 0  # not a constant output


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_bf16_autocast_forward_returns_close_float32_features(name):
    net = shared_net(name)
    x = clip(net)
    ref = outputs(net, x)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert not torch.equal(y, ref)  # autocast really ran in bf16
    assert torch.nn.functional.cosine_similarity(y, ref).min() > 0.99


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_eval_mode_is_deterministic_and_batch_independent(name):
    net = shared_net(name)
    x = clip(net, batch=2)
    a, b = outputs(net, x), outputs(net, x)
    assert torch.equal(a, b)
    single = outputs(net, x[1:])
    torch.testing.assert_close(single[0], a[1], rtol=1e-4, atol=1e-4)


# Full-size geometry, checked for free on the meta device: the last feature map must be
# what the releases' own heads pool (pytorch-i3d AvgPool3d(2,7,7) for 16 frames,
# pytorchvideo SlowFast head pools (8,7,7) slow / (32,7,7) fast for 32 frames).
@pytest.mark.parametrize("name,frames,module,shape", [
    ("tsm_r50", 8, "stages.3.2", (8, 2048, 7, 7)),
    ("tsm_r18", 8, "stages.3.1", (8, 512, 7, 7)),
    ("i3d_inception", 16, "mixed.5c", (1, 1024, 2, 7, 7)),
    ("i3d_inception", 16, "mixed.3b", (1, 256, 8, 28, 28)),
    ("i3d_r50", 32, "stages.0", (1, 256, 8, 56, 56)),
    ("i3d_r50", 32, "stages.3", (1, 2048, 4, 7, 7)),
    ("slowfast_r50", 32, "slow_stages.3", (1, 2048, 8, 7, 7)),
    ("slowfast_r50", 32, "fast_stages.3", (1, 256, 32, 7, 7)),
    ("slowfast_r50", 32, "slow_stages.0", (1, 256, 8, 56, 56)),
])
def test_full_size_feature_maps_match_the_releases(name, frames, module, shape):
    net = create_backbone(name, "rgb").to("meta")
    seen = {}

    def record(module, inputs, output):
        seen["shape"] = tuple(output.shape)

    net.get_submodule(module).register_forward_hook(record)
    y = net(torch.empty(1, 3, frames, 224, 224, device="meta"))
    assert y.shape == (1, FEATURE_DIMS[name])
    assert seen["shape"] == shape


@pytest.mark.parametrize("name,frames,hw", [
    ("tsm_tiny", 1, 64), ("i3d_inception", 1, 57), ("i3d_inception", 7, 33),
    ("i3d_r50", 5, 64), ("slowfast_r50", 3, 64),
])
def test_shortest_and_odd_clips_work(name, frames, hw):
    net = shared_net(name)
    assert net.min_frames <= frames
    y = outputs(net, clip(net, t=frames, hw=hw))
    assert y.shape == (1, FEATURE_DIMS[name]) and torch.isfinite(y).all()


def test_slow_pathway_takes_frames_like_pytorchvideo_pack_pathway():
    # PackPathway: linspace(0, T - 1, T // alpha), alpha = 4 for SlowFast-R50 8x8
    assert slow_frame_indices(32, 4).tolist() == [0, 4, 8, 13, 17, 22, 26, 31]
    assert slow_frame_indices(8, 4).tolist() == [0, 7]
    assert shared_net("slowfast_r50").alpha == 4


# --- temporal shift ----------------------------------------------------------------------------

def test_temporal_shift_moves_one_eighth_each_way_with_zero_fill():
    n, t, c = 2, 4, 16
    x = torch.arange(n * t * c, dtype=torch.float32).view(n * t, c, 1, 1) + 1
    out = temporal_shift(x, t, 8).view(n, t, c)
    x = x.view(n, t, c)
    fold = c // 8
    assert torch.equal(out[:, :-1, :fold], x[:, 1:, :fold])          # from the next frame
    assert torch.equal(out[:, -1, :fold], torch.zeros(n, fold))
    assert torch.equal(out[:, 1:, fold:2 * fold], x[:, :-1, fold:2 * fold])  # from the previous
    assert torch.equal(out[:, 0, fold:2 * fold], torch.zeros(n, fold))
    assert torch.equal(out[:, :, 2 * fold:], x[:, :, 2 * fold:])
    # clips in the batch do not leak into each other
    assert torch.equal(out[1, 0, :fold], x[1, 1, :fold])


def test_temporal_shift_keeps_a_channels_last_layout_and_its_values():
    x = torch.randn(2 * 4, 16, 5, 6)
    expected = temporal_shift(x, 4, 8)
    got = temporal_shift(x.to(memory_format=torch.channels_last), 4, 8)
    assert got.is_contiguous(memory_format=torch.channels_last)  # no layout conversion per block
    assert torch.equal(got, expected) and expected.is_contiguous()


def test_tsm_is_sensitive_to_frame_order_only_with_the_shift():
    x = clip(shared_net("tsm_tiny"))
    reversed_x = x.flip(2)
    torch.manual_seed(0)
    shifted = create_backbone("tsm_tiny", "rgb")
    torch.manual_seed(0)
    plain = create_backbone("tsm_tiny", "rgb", shift_div=0)
    assert not torch.allclose(outputs(shifted, x), outputs(shifted, reversed_x), atol=1e-4)
    torch.testing.assert_close(outputs(plain, x), outputs(plain, reversed_x))


# --- checkpoints -------------------------------------------------------------------------------

# Key names and shapes read in the public release code (mmaction2 ResNet/ResNetTSM/ResNet3d
# with ConvModule, pytorch-i3d InceptionI3d/Unit3D, pytorchvideo create_slowfast/ResBlock/
# BottleneckBlock/ResNetBasicStem/FuseFastToSlow), written out by hand so that the mapping
# is checked against the releases and not only against itself.
KNOWN_KEYS = {
    ("tsm_r18", "mmaction2"): {
        "backbone.conv1.conv.weight": (64, 3, 7, 7),
        "backbone.conv1.bn.running_var": (64,),
        "backbone.layer1.0.conv1.conv.net.weight": (64, 64, 3, 3),
        "backbone.layer1.0.conv2.bn.weight": (64,),
        "backbone.layer2.0.downsample.conv.weight": (128, 64, 1, 1),
        "backbone.layer2.0.downsample.bn.running_mean": (128,),
        "backbone.layer4.1.conv2.conv.weight": (512, 512, 3, 3),
    },
    ("tsm_r50", "mmaction2"): {
        "backbone.layer1.0.conv1.conv.net.weight": (64, 64, 1, 1),
        "backbone.layer1.0.conv3.bn.bias": (256,),
        "backbone.layer1.0.downsample.conv.weight": (256, 64, 1, 1),
        "backbone.layer3.5.conv1.conv.net.weight": (256, 1024, 1, 1),
        "backbone.layer4.0.conv2.conv.weight": (512, 512, 3, 3),
        "backbone.layer4.2.conv3.conv.weight": (2048, 512, 1, 1),
    },
    ("tsm_r18", "torchvision"): {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.running_mean": (64,),
        "layer1.0.conv1.weight": (64, 64, 3, 3),
        "layer1.1.bn2.bias": (64,),
        "layer3.0.downsample.0.weight": (256, 128, 1, 1),
        "layer3.0.downsample.1.running_var": (256,),
    },
    ("i3d_r50", "mmaction2"): {
        "backbone.conv1.conv.weight": (64, 3, 5, 7, 7),
        "backbone.conv1.bn.weight": (64,),
        "backbone.layer1.0.conv1.conv.weight": (64, 64, 3, 1, 1),
        "backbone.layer1.0.conv2.conv.weight": (64, 64, 1, 3, 3),
        "backbone.layer1.0.downsample.bn.running_mean": (256,),
        "backbone.layer2.1.conv1.conv.weight": (128, 512, 1, 1, 1),
        "backbone.layer3.4.conv1.conv.weight": (256, 1024, 3, 1, 1),
        "backbone.layer4.0.conv1.conv.weight": (512, 1024, 1, 1, 1),
        "backbone.layer4.1.conv1.conv.weight": (512, 2048, 3, 1, 1),
        "backbone.layer4.2.conv3.bn.running_var": (2048,),
    },
    ("i3d_inception", "pytorch_i3d"): {
        "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
        "Conv3d_1a_7x7.bn.running_mean": (64,),
        "Conv3d_2b_1x1.conv3d.weight": (64, 64, 1, 1, 1),
        "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
        "Mixed_3b.b0.conv3d.weight": (64, 192, 1, 1, 1),
        "Mixed_3b.b1a.conv3d.weight": (96, 192, 1, 1, 1),
        "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3),
        "Mixed_3b.b3b.bn.running_var": (32,),
        "Mixed_4f.b0.conv3d.weight": (256, 528, 1, 1, 1),
        "Mixed_5c.b2b.conv3d.weight": (128, 48, 3, 3, 3),
        "Mixed_5c.b3b.bn.bias": (128,),
    },
    ("slowfast_r50", "pytorchvideo"): {
        "blocks.0.multipathway_blocks.0.conv.weight": (64, 3, 1, 7, 7),
        "blocks.0.multipathway_blocks.1.conv.weight": (8, 3, 5, 7, 7),
        "blocks.0.multipathway_blocks.1.norm.running_mean": (8,),
        "blocks.0.multipathway_fusion.conv_fast_to_slow.weight": (16, 8, 7, 1, 1),
        "blocks.1.multipathway_blocks.0.res_blocks.0.branch1_conv.weight": (256, 80, 1, 1, 1),
        "blocks.1.multipathway_blocks.0.res_blocks.0.branch1_norm.running_var": (256,),
        "blocks.1.multipathway_blocks.0.res_blocks.0.branch2.conv_a.weight": (64, 80, 1, 1, 1),
        "blocks.1.multipathway_blocks.1.res_blocks.0.branch2.conv_a.weight": (8, 8, 3, 1, 1),
        "blocks.3.multipathway_blocks.0.res_blocks.0.branch2.conv_a.weight": (256, 640, 3, 1, 1),
        "blocks.3.multipathway_fusion.norm.weight": (256,),
        "blocks.4.multipathway_blocks.0.res_blocks.0.branch2.conv_b.weight": (512, 512, 1, 3, 3),
        "blocks.4.multipathway_blocks.1.res_blocks.2.branch2.norm_c.running_var": (256,),
    },
}

# How each release wraps its weights, with the head it carries (which must be ignored).
def _mmaction(state):
    return {"meta": {"config": "model = dict(...)", "epoch": 50},
            "state_dict": {**state, "cls_head.fc_cls.weight": torch.zeros(400, 8),
                           "cls_head.fc_cls.bias": torch.zeros(400)}}


def _pytorch_i3d(state):
    # pytorch-i3d's files predate BN's num_batches_tracked buffers
    return {**{k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
            "logits.conv3d.weight": torch.zeros(400, 1024, 1, 1, 1), "logits.conv3d.bias": torch.zeros(400)}


def _pytorchvideo(state):
    return {"model_state": {**state, "blocks.6.proj.weight": torch.zeros(400, 2304),
                            "blocks.6.proj.bias": torch.zeros(400)}, "epoch": 196}


def _tsm_original(state):
    # mit-han-lab/temporal-shift-module: DataParallel + base_model, shifted conv1 under ".net"
    renamed = {}
    for key, value in state.items():
        if ".conv1." in key and key.startswith("layer"):
            key = key.replace(".conv1.", ".conv1.net.")
        renamed[f"module.base_model.{key}"] = value
    renamed["module.new_fc.weight"] = torch.zeros(400, 512)
    return {"epoch": 25, "arch": "resnet18", "state_dict": renamed}


@pytest.mark.parametrize("name,layout", sorted(KNOWN_KEYS))
def test_release_names_match_the_public_keys_at_full_size(name, layout):
    with torch.device("meta"):  # full-size networks without allocating their weights
        net = BACKBONES[name]("rgb")
    release = release_state_dict(net, layout)
    assert len(release) == len(net.state_dict())  # one distinct release name per tensor
    for key, shape in KNOWN_KEYS[(name, layout)].items():
        assert key in release, key
        assert tuple(release[key].shape) == shape, key


ROUND_TRIPS = [
    ("tsm_tiny", "rgb", "mmaction2", _mmaction),
    ("tsm_r18", "rgb", "mmaction2", _mmaction),
    ("tsm_r50", "flow", "mmaction2", _mmaction),
    ("tsm_r18", "rgb", "torchvision", _tsm_original),
    ("tsm_r18", "rgb", "torchvision", dict),
    ("i3d_r50", "rgb", "mmaction2", _mmaction),
    ("i3d_inception", "rgb", "pytorch_i3d", _pytorch_i3d),
    ("i3d_inception", "flow", "pytorch_i3d", _pytorch_i3d),
    ("slowfast_r50", "rgb", "pytorchvideo", _pytorchvideo),
    ("slowfast_r50", "flow", "native", dict),
]


@pytest.mark.parametrize("name,modality,layout,wrap", ROUND_TRIPS)
def test_checkpoint_round_trip_through_release_layout(tmp_path, name, modality, layout, wrap):
    source = scramble(narrow_net(name, modality, seed=3))
    release = release_state_dict(source, layout)
    known = KNOWN_KEYS.get((name, layout), {})
    assert set(known) <= set(release)
    path = tmp_path / "release.pth"
    torch.save(wrap(release), path)

    x = clip(source)
    expected = outputs(source, x)
    for forced_layout in (None, layout):  # detected from the keys, then named
        fresh = narrow_net(name, modality, seed=4)
        assert not torch.allclose(outputs(fresh, x), expected)
        load_checkpoint(fresh, path, forced_layout)
        assert torch.equal(outputs(fresh, x), expected)


def test_create_backbone_loads_weights_and_returns_eval_mode(tmp_path):
    source = scramble(create_backbone("tsm_tiny", "tg"))
    path = tmp_path / "tiny_tg.pth"
    torch.save(source.state_dict(), path)
    net = create_backbone("tsm_tiny", "tg", weights=path)
    assert not net.training
    x = clip(net)
    assert torch.equal(outputs(net, x), outputs(source, x))


def test_known_keys_cover_every_release_layout():
    covered = {layout for _, layout in KNOWN_KEYS}
    assert covered == {"mmaction2", "torchvision", "pytorch_i3d", "pytorchvideo"}
    assert {name for name, _ in KNOWN_KEYS} >= set(BACKBONES) - {"tsm_tiny"}


def test_layout_detection():
    assert detect_layout(["backbone.conv1.conv.weight"]) == "mmaction2"
    assert detect_layout(["conv1.weight", "bn1.weight"]) == "torchvision"
    assert detect_layout(["Conv3d_1a_7x7.conv3d.weight"]) == "pytorch_i3d"
    assert detect_layout(["blocks.0.multipathway_blocks.0.conv.weight"]) == "pytorchvideo"
    assert detect_layout(["stem.conv.weight"], shared_net("tsm_tiny")) == "native"
    assert detect_layout(["something.else"]) is None


def _tiny_release(tmp_path, edit):
    torch.manual_seed(0)
    state = release_state_dict(create_backbone("tsm_tiny", "rgb"), "mmaction2")
    edit(state)
    path = tmp_path / "tsm_tiny.pth"
    torch.save({"state_dict": state}, path)
    return path


def test_missing_and_unexpected_keys_are_listed_in_one_line(tmp_path):
    def edit(state):
        del state["backbone.layer1.0.conv1.conv.net.weight"]
        state["backbone.extra.weight"] = torch.zeros(3)
    path = _tiny_release(tmp_path, edit)
    with pytest.raises(RgbtadError) as info:
        create_backbone("tsm_tiny", "rgb", weights=path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert "missing keys [1]: backbone.layer1.0.conv1.conv.net.weight;" in message
    assert "unexpected keys [1]: backbone.extra.weight" in message
    assert "cls_head" not in message


def test_many_missing_keys_are_counted_and_truncated(tmp_path):
    def edit(state):
        for key in [k for k in state if k.startswith("backbone.layer4.")]:
            del state[key]
    path = _tiny_release(tmp_path, edit)
    with pytest.raises(RgbtadError, match=r"missing keys \[1[0-9]\]: (backbone\.layer4\.[\w.]+, ){5}\.\.\.$"):
        create_backbone("tsm_tiny", "rgb", weights=path)


def test_shape_mismatch_is_reported(tmp_path):
    def edit(state):
        state["backbone.layer4.0.conv2.conv.weight"] = torch.zeros(128, 128, 1, 1)
    path = _tiny_release(tmp_path, edit)
    expected = (r"shape mismatches \(checkpoint vs model\) \[1\]: "
                r"backbone\.layer4\.0\.conv2\.conv\.weight \[128, 128, 1, 1\] vs \[128, 128, 3, 3\]")
    with pytest.raises(RgbtadError, match=expected):
        create_backbone("tsm_tiny", "rgb", weights=path)


def test_a_checkpoint_of_another_family_is_refused(tmp_path):
    path = tmp_path / "i3d.pt"
    torch.save(release_state_dict(shared_net("i3d_inception"), "pytorch_i3d"), path)
    with pytest.raises(RgbtadError, match=r"pytorch_i3d checkpoint does not fit backbone tsm_r18"):
        create_backbone("tsm_r18", "rgb", weights=path)


def test_rgb_weights_into_flow_network_use_cross_modality_average(tmp_path):
    for name, layout, conv in [("tsm_tiny", "mmaction2", "stem.conv.weight"),
                               ("i3d_inception", "pytorch_i3d", "conv1a.conv.weight")]:
        rgb = scramble(create_backbone(name, "rgb"))
        path = tmp_path / f"{name}_rgb.pth"
        torch.save(release_state_dict(rgb, layout), path)
        flow = create_backbone(name, "flow", weights=path)
        rgb_kernel = rgb.state_dict()[conv]
        flow_kernel = flow.state_dict()[conv]
        assert flow_kernel.shape[1] == 2
        for channel in range(2):
            torch.testing.assert_close(flow_kernel[:, channel], rgb_kernel.mean(dim=1))
        for key, value in rgb.state_dict().items():
            if key != conv:
                assert torch.equal(flow.state_dict()[key], value), key
        # temporal gradients have 3 channels: RGB weights load unchanged
        tg = create_backbone(name, "tg", weights=path)
        assert torch.equal(tg.state_dict()[conv], rgb_kernel)


def test_slowfast_flow_adapts_both_stems(tmp_path):
    rgb = scramble(narrow_net("slowfast_r50", "rgb"))
    path = tmp_path / "sf.pyth"
    torch.save({"model_state": release_state_dict(rgb, "pytorchvideo")}, path)
    flow = load_checkpoint(narrow_net("slowfast_r50", "flow"), path)
    for conv in ("slow_stem.conv.weight", "fast_stem.conv.weight"):
        expected = rgb.state_dict()[conv].mean(dim=1, keepdim=True).expand(-1, 2, -1, -1, -1)
        torch.testing.assert_close(flow.state_dict()[conv], expected)
    assert torch.isfinite(outputs(flow, clip(flow))).all()


def test_flow_checkpoint_does_not_fit_an_rgb_network(tmp_path):
    path = tmp_path / "flow_imagenet.pt"
    torch.save(release_state_dict(create_backbone("i3d_inception", "flow"), "pytorch_i3d"), path)
    with pytest.raises(RgbtadError, match=r"Conv3d_1a_7x7\.conv3d\.weight \[64, 2, 7, 7, 7\] vs \[64, 3, 7, 7, 7\]"):
        create_backbone("i3d_inception", "rgb", weights=path)


def test_imagenet_resnet50_inflates_into_i3d_r50(tmp_path):
    resnet2d = scramble(TSMResNet("resnet50", "rgb", Bottleneck2d, (3, 4, 6, 3), width=8, shift_div=0))
    path = tmp_path / "resnet50.pth"
    torch.save(release_state_dict(resnet2d, "torchvision"), path)
    i3d = load_checkpoint(narrow_net("i3d_r50"), path)
    w2d = resnet2d.state_dict()
    w3d = i3d.state_dict()
    torch.testing.assert_close(w3d["stem.conv.weight"], w2d["stem.conv.weight"].unsqueeze(2).repeat(1, 1, 5, 1, 1) / 5)
    torch.testing.assert_close(w3d["stages.0.0.conv1.weight"], w2d["stages.0.0.conv1.weight"].unsqueeze(2).repeat(1, 1, 3, 1, 1) / 3)
    torch.testing.assert_close(w3d["stages.1.1.conv1.weight"], w2d["stages.1.1.conv1.weight"].unsqueeze(2))
    assert torch.equal(w3d["stages.3.2.bn3.running_var"], w2d["stages.3.2.bn3.running_var"])


_CALLS: list[str] = []


def _record(tag):
    _CALLS.append(tag)
    return tag


class _ForeignMeta:
    """Stands for a logging object of another library inside a checkpoint's metadata."""

    def __reduce__(self):
        return (_record, ("constructed while loading",))


@pytest.mark.parametrize("zipped", [True, False])  # False: the pre-1.6 format of old releases
def test_foreign_objects_in_metadata_are_neither_imported_nor_run(tmp_path, zipped):
    net = scramble(create_backbone("tsm_tiny", "rgb"))
    path = tmp_path / "mmengine_style.pth"
    torch.save({"meta": {"message_hub": _ForeignMeta()},
                "state_dict": release_state_dict(net, "mmaction2")}, path,
               _use_new_zipfile_serialization=zipped)
    _CALLS.clear()
    loaded = create_backbone("tsm_tiny", "rgb", weights=path)
    assert _CALLS == []
    x = clip(net)
    assert torch.equal(outputs(loaded, x), outputs(net, x))


# --- user errors -------------------------------------------------------------------------------

def test_user_errors_are_one_line_rgbtad_errors(tmp_path):
    with pytest.raises(RgbtadError, match="unknown backbone 'resnet9'.*tsm_r18"):
        create_backbone("resnet9", "rgb")
    with pytest.raises(RgbtadError, match="unknown modality 'depth'"):
        create_backbone("tsm_tiny", "depth")
    with pytest.raises(RgbtadError, match="backbone tsm_tiny: bad option"):
        create_backbone("tsm_tiny", "rgb", depth=3)
    with pytest.raises(RgbtadError, match=r"missing\.pth: checkpoint file not found"):
        create_backbone("tsm_tiny", "rgb", weights=tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(RgbtadError, match=r"junk\.pth: cannot read checkpoint"):
        create_backbone("tsm_tiny", "rgb", weights=junk)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(RgbtadError, match=r"empty\.pth: no tensors found"):
        create_backbone("tsm_tiny", "rgb", weights=empty)
    net = shared_net("i3d_r50")
    with pytest.raises(RgbtadError, match="i3d_r50 needs at least 5 frames per snippet, got 4"):
        net(torch.zeros(1, 3, 4, 64, 64))
    with pytest.raises(RgbtadError, match=r"expects clips of shape B x 2 x T x H x W"):
        create_backbone("tsm_tiny", "flow")(torch.zeros(1, 3, 8, 64, 64))


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_folding_batch_norms_keeps_the_outputs(name):
    """Extraction and detection run the folded copy (`fold_batch_norms`): every family's
    batch norms must fold, and the features must not change."""
    torch.manual_seed(0)
    net = create_backbone(name, "rgb")
    for m in net.modules():  # non-trivial statistics, so a wrong fold would show
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    net.eval()
    folded = fold_batch_norms(net)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm3d) for m in net.modules())  # untouched
    x = torch.randn(2, 3, SMALL_T, SMALL_HW, SMALL_HW)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-3, atol=1e-3)  # float rounding only
