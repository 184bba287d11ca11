"""Distillation losses: a student's predictions and features against a frozen teacher's.

Every term is masked: padded snippets never contribute (the C2MS code averages over
padding; we do not). Output terms compare the two detectors level by level, over all
pyramid levels; feature terms compare the level-0 neck features (the full-resolution
sequence the heads see, "the last layer before the classifier").

Output-level (Lee et al.'s "reproduce the teacher through the head"; conventional logit KD):

* `sigmoid_kd_loss`: per-class binary KL between the teacher's and the student's sigmoid
  probabilities at temperature τ, ``Σ_k KL(Bern(σ(z^t_k/τ)) ‖ Bern(σ(z^s_k/τ)))``, summed
  over real positions, divided by the detector's loss normaliser (the EMA of the number of
  positive points that also divides the focal loss) and multiplied by τ². This is the
  soft-target BCE minus the teacher's entropy: the same gradients, and exactly 0 when the
  student matches the teacher. Dividing by the normaliser rather than by the number of
  positions keeps it on the scale of the focal loss: a mean over all positions, most of
  them background, is smaller by their ratio (about 90 on THUMOS crops: some 9000
  positions per batch of two, a normaliser near 100), and at weight 1 the student then
  barely learns from the teacher (measured on the toy features).
* `offset_kd_loss`: L1 between the stride-normalised offsets at the selected positions:
  where the teacher's highest class probability exceeds ``kd_score_thresh``, or at the
  ground-truth positives of the label assignment (``kd_reg_positions``).

Feature-level:

* `feature_mimic_loss`: MSE over real snippets and channels (through a learned 1x1
  projection when the widths differ).
* Dai et al. (ICCV 2021), reconstructed from secondary descriptions (see METHODS.md §2):
  `atomic_contrastive_loss` (InfoNCE per snippet: the positive is the teacher at the same
  snippet, the negatives the teacher's other snippets of the same video, on 2-layer MLP
  projections, L2-normalised, temperature ``atom_tau``), `gcr_loss` (global contextual
  relations: the masked, mean-centred channel covariance ``C x C``, squared Frobenius
  distance / C², or the ``T x T`` cosine-affinity matrix, mean squared difference over real
  pairs) and `abs_loss` (action boundary saliency: ``b_t`` = mean absolute difference of
  consecutive snippets' features; softmax over time and KL(teacher ‖ student), or divided
  by its maximum and MSE).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rgbtad.detection.assignment import assign_batch
from rgbtad.detection.protocol import DetectorOutput

__all__ = [
    "TeacherLoss",
    "abs_loss",
    "atomic_contrastive_loss",
    "feature_mimic_loss",
    "gcr_loss",
    "offset_kd_loss",
    "sigmoid_kd_loss",
]

_NEG = -1e4  # a logit that softmax turns into exactly 0 without producing NaNs


def sigmoid_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                    valid: torch.Tensor, normalizer: float, temperature: float = 1.0) -> torch.Tensor:
    """Logits ``B x N x K``, ``valid`` ``B x N`` (see the module docstring)."""
    s = student_logits[valid].float() / temperature
    t = teacher_logits[valid].float() / temperature
    p = torch.sigmoid(t)
    kl = (F.binary_cross_entropy_with_logits(s, p, reduction="none")
          - F.binary_cross_entropy_with_logits(t, p, reduction="none"))
    return kl.sum() / normalizer * temperature ** 2


def offset_kd_loss(student_offsets: torch.Tensor, teacher_offsets: torch.Tensor,
                   positions: torch.Tensor) -> torch.Tensor:
    """Offsets ``B x N x 2``; mean absolute difference at the ``B x N`` `positions`."""
    if not bool(positions.any()):
        return student_offsets.sum() * 0
    return F.l1_loss(student_offsets[positions].float(), teacher_offsets[positions].float())


def feature_mimic_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Features ``B x C x T``, mask ``B x T``: mean squared difference over real snippets."""
    diff = (student.float() - teacher.float()).square().mean(1)  # B x T
    return diff[mask].mean()


def atomic_contrastive_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor,
                            tau: float = 0.1) -> torch.Tensor:
    """InfoNCE over the snippets of each video; inputs ``B x D x T`` (projected), ``B x T``."""
    zs = F.normalize(student.float(), dim=1)
    zt = F.normalize(teacher.float(), dim=1)
    logits = torch.einsum("bdt,bds->bts", zs, zt) / tau  # student snippet t vs teacher snippet s
    logits = logits.masked_fill(~mask[:, None, :], float("-inf"))
    length = logits.shape[-1]
    target = torch.arange(length, device=logits.device).expand(logits.shape[0], length)
    return F.cross_entropy(logits[mask], target[mask])


def _centred(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    mean = (x * weight).sum(-1, keepdim=True) / weight.sum(-1, keepdim=True).clamp(min=1)
    return (x - mean) * weight


def gcr_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor,
             mode: str = "channel") -> torch.Tensor:
    """Global contextual relations of ``B x C x T`` features over the real snippets."""
    weight = mask[:, None, :].to(torch.float32)
    count = weight.sum(-1).clamp(min=1)  # B x 1
    if mode == "channel":
        if student.shape[1] != teacher.shape[1]:
            raise ValueError(f"channel GCR needs equal widths, got {student.shape[1]} and {teacher.shape[1]}")
        xs, xt = _centred(student.float(), weight), _centred(teacher.float(), weight)
        gs = xs @ xs.transpose(1, 2) / count[:, :, None]
        gt = xt @ xt.transpose(1, 2) / count[:, :, None]
        return (gs - gt).square().sum((1, 2)).mean() / student.shape[1] ** 2
    if mode == "temporal":
        xs = F.normalize(student.float(), dim=1) * weight
        xt = F.normalize(teacher.float(), dim=1) * weight
        diff = (xs.transpose(1, 2) @ xs - xt.transpose(1, 2) @ xt).square().sum((1, 2))
        return (diff / count[:, 0] ** 2).mean()
    raise ValueError(f"unknown GCR mode {mode!r}")


def _saliency(x: torch.Tensor) -> torch.Tensor:
    return (x[:, :, 1:] - x[:, :, :-1]).abs().mean(1)  # B x (T-1)


def abs_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor,
             norm: str = "softmax") -> torch.Tensor:
    """Action boundary saliency of ``B x C x T`` features (pairs of real snippets only)."""
    pairs = mask[:, 1:] & mask[:, :-1]
    bs, bt = _saliency(student.float()), _saliency(teacher.float())
    has_pairs = pairs.any(1)
    if not bool(has_pairs.any()):
        return student.sum() * 0
    if norm == "softmax":
        log_ps = bs.masked_fill(~pairs, _NEG).log_softmax(-1)
        log_pt = bt.masked_fill(~pairs, _NEG).log_softmax(-1)
        kl = F.kl_div(log_ps, log_pt, log_target=True, reduction="none").sum(-1)
        return kl[has_pairs].mean()
    if norm == "max":
        def scaled(b: torch.Tensor) -> torch.Tensor:
            peak = b.masked_fill(~pairs, 0).amax(-1, keepdim=True)
            return b / peak.clamp(min=1e-6)
        return (scaled(bs) - scaled(bt)).square()[pairs].mean()
    raise ValueError(f"unknown ABS normalisation {norm!r}")


def _mlp(in_dim: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(in_dim, dim, 1), nn.ReLU(), nn.Conv1d(dim, dim, 1))


class TeacherLoss(nn.Module):
    """The weighted teacher terms of a student (``distill`` config section): output KD,
    feature mimicking and Dai et al.'s three losses, with the projections they need.

    ``forward`` returns the unweighted terms that have a positive weight (named
    ``kd_cls_loss``, ``kd_reg_loss``, ``feat_loss``, ``atom_loss``, ``gcr_loss``,
    ``abs_loss``) and their weighted sum.
    """

    WEIGHTS = {"kd_cls_loss": "kd_cls_weight", "kd_reg_loss": "kd_reg_weight",
               "feat_loss": "feat_weight", "atom_loss": "atom_weight",
               "gcr_loss": "gcr_weight", "abs_loss": "abs_weight"}

    def __init__(self, cfg, student_dim: int, teacher_dim: int, num_classes: int,
                 center_sample: str = "radius", center_radius: float = 1.5):
        super().__init__()
        self.cfg = cfg  # a DistillConfig
        self.weights = {name: float(getattr(cfg, key)) for name, key in self.WEIGHTS.items()
                        if getattr(cfg, key) > 0}
        self.num_classes = num_classes
        self.center_sample = center_sample
        self.center_radius = center_radius
        needs_same_width = "feat_loss" in self.weights or (
            "gcr_loss" in self.weights and cfg.gcr_mode == "channel")
        differ = needs_same_width and student_dim != teacher_dim
        self.project = nn.Conv1d(student_dim, teacher_dim, 1) if differ else nn.Identity()
        if "atom_loss" in self.weights:
            self.atom_student = _mlp(student_dim, cfg.atom_dim)
            self.atom_teacher = _mlp(teacher_dim, cfg.atom_dim)

    @property
    def names(self) -> list[str]:
        return list(self.weights)

    @property
    def uses_features(self) -> bool:
        """Whether any term compares features (so the teacher's width matters)."""
        return any(name in self.weights for name in ("feat_loss", "atom_loss", "gcr_loss", "abs_loss"))

    def forward(self, student: DetectorOutput, teacher: DetectorOutput,
                gt_segments: list[torch.Tensor], gt_labels: list[torch.Tensor], normalizer: float):
        """`normalizer`: the student detector's loss normaliser (see `sigmoid_kd_loss`)."""
        cfg = self.cfg
        valid = torch.cat(student.masks, dim=1)
        terms: dict[str, torch.Tensor] = {}
        if "kd_cls_loss" in self.weights:
            terms["kd_cls_loss"] = sigmoid_kd_loss(torch.cat(student.cls_logits, 1),
                                                   torch.cat(teacher.cls_logits, 1), valid,
                                                   normalizer, cfg.temperature)
        if "kd_reg_loss" in self.weights:
            if cfg.kd_reg_positions == "teacher":
                confident = torch.cat(teacher.cls_logits, 1).sigmoid().amax(-1) > cfg.kd_score_thresh
            else:
                gt_cls, _ = assign_batch(student.points, gt_segments, gt_labels, self.num_classes,
                                         self.center_sample, self.center_radius)
                confident = gt_cls.sum(-1) > 0
            terms["kd_reg_loss"] = offset_kd_loss(torch.cat(student.offsets, 1),
                                                  torch.cat(teacher.offsets, 1), confident & valid)
        s_feat, t_feat, mask = student.feats[0], teacher.feats[0], student.masks[0]
        projected = self.project(s_feat)
        if "feat_loss" in self.weights:
            terms["feat_loss"] = feature_mimic_loss(projected, t_feat, mask)
        if "atom_loss" in self.weights:
            terms["atom_loss"] = atomic_contrastive_loss(self.atom_student(s_feat),
                                                         self.atom_teacher(t_feat), mask, cfg.atom_tau)
        if "gcr_loss" in self.weights:
            source = projected if cfg.gcr_mode == "channel" else s_feat
            terms["gcr_loss"] = gcr_loss(source, t_feat, mask, cfg.gcr_mode)
        if "abs_loss" in self.weights:
            terms["abs_loss"] = abs_loss(s_feat, t_feat, mask, cfg.abs_norm)
        total = s_feat.new_zeros((), dtype=torch.float32)
        for name, value in terms.items():
            total = total + self.weights[name] * value
        return terms, total


# --------------------------------------------------------------------------- snippet level
# The terms of snippet-backbone distillation (`rgbtad.training.backbone_task`): one feature
# vector and one class distribution per snippet, no time axis and no mask.

__all__ += ["snippet_feature_loss", "softmax_kd_loss"]


def softmax_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                    temperature: float = 1.0) -> torch.Tensor:
    """Hinton et al.'s logit distillation: ``KL(softmax(z_t / T) ‖ softmax(z_s / T)) * T²``,
    averaged over the batch; logits ``B x K``. The T² keeps its gradients on the scale of a
    cross-entropy whatever the temperature; exactly 0 when the student matches the teacher."""
    t = float(temperature)
    return F.kl_div(F.log_softmax(student_logits.float() / t, 1), F.softmax(teacher_logits.float() / t, 1),
                    reduction="batchmean") * t * t


def snippet_feature_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Feature mimicking of pooled snippet features ``B x C``: mean squared difference."""
    return F.mse_loss(student.float(), teacher.float())
