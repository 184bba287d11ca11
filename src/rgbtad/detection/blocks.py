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
* local window attention uses the release's sliding-chunk scheme (chunks of 2w keys that
  overlap by w, see ``banded_scores`` / ``banded_context``), masks padded keys with -1e4 and
  out-of-range window slots with -inf, and zeroes the attention rows of padded queries;
* pre-LN transformer blocks with a MaxPool skip when downsampling and drop-path with a
  per-channel scale (initialised at 1e-4) that only exists when drop-path is enabled.

Modules are created in the same order as in the release, so that under the same seed the
random initialisation consumes the generator in the same sequence.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ChannelLayerNorm",
    "ConvAttention",
    "LayerScaleDropPath",
    "MaskedConv1d",
    "ResConvBlock",
    "Scale",
    "SeparableConv1d",
    "TransformerBlock",
    "banded_context",
    "banded_scores",
    "drop_path",
    "downsample_mask",
    "sinusoid_table",
]

# Score offset given to padded keys inside a local window (the release uses -1e4, not -inf,
# so that a window without any valid key still has a finite softmax).
MASKED_KEY_OFFSET = -1e4


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


# --------------------------------------------------------------------------------------
# Local (banded) attention.
#
# A query at step t attends to keys t-w .. t+w (window 2w+1). Scores are laid out as a band
# ``[BH, T, 2w+1]`` where slot j holds key t+j-w. Following the release (which adapts the
# Longformer kernel), dot products are computed chunk-wise: the sequence is cut into chunks
# of 2w steps overlapping by w, one small matmul per chunk, and the band is read out of the
# chunk products; the weighted sum of values is one matmul per block of w queries against
# the 3w keys around it. The matmuls have the release's shapes and operand strides, so
# that they round the same way (the semantics are checked against a dense oracle in the
# tests; bit-identity with the release could not be checked without its code).
# --------------------------------------------------------------------------------------

_BAND_INDEX_CACHE: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor]] = {}


def _band_index(length: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices into the chunk products for every (query, window slot), and a mask of
    the slots whose key lies outside ``[0, length)``."""
    key = (length, w, str(device))
    cached = _BAND_INDEX_CACHE.get(key)
    if cached is not None:
        return cached
    n_chunks = length // w - 1
    t = torch.arange(length)[:, None]
    j = torch.arange(2 * w + 1)[None, :]
    key_pos = t + j - w
    outside = (key_pos < 0) | (key_pos >= length)
    # Slots at or right of the diagonal come from the chunk that starts at the query's
    # block (the last block uses the previous chunk's second half); slots left of the
    # diagonal come from the chunk that starts one block earlier (block 0 uses chunk 0).
    block = t // w
    right = j >= w
    chunk = torch.where(right, torch.clamp(block, max=n_chunks - 1), torch.clamp(block - 1, min=0))
    row = t - chunk * w
    col = key_pos - chunk * w
    flat = chunk * (2 * w) * (2 * w) + row * (2 * w) + col
    flat = torch.where(outside, torch.zeros_like(flat), flat)
    result = (flat.reshape(-1).to(device), outside.to(device))
    if len(_BAND_INDEX_CACHE) > 64:
        _BAND_INDEX_CACHE.clear()
    _BAND_INDEX_CACHE[key] = result
    return result


def banded_scores(q: torch.Tensor, k: torch.Tensor, w: int) -> torch.Tensor:
    """Scores ``q[t] . k[t+j-w]`` as a band ``[BH, T, 2w+1]``; out-of-range slots are -inf.

    ``q`` and ``k`` are ``[BH, T, d]`` with T a multiple of 2w.
    """
    bh, length, dim = q.shape
    if length % (2 * w) != 0:
        raise ValueError(f"sequence length {length} must be a multiple of {2 * w} for window {2 * w + 1}")
    # overlapping chunks [BH, T/w - 1, 2w, d]: views with the release's strides
    q_chunks = q.unfold(1, 2 * w, w).transpose(-1, -2)
    k_chunks = k.unfold(1, 2 * w, w).transpose(-1, -2)
    products = torch.einsum("bcxd,bcyd->bcxy", (q_chunks, k_chunks))
    flat, outside = _band_index(length, w, q.device)
    band = products.reshape(bh, -1).index_select(1, flat).view(bh, length, 2 * w + 1)
    return band.masked_fill(outside, float("-inf"))


def banded_context(probs: torch.Tensor, v: torch.Tensor, w: int) -> torch.Tensor:
    """Weighted sums ``sum_j probs[t, j] * v[t+j-w]`` -> ``[BH, T, d]``.

    ``probs`` is the band ``[BH, T, 2w+1]``; slots outside the sequence must hold 0.
    """
    bh, length, dim = v.shape
    blocks = length // w
    # Spread each block of w band rows over the 3w keys around the block, row r shifted r
    # columns right. Rows are written into a zero buffer with rows of 3w+2 entries and read
    # back with a row stride of 3w+1: entry (r, c) lands at r*(3w+1)+c, so row r's band
    # (c = r..r+2w) is the start of buffer row r and every other entry is buffer padding.
    # (These are the release's strides, so the matmul below sees identical operands.)
    buffer = probs.new_zeros(bh, blocks, w, 3 * w + 2)
    buffer[..., : 2 * w + 1] = probs.reshape(bh, blocks, w, 2 * w + 1)
    spread = buffer.as_strided(
        (bh, blocks, w, 3 * w),
        (blocks * w * (3 * w + 2), w * (3 * w + 2), 3 * w + 1, 1),
    )
    padded = F.pad(v, (0, 0, w, w))
    v_chunks = padded.unfold(1, 3 * w, w).transpose(-1, -2)  # [BH, blocks, 3w, d]
    context = torch.einsum("bcwd,bcdh->bcwh", (spread, v_chunks))
    return context.reshape(bh, length, dim)


class ConvAttention(nn.Module):
    """Multi-head conv attention (release: MaskedMHCA / LocalMaskedMHCA).

    q, k and v each pass a depthwise conv (kernel 3, or stride+1 with stride when
    downsampling) and a LayerNorm, then a 1x1 projection. ``window > 1`` restricts every
    query to the ``window`` keys centred on it; otherwise attention is global.
    """

    def __init__(self, dim: int, num_heads: int, window: int = -1, stride: int = 1,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, rel_pos: bool = False):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"embedding dim {dim} is not divisible by {num_heads} heads")
        if stride != 1 and stride % 2 != 0:
            raise ValueError("attention stride must be 1 or even")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.window = window if window > 1 else -1
        self.half = self.window // 2 if self.window > 1 else 0

        kernel = stride + 1 if stride > 1 else 3
        # Creation order mirrors the release (query conv/norm, key, value, then the
        # projections key, query, value, out) so that seeded inits match it.
        self.q_conv = MaskedConv1d(dim, dim, kernel, stride=stride, groups=dim, bias=False)
        self.q_norm = ChannelLayerNorm(dim)
        self.k_conv = MaskedConv1d(dim, dim, kernel, stride=stride, groups=dim, bias=False)
        self.k_norm = ChannelLayerNorm(dim)
        self.v_conv = MaskedConv1d(dim, dim, kernel, stride=stride, groups=dim, bias=False)
        self.v_norm = ChannelLayerNorm(dim)
        self.k_proj = nn.Conv1d(dim, dim, 1)
        self.q_proj = nn.Conv1d(dim, dim, 1)
        self.v_proj = nn.Conv1d(dim, dim, 1)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj_drop = nn.Dropout(proj_drop)
        self.out_proj = nn.Conv1d(dim, dim, 1)
        if rel_pos and self.window > 1:
            self.rel_pos = nn.Parameter(torch.zeros(num_heads, self.window))
            nn.init.trunc_normal_(self.rel_pos, std=(2.0 / dim) ** 0.5)
        else:
            self.rel_pos = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, q_mask = self.q_conv(x, mask)
        q = self.q_norm(q)
        k, kv_mask = self.k_conv(x, mask)
        k = self.k_norm(k)
        v, _ = self.v_conv(x, mask)
        v = self.v_norm(v)
        q = self.q_proj(q)
        k = self.k_proj(k)
        v = self.v_proj(v)
        if self.window > 1:
            out = self._local(q, k, v, kv_mask)
        else:
            out = self._global(q, k, v, kv_mask)
        out = self.proj_drop(self.out_proj(out)) * q_mask.to(out.dtype)
        return out, q_mask

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        # B x (H*d) x T -> B x H x T x d (a transposed view, as in the release)
        b = t.shape[0]
        return t.view(b, self.num_heads, self.head_dim, -1).transpose(2, 3)

    def _global(self, q, k, v, kv_mask):
        b, c, _ = q.shape
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        att = (q * self.scale) @ k.transpose(-2, -1)
        att = att.masked_fill(torch.logical_not(kv_mask[:, :, None, :]), float("-inf"))
        att = self.attn_drop(F.softmax(att, dim=-1))
        out = att @ (v * kv_mask[:, :, :, None].to(v.dtype))
        return out.transpose(2, 3).contiguous().view(b, c, -1)

    def _local(self, q, k, v, kv_mask):
        b, c, length = q.shape
        h, d, w = self.num_heads, self.head_dim, self.half
        # contiguous B*H x T x d copies (the chunk views below rely on this layout)
        q = self._heads(q).reshape(b * h, length, d).contiguous()
        k = self._heads(k).reshape(b * h, length, d).contiguous()
        v = self._heads(v).reshape(b * h, length, d).contiguous()
        q = q * self.scale
        att = banded_scores(q, k, w).view(b, h, length, 2 * w + 1)
        if self.rel_pos is not None:
            att = att + self.rel_pos[None, :, None, :]
        # padded keys: -1e4 on their band slots (same float adds as the release)
        padded_key = torch.logical_not(kv_mask)
        key_offset = padded_key.to(q.dtype).masked_fill(padded_key, MASKED_KEY_OFFSET)  # B x 1 x T
        slot_offset = F.pad(key_offset, (w, w)).unfold(2, 2 * w + 1, 1)  # B x 1 x T x (2w+1)
        att = att + slot_offset
        att = F.softmax(att, dim=-1)
        # a padded query attends to nothing
        att = att.masked_fill(torch.logical_not(kv_mask)[:, :, :, None], 0.0)
        att = self.attn_drop(att)
        out = banded_context(att.reshape(b * h, length, 2 * w + 1), v, w)
        return out.view(b, h, length, d).transpose(2, 3).reshape(b, c, length)


class TransformerBlock(nn.Module):
    """Pre-LN transformer block: LN -> conv attention -> residual; LN -> MLP -> residual.

    With ``stride > 1`` the block downsamples: q/k/v convs are strided and the residual goes
    through MaxPool(stride+1, stride, padding (stride+1)//2). Drop-path with a per-channel
    layer scale wraps both branches when ``droppath > 0`` (no scale parameter otherwise).
    """

    def __init__(self, dim: int, num_heads: int, stride: int = 1, window: int = -1,
                 mlp_ratio: int = 4, dropout: float = 0.0, droppath: float = 0.0,
                 rel_pos: bool = False):
        super().__init__()
        self.attn_norm = ChannelLayerNorm(dim)
        self.mlp_norm = ChannelLayerNorm(dim)
        self.attn = ConvAttention(dim, num_heads, window=window, stride=stride,
                                  attn_drop=0.0, proj_drop=dropout, rel_pos=rel_pos)
        if stride > 1:
            self.skip = nn.MaxPool1d(stride + 1, stride=stride, padding=(stride + 1) // 2)
        else:
            self.skip = nn.Identity()
        hidden = mlp_ratio * dim
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Conv1d(dim, hidden, 1))
        self.mlp.add_module("act", nn.GELU())
        self.mlp.add_module("drop1", nn.Dropout(dropout))
        self.mlp.add_module("fc2", nn.Conv1d(hidden, dim, 1))
        self.mlp.add_module("drop2", nn.Dropout(dropout))
        if droppath > 0.0:
            self.attn_scale = LayerScaleDropPath(dim, droppath)
            self.mlp_scale = LayerScaleDropPath(dim, droppath)
        else:
            self.attn_scale = nn.Identity()
            self.mlp_scale = nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, out_mask = self.attn(self.attn_norm(x), mask)
        keep = out_mask.to(out.dtype)
        out = self.skip(x) * keep + self.attn_scale(out)
        out = out + self.mlp_scale(self.mlp(self.mlp_norm(out)) * keep)
        return out, out_mask


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
