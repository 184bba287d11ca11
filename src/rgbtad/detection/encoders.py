"""Projection (embedding) and encoders: features -> pyramid of features and masks.

The release (``libs/modeling/backbones.py``) keeps the embedding convs inside its backbone;
here the projection is its own module (``ConvEmbedding``), followed by one of two encoders:

* ``TransformerEncoder`` (release: ``convTransformer``): ``arch[1]`` stem blocks at stride 1,
  then ``arch[2]`` blocks that each halve the length; one pyramid level per stem output and
  per downsampling block.
* ``ConvEncoder`` (release: ``conv``): the same layout with residual conv blocks; with
  ``separable`` (backbone ``conv_dw``, C2MS-Net's compressed student) every k3 conv of the
  blocks, and of the projection before them, is depthwise-separable (`SeparableConv1d`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rgbtad.detection.attention import TransformerBlock
from rgbtad.detection.blocks import ChannelLayerNorm, MaskedConv1d, ResConvBlock, SeparableConv1d, sinusoid_table

__all__ = ["ConvEmbedding", "ConvEncoder", "TransformerEncoder", "zero_conv_biases"]


def zero_conv_biases(module: nn.Module) -> None:
    """Set every Conv1d / Linear bias below ``module`` to 0 (the release's backbone init)."""
    for sub in module.modules():
        if isinstance(sub, (nn.Conv1d, nn.Linear)) and sub.bias is not None:
            nn.init.zeros_(sub.bias)


class ConvEmbedding(nn.Module):
    """``num_layers`` x (masked conv -> channel LayerNorm -> ReLU), then an optional
    sinusoidal absolute position encoding (scaled by 1/sqrt(dim), added on valid steps).
    ``separable``: depthwise-separable convs. ``input_noise``: std of the Gaussian noise added
    to every input step in training mode (TriDet's release; it belongs to the projection's
    input so that a student running the projection alone gets it too)."""

    def __init__(self, in_dim: int, dim: int, num_layers: int = 2, kernel_size: int = 3,
                 with_ln: bool = True, max_len: int = 2304, abs_pe: bool = False,
                 separable: bool = False, input_noise: float = 0.0):
        super().__init__()
        self.max_len = max_len
        self.input_noise = input_noise
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        conv = SeparableConv1d if separable else MaskedConv1d
        for index in range(num_layers):
            self.convs.append(conv(in_dim if index == 0 else dim, dim, kernel_size, bias=not with_ln))
            self.norms.append(ChannelLayerNorm(dim) if with_ln else nn.Identity())
        self.act = nn.ReLU()
        self.abs_pe = abs_pe
        if abs_pe:
            self.register_buffer("pos_table", sinusoid_table(max_len, dim) / (dim ** 0.5),
                                 persistent=False)
        else:
            self.pos_table = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = x.shape[-1]
        if self.training and self.input_noise > 0:
            x = x + torch.randn_like(x) * self.input_noise
        for conv, norm in zip(self.convs, self.norms):
            x, mask = conv(x, mask)
            x = self.act(norm(x))
        if self.pos_table is not None:
            table = self.pos_table
            if self.training:
                if length > self.max_len:
                    raise ValueError(f"training input of length {length} exceeds max_seq_len {self.max_len}")
            elif length >= self.max_len:
                # inference on longer inputs: stretch the table (release behaviour)
                table = F.interpolate(table, length, mode="linear", align_corners=False)
            x = x + table[:, :, :length] * mask.to(x.dtype)
        return x, mask


class _PyramidEncoder(nn.Module):
    """Stem blocks at stride 1, then one downsampling block per level; returns the feature
    pyramid (stem output first) and its masks. Subclasses fill `stem` and `levels`."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        for block in self.stem:
            x, mask = block(x, mask)
        feats, masks = [x], [mask]
        for block in self.levels:
            x, mask = block(x, mask)
            feats.append(x)
            masks.append(mask)
        return feats, masks


class TransformerEncoder(_PyramidEncoder):
    """Stem transformer blocks at stride 1, then one downsampling block per extra level."""

    def __init__(self, dim: int, num_heads: int, num_stem: int, num_levels: int,
                 windows: list[int], scale_factor: int = 2, dropout: float = 0.0,
                 droppath: float = 0.0, rel_pos: bool = False):
        super().__init__()
        if len(windows) != num_levels + 1:
            raise ValueError(f"need {num_levels + 1} window sizes, got {len(windows)}")
        self.stem = nn.ModuleList(
            TransformerBlock(dim, num_heads, stride=1, window=windows[0], dropout=dropout,
                             droppath=droppath, rel_pos=rel_pos)
            for _ in range(num_stem)
        )
        self.levels = nn.ModuleList(
            TransformerBlock(dim, num_heads, stride=scale_factor, window=windows[1 + index],
                             dropout=dropout, droppath=droppath, rel_pos=rel_pos)
            for index in range(num_levels)
        )


class ConvEncoder(_PyramidEncoder):
    """Residual conv blocks: stem at stride 1, then one downsampling block per level
    (``separable``: depthwise-separable convs)."""

    def __init__(self, dim: int, num_stem: int, num_levels: int, scale_factor: int = 2,
                 separable: bool = False):
        super().__init__()
        self.stem = nn.ModuleList(ResConvBlock(dim, 3, 1, separable=separable) for _ in range(num_stem))
        self.levels = nn.ModuleList(ResConvBlock(dim, 3, scale_factor, separable=separable)
                                    for _ in range(num_levels))
