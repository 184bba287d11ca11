"""Masked 1-D building blocks of the ActionFormer detector.

Every block takes features ``x`` of shape ``B x C x T`` and a boolean mask of shape
``B x 1 x T`` (True on real time steps) and returns the new features with their mask.

The arithmetic deliberately follows the ActionFormer release
(happyharrycn/actionformer_release, ``libs/modeling/blocks.py``) operation by operation, so
that imported official weights give the release's numbers:

* masked convolutions multiply the convolution output (never the input) by the mask, and
  strided ones downsample the mask by nearest-neighbour interpolation of the float mask;
* the channel LayerNorm is written out (mean, centred mean of squares, divide) instead of
  calling ``F.layer_norm``, which rounds differently;
* drop-path with a per-channel scale (initialised at 1e-4) that only exists when drop-path
  is enabled.

Conv attention and the transformer block are in `rgbtad.detection.attention`.

Modules are created in the same order as in the release, so that under the same seed the
random initialisation consumes the generator in the same sequence.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ChannelLayerNorm",
    "LayerScaleDropPath",
    "MaskedConv1d",
    "ResConvBlock",
    "Scale",
    "SeparableConv1d",
    "drop_path",
    "downsample_mask",
    "sinusoid_table",
]


def downsample_mask(mask: torch.Tensor, length: int, dtype: torch.dtype) -> torch.Tensor:
    """Nearest-neighbour resize of a ``B x 1 x T`` mask to ``length`` steps, as floats.

    Replicates the release: ``F.interpolate(mask.float(), size, mode='nearest')``, which
    keeps step ``floor(i * T / length)``, i.e. every ``stride``-th step starting at 0.
    """
    return F.interpolate(mask.to(dtype), size=length, mode="nearest")


class MaskedConv1d(nn.Conv1d):
    """``nn.Conv1d`` with 'same' padding whose output is multiplied by the (resized) mask.

    The bias, when present, starts at zero (release: ``MaskedConv1D``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = True):
        if kernel_size % 2 != 1:
            raise ValueError("MaskedConv1d needs an odd kernel size")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=kernel_size // 2, groups=groups, bias=bias)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = x.shape[-1]
        if length % self.stride[0] != 0:
            raise ValueError(f"sequence length {length} is not divisible by stride {self.stride[0]}")
        out = super().forward(x)
        if self.stride[0] > 1:
            out_mask = downsample_mask(mask, out.shape[-1], x.dtype)
        else:
            out_mask = mask.to(x.dtype)
        return out * out_mask.detach(), out_mask.bool()


class SeparableConv1d(nn.Module):
    """Depthwise-separable `MaskedConv1d` (C2MS's ``conv_dw``): a depthwise conv with the
    kernel and stride, then a pointwise 1x1 conv to ``out_channels`` (with the bias), no
    activation in between. Same call and masking as `MaskedConv1d`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 bias: bool = True):
        super().__init__()
        self.depthwise = MaskedConv1d(in_channels, in_channels, kernel_size, stride=stride,
                                      groups=in_channels, bias=False)
        self.pointwise = MaskedConv1d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = self.depthwise(x, mask)
        return self.pointwise(x, mask)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of ``B x C x T`` features (eps 1e-5, affine).

    Parameters are stored as ``[C]``; the release stores ``[1, C, 1]`` (the importer reshapes).
    """

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Written out exactly as the release does; F.layer_norm rounds differently.
        mean = torch.mean(x, dim=1, keepdim=True)
        centred = x - mean
        var = torch.mean(centred ** 2, dim=1, keepdim=True)
        out = centred / torch.sqrt(var + self.eps)
        out = out * self.weight.view(1, -1, 1)
        return out + self.bias.view(1, -1, 1)


class Scale(nn.Module):
    """A learnable scalar multiplier (one per pyramid level on the regression outputs)."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(init_value, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.value


def drop_path(x: torch.Tensor, prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples with probability ``prob``, rescale the rest."""
    if prob == 0.0 or not training:
        return x
    keep = 1.0 - prob
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    keep_mask = torch.floor(keep + torch.rand(shape, dtype=x.dtype, device=x.device))
    return x.div(keep) * keep_mask


class LayerScaleDropPath(nn.Module):
    """Per-channel layer scale (init 1e-4) followed by drop-path (release: AffineDropPath)."""

    def __init__(self, num_channels: int, prob: float, init_value: float = 1e-4):
        super().__init__()
        self.gamma = nn.Parameter(init_value * torch.ones(num_channels))
        self.prob = prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(self.gamma.view(1, -1, 1) * x, self.prob, self.training)


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """Sinusoidal position table of shape ``1 x dim x length`` (float64 maths, float32 out)."""
    positions = np.arange(length, dtype=np.float64)[:, None]
    rates = np.power(10000.0, 2 * (np.arange(dim) // 2) / dim)[None, :]
    table = positions / rates
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.from_numpy(table.astype(np.float32)).unsqueeze(0).transpose(1, 2)


class ResConvBlock(nn.Module):
    """ResNet basic block on masked 1-D convs (release: ConvBlock, expansion 2).

    conv k3 (strided) -> ReLU -> conv k3, plus the input (through a strided 1x1 conv when
    downsampling), then ReLU. ``separable``: both k3 convs depthwise-separable.
    """

    def __init__(self, dim: int, kernel_size: int = 3, stride: int = 1, expansion: int = 2,
                 separable: bool = False):
        super().__init__()
        width = dim * expansion
        conv = SeparableConv1d if separable else MaskedConv1d
        self.conv1 = conv(dim, width, kernel_size, stride=stride)
        self.conv2 = conv(width, dim, kernel_size)
        self.shortcut = MaskedConv1d(dim, dim, 1, stride=stride) if stride > 1 else None
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, out_mask = self.conv1(x, mask)
        out = self.act(out)
        out, out_mask = self.conv2(out, out_mask)
        identity = self.shortcut(x, mask)[0] if self.shortcut is not None else x
        out = out + identity
        return self.act(out), out_mask
