"""Pieces shared by several families: conv + BN pairs, the 3-D bottleneck, init, and the
ResNet key names in the mmaction2 and torchvision layouts."""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn


class ConvBN(nn.Module):
    """A convolution followed by batch norm (no activation): stems, shortcuts, laterals."""

    def __init__(self, conv: nn.Module, bn: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """An inference copy of `module` with every batch norm folded into the convolution it
    follows (``conv``/``bn`` and ``convK``/``bnK`` children, the naming of every family here):
    one pass over the activations less per convolution, same outputs up to rounding. The
    copy is in eval mode; `module` is unchanged."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(module).eval()
    for parent in folded.modules():
        children = dict(parent.named_children())
        for name, conv in children.items():
            if not (name.startswith("conv") and isinstance(conv, (nn.Conv2d, nn.Conv3d))):
                continue
            bn_name = "bn" + name[len("conv"):]
            bn = children.get(bn_name)
            if isinstance(bn, (nn.BatchNorm2d, nn.BatchNorm3d)):
                setattr(parent, name, fuse_conv_bn_eval(conv, bn))
                setattr(parent, bn_name, nn.Identity())
    return folded


def channels_last_if_2d(module: nn.Module) -> nn.Module:
    """`module` in the channels-last layout when its convolutions are all 2-D (TSM), the layout
    oneDNN prefers on CPU (tsm_tiny: 1.1x faster per training step, TSM-R18 inference 1.3-1.5x);
    a module with 3-D convolutions is returned as it is. Converts in place, like ``.to()``."""
    if any(isinstance(m, nn.Conv3d) for m in module.modules()):
        return module
    return module.to(memory_format=torch.channels_last)


def init_weights(module: nn.Module) -> None:
    """He init for convolutions, unit scale and zero shift for batch norms."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Bottleneck3d(nn.Module):
    """ResNet bottleneck for video: ``kt x 1 x 1`` reduce, ``1 x 3 x 3`` (strided), ``1 x 1 x 1``
    expand, plus a projection shortcut when the shape changes.

    This is the block of mmaction2's I3D-R50 (``inflate_style='3x1x1'``, pytorch style:
    the spatial stride sits on the 3x3 conv) and of pytorchvideo's SlowFast pathways; the
    only per-block choice is the temporal kernel ``kt`` of the first conv (1 or 3).
    """

    def __init__(self, in_channels: int, inner: int, out_channels: int, *,
                 temporal_kernel: int = 1, spatial_stride: int = 1) -> None:
        super().__init__()
        kt = temporal_kernel
        self.conv1 = nn.Conv3d(in_channels, inner, (kt, 1, 1), padding=(kt // 2, 0, 0), bias=False)
        self.bn1 = nn.BatchNorm3d(inner)
        self.conv2 = nn.Conv3d(inner, inner, (1, 3, 3), stride=(1, spatial_stride, spatial_stride),
                               padding=(0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(inner)
        self.conv3 = nn.Conv3d(inner, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out_channels)
        self.shortcut = None
        if in_channels != out_channels or spatial_stride != 1:
            self.shortcut = ConvBN(
                nn.Conv3d(in_channels, out_channels, 1, stride=(1, spatial_stride, spatial_stride),
                          bias=False),
                nn.BatchNorm3d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = F.relu(self.bn2(self.conv2(y)), inplace=True)
        y = self.bn3(self.conv3(y))
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(y + skip, inplace=True)


# --- ResNet key names ---------------------------------------------------------------------
# Our ResNets (TSM, I3D-R50) name their parameters
#   stem.conv.*, stem.bn.*, stages.{i}.{j}.conv{k}.*, stages.{i}.{j}.bn{k}.*,
#   stages.{i}.{j}.shortcut.conv.*, stages.{i}.{j}.shortcut.bn.*
# mmaction2 (ConvModule everywhere) names them
#   conv1.conv.*, conv1.bn.*, layer{i+1}.{j}.conv{k}.conv.*, layer{i+1}.{j}.conv{k}.bn.*,
#   layer{i+1}.{j}.downsample.conv.*, layer{i+1}.{j}.downsample.bn.*
#   and ResNetTSM ('blockres') wraps each block's conv1.conv in a TemporalShift whose
#   ``net`` is the conv: layer{i+1}.{j}.conv1.conv.net.weight
# torchvision names them
#   conv1.*, bn1.*, layer{i+1}.{j}.conv{k}.*, layer{i+1}.{j}.bn{k}.*,
#   layer{i+1}.{j}.downsample.0.*, layer{i+1}.{j}.downsample.1.*
#   and the original TSM code (mit-han-lab) wraps conv1 the same way: layer1.0.conv1.net.weight

_STEM = re.compile(r"^stem\.(conv|bn)\.(\w+)$")
_BLOCK = re.compile(r"^stages\.(\d+)\.(\d+)\.(conv|bn)(\d)\.(\w+)$")
_SHORTCUT = re.compile(r"^stages\.(\d+)\.(\d+)\.shortcut\.(conv|bn)\.(\w+)$")


def resnet_release_names(key: str, layout: str, *, shifted: bool = False) -> list[str]:
    """Names of a ResNet key in ``layout`` ("mmaction2" or "torchvision"), canonical first.

    ``shifted``: the network shifts channels before each block's conv1, so a release made
    by TSM code stores that conv under an extra ``.net``; the plain name is accepted too
    (a TSN or ImageNet checkpoint has no shift wrapper).
    """
    if layout not in ("mmaction2", "torchvision"):
        raise ValueError(f"no ResNet names for layout {layout!r}")
    mm = layout == "mmaction2"
    if m := _STEM.match(key):
        kind, leaf = m.groups()
        return [f"conv1.{kind}.{leaf}"] if mm else [f"{'conv1' if kind == 'conv' else 'bn1'}.{leaf}"]
    if m := _BLOCK.match(key):
        i, j, kind, k, leaf = m.groups()
        block = f"layer{int(i) + 1}.{j}"
        if kind == "bn":
            return [f"{block}.conv{k}.bn.{leaf}"] if mm else [f"{block}.bn{k}.{leaf}"]
        conv = f"{block}.conv{k}.conv" if mm else f"{block}.conv{k}"
        if shifted and k == "1":
            wrapped = f"{conv}.net.{leaf}"
            return [wrapped, f"{conv}.{leaf}"] if mm else [f"{conv}.{leaf}", wrapped]
        return [f"{conv}.{leaf}"]
    if m := _SHORTCUT.match(key):
        i, j, kind, leaf = m.groups()
        part = kind if mm else ("0" if kind == "conv" else "1")
        return [f"layer{int(i) + 1}.{j}.downsample.{part}.{leaf}"]
    raise KeyError(f"no {layout} name for parameter {key!r}")
