"""Distillation of a G-TAD student from a frozen G-TAD teacher, over G-TAD's own outputs.

Both detectors predict, per window of ``T`` snippets, the proposal map ``(1 + K) x D x T``
(channel 0 the IoU regression, channels 1.. the classification, sigmoid probabilities), the
start and end probabilities (``T`` each) and the graph features (``C x T``, block2's output).
The teacher is a G-TAD run on the teacher's features with the same window and
``max_duration``, so the two maps compare anchor by anchor. Every term is restricted to what
G-TAD's own loss sees and to real snippets: the anchors that end inside the window
(`rgbtad.detection.gtad_loss.valid_anchor_mask`, the release's ``get_mask``) and, as
training crops of short videos are zero-padded, inside the window's valid snippets; the
start / end and feature terms to the valid snippets. The terms carry G-TAD's own loss
weights (``gtad.cls_weight``, ``reg_weight``, ``boundary_weight``), so the teacher terms are
on the scale of the ground-truth loss; the ``distill`` weights multiply on top.

* ``kd_cls_loss`` (``distill.kd_cls_weight``): ``cls_weight`` x the binary KL between the
  teacher's and the student's classification probabilities at temperature ``distill.temperature``
  (`rgbtad.distill.losses.sigmoid_kd_loss`'s form: soft-target BCE minus the teacher's
  entropy, times T^2), averaged over the anchors above. G-TAD's map ends in a sigmoid and its
  output keeps only probabilities; the logits are read back as ``logit(p)`` with ``p``
  clamped to ``[1e-6, 1 - 1e-6]`` (G-TAD's own ``log(p + 1e-6)`` floor), which only matters
  for a temperature other than 1. It is a mean, not G-TAD's positive-balanced sum: the
  teacher's soft map has no positives to balance;
* ``kd_reg_loss`` (``distill.kd_reg_weight``), localisation:
  ``reg_weight`` x half the squared difference of the IoU-regression channel (the release's
  regression loss form) averaged over the anchors where ``distill.kd_reg_positions`` says the
  teacher's IoU is worth copying: ``teacher``, its highest classification probability
  exceeds ``distill.kd_score_thresh``; ``gt``, the anchors G-TAD's regression loss draws from
  (ground-truth IoU > 0); plus ``boundary_weight`` x the binary KL (temperature 1) of the
  start and of the end probabilities, averaged over the valid snippets (G-TAD's boundary
  loss is part of its localisation, the BMN heritage);
* ``feat_loss`` (``distill.feat_weight``): mean squared difference of the graph features
  over the valid snippets, through a learned 1x1 projection when the widths differ
  (``distill.teacher_feat_dim``: the teacher's ``gtad.hidden_dim_1d``; 0 = the student's);
* Dai et al.'s snippet-level terms (``atom_loss``, ``gcr_loss``, ``abs_loss``,
  `rgbtad.distill.losses`) on the graph features too: they are per-snippet sequences, as
  the pyramid students' level-0 features are.

The names are those of `rgbtad.distill.losses.TeacherLoss`, so training logs have the same
columns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rgbtad.detection.gtad import GTADOutput, GTADSpec
from rgbtad.detection.gtad_loss import MAP_SHIFT, iou_map, valid_anchor_mask
from rgbtad.distill.losses import TeacherLoss, abs_loss, atomic_contrastive_loss, feature_mimic_loss, gcr_loss

__all__ = ["MapKDLoss", "binary_kl", "window_valid"]

_EPS = 1e-6


def binary_kl(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor,
              temperature: float = 1.0) -> torch.Tensor:
    """Mean over the `valid` entries of ``KL(Bern(teacher) || Bern(student))`` of two
    probability tensors at `temperature` (see the module docstring); exactly 0 when equal."""
    if not bool(valid.any()):
        return student.sum() * 0
    s = torch.logit(student[valid].float().clamp(_EPS, 1 - _EPS)) / temperature
    t = torch.logit(teacher[valid].float().clamp(_EPS, 1 - _EPS)) / temperature
    p = torch.sigmoid(t)
    kl = (F.binary_cross_entropy_with_logits(s, p, reduction="none")
          - F.binary_cross_entropy_with_logits(t, p, reduction="none"))
    return kl.mean() * temperature ** 2


def window_valid(lengths: torch.Tensor, window_video: torch.Tensor, window_start: torch.Tensor,
                 size: int) -> torch.Tensor:
    """``W x size`` True on the snippets of each window that lie inside its video (`lengths`
    per video; each window's video and first snippet)."""
    remaining = lengths[window_video] - window_start
    return torch.arange(size, device=remaining.device)[None] < remaining[:, None]


def _anchor_valid(snippets: torch.Tensor, max_duration: int) -> torch.Tensor:
    """``W x D x T``: G-TAD's anchor mask, and anchors ending on the window's valid snippets."""
    size = snippets.shape[-1]
    inside = valid_anchor_mask(size, max_duration, snippets.device).bool()
    duration = torch.arange(max_duration, device=snippets.device).view(1, -1, 1)
    start = torch.arange(size, device=snippets.device).view(1, 1, -1)
    return inside[None] & (start + duration < snippets.sum(-1).view(-1, 1, 1))


def _projection(student_dim: int, teacher_dim: int) -> nn.Module:
    return nn.Conv1d(student_dim, teacher_dim, 1) if student_dim != teacher_dim else nn.Identity()


class MapKDLoss(nn.Module):
    """The weighted teacher terms of a G-TAD student (see the module docstring): ``forward``
    returns the unweighted terms with a positive weight and their weighted sum."""

    def __init__(self, cfg, spec: GTADSpec, teacher_width: int):
        super().__init__()
        self.cfg = cfg  # a DistillConfig
        self.weights = {name: float(getattr(cfg, key)) for name, key in TeacherLoss.WEIGHTS.items()
                        if getattr(cfg, key) > 0}
        self.spec = spec
        width = spec.hidden_dim_1d
        same_width = "feat_loss" in self.weights or ("gcr_loss" in self.weights and cfg.gcr_mode == "channel")
        self.project = _projection(width, teacher_width) if same_width else nn.Identity()
        if "atom_loss" in self.weights:
            self.atom_student = nn.Sequential(nn.Conv1d(width, cfg.atom_dim, 1), nn.ReLU(),
                                              nn.Conv1d(cfg.atom_dim, cfg.atom_dim, 1))
            self.atom_teacher = nn.Sequential(nn.Conv1d(teacher_width, cfg.atom_dim, 1), nn.ReLU(),
                                              nn.Conv1d(cfg.atom_dim, cfg.atom_dim, 1))

    @property
    def names(self) -> list[str]:
        return list(self.weights)

    @property
    def uses_features(self) -> bool:
        """Whether a term compares graph features (so the teacher's width matters)."""
        return any(name in self.weights for name in ("feat_loss", "atom_loss", "gcr_loss", "abs_loss"))

    def forward(self, student: GTADOutput, teacher: GTADOutput, gt_segments: list[torch.Tensor],
                gt_labels: list[torch.Tensor]):
        """Training-mode outputs, one window per video each; ground truth on the window's grid."""
        if not torch.equal(student.window_video, teacher.window_video) \
                or not torch.equal(student.window_start, teacher.window_start) \
                or student.proposal_map.shape != teacher.proposal_map.shape:
            raise ValueError(f"the teacher's windows ({tuple(teacher.proposal_map.shape)}) are not the "
                             f"student's ({tuple(student.proposal_map.shape)})")
        snippets = window_valid(student.lengths, student.window_video, student.window_start,
                                student.start.shape[-1])
        anchors = _anchor_valid(snippets, self.spec.max_duration)
        terms = {**self._output_terms(student, teacher, snippets, anchors, gt_segments),
                 **self._feature_terms(student.feats, teacher.feats, snippets)}
        total = sum((self.weights[name] * value for name, value in terms.items()),
                    student.proposal_map.new_zeros((), dtype=torch.float32))
        return terms, total

    def _output_terms(self, student: GTADOutput, teacher: GTADOutput, snippets: torch.Tensor,
                      anchors: torch.Tensor, gt_segments: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        spec, terms = self.spec, {}
        if "kd_cls_loss" in self.weights:
            classes = anchors.unsqueeze(1).expand_as(student.cls_scores)
            kl = binary_kl(student.cls_scores, teacher.cls_scores, classes, self.cfg.temperature)
            terms["kd_cls_loss"] = spec.cls_weight * kl
        if "kd_reg_loss" in self.weights:
            taught = anchors & self._taught(teacher, gt_segments)
            if bool(taught.any()):
                gap = (student.reg_scores[taught].float() - teacher.reg_scores[taught].float()).square()
                iou = 0.5 * gap.mean()
            else:
                iou = student.reg_scores.sum() * 0
            boundary = (binary_kl(student.start, teacher.start, snippets)
                        + binary_kl(student.end, teacher.end, snippets))
            terms["kd_reg_loss"] = spec.reg_weight * iou + spec.boundary_weight * boundary
        return terms

    def _taught(self, teacher: GTADOutput, gt_segments: list[torch.Tensor]) -> torch.Tensor:
        """``W x D x T`` anchors whose IoU is taught (``distill.kd_reg_positions``)."""
        if self.cfg.kd_reg_positions == "teacher":
            return teacher.cls_scores.float().amax(1) > self.cfg.kd_score_thresh
        size, device = teacher.start.shape[-1], teacher.start.device
        return torch.stack([iou_map(segs.to(device).reshape(-1, 2).float() + MAP_SHIFT, size,
                                    self.spec.max_duration) > 0 for segs in gt_segments])

    def _feature_terms(self, s_feat: torch.Tensor, t_feat: torch.Tensor,
                       mask: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg, terms = self.cfg, {}
        projected = self.project(s_feat)
        if "feat_loss" in self.weights:
            terms["feat_loss"] = feature_mimic_loss(projected, t_feat, mask)
        if "atom_loss" in self.weights:
            terms["atom_loss"] = atomic_contrastive_loss(self.atom_student(s_feat), self.atom_teacher(t_feat),
                                                         mask, cfg.atom_tau)
        if "gcr_loss" in self.weights:
            source = projected if cfg.gcr_mode == "channel" else s_feat
            terms["gcr_loss"] = gcr_loss(source, t_feat, mask, cfg.gcr_mode)
        if "abs_loss" in self.weights:
            terms["abs_loss"] = abs_loss(s_feat, t_feat, mask, cfg.abs_norm)
        return terms
