"""Detection losses (release: ``libs/modeling/losses.py`` and ``PtTransformer.losses``).

* classification: sigmoid focal loss (alpha 0.25, gamma 2) summed over every valid
  point x class, with optional label smoothing ``y <- y (1 - eps) + eps / (K + 1)``;
* regression: 1-D distance-IoU loss summed over positive points;
* both divided by the loss normaliser, an EMA of the number of positives
  (``N <- 0.9 N + 0.1 max(#pos, 1)``, updated before use, started at ``init_loss_norm``);
* ``final = cls + w * reg``; with ``w <= 0`` the weight adapts: ``cls / max(reg, 0.01)``.

The normaliser is a float64 buffer of the detector, so it is saved in checkpoints and a
resumed run continues exactly; it is used as a Python float, like the release's attribute.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rgbtad.detection.assignment import assign_batch

__all__ = ["DetectionLoss", "diou_loss_1d", "sigmoid_focal_loss"]


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0, reduction: str = "sum") -> torch.Tensor:
    """Focal loss of RetinaNet on sigmoid outputs (targets may be soft)."""
    logits = logits.float()
    targets = targets.float()
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return _reduce(loss, reduction)


def offsets_iou(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """IoU of 1-D segments given as (left, right) distances from the same point, per row;
    both inputs ``N x 2``, >= 0."""
    pred = pred.float()
    target = target.float()
    if pred.numel() and bool((pred < 0).any()):
        raise ValueError("predicted offsets must be non-negative")
    if target.numel() and bool((target < 0).any()):
        raise ValueError("target offsets must be non-negative")
    lp, rp = pred[:, 0], pred[:, 1]
    lg, rg = target[:, 0], target[:, 1]
    inter = torch.min(rp, rg) + torch.min(lp, lg)
    union = (lp + rp) + (lg + rg) - inter
    return inter / union.clamp(min=eps)


def diou_loss_1d(pred: torch.Tensor, target: torch.Tensor, reduction: str = "sum",
                 eps: float = 1e-8) -> torch.Tensor:
    """Distance-IoU loss for 1-D segments given as (left, right) distances from one point.

    ``1 - IoU + (centre distance / enclosing length)^2``; both inputs ``N x 2``, >= 0.
    """
    iou = offsets_iou(pred, target, eps)
    lp, rp = pred[:, 0].float(), pred[:, 1].float()
    lg, rg = target[:, 0].float(), target[:, 1].float()
    enclosing = torch.max(lp, lg) + torch.max(rp, rg)
    centre_gap = 0.5 * (rp - lp - rg + lg)
    loss = 1.0 - iou + torch.square(centre_gap / enclosing.clamp(min=eps))
    return _reduce(loss, reduction)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}")


class DetectionLoss(nn.Module):
    """Assignment + focal + DIoU losses with the EMA normaliser (a checkpointed buffer)."""

    def __init__(self, num_classes: int, init_loss_norm: float = 100.0, momentum: float = 0.9,
                 loss_weight: float = 1.0, label_smoothing: float = 0.0,
                 center_sample: str = "radius", center_radius: float = 1.5):
        super().__init__()
        self.num_classes = num_classes
        self.momentum = momentum
        self.loss_weight = loss_weight
        self.label_smoothing = label_smoothing
        self.center_sample = center_sample
        self.center_radius = center_radius
        self.register_buffer("normalizer", torch.tensor(float(init_loss_norm), dtype=torch.float64))

    def forward(self, cls_logits: list[torch.Tensor], offsets: list[torch.Tensor],
                masks: list[torch.Tensor], points: list[torch.Tensor],
                gt_segments: list[torch.Tensor], gt_labels: list[torch.Tensor],
                update_normalizer: bool = True) -> dict[str, torch.Tensor]:
        """``cls_logits`` / ``offsets`` / ``masks``: per level ``B x T_l x K`` / ``B x T_l x 2``
        / ``B x T_l``; ``points``: per level ``T_l x 4``; ground truth per video."""
        gt_cls, gt_offsets = assign_batch(points, gt_segments, gt_labels, self.num_classes,
                                          self.center_sample, self.center_radius)
        valid = torch.cat(masks, dim=1)
        positive = torch.logical_and(gt_cls.sum(-1) > 0, valid)
        pred_offsets = torch.cat(offsets, dim=1)[positive]
        gt_offsets = gt_offsets[positive]

        num_pos = int(positive.sum().item())
        normalizer = self._normalizer(num_pos, update_normalizer)
        targets = self._smoothed(gt_cls[valid])
        cls_loss = sigmoid_focal_loss(torch.cat(cls_logits, dim=1)[valid], targets, reduction="sum")
        cls_loss = cls_loss / normalizer
        return self._combined(cls_loss, self._reg_loss(pred_offsets, gt_offsets, num_pos, normalizer))

    # the parts every pyramid head's loss shares (TriDet's: `rgbtad.detection.trident_loss`)
    def _normalizer(self, num_pos: int, update: bool) -> float:
        """The EMA of the number of positives (updated in training), which divides the losses."""
        if update:
            self.normalizer.mul_(self.momentum).add_((1 - self.momentum) * max(num_pos, 1))
        return float(self.normalizer.item())

    def _smoothed(self, targets: torch.Tensor) -> torch.Tensor:
        targets = targets * (1 - self.label_smoothing)
        return targets + self.label_smoothing / (self.num_classes + 1)

    @staticmethod
    def _reg_loss(pred_offsets: torch.Tensor, gt_offsets: torch.Tensor, num_pos: int,
                  normalizer: float) -> torch.Tensor:
        if num_pos == 0:
            return 0 * pred_offsets.sum()
        return diou_loss_1d(pred_offsets, gt_offsets, reduction="sum") / normalizer

    def _combined(self, cls_loss: torch.Tensor, reg_loss: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss dict; ``loss_weight`` <= 0 weighs the regression adaptively (cls / reg)."""
        if self.loss_weight > 0:
            weight = self.loss_weight
        else:
            weight = cls_loss.detach() / max(reg_loss.item(), 0.01)
        return {"cls_loss": cls_loss, "reg_loss": reg_loss, "final_loss": cls_loss + reg_loss * weight}
