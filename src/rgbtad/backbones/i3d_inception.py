"""Inception-v1 I3D (Carreira & Zisserman), as ported to PyTorch by pytorch-i3d.

This is the network behind the widely used THUMOS14 two-stream features (16-frame
snippets, 1024-d per stream, taken before the logits). Every convolution and pooling
uses TensorFlow "SAME" padding computed from the input size, so any clip length and
frame size work and the output keeps ``ceil(size / stride)``; convolutions have no bias
and batch norm uses eps 1e-3. Layout:

    conv 7x7x7 /2 (64) - maxpool 1x3x3 /(1,2,2) - conv 1x1x1 (64) - conv 3x3x3 (192)
    - maxpool 1x3x3 /(1,2,2) - mixed 3b, 3c - maxpool 3x3x3 /2
    - mixed 4b, 4c, 4d, 4e, 4f - maxpool 2x2x2 /2 - mixed 5b, 5c (1024 channels)

An inception block has four branches concatenated: 1x1x1; 1x1x1 then 3x3x3; 1x1x1 then
3x3x3; 3x3x3 max pool (stride 1) then 1x1x1. Total temporal stride 8 (16 frames -> 2),
spatial 32 (224 -> 7). The feature is the global average of mixed 5c; for a 16 x 224 x
224 clip this equals pytorch-i3d's ``extract_features`` (average pool 2x7x7).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import SYMMETRIC_MEAN, SYMMETRIC_STD, VideoBackbone, global_pool
from .layers import init_weights

Triple = tuple[int, int, int]


def same_padding(x: torch.Tensor, kernel: Triple, stride: Triple) -> torch.Tensor:
    """Zero-pad the last three axes so that a strided window gives ``ceil(size / stride)``."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[-3:]), reversed(kernel), reversed(stride)):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3d(nn.Module):
    """Conv (no bias) + BN (eps 1e-3) + ReLU with "SAME" padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Triple = (1, 1, 1),
                 stride: Triple = (1, 1, 1)) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel != (1, 1, 1) or self.stride != (1, 1, 1):
            x = same_padding(x, self.kernel, self.stride)
        return F.relu(self.bn(self.conv(x)), inplace=True)


def same_max_pool(x: torch.Tensor, kernel: Triple, stride: Triple) -> torch.Tensor:
    return F.max_pool3d(same_padding(x, kernel, stride), kernel, stride)


class InceptionBlock(nn.Module):
    """Four parallel branches, concatenated along channels.

    ``widths`` = (branch0, branch1 reduce, branch1, branch2 reduce, branch2, branch3).
    """

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        w0, w1r, w1, w2r, w2, w3 = widths
        self.branch0 = Unit3d(in_channels, w0)
        self.branch1_reduce = Unit3d(in_channels, w1r)
        self.branch1 = Unit3d(w1r, w1, (3, 3, 3))
        self.branch2_reduce = Unit3d(in_channels, w2r)
        self.branch2 = Unit3d(w2r, w2, (3, 3, 3))
        self.branch3 = Unit3d(in_channels, w3)
        self.out_channels = w0 + w1 + w2 + w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch0(x),
            self.branch1(self.branch1_reduce(x)),
            self.branch2(self.branch2_reduce(x)),
            self.branch3(same_max_pool(x, (3, 3, 3), (1, 1, 1))),
        ], dim=1)


# (name, branch widths) in order; a max pool precedes 4b and 5b.
INCEPTION_BLOCKS = (
    ("3b", (64, 96, 128, 16, 32, 32)),
    ("3c", (128, 128, 192, 32, 96, 64)),
    ("4b", (192, 96, 208, 16, 48, 64)),
    ("4c", (160, 112, 224, 24, 64, 64)),
    ("4d", (128, 128, 256, 24, 64, 64)),
    ("4e", (112, 144, 288, 32, 64, 64)),
    ("4f", (256, 160, 320, 32, 128, 128)),
    ("5b", (256, 160, 320, 32, 128, 128)),
    ("5c", (384, 192, 384, 48, 128, 128)),
)
_POOL_BEFORE = {"4b": ((3, 3, 3), (2, 2, 2)), "5b": ((2, 2, 2), (2, 2, 2))}

# pytorch-i3d names: our unit -> theirs
_STEM_NAMES = {"conv1a": "Conv3d_1a_7x7", "conv2b": "Conv3d_2b_1x1", "conv2c": "Conv3d_2c_3x3"}
_BRANCH_NAMES = {"branch0": "b0", "branch1_reduce": "b1a", "branch1": "b1b",
                 "branch2_reduce": "b2a", "branch2": "b2b", "branch3": "b3b"}


class InceptionI3d(VideoBackbone):
    num_frames_hint = 16
    min_frames = 1
    checkpoint_layouts = ("pytorch_i3d",)
    input_conv_keys = ("conv1a.conv.weight",)

    def __init__(self, name: str, modality: str) -> None:
        super().__init__(name, modality, (SYMMETRIC_MEAN, SYMMETRIC_STD),
                         (SYMMETRIC_MEAN[:2], SYMMETRIC_STD[:2]))
        self.conv1a = Unit3d(self.in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.conv2b = Unit3d(64, 64)
        self.conv2c = Unit3d(64, 192, (3, 3, 3))
        self.mixed = nn.ModuleDict()
        channels = 192
        for block_name, widths in INCEPTION_BLOCKS:
            block = InceptionBlock(channels, widths)
            self.mixed[block_name] = block
            channels = block.out_channels
        self.feature_dim = channels
        init_weights(self)

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        x = self.conv1a(clips)
        x = same_max_pool(x, (1, 3, 3), (1, 2, 2))
        x = self.conv2c(self.conv2b(x))
        x = same_max_pool(x, (1, 3, 3), (1, 2, 2))
        for block_name, block in self.mixed.items():
            if block_name in _POOL_BEFORE:
                x = same_max_pool(x, *_POOL_BEFORE[block_name])
            x = block(x)
        return global_pool(x)

    def release_names(self, key: str, layout: str) -> list[str]:
        if layout != "pytorch_i3d":
            raise ValueError(f"no {layout} names for {self.name}")
        parts = key.split(".")
        if parts[0] in _STEM_NAMES:
            unit, rest = _STEM_NAMES[parts[0]], parts[1:]
        elif parts[0] == "mixed":
            unit, rest = f"Mixed_{parts[1]}.{_BRANCH_NAMES[parts[2]]}", parts[3:]
        else:
            raise KeyError(f"no pytorch_i3d name for parameter {key!r}")
        layer = "conv3d" if rest[0] == "conv" else "bn"
        return [".".join([unit, layer, *rest[1:]])]


def i3d_inception(modality: str = "rgb") -> InceptionI3d:
    """Inception-v1 I3D (pytorch-i3d): 1024-d features, 16-frame snippets."""
    return InceptionI3d("i3d_inception", modality)
