"""Necks: pyramid features -> the features the heads see (release: ``libs/modeling/necks.py``).

* ``IdentityNeck`` (release ``identity``): a channel LayerNorm per level.
* ``FPNNeck`` (release ``fpn``): 1x1 lateral convs, a nearest-upsampled top-down path,
  a depthwise k3 conv and a LayerNorm per level; convs have a bias only without LayerNorm.

Both can drop the finest levels (``start_level``); the masks of the kept levels pass through.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rgbtad.detection.blocks import ChannelLayerNorm, MaskedConv1d

__all__ = ["FPNNeck", "IdentityNeck"]


class IdentityNeck(nn.Module):
    def __init__(self, in_dims: list[int], dim: int, start_level: int = 0, with_ln: bool = True):
        super().__init__()
        if not 0 <= start_level < len(in_dims):
            raise ValueError(f"neck start level {start_level} outside 0..{len(in_dims) - 1}")
        for level in range(start_level, len(in_dims)):
            if in_dims[level] != dim:
                raise ValueError(f"identity neck needs fpn_dim == embd_dim ({in_dims[level]} != {dim})")
        self.start_level = start_level
        self.norms = nn.ModuleList(
            ChannelLayerNorm(dim) if with_ln else nn.Identity()
            for _ in range(start_level, len(in_dims))
        )

    def forward(self, feats: list[torch.Tensor], masks: list[torch.Tensor]):
        out_feats, out_masks = [], []
        for index, norm in enumerate(self.norms):
            out_feats.append(norm(feats[index + self.start_level]))
            out_masks.append(masks[index + self.start_level])
        return out_feats, out_masks


class FPNNeck(nn.Module):
    def __init__(self, in_dims: list[int], dim: int, scale_factor: int = 2, start_level: int = 0,
                 with_ln: bool = True):
        super().__init__()
        if not 0 <= start_level < len(in_dims):
            raise ValueError(f"neck start level {start_level} outside 0..{len(in_dims) - 1}")
        self.start_level = start_level
        self.scale_factor = scale_factor
        self.lateral = nn.ModuleList()
        self.smooth = nn.ModuleList()
        self.norms = nn.ModuleList()
        for level in range(start_level, len(in_dims)):
            self.lateral.append(MaskedConv1d(in_dims[level], dim, 1, bias=not with_ln))
            self.smooth.append(MaskedConv1d(dim, dim, 3, groups=dim, bias=not with_ln))
            self.norms.append(ChannelLayerNorm(dim) if with_ln else nn.Identity())

    def forward(self, feats: list[torch.Tensor], masks: list[torch.Tensor]):
        start = self.start_level
        laterals = [conv(feats[i + start], masks[i + start])[0] for i, conv in enumerate(self.lateral)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], scale_factor=self.scale_factor, mode="nearest"
            )
        out_feats, out_masks = [], []
        for i, (conv, norm) in enumerate(zip(self.smooth, self.norms)):
            x, mask = conv(laterals[i], masks[i + start])
            out_feats.append(norm(x))
            out_masks.append(mask)
        return out_feats, out_masks
