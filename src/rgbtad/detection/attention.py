"""Conv attention and the transformer block of the ActionFormer encoder (release:
``MaskedMHCA`` / ``LocalMaskedMHCA`` and ``TransFormerBlock`` in ``libs/modeling/blocks.py``).

Local (banded) attention: a query at step t attends to keys t-w .. t+w (window 2w+1).
Scores are laid out as a band ``[BH, T, 2w+1]`` where slot j holds key t+j-w. Every windowed
`ConvAttention` computes that band one of two ways (`LOCAL_ATTENTION_MODES`):

* ``"chunked"`` (default): as the release, which adapts the Longformer kernel: the sequence
  is cut into chunks of 2w steps overlapping by w, one small matmul per chunk, and the band
  is read out of the chunk products; the weighted sum of values is one matmul per block of w
  queries against the 3w keys around it. The matmuls have the release's shapes and operand
  strides (views made with ``unfold`` / ``as_strided``), so that they round the same way
  (the semantics are checked against a dense oracle in the tests).
* ``"shifted"``: ``2w + 1`` shifted slices of the zero-padded keys and values: the same
  scores, masks and softmax, summed in another order (differences of a few 1e-6). The
  ONNX exporter can express it for a dynamic length, which strided views it cannot; `rgbtad
  export` selects it with `local_attention_mode`.

Padded keys get a score offset of -1e4 on their band slots (as the release: a window without
any valid key still has a finite softmax), out-of-range slots -inf, and the attention rows
of padded queries are zeroed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from rgbtad.detection.blocks import ChannelLayerNorm, LayerScaleDropPath, MaskedConv1d

__all__ = ["LOCAL_ATTENTION_MODES", "MASKED_KEY_OFFSET", "ConvAttention", "TransformerBlock",
           "banded_context", "banded_scores", "local_attention_mode"]

# Score offset given to padded keys inside a local window (the release uses -1e4, not -inf,
# so that a window without any valid key still has a finite softmax).
MASKED_KEY_OFFSET = -1e4
LOCAL_ATTENTION_MODES = ("chunked", "shifted")

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
    ``local_mode`` (``"chunked"`` or ``"shifted"``, see the module docstring) is how the
    window's band is computed; `set_local_mode` changes it (it holds no weights).
    """

    def __init__(self, dim: int, num_heads: int, window: int = -1, stride: int = 1,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, rel_pos: bool = False,
                 local_mode: str = "chunked"):
        super().__init__()
        self.set_local_mode(local_mode)
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
        if self.window > 1 and self.local_mode == "shifted":
            out = self._local_shifted(q, k, v, kv_mask)
        elif self.window > 1:
            out = self._local(q, k, v, kv_mask)
        else:
            out = self._global(q, k, v, kv_mask)
        out = self.proj_drop(self.out_proj(out)) * q_mask.to(out.dtype)
        return out, q_mask

    def set_local_mode(self, mode: str) -> None:
        """Compute windowed attention ``"chunked"`` (the release's arithmetic) or
        ``"shifted"`` (exportable to ONNX with a dynamic length)."""
        if mode not in LOCAL_ATTENTION_MODES:
            raise ValueError(f"local attention mode must be one of {', '.join(LOCAL_ATTENTION_MODES)}, "
                             f"got {mode!r}")
        self.local_mode = mode

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


    def _local_shifted(self, q, k, v, kv_mask):
        """`_local` with ``2w + 1`` shifted slices instead of strided views."""
        b, c, length = q.shape
        h, d, w = self.num_heads, self.head_dim, self.half
        width = 2 * w + 1
        q = self._heads(q).reshape(b * h, length, d) * self.scale
        k = F.pad(self._heads(k).reshape(b * h, length, d), (0, 0, w, w))
        v = F.pad(self._heads(v).reshape(b * h, length, d), (0, 0, w, w))
        # slot j of query t looks at key t + j - w
        att = torch.stack([(q * k[:, j:j + length]).sum(-1) for j in range(width)], -1)
        att = att.view(b, h, length, width)
        inside = F.pad(torch.ones_like(kv_mask, dtype=q.dtype), (w, w))  # B x 1 x (T + 2w)
        inside = torch.stack([inside[:, :, j:j + length] for j in range(width)], -1)
        att = att.masked_fill(inside == 0, float("-inf"))
        if self.rel_pos is not None:
            att = att + self.rel_pos[None, :, None, :]
        padded_key = torch.logical_not(kv_mask)
        key_offset = F.pad(padded_key.to(q.dtype).masked_fill(padded_key, MASKED_KEY_OFFSET), (w, w))
        att = att + torch.stack([key_offset[:, :, j:j + length] for j in range(width)], -1)
        att = F.softmax(att, dim=-1)
        att = att.masked_fill(torch.logical_not(kv_mask)[:, :, :, None], 0.0)
        att = self.attn_drop(att).reshape(b * h, length, width)
        out = att[:, :, 0:1] * v[:, 0:length]
        for j in range(1, width):
            out = out + att[:, :, j:j + 1] * v[:, j:j + length]
        return out.view(b, h, length, d).transpose(2, 3).reshape(b, c, length)


@contextlib.contextmanager
def local_attention_mode(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    """Within the block, every `ConvAttention` of `model` computes windowed attention in
    `mode` (`LOCAL_ATTENTION_MODES`); each gets its own mode back afterwards."""
    modules = [m for m in model.modules() if isinstance(m, ConvAttention)]
    before = [m.local_mode for m in modules]
    try:
        for module in modules:
            module.set_local_mode(mode)
        yield model
    finally:
        for module, previous in zip(modules, before):
            module.set_local_mode(previous)


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


