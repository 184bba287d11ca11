"""G-TAD's training targets and losses (the BMN losses as the release weights them).

Targets of one window of ``T`` snippets from its ground truth (``N x 2`` segments on the
window's snippet grid, snippet ``i`` at position ``i``), as the release's
``VideoDataSet._get_train_label`` (``gtad_lib/dataset.py``) builds them:

* start / end (``T``): the largest overlap of snippet ``i``'s cell ``[i - 0.5, i + 0.5]``
  with a region ``boundary_width`` snippets wide around each ground-truth start / end;
* the IoU map (``D x T``): anchor (duration ``d``, start ``j``) spans ``[j, j + d + 1]`` in
  map units, each ground truth clipped to ``[0, T]``; the release measures ground truth from
  the left edge of the window's first snippet, half a snippet before its centre, so map
  units are grid positions + 0.5 (`MAP_SHIFT`; its integer frame offset makes that 0.4 - 0.6
  snippets, exactly 0.5 for even strides). Its inference reads anchor ``[j, j + d + 1]`` as
  snippets ``j .. j + d + 1`` on the grid (`rgbtad.detection.gtad_postprocess`), half a
  snippet later than it trained: faithful here, both ways.

Losses (``gtad_lib/loss_function.py``), over the whole batch at once: the boundary loss,
BCE on start and on end with positives (target > 0.5) weighted ``0.5 r`` and negatives
``0.5 r / (r - 1)``, ``r`` = entries / positives; the map's regression loss (channel 0),
half the squared error over the anchors with IoU > ``reg_high_iou``, plus a random sample of
as many (in expectation) anchors in ``(reg_low_iou, reg_high_iou]`` and in
``(0, reg_low_iou]``; its classification loss (channel 1 on), the BCE of positives IoU >
``cls_pos_iou`` against valid negatives with 10 added to the counts. ``final_loss =
reg_weight reg + cls_weight cls + boundary_weight boundary`` (release 1, 10, 1). The sampling
draws uniform numbers from torch's global generator (the release: NumPy's); `GTADLoss`
accepts them as ``draws`` to replay a run. Where the release divides by zero (a batch without
a positive, or without an anchor of a sampled band) the counts here are guarded so the loss
stays finite. With ``K`` class channels (the multi-class variant) channel ``1 + k`` is
trained on the IoU map of class ``k``'s ground truth, one BCE over all of them.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MAP_SHIFT", "GTADLoss", "boundary_bce", "boundary_targets", "iou_map", "map_cls_loss",
           "map_reg_loss", "valid_anchor_mask"]

#: map units = snippet-grid positions + MAP_SHIFT in the release's training targets
MAP_SHIFT = 0.5
_EPS = 1e-6


def valid_anchor_mask(length: int, max_duration: int, device=None) -> torch.Tensor:
    """``D x T`` float: 1 where anchor (d, j) ends inside the window, ``j + d + 1 <= T``
    (the release's ``get_mask``)."""
    duration = torch.arange(max_duration, device=device).view(-1, 1)
    start = torch.arange(length, device=device).view(1, -1)
    return (start + duration < length).float()


def iou_map(segments: torch.Tensor, length: int, max_duration: int) -> torch.Tensor:
    """``D x T`` IoU of every anchor with its best ground truth (`segments` ``N x 2`` in
    map units), ground truth clipped to the window."""
    device = segments.device
    if segments.numel() == 0:
        return torch.zeros(max_duration, length, device=device)
    gt = torch.clamp(segments.double(), 0.0, float(length)) / length
    start = (torch.arange(length, device=device, dtype=torch.float64) / length).view(1, 1, -1)
    end = start + (torch.arange(1, max_duration + 1, device=device, dtype=torch.float64) / length).view(1, -1, 1)
    gs, ge = gt[:, 0].view(-1, 1, 1), gt[:, 1].view(-1, 1, 1)
    inter = torch.clamp(torch.minimum(end, ge) - torch.maximum(start, gs), min=0.0)
    union = (end - start) - inter + (ge - gs)
    return (inter / union).max(dim=0)[0].float()


def boundary_targets(segments: torch.Tensor, length: int, width: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Start and end targets (``T`` each) for `segments` (``N x 2``, grid positions)."""
    device = segments.device
    if segments.numel() == 0:
        zeros = torch.zeros(length, device=device)
        return zeros, zeros.clone()
    cell = torch.arange(length, device=device, dtype=torch.float64).view(-1, 1)
    lo, hi = cell - 0.5, cell + 0.5

    def overlap(points: torch.Tensor) -> torch.Tensor:
        points = points.double().view(1, -1)
        inter = torch.clamp(torch.minimum(hi, points + width / 2) - torch.maximum(lo, points - width / 2), min=0.0)
        return (inter / (hi - lo)).max(dim=1)[0].float()

    return overlap(segments[:, 0]), overlap(segments[:, 1])


def boundary_bce(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The release's positive-weighted BCE over all entries of `pred` (probabilities)."""
    pred, target = pred.reshape(-1), target.reshape(-1)
    positive = (target > 0.5).float()
    entries = positive.numel()
    ratio = entries / torch.clamp(positive.sum(), min=1.0)
    coef_neg = 0.5 * ratio / torch.clamp(ratio - 1, min=_EPS)
    coef_pos = 0.5 * ratio
    loss_pos = coef_pos * torch.log(pred + _EPS) * positive
    loss_neg = coef_neg * torch.log(1.0 - pred + _EPS) * (1.0 - positive)
    return -torch.mean(loss_pos + loss_neg)


def _sampled(band: torch.Tensor, count_high: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    rate = count_high / band.sum() if band.sum() > 0 else torch.zeros_like(count_high)
    return ((band * draws) > (1.0 - rate)).float()


def map_reg_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, high: float, low: float,
                 draws: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The map regression loss (`pred`, `gt`: ``B x D x T``, `gt` already masked)."""
    high_band = (gt > high).float()
    mid_band = ((gt <= high) & (gt > low)).float()
    low_band = ((gt <= low) & (gt > 0.0)).float() * mask
    count_high = high_band.sum()
    weights = (high_band + _sampled(mid_band, count_high, draws[0])
               + _sampled(low_band, count_high, draws[1])).detach()
    squared = ((pred * weights - gt * weights) ** 2).sum()
    return 0.5 * squared / torch.clamp(weights.sum(), min=1.0)


def map_cls_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, positive_iou: float) -> torch.Tensor:
    """The map classification loss (`pred`, `gt` of one shape, `mask` broadcasting)."""
    positive = (gt > positive_iou).float()
    negative = (gt <= positive_iou).float() * mask
    num_positive = 10 + positive.sum()
    entries = 10 + num_positive + negative.sum()
    ratio = entries / num_positive
    coef_neg = 0.5 * ratio / (ratio - 1)
    coef_pos = 0.5 * ratio
    loss_pos = coef_pos * torch.log(pred + _EPS) * positive
    loss_neg = coef_neg * torch.log(1.0 - pred + _EPS) * negative
    return -torch.sum(loss_pos + loss_neg) / entries


class GTADLoss(nn.Module):
    """All of G-TAD's losses on windows of `length` snippets; ``forward`` takes the map
    (``B x (1 + K) x D x T``), the start / end probabilities (``B x T``) and per window its
    ground truth (grid positions) and labels; returns ``cls_loss``, ``reg_loss``,
    ``boundary_loss`` and ``final_loss``."""

    def __init__(self, length: int, max_duration: int, num_map_classes: int, reg_high_iou: float = 0.7,
                 reg_low_iou: float = 0.3, cls_pos_iou: float = 0.9, boundary_width: float = 3.0,
                 reg_weight: float = 1.0, cls_weight: float = 10.0, boundary_weight: float = 1.0):
        super().__init__()
        self.length, self.max_duration, self.num_map_classes = length, max_duration, num_map_classes
        self.reg_high_iou, self.reg_low_iou, self.cls_pos_iou = reg_high_iou, reg_low_iou, cls_pos_iou
        self.boundary_width = boundary_width
        self.weights = (reg_weight, cls_weight, boundary_weight)

    def targets(self, gt_segments: list[torch.Tensor], gt_labels: list[torch.Tensor], device):
        """Per batch: start ``B x T``, end ``B x T``, the IoU map ``B x D x T`` and the per
        class maps ``B x K x D x T`` (``K = 1``: the class-agnostic map again)."""
        starts, ends, maps, class_maps = [], [], [], []
        for segments, labels in zip(gt_segments, gt_labels):
            segments = segments.to(device).reshape(-1, 2).float()
            start, end = boundary_targets(segments, self.length, self.boundary_width)
            shifted = segments + MAP_SHIFT
            full = iou_map(shifted, self.length, self.max_duration)
            starts.append(start)
            ends.append(end)
            maps.append(full)
            if self.num_map_classes == 1:
                class_maps.append(full.unsqueeze(0))
            else:
                labels = labels.to(device).reshape(-1)
                class_maps.append(torch.stack([iou_map(shifted[labels == k], self.length, self.max_duration)
                                               for k in range(self.num_map_classes)]))
        return torch.stack(starts), torch.stack(ends), torch.stack(maps), torch.stack(class_maps)

    def forward(self, proposal_map: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
                gt_segments: list[torch.Tensor], gt_labels: list[torch.Tensor],
                draws: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        device = proposal_map.device
        # float32 whatever autocast computed: log(p + 1e-6) needs the precision
        proposal_map, start, end = proposal_map.float(), start.float(), end.float()
        gt_start, gt_end, gt_map, gt_class_maps = self.targets(gt_segments, gt_labels, device)
        mask = valid_anchor_mask(self.length, self.max_duration, device)
        gt_map = gt_map * mask
        if draws is None:
            draws = (torch.rand(gt_map.shape, device=device), torch.rand(gt_map.shape, device=device))
        reg = map_reg_loss(proposal_map[:, 0], gt_map, mask, self.reg_high_iou, self.reg_low_iou,
                           tuple(d.to(device) for d in draws))
        cls = map_cls_loss(proposal_map[:, 1:], gt_class_maps * mask, mask, self.cls_pos_iou)
        boundary = boundary_bce(start, gt_start) + boundary_bce(end, gt_end)
        reg_weight, cls_weight, boundary_weight = self.weights
        final = reg_weight * reg + cls_weight * cls + boundary_weight * boundary
        return {"cls_loss": cls, "reg_loss": reg, "boundary_loss": boundary, "final_loss": final}
