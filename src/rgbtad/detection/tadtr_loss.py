"""TadTR's set criterion: focal classification, L1 and IoU segment losses per decoder layer,
and the actionness regression.

Release counterpart: ``SetCriterion`` and ``sigmoid_focal_loss`` (``models/tadtr.py``,
``models/custom_loss.py``) of xlliu7/TadTR. Every decoder layer is matched on its own
(`rgbtad.detection.tadtr_matcher`); with ``n`` the number of ground-truth segments in the
batch (at least 1):

* ``loss_ce``: sigmoid focal loss (alpha 0.25, gamma 2) against one-hot targets (unmatched
  queries: all zeros), summed and divided by ``n``;
* ``loss_segments``: L1 between matched (centre, width) pairs, summed, divided by ``n``;
* ``loss_iou``: ``1 - IoU`` of matched pairs, summed, divided by ``n``;
* ``loss_actionness`` (last layer only): mean L1 between each query's actionness and the
  largest IoU of its segment with any ground truth *of the batch* (the release concatenates
  the targets of all videos, so a query is also scored against other videos' segments; kept
  as the release trains). A batch without any ground truth gives targets of 0.

The last layer's terms carry the plain names, layer ``i`` of the others the suffix ``_i``;
``final_loss`` is their sum weighted by ``weights`` (the release's ``weight_dict``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rgbtad.detection.tadtr_matcher import HungarianMatcher, cw_to_bounds, pairwise_iou

__all__ = ["SetCriterion", "sigmoid_focal_loss"]

TERMS = ("loss_ce", "loss_segments", "loss_iou")


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, normalizer: float, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """RetinaNet's focal loss of ``B x Q x K`` logits, in the release's order of operations
    (mean over queries, sum, divide, times the number of queries: the sum over ``n``)."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / normalizer * logits.shape[1]


class SetCriterion:
    """``criterion(logits, segments, actionness, gt_segments, gt_labels)`` -> loss dict;
    ``last_matches`` keeps the matching of every layer of the last call (for inspection)."""

    def __init__(self, num_classes: int, matcher: HungarianMatcher, weights: dict[str, float],
                 focal_alpha: float = 0.25):
        self.num_classes, self.matcher, self.weights, self.focal_alpha = num_classes, matcher, weights, focal_alpha
        self.last_matches: list = []

    def names(self, num_layers: int, actionness: bool) -> list[str]:
        """Every loss key for `num_layers` decoder layers, ``final_loss`` last."""
        names = list(TERMS) + (["loss_actionness"] if actionness else [])
        names += [f"{term}_{i}" for i in range(num_layers - 1) for term in TERMS]
        return names + ["final_loss"]

    def __call__(self, logits: list[torch.Tensor], segments: list[torch.Tensor], actionness: torch.Tensor | None,
                 gt_segments: list[torch.Tensor], gt_labels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-layer `logits` ``B x Q x K`` and `segments` ``B x Q x 2``; ground truth per
        video as normalised (centre, width) and label ids."""
        normalizer = max(float(sum(len(x) for x in gt_labels)), 1.0)
        losses, final = {}, 0.0
        last = len(logits) - 1
        matches = [None] * len(logits)
        for layer in [last, *range(last)]:  # the release's order: last layer, actionness, then the others
            match = self.matcher.match(logits[layer], segments[layer], gt_segments, gt_labels)
            matches[layer] = match
            suffix = "" if layer == last else f"_{layer}"
            terms = self._layer_losses(logits[layer], segments[layer], match, gt_segments, gt_labels, normalizer)
            if layer == last and actionness is not None:
                terms["loss_actionness"] = self._actionness_loss(segments[-1], actionness, gt_segments)
            for name, value in terms.items():
                losses[name + suffix] = value
                final = final + self.weights[name] * value
        self.last_matches = matches
        losses["final_loss"] = final
        return losses

    def _layer_losses(self, logits, segments, match, gt_segments, gt_labels, normalizer):
        batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(match)]).to(logits.device)
        query_idx = torch.cat([src for src, _ in match]).to(logits.device)
        matched_labels = torch.cat([labels[gt.to(labels.device)] for labels, (_, gt) in zip(gt_labels, match)])
        classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        classes[batch_idx, query_idx] = matched_labels.long()
        onehot = torch.zeros(*logits.shape[:2], self.num_classes + 1, dtype=logits.dtype, device=logits.device)
        onehot.scatter_(2, classes.unsqueeze(-1), 1)
        loss_ce = sigmoid_focal_loss(logits, onehot[..., :-1], normalizer, alpha=self.focal_alpha)
        pred = segments[batch_idx, query_idx]
        target = torch.cat([segs[gt.to(segs.device)] for segs, (_, gt) in zip(gt_segments, match)])
        loss_seg = F.l1_loss(pred, target, reduction="none").sum() / normalizer
        iou = torch.diag(pairwise_iou(cw_to_bounds(pred), cw_to_bounds(target)))
        return {"loss_ce": loss_ce, "loss_segments": loss_seg, "loss_iou": (1 - iou).sum() / normalizer}

    @staticmethod
    def _actionness_loss(segments: torch.Tensor, actionness: torch.Tensor, gt_segments: list[torch.Tensor]):
        pred = segments.reshape(-1, 2)
        targets = torch.cat(gt_segments)
        if targets.shape[0] == 0:
            best = pred.new_zeros(pred.shape[0])
        else:
            best = pairwise_iou(cw_to_bounds(pred), cw_to_bounds(targets)).max(dim=1)[0]
        return F.l1_loss(actionness.reshape(-1), best.detach())
