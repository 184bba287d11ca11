"""Temporal points of the feature pyramid (release: ``libs/modeling/loc_generators.py``).

Level ``l`` with stride ``s_l`` has one point per step at grid positions ``0, s_l, 2 s_l, ...``
(in units of the input feature grid, no half-step offset). Each point carries its level's
regression range ``[lo, hi]`` (on the input grid) and its stride: rows ``(t, lo, hi, s)``.

The release precomputes points up to ``max_seq_len * max_buffer_len_factor`` steps and fails
on longer inputs; here they are generated for the actual lengths (same values), so there
is no such limit.
"""

from __future__ import annotations

import torch

__all__ = ["level_points", "pyramid_strides"]


def pyramid_strides(scale_factor: int, num_levels: int, start_level: int = 0) -> list[int]:
    """Strides of the levels the heads see: ``scale_factor ** l`` for l >= start_level."""
    return [scale_factor ** level for level in range(start_level, num_levels)]


def level_points(lengths: list[int], strides: list[int],
                 regression_range: list[tuple[float, float]],
                 device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Points for each level: a float32 ``T_l x 4`` tensor of rows ``(t, lo, hi, stride)``."""
    if not (len(lengths) == len(strides) == len(regression_range)):
        raise ValueError(
            f"{len(lengths)} levels, {len(strides)} strides and {len(regression_range)} regression ranges"
        )
    points = []
    for length, stride, (low, high) in zip(lengths, strides, regression_range):
        t = torch.arange(length, dtype=torch.float32, device=device) * stride
        rows = torch.empty(length, 4, dtype=torch.float32, device=device)
        rows[:, 0] = t
        rows[:, 1] = float(low)
        rows[:, 2] = float(high)
        rows[:, 3] = float(stride)
        points.append(rows)
    return points
