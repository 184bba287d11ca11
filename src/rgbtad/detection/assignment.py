"""Label assignment: which pyramid points are positives for which ground-truth action.

Replicates ``label_points_single_video`` of the release (``libs/modeling/meta_archs.py``):

1. a point ``t`` of stride ``s`` is inside action ``[a, b]`` when it is strictly inside
   ``[max(a, c - r s), min(b, c + r s)]`` with ``c`` the action centre and ``r`` the
   centre-sampling radius (1.5) -- or strictly inside ``[a, b]`` without centre sampling;
2. its largest distance ``max(t - a, b - t)`` lies in the level's regression range
   ``[lo, hi]`` (both ends inclusive);
3. among the actions that qualify, the shortest wins; every qualifying action no more than
   1e-3 longer than the shortest also sets its class (multi-hot targets, clamped to 1).

Regression targets are ``(t - a, b - t) / s`` for the shortest action (for points without
any action they are meaningless and never used).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["assign_targets", "assign_batch"]

# Actions whose lengths differ by at most this much (grid units) share a point.
LENGTH_TIE_TOLERANCE = 1e-3


@torch.no_grad()
def assign_targets(points: torch.Tensor, gt_segments: torch.Tensor, gt_labels: torch.Tensor,
                   num_classes: int, center_sample: str = "radius",
                   center_radius: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets for one video.

    ``points``: ``N x 4`` rows ``(t, lo, hi, stride)`` of all levels concatenated;
    ``gt_segments``: ``M x 2`` in feature-grid units; ``gt_labels``: ``M`` class indices.
    Returns ``cls_targets`` (``N x K`` float, multi-hot) and ``reg_targets`` (``N x 2``).
    """
    num_points = points.shape[0]
    num_gts = gt_segments.shape[0]
    gt_segments = gt_segments.to(points.dtype)
    if num_gts == 0:
        return (points.new_zeros((num_points, num_classes)), points.new_zeros((num_points, 2)))

    t = points[:, 0, None]
    stride = points[:, 3, None]
    starts = gt_segments[None, :, 0].expand(num_points, num_gts)
    ends = gt_segments[None, :, 1].expand(num_points, num_gts)
    lengths = (gt_segments[:, 1] - gt_segments[:, 0])[None, :].repeat(num_points, 1)

    dist = torch.stack((t - starts, ends - t), dim=-1)  # N x M x 2
    if center_sample == "radius":
        centres = 0.5 * (starts + ends)
        low = torch.maximum(centres - stride * center_radius, starts)
        high = torch.minimum(centres + stride * center_radius, ends)
        inside = torch.stack((t - low, high - t), dim=-1).min(-1)[0] > 0
    else:
        inside = dist.min(-1)[0] > 0

    reach = dist.max(-1)[0]
    in_range = torch.logical_and(reach >= points[:, 1, None], reach <= points[:, 2, None])

    lengths.masked_fill_(torch.logical_not(inside), float("inf"))
    lengths.masked_fill_(torch.logical_not(in_range), float("inf"))
    shortest, shortest_index = lengths.min(dim=1)

    tied = torch.logical_and(lengths <= shortest[:, None] + LENGTH_TIE_TOLERANCE,
                             lengths < float("inf")).to(dist.dtype)
    one_hot = F.one_hot(gt_labels.long(), num_classes).to(dist.dtype)
    cls_targets = (tied @ one_hot).clamp_(min=0.0, max=1.0)
    reg_targets = dist[torch.arange(num_points, device=points.device), shortest_index]
    reg_targets = reg_targets / stride
    return cls_targets, reg_targets


def assign_batch(points: list[torch.Tensor], gt_segments: list[torch.Tensor],
                 gt_labels: list[torch.Tensor], num_classes: int, center_sample: str = "radius",
                 center_radius: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets for a batch: ``B x N x K`` class targets and ``B x N x 2`` offsets."""
    concat = torch.cat(points, dim=0)
    cls_all, reg_all = [], []
    for segments, labels in zip(gt_segments, gt_labels):
        cls_t, reg_t = assign_targets(concat, segments.to(concat.device), labels.to(concat.device),
                                      num_classes, center_sample, center_radius)
        cls_all.append(cls_t)
        reg_all.append(reg_t)
    return torch.stack(cls_all), torch.stack(reg_all)
