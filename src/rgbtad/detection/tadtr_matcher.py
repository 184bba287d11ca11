"""TadTR's one-to-one label assignment: the Hungarian matcher and its segment operations.

Release counterpart: ``HungarianMatcher`` (``models/matcher.py``) and ``util/segment_ops.py``
of xlliu7/TadTR. Per video, the cost of giving ground truth ``j`` to query ``i`` is
``cost_class * focal(i, label_j) + cost_seg * |seg_i - gt_j|_1 + cost_iou * -IoU(i, j)``
with segments as normalised (centre, width) and the focal cost
``alpha (1 - p)^gamma (-log p) - (1 - alpha) p^gamma (-log(1 - p))`` (``alpha`` 0.25,
``gamma`` 2, ``1e-8`` inside the logs); SciPy's ``linear_sum_assignment`` solves it.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

__all__ = ["HungarianMatcher", "cw_to_bounds", "bounds_to_cw", "pairwise_iou"]


def cw_to_bounds(segments: torch.Tensor) -> torch.Tensor:
    """(centre, width) -> (start, end), any leading shape."""
    centre, width = segments.unbind(-1)
    return torch.stack((centre - 0.5 * width, centre + 0.5 * width), dim=-1)


def bounds_to_cw(segments: torch.Tensor) -> torch.Tensor:
    """(start, end) -> (centre, width), any leading shape."""
    start, end = segments.unbind(-1)
    return torch.stack(((start + end) / 2, end - start), dim=-1)


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``N x M`` IoU of ``N x 2`` and ``M x 2`` (start, end) segments; lengths clamp at 0."""
    length_a = (a[:, 1] - a[:, 0]).clamp(min=0)
    length_b = (b[:, 1] - b[:, 0]).clamp(min=0)
    inter = (torch.min(a[:, None, 1], b[:, 1]) - torch.max(a[:, None, 0], b[:, 0])).clamp(min=0)
    return inter / (length_a[:, None] + length_b - inter)


class HungarianMatcher:
    """The matcher: ``match(logits, segments, gt_segments, gt_labels)``."""

    def __init__(self, cost_class: float, cost_seg: float, cost_iou: float, alpha: float = 0.25,
                 gamma: float = 2.0):
        if cost_class == 0 and cost_seg == 0 and cost_iou == 0:
            raise ValueError("the matcher needs at least one non-zero cost")
        self.cost_class, self.cost_seg, self.cost_iou = cost_class, cost_seg, cost_iou
        self.alpha, self.gamma = alpha, gamma

    @torch.no_grad()
    def match(self, logits: torch.Tensor, segments: torch.Tensor, gt_segments: list[torch.Tensor],
              gt_labels: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`logits` ``B x Q x K``, `segments` ``B x Q x 2`` (centre, width); ground truth
        per video (``N x 2`` centre / width, ``N`` labels). Per video the matched
        ``(query indices, ground-truth indices)``, query indices ascending."""
        batch, num_queries = logits.shape[:2]
        prob = logits.flatten(0, 1).sigmoid()
        pred = segments.flatten(0, 1)
        labels = torch.cat(gt_labels).long()
        targets = torch.cat(gt_segments)
        if targets.shape[0] == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            return [(empty, empty) for _ in range(batch)]
        neg = (1 - self.alpha) * prob ** self.gamma * -(1 - prob + 1e-8).log()
        pos = self.alpha * (1 - prob) ** self.gamma * -(prob + 1e-8).log()
        cost_class = pos[:, labels] - neg[:, labels]
        cost_seg = torch.cdist(pred, targets, p=1)
        cost_iou = -pairwise_iou(cw_to_bounds(pred), cw_to_bounds(targets))
        cost = self.cost_seg * cost_seg + self.cost_class * cost_class + self.cost_iou * cost_iou
        cost = cost.view(batch, num_queries, -1).cpu()
        sizes = [len(s) for s in gt_segments]
        result = []
        for index, block in enumerate(cost.split(sizes, -1)):
            rows, cols = linear_sum_assignment(block[index].numpy())
            result.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return result
