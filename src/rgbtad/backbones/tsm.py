"""TSM: 2-D ResNets with a temporal shift in every residual branch.

Frames are folded into the batch (``B*T x C x H x W``) and processed by a plain 2-D
ResNet, except that before the first convolution of each residual block's branch, 1/8
of the channels take their values from the next frame and another 1/8 from the previous
frame (zeros past the clip ends); the shortcut sees the unshifted tensor. This is TSM's
"residual shift" (mmaction2 ``ResNetTSM(shift_place='blockres', shift_div=8)``, the
original code's ``shift_place='blockres'``). The snippet feature is the spatial average
of the last stage, averaged over frames (TSM's average consensus), so it does not
depend on the clip length.

Variants: ``tsm_r18`` (basic blocks [2,2,2,2], 512-d), ``tsm_r50`` (bottlenecks
[3,4,6,3], 2048-d) and ``tsm_tiny`` (basic blocks [1,1,1,1], base width 16, 128-d), a
fast stand-in for tests and CPU benchmarks. Checkpoints: mmaction2 TSM/TSN releases and
torchvision-style state dicts (ImageNet ResNets; the original TSM code's
``module.base_model.*`` files).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import IMAGENET_MEAN, IMAGENET_STD, MMACTION_FLOW_MEAN, MMACTION_FLOW_STD, VideoBackbone, global_pool
from .layers import ConvBN, init_weights, resnet_release_names


def temporal_shift(x: torch.Tensor, num_frames: int, shift_div: int = 8) -> torch.Tensor:
    """Shift channels along time in a ``(N*T) x C x H x W`` tensor of N clips of T frames.

    Channels ``[0, C/div)`` of frame t take the values of frame t+1 (zero for the last
    frame); channels ``[C/div, 2C/div)`` take those of frame t-1 (zero for the first); the
    rest stay. Returns a new tensor.
    """
    nt, c, h, w = x.shape
    if nt % num_frames:
        raise ValueError(f"{nt} frames cannot be split into clips of {num_frames}")
    fold = c // shift_div
    # Slices padded along time and concatenated (ONNX: Slice/Pad/Concat, which ONNX Runtime runs
    # 5x faster than the ScatterND of slice writes, and keeps in int8 in a quantized graph), in
    # the tensor's own memory order so that the result keeps it: a channels-last input is
    # shifted as N*T x H x W x C (otherwise the concatenation comes out NCHW and every block
    # pays two layout conversions, forward and backward).
    channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    y = x.permute(0, 2, 3, 1) if channels_last else x
    dim = 4 if channels_last else 2  # the channel axis of the N x T x ... clips
    clips = y.reshape(nt // num_frames, num_frames, *y.shape[1:])
    ahead = F.pad(clips[:, 1:].narrow(dim, 0, fold), (0, 0, 0, 0, 0, 0, 0, 1))
    behind = F.pad(clips[:, :-1].narrow(dim, fold, fold), (0, 0, 0, 0, 0, 0, 1, 0))
    out = torch.cat([ahead, behind, clips.narrow(dim, 2 * fold, c - 2 * fold)], dim=dim).view(y.shape)
    return out.permute(0, 3, 1, 2) if channels_last else out


class _ShiftBlock(nn.Module):
    """Common part of the two block types: optional shift before the residual branch."""

    expansion = 1

    def __init__(self, shift_div: int) -> None:
        super().__init__()
        self.shift_div = shift_div
        self.shortcut: nn.Module | None = None

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        y = temporal_shift(x, num_frames, self.shift_div) if self.shift_div else x
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.branch(y) + skip, inplace=True)

    def _make_shortcut(self, in_channels: int, out_channels: int, stride: int) -> None:
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ConvBN(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                   nn.BatchNorm2d(out_channels))


class BasicBlock2d(_ShiftBlock):
    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int, shift_div: int) -> None:
        super().__init__(shift_div)
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self._make_shortcut(in_channels, planes, stride)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return self.bn2(self.conv2(x))


class Bottleneck2d(_ShiftBlock):
    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, shift_div: int) -> None:
        super().__init__(shift_div)
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self._make_shortcut(in_channels, planes * 4, stride)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = F.relu(self.bn2(self.conv2(x)), inplace=True)
        return self.bn3(self.conv3(x))


class TSMResNet(VideoBackbone):
    """ResNet with residual temporal shift; frames folded into the batch, averaged at the end."""

    num_frames_hint = 8
    min_frames = 1
    checkpoint_layouts = ("mmaction2", "torchvision")
    input_conv_keys = ("stem.conv.weight",)

    def __init__(self, name: str, modality: str, block: type[_ShiftBlock],
                 blocks_per_stage: tuple[int, ...], width: int = 64, shift_div: int = 8,
                 stem_pool: bool = True) -> None:
        super().__init__(name, modality, (IMAGENET_MEAN, IMAGENET_STD),
                         (MMACTION_FLOW_MEAN, MMACTION_FLOW_STD))
        self.shift_div = shift_div
        self.stem_pool = stem_pool
        self.stem = ConvBN(nn.Conv2d(self.in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width))
        channels = width
        stages = []
        for i, count in enumerate(blocks_per_stage):
            planes = width * 2 ** i
            stage = []
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                stage.append(block(channels, planes, stride, shift_div))
                channels = planes * block.expansion
            stages.append(nn.ModuleList(stage))
        self.stages = nn.ModuleList(stages)
        self.feature_dim = channels
        init_weights(self)

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = clips.shape
        x = clips.transpose(1, 2).reshape(b * t, c, h, w)
        x = F.relu(self.stem(x), inplace=True)
        if self.stem_pool:
            x = F.max_pool2d(x, 3, 2, 1)
        for stage in self.stages:
            for block in stage:
                x = block(x, t)
        return global_pool(x).view(b, t, -1).mean(dim=1)

    def release_names(self, key: str, layout: str) -> list[str]:
        return resnet_release_names(key, layout, shifted=self.shift_div > 0)


def tsm_r18(modality: str = "rgb", shift_div: int = 8) -> TSMResNet:
    """TSM ResNet-18: 512-d features, 8-frame snippets."""
    return TSMResNet("tsm_r18", modality, BasicBlock2d, (2, 2, 2, 2), 64, shift_div)


def tsm_r50(modality: str = "rgb", shift_div: int = 8) -> TSMResNet:
    """TSM ResNet-50: 2048-d features, 8-frame snippets."""
    return TSMResNet("tsm_r50", modality, Bottleneck2d, (3, 4, 6, 3), 64, shift_div)


def tsm_tiny(modality: str = "rgb", shift_div: int = 8, width: int = 16, stem_pool: bool = False) -> TSMResNet:
    """Reduced TSM ResNet (basic blocks [1,1,1,1], base width 16): 128-d, for tests and CPU.

    Made for small frames (64 px on the built-in benchmark), it drops the stem's max-pool by
    default: after a 4x reduction a motion of 1-2 px per frame is a fraction of a feature-map
    cell, too small for the temporal shifts to see, and RGB could not learn motion at all.
    """
    return TSMResNet("tsm_tiny", modality, BasicBlock2d, (1, 1, 1, 1), width, shift_div, stem_pool)
