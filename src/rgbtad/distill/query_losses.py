"""Query-level distillation of a TadTR student from a frozen TadTR teacher.

A set predictor has no positions at which two detectors can be compared: its queries are an
unordered set. The student's queries are therefore paired with the teacher's as TadTR pairs
queries with ground truth (`rgbtad.detection.tadtr_matcher`), the teacher's predictions
standing in for the ground truth, and every term compares matched pairs only. Per video and
per distilled decoder layer, the cost of pairing student query ``i`` with teacher query ``j``
is the release matcher's (``set_cost_class``, ``set_cost_seg``, ``set_cost_iou``; focal
``alpha`` 0.25, ``gamma`` 2):

* class: the focal cost with the teacher's class probabilities ``q_j`` as soft targets,
  ``sum_k q_jk (pos_ik - neg_ik)``; with a one-hot ``q_j`` it is the release's cost of label
  ``k``. The weights are not normalised: then, when the student is the teacher, pairing each
  query with itself is an optimal assignment (per class, the rearrangement inequality; the
  L1 and IoU costs are minimal on the diagonal too), so every term below is exactly 0;
* L1 between the (centre, width) segments and ``-IoU`` of their (start, end) bounds.

SciPy's ``linear_sum_assignment`` pairs ``min(Q_student, Q_teacher)`` queries (all of them
when both have ``num_queries`` queries): background queries are paired too, and their low
probabilities are taught, as the pyramid students' logit KD is taught at every position.
The teacher's segments are first put in the student's units (``scale``: the window, or with
``tadtr.mask_padding`` its valid part). With ``n`` the number of ground-truth segments of
the batch (at least 1, TadTR's divisor) and TadTR's loss coefficients, per layer:

* ``kd_cls_loss`` (``distill.kd_cls_weight``): ``cls_loss_coef`` x the per-class binary KL
  between the teacher's and the student's sigmoid probabilities at ``distill.temperature``
  (`rgbtad.distill.losses.sigmoid_kd_loss`: summed over matched pairs and classes, divided
  by ``n``, times T^2); on the last layer, when both detectors have the actionness branch,
  plus ``act_loss_coef`` x the mean absolute difference of the matched actionness (the
  second factor of TadTR's scores, regressed with L1 as the release trains it);
* ``kd_reg_loss`` (``distill.kd_reg_weight``): ``seg_loss_coef`` x L1 + ``iou_loss_coef`` x
  ``(1 - IoU)`` of the matched segments, summed, divided by ``n``, over the pairs whose
  teacher query is confident (``distill.kd_reg_positions: teacher``: its highest class
  probability exceeds ``distill.kd_score_thresh``) or is the one TadTR's matcher assigns to
  a ground-truth segment (``gt``): a background query's segment is not worth copying;
* ``feat_loss`` (``distill.feat_weight``): mean squared difference of the matched query
  features (the decoder layer's output embeddings, the input of the class and segment
  FFNs), through a learned linear projection when the widths differ
  (``distill.teacher_feat_dim``: the teacher's ``tadtr.hidden_dim``; 0 = the student's).

``distill.query_kd_layers``: ``all`` (default) distils every decoder layer, each with its
own matching, as TadTR's criterion supervises every layer (``aux_loss``); the student and
the teacher then need the same number of decoder layers. ``last`` distils the last layers
only (any depths). The terms are summed over the distilled layers, as TadTR's losses are.
The names are those of `rgbtad.distill.losses.TeacherLoss`, so training logs have the same
columns; Dai et al.'s snippet-level terms (``atom``, ``gcr``, ``abs``) have no query-level
reading and are refused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from rgbtad.core.errors import RgbtadError
from rgbtad.detection.tadtr import TadTROutput, TadTRSpec
from rgbtad.detection.tadtr_matcher import HungarianMatcher, bounds_to_cw, cw_to_bounds, pairwise_iou
from rgbtad.distill.losses import sigmoid_kd_loss

__all__ = ["QueryKDLoss", "match_queries"]

_WEIGHTS = {"kd_cls_loss": "kd_cls_weight", "kd_reg_loss": "kd_reg_weight", "feat_loss": "feat_weight"}
_SNIPPET_TERMS = ("atom_weight", "gcr_weight", "abs_weight")


@torch.no_grad()
def match_queries(matcher: HungarianMatcher, logits: torch.Tensor, segments: torch.Tensor,
                  teacher_logits: torch.Tensor, teacher_segments: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per video, the matched ``(student query indices, teacher query indices)`` of
    ``B x Q x K`` logits and ``B x Q x 2`` (centre, width) segments (see the module docstring)."""
    result = []
    for index in range(logits.shape[0]):
        prob = logits[index].float().sigmoid()
        neg = (1 - matcher.alpha) * prob ** matcher.gamma * -(1 - prob + 1e-8).log()
        pos = matcher.alpha * (1 - prob) ** matcher.gamma * -(prob + 1e-8).log()
        cost_class = (pos - neg) @ teacher_logits[index].float().sigmoid().T
        pred, target = segments[index].float(), teacher_segments[index].float()
        cost_seg = torch.cdist(pred, target, p=1)
        cost_iou = -pairwise_iou(cw_to_bounds(pred), cw_to_bounds(target))
        cost = matcher.cost_seg * cost_seg + matcher.cost_class * cost_class + matcher.cost_iou * cost_iou
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        result.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return result


def _flatten(match: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device):
    """(video, student query, teacher query) index vectors of all matched pairs."""
    video = torch.cat([torch.full_like(rows, i) for i, (rows, _) in enumerate(match)]).to(device)
    return video, torch.cat([rows for rows, _ in match]).to(device), torch.cat([cols for _, cols in match]).to(device)


class QueryKDLoss(nn.Module):
    """The weighted teacher terms of a TadTR student (see the module docstring): ``forward``
    returns the unweighted terms with a positive weight and their weighted sum."""

    def __init__(self, cfg, spec: TadTRSpec, teacher_width: int):
        super().__init__()
        refused = [f"distill.{key}" for key in _SNIPPET_TERMS if getattr(cfg, key) > 0]
        if refused:
            raise RgbtadError(f"config keys {', '.join(refused)}: Dai et al.'s snippet-level terms have no "
                              f"reading for TadTR's queries (model.name 'tadtr'); set them to 0")
        self.weights = {name: float(getattr(cfg, key)) for name, key in _WEIGHTS.items() if getattr(cfg, key) > 0}
        self.layers = cfg.query_kd_layers
        self.temperature = cfg.temperature
        self.reg_positions, self.score_thresh = cfg.kd_reg_positions, cfg.kd_score_thresh
        self.coefs = spec.loss_weights()
        self.matcher = HungarianMatcher(spec.set_cost_class, spec.set_cost_seg, spec.set_cost_iou)
        differ = "feat_loss" in self.weights and spec.hidden_dim != teacher_width
        self.project = nn.Linear(spec.hidden_dim, teacher_width) if differ else nn.Identity()

    @property
    def names(self) -> list[str]:
        return list(self.weights)

    @property
    def uses_features(self) -> bool:
        """Whether a term compares query features (so the teacher's query width matters)."""
        return "feat_loss" in self.weights

    def layer_pairs(self, student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
        """The (student layer, teacher layer) pairs that are distilled."""
        if self.layers == "last":
            return [(student_layers - 1, teacher_layers - 1)]
        if student_layers != teacher_layers:
            raise ValueError(f"distill.query_kd_layers 'all' pairs the decoder layers one to one, but the student "
                             f"has {student_layers} and the teacher {teacher_layers} (use 'last')")
        return [(layer, layer) for layer in range(student_layers)]

    def forward(self, student: TadTROutput, teacher: TadTROutput, gt_segments: list[torch.Tensor],
                gt_labels: list[torch.Tensor]):
        """Training-mode outputs of one window per video each; ground truth on the input grid."""
        if teacher.video.numel() != student.video.numel():
            raise ValueError(f"the teacher's output has {teacher.video.numel()} windows, the student's "
                             f"{student.video.numel()}: both need one window per video")
        normalizer = max(float(sum(len(x) for x in gt_labels)), 1.0)
        to_student = (teacher.scale / student.scale).to(student.segments[-1].dtype)[:, None, None]
        terms = {name: student.logits[-1].new_zeros((), dtype=torch.float32) for name in self.weights}
        pairs = self.layer_pairs(len(student.logits), len(teacher.logits))
        for s_layer, t_layer in pairs:
            t_segments = teacher.segments[t_layer] * to_student
            match = match_queries(self.matcher, student.logits[s_layer], student.segments[s_layer],
                                  teacher.logits[t_layer], t_segments)
            video, s_query, t_query = _flatten(match, student.logits[s_layer].device)
            if "kd_cls_loss" in self.weights:
                s_logits, t_logits = student.logits[s_layer][video, s_query], teacher.logits[t_layer][video, t_query]
                valid = torch.ones(1, len(video), dtype=torch.bool, device=video.device)
                kd = sigmoid_kd_loss(s_logits[None], t_logits[None], valid, normalizer, self.temperature)
                terms["kd_cls_loss"] = terms["kd_cls_loss"] + self.coefs["loss_ce"] * kd
                if s_layer == pairs[-1][0] and student.actionness is not None and teacher.actionness is not None:
                    gap = F.l1_loss(student.actionness[video, s_query].float(),
                                    teacher.actionness[video, t_query].float())
                    terms["kd_cls_loss"] = terms["kd_cls_loss"] + self.coefs["loss_actionness"] * gap
            if "kd_reg_loss" in self.weights:
                taught = self._taught(teacher.logits[t_layer], t_segments, student.scale, gt_segments, gt_labels)
                keep = taught[video, t_query]
                pred = student.segments[s_layer][video[keep], s_query[keep]].float()
                target = t_segments[video[keep], t_query[keep]].float()
                terms["kd_reg_loss"] = terms["kd_reg_loss"] + self._segment_loss(pred, target, normalizer)
            if "feat_loss" in self.weights:
                s_feats = self.project(student.query_feats[s_layer][video, s_query].float())
                gap = F.mse_loss(s_feats, teacher.query_feats[t_layer][video, t_query].float())
                terms["feat_loss"] = terms["feat_loss"] + gap
        total = sum((self.weights[name] * value for name, value in terms.items()),
                    student.logits[-1].new_zeros((), dtype=torch.float32))
        return terms, total

    def _segment_loss(self, pred: torch.Tensor, target: torch.Tensor, normalizer: float) -> torch.Tensor:
        l1 = F.l1_loss(pred, target, reduction="none").sum() / normalizer
        iou = torch.diag(pairwise_iou(cw_to_bounds(pred), cw_to_bounds(target)))
        return self.coefs["loss_segments"] * l1 + self.coefs["loss_iou"] * (1 - iou).sum() / normalizer

    def _taught(self, logits: torch.Tensor, segments: torch.Tensor, scale: torch.Tensor,
                gt_segments: list[torch.Tensor], gt_labels: list[torch.Tensor]) -> torch.Tensor:
        """``B x Q`` teacher queries whose segments are taught (``distill.kd_reg_positions``)."""
        if self.reg_positions == "teacher":
            return logits.float().sigmoid().amax(-1) > self.score_thresh
        targets = [bounds_to_cw(segs.float().reshape(-1, 2) / scale[i]) for i, segs in enumerate(gt_segments)]
        taught = torch.zeros(logits.shape[:2], dtype=torch.bool, device=logits.device)
        for index, (rows, _) in enumerate(self.matcher.match(logits.float(), segments.float(), targets, gt_labels)):
            taught[index, rows.to(logits.device)] = True
        return taught
