"""Classification and regression heads, shared across pyramid levels.

Release: ``PtTransformerClsHead`` / ``PtTransformerRegHead`` in ``libs/modeling/meta_archs.py``.
Each head is ``num_layers - 1`` x (masked conv k -> LayerNorm -> ReLU) followed by a masked
conv to the outputs. The classifier's bias starts at the prior -log((1 - p) / p); classes
listed in ``empty_classes`` start at the prior for p = 1e-6 (they have no training data).
Regression outputs are multiplied by a learnable per-level ``Scale`` and passed through ReLU:
distances to the start and end in units of the level's stride.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rgbtad.detection.blocks import ChannelLayerNorm, MaskedConv1d, Scale

__all__ = ["ClsHead", "RegHead"]


def _trunk(in_dim: int, dim: int, num_layers: int, kernel_size: int, with_ln: bool):
    convs, norms = nn.ModuleList(), nn.ModuleList()
    for index in range(num_layers - 1):
        convs.append(MaskedConv1d(in_dim if index == 0 else dim, dim, kernel_size, bias=not with_ln))
        norms.append(ChannelLayerNorm(dim) if with_ln else nn.Identity())
    return convs, norms


class ClsHead(nn.Module):
    def __init__(self, in_dim: int, dim: int, num_classes: int, num_layers: int = 3,
                 kernel_size: int = 3, with_ln: bool = True, prior_prob: float = 0.01,
                 empty_classes: list[int] | tuple[int, ...] = ()):
        super().__init__()
        self.trunk, self.trunk_norms = _trunk(in_dim, dim, num_layers, kernel_size, with_ln)
        self.act = nn.ReLU()
        self.logits = MaskedConv1d(dim, num_classes, kernel_size)
        with torch.no_grad():
            if prior_prob > 0:
                self.logits.bias.fill_(-math.log((1 - prior_prob) / prior_prob))
            for cls in empty_classes:
                if not 0 <= cls < num_classes:
                    raise ValueError(f"empty class {cls} outside 0..{num_classes - 1}")
                self.logits.bias[cls] = -math.log((1 - 1e-6) / 1e-6)

    def forward(self, feats: list[torch.Tensor], masks: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs = []
        for x, mask in zip(feats, masks):
            for conv, norm in zip(self.trunk, self.trunk_norms):
                x = self.act(norm(conv(x, mask)[0]))
            outputs.append(self.logits(x, mask)[0])
        return outputs


class RegHead(nn.Module):
    """``num_outputs``: 2 (start / end distances); TriDet's Trident head regresses
    ``2 (num_bins + 1)`` centre-offset logits with the same head."""

    def __init__(self, in_dim: int, dim: int, num_levels: int, num_layers: int = 3,
                 kernel_size: int = 3, with_ln: bool = True, num_outputs: int = 2):
        super().__init__()
        self.trunk, self.trunk_norms = _trunk(in_dim, dim, num_layers, kernel_size, with_ln)
        self.act = nn.ReLU()
        self.level_scales = nn.ModuleList(Scale() for _ in range(num_levels))
        self.offsets = MaskedConv1d(dim, num_outputs, kernel_size)

    def forward(self, feats: list[torch.Tensor], masks: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(feats) != len(self.level_scales):
            raise ValueError(f"regression head built for {len(self.level_scales)} levels, got {len(feats)}")
        outputs = []
        for level, (x, mask) in enumerate(zip(feats, masks)):
            for conv, norm in zip(self.trunk, self.trunk_norms):
                x = self.act(norm(conv(x, mask)[0]))
            outputs.append(F.relu(self.level_scales[level](self.offsets(x, mask)[0])))
        return outputs
