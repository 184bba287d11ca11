"""C2MS-Net (Yu, Wang, Shi, JVCIR 2026): cross-modal and cross-structure distillation on
pre-extracted two-stream features, as read from the authors' code (METHODS.md §3).

`C2MSStudent` (``distill.method: c2ms``) is one detector, optionally preceded by `Rgb2Flow`,
a hallucinator that fills in the motion half of the features from the RGB half:

* with ``distill.hallucinate_dim`` D > 0 the student reads the RGB features (``data.input_dim``
  channels) and its detector reads ``[rgb | Rgb2Flow(rgb)]`` (``data.input_dim + D``
  channels), so it can start from a two-stream teacher's weights; at inference the
  hallucinator replaces the flow features and nothing else is read;
* with D = 0 it is a plain detector of any backbone (``transformer``, ``conv``, ``conv_dw``)
  taught by a teacher of another structure.

Training loss: ``hard_weight · L_det + Σ weight · term`` over the terms with a positive weight:

* ``input_loss`` (``input_weight``): MSE of the hallucinated flow to the true flow over real
  snippets. The true flow is the part of the teacher's input (``teacher_feats``) after the
  student's channels: the teacher must read ``[student's channels | flow]``
  (``teacher_input_dim = input_dim + D``), as a two-stream teacher on THUMOS I3D features does;
* ``stem_loss`` (``stem_weight``): MSE of the level-0 encoder output (C2MS's ``stem_out``)
  to the teacher's, over real snippets (the widths, ``model.embd_dim``, must be equal);
* ``kd_reg_loss`` (``kd_reg_weight``): MSE of the offsets to the teacher's at every real
  position, per pyramid level, averaged over the levels (C2MS's ``L_bound``);
* ``kd_cls_loss`` (``kd_cls_weight``): the library's per-class sigmoid KD at ``temperature``
  (`sigmoid_kd_loss`, scaled by τ² and divided by the detector's loss normaliser).

``init_from_teacher`` copies the teacher's weights into every student tensor of the same
name and shape before training (a plain detector's names are those of the student's
``detector``); only the hallucinator then starts from scratch.

The stages are separate ``rgbtad train`` runs, each teaching the next (``teacher_run`` = the
previous run); ``distill.c2ms_stage`` picks C2MS's effective weights (`rgbtad.config.PRESETS`):

=================  =====================================================================
stage              C2MS step; preset weights
=================  =====================================================================
cross_structure    transformer teacher -> conv student (their stage 1), or conv -> conv_dw
                   (their stage 3, compression); hard 0.4, stem 0.6, offset 0.6, logit
                   0.024, T 2, student from scratch
cross_modal        two-stream teacher -> the same architecture + Rgb2Flow (their step 1);
                   hard 0.4, input 3.0, offset 0.6, logit 0.24, T 2, init from the teacher
=================  =====================================================================

configs/thumos_i3d_c2ms_stage{1,2,3}.yaml hold the THUMOS14 I3D route with the commands.

Deliberate deviations from the authors' code (METHODS.md §3.3-3.7):

* every term is masked (theirs average over the padding too), and the hallucinator's output
  is masked;
* logit KD is per-class sigmoid KD (theirs: a softmax over the classes of sigmoid logits,
  ``KLDiv(batchmean)`` per level); the preset keeps their coefficients 0.24 / 0.024, so the
  numbers are C2MS's weights, not a numerical equivalence;
* ``input_loss`` averages over the flow channels only; theirs over all input channels,
  where the RGB half is identical, so their 3.0 equals 1.5 here;
* Rgb2Flow has a ReLU between its two convolutions (theirs: none, two stacked linear convs);
* the teacher runs in eval mode (theirs: train mode, drop-path active) with its EMA weights,
  which ``init_from_teacher`` copies too (theirs: the raw weights);
* not implemented: the temporal SE gate in the neck (``tem_att``, position-specific) and the
  two-teacher step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rgbtad.core.errors import RgbtadError
from rgbtad.detection.blocks import MaskedConv1d
from rgbtad.detection.protocol import DetectorOutput
from rgbtad.detection.registry import build_detector, register_model
from rgbtad.distill.losses import feature_mimic_loss, sigmoid_kd_loss
from rgbtad.distill.students import DistillOutput, DistillStudent, extend_output
from rgbtad.distill.teachers import FrozenTeacher

__all__ = ["C2MSOutput", "C2MSStudent", "Rgb2Flow", "offset_mse_loss"]

log = logging.getLogger(__name__)


class Rgb2Flow(nn.Module):
    """Hallucinated flow features: masked conv k3 -> ReLU -> masked conv k3 -> ReLU
    (``B x C_rgb x T`` -> ``B x C_flow x T``, zero on padded steps, >= 0 like I3D features)."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 3):
        super().__init__()
        self.conv1 = MaskedConv1d(in_dim, out_dim, kernel_size)
        self.conv2 = MaskedConv1d(out_dim, out_dim, kernel_size)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``mask``: ``B x 1 x T`` bool."""
        x, mask = self.conv1(x, mask)
        x, _ = self.conv2(self.act(x), mask)
        return self.act(x)


def offset_mse_loss(student_offsets: list[torch.Tensor], teacher_offsets: list[torch.Tensor],
                    masks: list[torch.Tensor]) -> torch.Tensor:
    """Per-level offsets ``B x T_l x 2`` and masks ``B x T_l``: MSE over the real positions of
    each level, averaged over the levels."""
    levels = [F.mse_loss(s[m].float(), t[m].float())
              for s, t, m in zip(student_offsets, teacher_offsets, masks) if bool(m.any())]
    if not levels:
        return student_offsets[0].sum() * 0
    return torch.stack(levels).mean()


@dataclass
class C2MSOutput(DistillOutput):
    """Training output: the detector's predictions, the teacher's, the hallucinated flow and
    its target (``B x C_flow x T``, or None) and the input mask (``B x T`` bool)."""

    hallucinated: torch.Tensor | None = None
    flow_target: torch.Tensor | None = None
    input_mask: torch.Tensor | None = None


@register_model("c2ms")
class C2MSStudent(DistillStudent):
    """C2MS-Net's student (see the module docstring)."""

    def __init__(self, cfg, num_classes: int):
        super().__init__(cfg, num_classes)
        d = cfg.distill
        for name in ("feat_weight", "atom_weight", "gcr_weight", "abs_weight"):
            if getattr(d, name) > 0:  # self.kd (the other students' terms) is not used here
                raise RgbtadError(f"config key 'distill.{name}' is not used by distill.method 'c2ms' "
                                  f"(its feature term is distill.stem_weight)")
        self.flow_dim = d.hallucinate_dim
        self.temperature = d.temperature
        self.init_from_teacher = d.init_from_teacher
        weights = {"input_loss": d.input_weight if self.flow_dim else 0.0, "stem_loss": d.stem_weight,
                   "kd_cls_loss": d.kd_cls_weight, "kd_reg_loss": d.kd_reg_weight}
        self.weights = {name: float(w) for name, w in weights.items() if w > 0}
        if "input_loss" in self.weights and self.teacher_dim != self.student_dim + self.flow_dim:
            raise RgbtadError(
                f"config key 'distill.input_weight': the true flow is the teacher's input after the "
                f"student's {self.student_dim} channels, so distill.teacher_input_dim must be "
                f"{self.student_dim} + {self.flow_dim} (data.input_dim + distill.hallucinate_dim), "
                f"got {self.teacher_dim}; set distill.input_weight=0 for a teacher without flow input")
        self.rgb2flow = Rgb2Flow(self.student_dim, self.flow_dim) if self.flow_dim else None
        self.detector = build_detector(cfg, num_classes, input_dim=self.student_dim + self.flow_dim)

    @property
    def inference_detector(self) -> nn.Module:
        return self.detector

    @property
    def loss_names(self) -> list[str]:
        return ["cls_loss", "reg_loss", "final_loss", *self.weights]

    def attach_teacher(self, teacher: FrozenTeacher) -> None:
        super().attach_teacher(teacher)
        if self.init_from_teacher:
            self._copy_weights(teacher)

    def _copy_weights(self, teacher: FrozenTeacher) -> None:
        own = self.state_dict()
        source = teacher.model.state_dict()
        if not isinstance(teacher.model, DistillStudent):  # a plain detector: our `detector`
            source = {f"detector.{key}": value for key, value in source.items()}
        fitting = {key: value for key, value in source.items()
                   if key in own and own[key].shape == value.shape}
        if not fitting:
            raise RgbtadError(f"{teacher.run_dir}: distill.init_from_teacher is set but none of the "
                              f"teacher's weights fit the student")
        self.load_state_dict(fitting, strict=False)
        log.info("student initialised from %s: %d of %d tensors", teacher.run_dir, len(fitting), len(own))

    def forward(self, feats: torch.Tensor, masks: torch.Tensor,
                teacher_feats: torch.Tensor | None = None) -> DetectorOutput:
        self._check_inputs(feats, teacher_feats)
        hallucinated = None
        inputs = feats
        if self.rgb2flow is not None:
            hallucinated = self.rgb2flow(feats, masks.bool().unsqueeze(1))
            inputs = torch.cat([feats, hallucinated], dim=1)
        out = self.detector(inputs, masks)
        if not self.training:
            return out
        target = teacher_feats[:, self.student_dim:] if "input_loss" in self.weights else None
        return extend_output(out, C2MSOutput, teacher=self._teach(teacher_feats, masks),
                             hallucinated=hallucinated, flow_target=target, input_mask=masks.bool())

    def losses(self, out: C2MSOutput, gt_segments: list[torch.Tensor],
               gt_labels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        det = self.detector.losses(out.prediction, gt_segments, gt_labels)
        terms = self._teacher_terms(out)
        final = self.hard_weight * det["final_loss"]
        for name, value in terms.items():
            final = final + self.weights[name] * value
        return {"cls_loss": det["cls_loss"], "reg_loss": det["reg_loss"], **terms, "final_loss": final}

    def _teacher_terms(self, out: C2MSOutput) -> dict[str, torch.Tensor]:
        teacher = out.teacher
        terms: dict[str, torch.Tensor] = {}
        if "input_loss" in self.weights:
            terms["input_loss"] = feature_mimic_loss(out.hallucinated, out.flow_target, out.input_mask)
        if "stem_loss" in self.weights:
            stem, teacher_stem = out.encoder_feats[0], teacher.encoder_feats[0]
            if stem.shape[1] != teacher_stem.shape[1]:
                raise RgbtadError(
                    f"{self.teacher.run_dir}: the teacher's level-0 encoder features are "
                    f"{teacher_stem.shape[1]}-d, the student's {stem.shape[1]}-d; distill.stem_weight "
                    f"needs the same model.embd_dim")
            terms["stem_loss"] = feature_mimic_loss(stem, teacher_stem, out.input_mask)
        if "kd_cls_loss" in self.weights:
            terms["kd_cls_loss"] = sigmoid_kd_loss(
                torch.cat(out.cls_logits, 1), torch.cat(teacher.cls_logits, 1), torch.cat(out.masks, 1),
                self.detector.loss_normalizer, self.temperature)
        if "kd_reg_loss" in self.weights:
            terms["kd_reg_loss"] = offset_mse_loss(out.offsets, teacher.offsets, out.masks)
        return terms
