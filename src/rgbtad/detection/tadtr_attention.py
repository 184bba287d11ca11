"""TadTR's temporal deformable attention and its sine position encoding.

Release counterpart: ``DeformAttn`` (``models/ops/temporal_deform_attn``) with its pure-PyTorch
backend ``deform_attn_core_pytorch``, and ``PositionEmbeddingSine``
(``models/position_encoding.py``) of xlliu7/TadTR; one feature level, as the release builds it.

Each query predicts, per head, ``n_points`` temporal offsets and softmax weights. With a
reference *point* (encoder, first decoder layer) a location is ``ref + offset / T``; with a
reference *segment* ``(centre, width)`` (later decoder layers under segment refinement)
``centre + offset / n_points * width / 2``. The value sequence is sampled there by linear
interpolation with zero padding outside ``[0, T]``, done as the release does it: a
``grid_sample`` over a one-row image (``align_corners=False``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DeformableTemporalAttention", "inverse_sigmoid", "sine_position_encoding"]


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``log(x / (1 - x))`` with both clamped to ``eps`` (the release's)."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def sine_position_encoding(valid: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """``B x dim x T`` encoding of the positions of ``B x T`` bool `valid`: the cumulative
    count of valid steps normalised to ``(0, 2 pi]`` by the last one, then interleaved
    ``sin`` / ``cos`` at ``temperature ** (2 (i // 2) / dim)``."""
    steps = valid.cumsum(1, dtype=torch.float32)
    steps = steps / (steps[:, -1:] + 1e-6) * (2 * math.pi)
    freq = torch.arange(dim, dtype=torch.float32, device=valid.device)
    freq = temperature ** (2 * torch.div(freq, 2, rounding_mode="floor") / dim)
    angles = steps[:, :, None] / freq
    pos = torch.stack((angles[:, :, 0::2].sin(), angles[:, :, 1::2].cos()), dim=3).flatten(2)
    return pos.permute(0, 2, 1)


class DeformableTemporalAttention(nn.Module):
    """Multi-head deformable attention over one temporal feature sequence."""

    def __init__(self, dim: int, num_heads: int, num_points: int):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"the attention width {dim} is not divisible by its {num_heads} heads")
        self.dim, self.num_heads, self.num_points = dim, num_heads, num_points
        self.sampling_offsets = nn.Linear(dim, num_heads * num_points)
        self.attention_weights = nn.Linear(dim, num_heads * num_points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The release's initialisation: zero offset / weight projections, initial offsets
        ``(i + 1) cos(4 pi h / heads)`` for point ``i`` of head ``h``, Xavier value / output."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        heads = torch.arange(self.num_heads, dtype=torch.float32) * (4.0 * math.pi / self.num_heads)
        grid = heads.cos()[:, None] * torch.arange(1, self.num_points + 1, dtype=torch.float32)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(self, query: torch.Tensor, reference: torch.Tensor, value: torch.Tensor,
                padding: torch.Tensor | None) -> torch.Tensor:
        """`query` ``B x Q x D``, `reference` ``B x Q x 1`` (points) or ``B x Q x 2``
        (segments), normalised to the sequence; `value` ``B x T x D``; `padding` ``B x T``
        True on padded steps (their values are zeroed) or None."""
        batch, num_queries, _ = query.shape
        length = value.shape[1]
        heads, points = self.num_heads, self.num_points
        value = self.value_proj(value)
        if padding is not None:
            value = value.masked_fill(padding[..., None], 0.0)
        offsets = self.sampling_offsets(query).view(batch, num_queries, heads, points)
        weights = F.softmax(self.attention_weights(query).view(batch, num_queries, heads, points), -1)
        if reference.shape[-1] == 1:
            locations = reference[:, :, None, :] + offsets / length
        elif reference.shape[-1] == 2:
            locations = reference[:, :, None, :1] + offsets / points * reference[:, :, None, 1:] * 0.5
        else:
            raise ValueError(f"reference must end in 1 (points) or 2 (segments), got {tuple(reference.shape)}")
        sampled = self._sample(value, locations)  # B*heads x head_dim x Q x points
        weights = weights.transpose(1, 2).reshape(batch * heads, 1, num_queries, points)
        out = (sampled * weights).sum(-1).view(batch, self.dim, num_queries)
        return self.output_proj(out.transpose(1, 2))

    def _sample(self, value: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
        """Linear interpolation of ``B x T x D`` `value` at ``B x Q x heads x points``
        `locations` in ``[0, 1]`` units: a ``grid_sample`` on a 1 x T image per head."""
        batch, length, _ = value.shape
        heads = self.num_heads
        image = value.view(batch, length, heads, self.dim // heads).permute(0, 2, 3, 1)
        image = image.reshape(batch * heads, self.dim // heads, 1, length)
        x = 2 * locations - 1
        grid = torch.stack((x, torch.zeros_like(x)), dim=-1)  # the one row lies at y = 0
        grid = grid.transpose(1, 2).flatten(0, 1)  # B*heads x Q x points x 2
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
