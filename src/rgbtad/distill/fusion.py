"""Fusion of the decomposed student's appearance (A) and motion (M) branches.

Every fusion takes the two snippet-level branch sequences ``B x D x T`` and the mask
``B x 1 x T`` (True on real snippets) and returns one ``B x D x T`` sequence for the joint
detector, zero on padding. Padding never changes the outputs at real snippets.

* ``concat``: ``W [A; M]`` (1x1 conv 2D -> D).
* ``sum``: ``A + M``.
* ``self_attn``: ``F = W [A; M]``, then ``F + Attn(F, F)``: global self-attention over time
  on the concatenated streams.
* ``cross_attn``: ``Â = A + Attn(A, M)``, ``M̂ = M + Attn(M, A)``, then ``W [Â; M̂]``: each
  branch queries the other across the whole video.
* ``diff_attn``: ``Â = A + Attn(A, M - A)``, ``M̂ = M + Attn(M, A - M)``, then ``W [Â; M̂]``:
  each branch attends to where the other branch differs from it. The paper only names
  this baseline; this is our reading of "difference attention".
* ``laf`` (local attentive fusion, Lee et al. 2023): a per-time-step channel gate,
  ``Â_t = A_t + ω_t ⊙ W_v M_t`` with ``ω_t = σ(W_q pool(A) ⊙ W_k M_t)``, and the same with
  the roles swapped, then ``W [Â; M̂]``. ``pool`` is a masked mean of the target branch over
  the whole video (``laf_pooling: global``) or over a window around t (``local``). No
  snippet sees another snippet except through that pooled query.

``Attn(x, y)`` is masked multi-head scaled dot-product attention with queries from x and
keys and values from y (1x1 conv projections), over all real snippets of the video.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FUSIONS", "BranchFusion", "LocalAttentiveGate", "MaskedAttention", "masked_mean"]

FUSIONS = ("concat", "sum", "self_attn", "cross_attn", "diff_attn", "laf")


def masked_mean(x: torch.Tensor, mask: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Mean of ``x`` (``B x D x T``) over the real steps of ``mask`` (``B x 1 x T``): over the
    whole sequence (``B x D x 1``) or, with `window`, over the real steps of a centred
    window at every step (``B x D x T``)."""
    weight = mask.to(x.dtype)
    if window is None:
        return (x * weight).sum(-1, keepdim=True) / weight.sum(-1, keepdim=True).clamp(min=1)
    kernel = x.new_ones(1, 1, window)
    total = F.conv1d((x * weight).flatten(0, 1).unsqueeze(1), kernel, padding=window // 2)
    count = F.conv1d(weight, kernel, padding=window // 2)
    return total.view_as(x) / count.clamp(min=1)


class MaskedAttention(nn.Module):
    """Multi-head attention over time: queries from ``x``, keys and values from ``y``;
    padded steps of ``y`` are never attended to."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"fusion width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.query = nn.Conv1d(dim, dim, 1)
        self.key = nn.Conv1d(dim, dim, 1)
        self.value = nn.Conv1d(dim, dim, 1)
        self.out = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, dim, length = x.shape
        heads = self.num_heads

        def split(t: torch.Tensor) -> torch.Tensor:  # B x D x T -> B x H x T x D/H
            return t.view(batch, heads, dim // heads, -1).transpose(-1, -2)

        q, k, v = split(self.query(x)), split(self.key(y)), split(self.value(y))
        scores = q @ k.transpose(-1, -2) / math.sqrt(dim // heads)
        scores = scores.masked_fill(~mask[:, None], float("-inf"))  # mask: B x 1 x T (keys)
        attended = scores.softmax(-1) @ v  # B x H x T x D/H
        return self.out(attended.transpose(-1, -2).reshape(batch, dim, length))


class LocalAttentiveGate(nn.Module):
    """One direction of LAF: ``x_t + σ(W_q pool(x) ⊙ W_k y_t) ⊙ W_v y_t``."""

    def __init__(self, dim: int, window: int | None = None):
        super().__init__()
        self.window = window  # None: pool over the whole video
        self.query = nn.Conv1d(dim, dim, 1)
        self.key = nn.Conv1d(dim, dim, 1)
        self.value = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.query(masked_mean(x, mask, self.window)) * self.key(y))
        return x + gate * self.value(y)


class _CrossAttend(nn.Module):
    """``x + Attn(x, y)`` (cross_attn) or ``x + Attn(x, y - x)`` (diff_attn)."""

    def __init__(self, dim: int, num_heads: int, difference: bool):
        super().__init__()
        self.attn = MaskedAttention(dim, num_heads)
        self.difference = difference

    def forward(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x + self.attn(x, y - x if self.difference else y, mask)


class BranchFusion(nn.Module):
    """The fusion named by `kind` (one of `FUSIONS`, see the module docstring)."""

    def __init__(self, kind: str, dim: int, num_heads: int = 4, laf_pooling: str = "global",
                 laf_window: int = 9):
        super().__init__()
        if kind not in FUSIONS:
            raise ValueError(f"unknown fusion {kind!r}; expected one of {list(FUSIONS)}")
        self.kind = kind
        if kind in ("cross_attn", "diff_attn"):
            self.enhance_a = _CrossAttend(dim, num_heads, kind == "diff_attn")
            self.enhance_m = _CrossAttend(dim, num_heads, kind == "diff_attn")
        elif kind == "laf":
            window = laf_window if laf_pooling == "local" else None
            self.enhance_a = LocalAttentiveGate(dim, window)
            self.enhance_m = LocalAttentiveGate(dim, window)
        if kind != "sum":
            self.merge = nn.Conv1d(2 * dim, dim, 1)
        if kind == "self_attn":
            self.attn = MaskedAttention(dim, num_heads)

    def forward(self, a: torch.Tensor, m: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "sum":
            return (a + m) * mask.to(a.dtype)
        if self.kind in ("cross_attn", "diff_attn", "laf"):
            a, m = self.enhance_a(a, m, mask), self.enhance_m(m, a, mask)
        fused = self.merge(torch.cat((a, m), dim=1))
        if self.kind == "self_attn":
            fused = fused + self.attn(fused, fused, mask)
        return fused * mask.to(fused.dtype)
