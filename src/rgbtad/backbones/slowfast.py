"""SlowFast ResNet-50, 8x8 (Feichtenhofer et al.), as built by pytorchvideo's ``slowfast_r50``.

The input clip is the Fast pathway's frames (32 for the 8x8 model). The Slow pathway
sees every alpha-th of them, picked like pytorchvideo/PySlowFast's ``PackPathway``
(``linspace(0, T - 1, T / alpha)``); alpha = 4, which is what the release's lateral
convolutions (temporal stride 4) require for the 8x8 model. The Fast pathway has
beta = 1/8 of the Slow channels.

- stems: Slow conv 1x7x7 (64 ch), Fast conv 5x7x7 (8 ch), both spatial stride 2, BN,
  ReLU, max pool 1x3x3 stride (1, 2, 2).
- four stages of bottlenecks (3, 4, 6, 3 blocks); Slow widths 256/512/1024/2048, Fast
  32/64/128/256; spatial stride 2 on the first block of stages 2-4; no temporal stride.
  The first conv of each block is 3x1x1 in all Fast stages and in Slow stages 3-4,
  1x1x1 in Slow stages 1-2.
- lateral (Fast -> Slow) connections after the stem and after stages 1-3: conv 7x1x1
  with temporal stride alpha, doubling the Fast channels, BN, ReLU, concatenated to
  the Slow tensor (so Slow stages take 64+16, 256+64, 512+128, 1024+256 channels).

Feature: global averages of both pathways concatenated, Slow 2048 then Fast 256 = 2304.
No temporal stride inside either pathway; any clip length works (a multiple of alpha
reproduces the release's frame selection exactly).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from .base import PYTORCHVIDEO_MEAN, PYTORCHVIDEO_STD, VideoBackbone, global_pool
from .layers import Bottleneck3d, ConvBN, init_weights

STAGE_DEPTHS = (3, 4, 6, 3)
SLOW_TEMPORAL_KERNELS = (1, 1, 3, 3)
FAST_TEMPORAL_KERNELS = (3, 3, 3, 3)


def slow_frame_indices(num_frames: int, alpha: int, device: torch.device | None = None) -> torch.Tensor:
    """Indices of the Slow pathway's frames among ``num_frames`` Fast frames."""
    count = max(1, -(-num_frames // alpha))  # ceil: matches the lateral conv's output length
    return torch.linspace(0, num_frames - 1, count, device=device).long()


def _stem(in_channels: int, out_channels: int, temporal_kernel: int) -> ConvBN:
    kt = temporal_kernel
    return ConvBN(nn.Conv3d(in_channels, out_channels, (kt, 7, 7), (1, 2, 2), (kt // 2, 3, 3), bias=False),
                  nn.BatchNorm3d(out_channels))


class SlowFast(VideoBackbone):
    num_frames_hint = 32
    min_frames = 1
    checkpoint_layouts = ("pytorchvideo",)
    input_conv_keys = ("slow_stem.conv.weight", "fast_stem.conv.weight")

    def __init__(self, name: str, modality: str, alpha: int = 4, beta_inv: int = 8,
                 fusion_ratio: int = 2, fusion_kernel: int = 7, width: int = 64) -> None:
        super().__init__(name, modality, (PYTORCHVIDEO_MEAN, PYTORCHVIDEO_STD),
                         (PYTORCHVIDEO_MEAN[:2], PYTORCHVIDEO_STD[:2]))
        self.alpha = alpha
        fast_width = width // beta_inv
        self.slow_stem = _stem(self.in_channels, width, 1)
        self.fast_stem = _stem(self.in_channels, fast_width, 5)

        def lateral(fast_channels: int) -> ConvBN:
            return ConvBN(nn.Conv3d(fast_channels, fast_channels * fusion_ratio, (fusion_kernel, 1, 1),
                                    (alpha, 1, 1), (fusion_kernel // 2, 0, 0), bias=False),
                          nn.BatchNorm3d(fast_channels * fusion_ratio))

        laterals = [lateral(fast_width)]
        slow_in, fast_in = width + fast_width * fusion_ratio, fast_width
        slow_stages, fast_stages = [], []
        for i, depth in enumerate(STAGE_DEPTHS):
            slow_out = width * 4 * 2 ** i
            fast_out = slow_out // beta_inv
            slow_stages.append(self._stage(slow_in, slow_out, depth, SLOW_TEMPORAL_KERNELS[i], i))
            fast_stages.append(self._stage(fast_in, fast_out, depth, FAST_TEMPORAL_KERNELS[i], i))
            if i < len(STAGE_DEPTHS) - 1:
                laterals.append(lateral(fast_out))
            slow_in, fast_in = slow_out + fast_out * fusion_ratio, fast_out
        self.laterals = nn.ModuleList(laterals)
        self.slow_stages = nn.ModuleList(slow_stages)
        self.fast_stages = nn.ModuleList(fast_stages)
        self.feature_dim = slow_out + fast_out
        init_weights(self)

    @staticmethod
    def _stage(in_channels: int, out_channels: int, depth: int, temporal_kernel: int,
               index: int) -> nn.Sequential:
        blocks = []
        for j in range(depth):
            blocks.append(Bottleneck3d(in_channels if j == 0 else out_channels, out_channels // 4,
                                       out_channels, temporal_kernel=temporal_kernel,
                                       spatial_stride=2 if index > 0 and j == 0 else 1))
        return nn.Sequential(*blocks)

    def _fuse(self, slow: torch.Tensor, fast: torch.Tensor, index: int) -> torch.Tensor:
        return torch.cat([slow, F.relu(self.laterals[index](fast), inplace=True)], dim=1)

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        slow = clips.index_select(2, slow_frame_indices(clips.shape[2], self.alpha, clips.device))
        slow = F.max_pool3d(F.relu(self.slow_stem(slow), inplace=True), (1, 3, 3), (1, 2, 2), (0, 1, 1))
        fast = F.max_pool3d(F.relu(self.fast_stem(clips), inplace=True), (1, 3, 3), (1, 2, 2), (0, 1, 1))
        slow = self._fuse(slow, fast, 0)
        for i, (slow_stage, fast_stage) in enumerate(zip(self.slow_stages, self.fast_stages)):
            slow, fast = slow_stage(slow), fast_stage(fast)
            if i + 1 < len(self.laterals):
                slow = self._fuse(slow, fast, i + 1)
        return torch.cat([global_pool(slow), global_pool(fast)], dim=1)

    # pytorchvideo: blocks.0 = stems + first fusion, blocks.1-4 = stages + fusions,
    # blocks.5 = pooling (no parameters), blocks.6 = head (ignored).
    _STEM = re.compile(r"^(slow|fast)_stem\.(conv|bn)\.(\w+)$")
    _LATERAL = re.compile(r"^laterals\.(\d)\.(conv|bn)\.(\w+)$")
    _BLOCK = re.compile(r"^(slow|fast)_stages\.(\d)\.(\d+)\.(conv|bn)(\d)\.(\w+)$")
    _SHORTCUT = re.compile(r"^(slow|fast)_stages\.(\d)\.(\d+)\.shortcut\.(conv|bn)\.(\w+)$")

    def release_names(self, key: str, layout: str) -> list[str]:
        if layout != "pytorchvideo":
            raise ValueError(f"no {layout} names for {self.name}")
        path = {"slow": 0, "fast": 1}
        if m := self._STEM.match(key):
            p, kind, leaf = m.groups()
            return [f"blocks.0.multipathway_blocks.{path[p]}.{'conv' if kind == 'conv' else 'norm'}.{leaf}"]
        if m := self._LATERAL.match(key):
            k, kind, leaf = m.groups()
            part = "conv_fast_to_slow" if kind == "conv" else "norm"
            return [f"blocks.{k}.multipathway_fusion.{part}.{leaf}"]
        if m := self._BLOCK.match(key):
            p, i, j, kind, n, leaf = m.groups()
            letter = "abc"[int(n) - 1]
            part = f"conv_{letter}" if kind == "conv" else f"norm_{letter}"
            return [f"blocks.{int(i) + 1}.multipathway_blocks.{path[p]}.res_blocks.{j}.branch2.{part}.{leaf}"]
        if m := self._SHORTCUT.match(key):
            p, i, j, kind, leaf = m.groups()
            part = "branch1_conv" if kind == "conv" else "branch1_norm"
            return [f"blocks.{int(i) + 1}.multipathway_blocks.{path[p]}.res_blocks.{j}.{part}.{leaf}"]
        raise KeyError(f"no pytorchvideo name for parameter {key!r}")


def slowfast_r50(modality: str = "rgb") -> SlowFast:
    """SlowFast-R50 8x8 (pytorchvideo): 2304-d features (Slow 2048 + Fast 256), 32-frame snippets."""
    return SlowFast("slowfast_r50", modality)
