"""TriDet's training loss (release: ``TriDet.losses`` in ``libs/modeling/meta_archs.py``).

Assignment, focal loss, DIoU loss and the loss normaliser are ActionFormer's
(`rgbtad.detection.assignment`, `rgbtad.detection.losses`); what the Trident head changes:

* offsets are decoded per class (`rgbtad.detection.trident.batch_class_offsets`), and every
  (positive point, ground-truth class) pair is one regression sample, with the point's
  regression target;
* the focal loss of those pairs is multiplied by ``IoU ** iou_weight_power`` (the IoU of
  the pair's decoded segment with its target; not detached, as in the release);
* ``reg_loss`` is the DIoU loss summed over the pairs.

Both losses are divided by the normaliser, an EMA of the number of positive *points*;
``final = cls + w * reg`` (``w <= 0``: ``cls / max(reg, 0.01)``).
"""

from __future__ import annotations

import torch

from rgbtad.detection.assignment import assign_batch
from rgbtad.detection.losses import DetectionLoss, offsets_iou, sigmoid_focal_loss
from rgbtad.detection.trident import TriDetOutput, batch_class_offsets

__all__ = ["TridentLoss", "iou_loss_1d"]


def iou_loss_1d(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``1 - IoU`` per row of 1-D segments given as (left, right) distances from one point
    (the release's ``ctr_giou_loss_1d``, which reduces to IoU here); both ``N x 2``, >= 0."""
    return 1.0 - offsets_iou(pred, target, eps)


class TridentLoss(DetectionLoss):
    """The Trident head's losses: ActionFormer's (`DetectionLoss`: assignment, EMA normaliser,
    label smoothing, DIoU, loss weight) on the offsets decoded per class, with the focal loss
    of the positive classes weighted by IoU."""

    def __init__(self, num_classes: int, num_bins: int, init_loss_norm: float = 100.0, momentum: float = 0.9,
                 loss_weight: float = 1.0, label_smoothing: float = 0.0, center_sample: str = "radius",
                 center_radius: float = 1.5, iou_weight_power: float = 1.0):
        super().__init__(num_classes, init_loss_norm, momentum, loss_weight, label_smoothing, center_sample,
                         center_radius)
        self.num_bins = num_bins
        self.iou_weight_power = iou_weight_power

    def _pairs(self, out: TriDetOutput, gt_cls: torch.Tensor, gt_offsets: torch.Tensor, positive: torch.Tensor):
        """Decoded and target offsets of every (positive point, ground-truth class) pair, in
        row-major (point, class) order."""
        decoded = batch_class_offsets(out.center_offsets, out.start_logits, out.end_logits, self.num_bins)
        decoded = decoded[positive]
        pred_offsets = decoded[gt_cls[positive].bool()]
        rows = torch.where(gt_cls[positive])[0]
        return pred_offsets, gt_offsets[positive][rows]

    def forward(self, out: TriDetOutput, gt_segments: list[torch.Tensor], gt_labels: list[torch.Tensor],
                update_normalizer: bool = True) -> dict[str, torch.Tensor]:
        gt_cls, gt_offsets = assign_batch(out.points, gt_segments, gt_labels, self.num_classes,
                                          self.center_sample, self.center_radius)
        valid = torch.cat(out.masks, dim=1)
        positive = torch.logical_and(gt_cls.sum(-1) > 0, valid)
        pred_offsets, target_offsets = self._pairs(out, gt_cls, gt_offsets, positive)

        num_pos = int(positive.sum().item())
        normalizer = self._normalizer(num_pos, update_normalizer)
        targets = self._smoothed(gt_cls[valid])
        cls_loss = sigmoid_focal_loss(torch.cat(out.cls_logits, dim=1)[valid], targets, reduction="none")
        iou_rate = iou_loss_1d(pred_offsets, target_offsets)
        rated = targets > self.label_smoothing / (self.num_classes + 1)
        cls_loss[rated] = cls_loss[rated] * (1 - iou_rate) ** self.iou_weight_power
        cls_loss = cls_loss.sum() / normalizer
        return self._combined(cls_loss, self._reg_loss(pred_offsets, target_offsets, num_pos, normalizer))
