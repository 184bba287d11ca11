"""I3D ResNet-50: mmaction2's ``i3d_r50`` (``ResNet3d`` with ``inflate_style='3x1x1'``).

Layout (input ``T x H x W``, e.g. 32 x 224 x 224):

- stem: conv 5x7x7, stride (2, 2, 2), padding (2, 3, 3), 64 channels; BN; ReLU;
  max pool 1x3x3, stride (2, 2, 2), padding (0, 1, 1)         -> T/4 x H/4
- stage 1: 3 bottlenecks (64 -> 256), then max pool 2x1x1 stride (2, 1, 1) ("pool2")
                                                               -> T/8 x H/4
- stages 2-4: 4, 6, 3 bottlenecks (512, 1024, 2048 channels), spatial stride 2 on the
  first block's 3x3 conv, no temporal stride                   -> T/8 x H/32
- which blocks are inflated (first conv 3x1x1 instead of 1x1x1):
  ((1,1,1), (1,0,1,0), (1,0,1,0,1,0), (0,1,0)); every 3x3 conv is 1x3x3.

Total temporal stride 8; the smallest clip is 5 frames (the 2-frame pool after stage 1
needs two frames left). Feature: global average of the last stage, 2048-d. The snippet
length hint is 16 frames, the usual I3D snippet for detection features; mmaction2
trained the Kinetics release on 32-frame clips (``32x2x1``), which work as well.
Checkpoints: mmaction2 (``backbone.*``), and torchvision ImageNet ResNet-50 state dicts,
whose 2-D kernels are inflated (repeated over time and divided by the temporal size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import IMAGENET_MEAN, IMAGENET_STD, MMACTION_FLOW_MEAN, MMACTION_FLOW_STD, VideoBackbone, global_pool
from .layers import Bottleneck3d, ConvBN, init_weights, resnet_release_names

I3D_R50_INFLATE = ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))


class I3DResNet(VideoBackbone):
    num_frames_hint = 16
    min_frames = 5
    checkpoint_layouts = ("mmaction2", "torchvision")
    input_conv_keys = ("stem.conv.weight",)

    def __init__(self, name: str, modality: str,
                 inflate: tuple[tuple[int, ...], ...] = I3D_R50_INFLATE, width: int = 64) -> None:
        super().__init__(name, modality, (IMAGENET_MEAN, IMAGENET_STD),
                         (MMACTION_FLOW_MEAN, MMACTION_FLOW_STD))
        self.stem = ConvBN(nn.Conv3d(self.in_channels, width, (5, 7, 7), (2, 2, 2), (2, 3, 3), bias=False),
                           nn.BatchNorm3d(width))
        channels = width
        stages = []
        for i, flags in enumerate(inflate):
            inner = width * 2 ** i
            stage = []
            for j, flag in enumerate(flags):
                stage.append(Bottleneck3d(channels, inner, inner * 4, temporal_kernel=3 if flag else 1,
                                          spatial_stride=2 if i > 0 and j == 0 else 1))
                channels = inner * 4
            stages.append(nn.Sequential(*stage))
        self.stages = nn.ModuleList(stages)
        self.feature_dim = channels
        init_weights(self)

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(clips), inplace=True)
        x = F.max_pool3d(x, (1, 3, 3), (2, 2, 2), (0, 1, 1))
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i == 0:
                x = F.max_pool3d(x, (2, 1, 1), (2, 1, 1))
        return global_pool(x)

    def release_names(self, key: str, layout: str) -> list[str]:
        return resnet_release_names(key, layout)


def i3d_r50(modality: str = "rgb") -> I3DResNet:
    """I3D ResNet-50 (mmaction2 config): 2048-d features, 16-frame snippets (5 at least)."""
    return I3DResNet("i3d_r50", modality)
