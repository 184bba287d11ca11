"""RGB-only students trained with a frozen teacher.

Every student is a `rgbtad.detection.protocol.Detector` (``forward``, ``losses``,
``postprocess``, ``param_groups``, ``max_div_factor``, ``strides``, ``check_length``,
``loss_names``, ``loss_normalizer``, ``training_inputs``), registered under its
``distill.method`` (`rgbtad.detection.registry`), plus ``attach_teacher``. Its input is
the same in training and eval mode: the student's own features and their mask.

* Training mode: ``forward(feats, masks, teacher_feats=...)``; ``teacher_feats`` (its
  ``training_inputs``) are the teacher's features of the same snippets, cropped and padded
  like ``feats`` (the batch field of `rgbtad.features.paired.PairedFeatureStore`). The
  student runs the teacher on them without gradients and returns a `DistillOutput`.
* Eval mode: ``forward(feats, masks)``. Only the inference path runs and the output is the
  plain `DetectorOutput` of the inference detector; the teacher, its features and the
  training-only branches are never touched.

Students are built from the detector family's public parts (``model.name``): the
conventional and C2MS students wrap a whole detector (`build_detector`, any family whose
output is a `DetectorOutput`), the decomposed student assembles the stages of a
`rgbtad.detection.protocol.PyramidDetector` family (ActionFormer, TriDet) and its
registered neck-and-heads part (`build_pyramid_head`).

`ConventionalKDStudent` is the baseline Lee et al. beat: one detector on the RGB
features, trained on the ground truth plus logit and/or feature mimicking (and, with the
``atom``/``gcr``/``abs`` weights, Dai et al.'s augmented-RGB losses).

`DecomposedStudent` is Lee et al. (CVPR 2023), as read from the slides and METHODS.md §1
(their full text was not available; the choices below are config options):

* two projections of the RGB features, ``A = P_A(F)`` and ``M = P_M(F)``, each the
  family's projection (``model.arch[0]`` x masked conv + LayerNorm + ReLU);
* per branch the family's encoder and neck (``share: full`` shares them too) and one
  set of heads shared by both branches (literally the same modules). For ActionFormer the
  classification and regression heads; for TriDet the classification head, the Trident
  (centre-offset) regression head and the two boundary heads, so the motion branch's
  outputs are decoded by the same Trident head as the appearance branch's;
* asymmetric objectives: ``L_app`` = detection loss of the A-path on the ground truth;
  ``L_mot`` = the teacher terms (output KD, optionally feature terms) of the M-path;
* fusion of the branches (``distill.fusion``, default local attentive fusion) feeding a
  joint detector trained on the ground truth:
  ``L = hard_weight·L_app + motion_weight·L_mot + joint_weight·L_joint``. Where they are
  fused is ``distill.fuse_at``:

  - ``encoder`` (default): the two encoder pyramids, level by level with one fusion module
    shared by the levels, into a joint neck and heads. Inference runs P_A, P_M, both
    encoders, the fusion and the joint neck and heads.
  - ``projection`` (METHODS.md's head-agnostic reading): A and M themselves, into a joint
    detector of the family with its own projection and encoder. Inference runs P_A, P_M, the fusion
    and the joint detector; the branch encoders are training-only.

  On pre-extracted features P_M is two convolutions: most of what the motion branch learns
  from the teacher sits in its encoder, which ``projection`` throws away at inference. On
  toy features (`make_toy_features`, 4 classes, two of them weakened to 15% in the
  student's features, 40 training videos, 12 epochs, one seed) ``projection`` scored below
  the RGB-only detector (0.56 concat, 0.58 LAF vs 0.64 average mAP) and ``encoder`` above
  it (0.75, 0.74), hence the default. With a backbone trained end to end, as in the paper,
  the backbone carries that knowledge and ``projection`` may be the closer reading;
* ``detach_fusion_inputs`` stops the joint loss from training the branches (P_A, P_M, and
  with ``fuse_at: encoder`` their encoders), so each keeps what its own objective taught it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from rgbtad.core.errors import RgbtadError
from rgbtad.data.detections import Detections
from rgbtad.detection.param_groups import decay_param_groups
from rgbtad.detection.protocol import DetectorOutput
from rgbtad.detection.registry import build_detector, build_pyramid_head, register_model
from rgbtad.distill.fusion import BranchFusion
from rgbtad.distill.losses import TeacherLoss
from rgbtad.distill.teachers import FrozenTeacher

__all__ = ["ConventionalKDStudent", "DecomposedStudent", "DistillOutput", "DistillStudent", "extend_output",
           "FamilyConventionalStudent", "register_family_student"]

#: students written for one detector family whose outputs are not per-level dense
#: predictions (a set of queries, a proposal map), by (distill.method, model.name); every
#: other family gets the generic student of the method
_FAMILY_STUDENTS: dict[tuple[str, str], type] = {}


def register_family_student(method: str, family: str):
    """Decorator: the class of `method`'s student over the detector family `family`."""

    def register(cls: type) -> type:
        _FAMILY_STUDENTS[method, family] = cls
        return cls

    return register


def _method_builder(method: str, generic: type):
    def build(cfg, num_classes: int) -> nn.Module:
        return _FAMILY_STUDENTS.get((method, cfg.model.name), generic)(cfg, num_classes)

    build.__name__ = f"build_{method}_student"
    return build


@dataclass
class DistillOutput(DetectorOutput):
    """A student's training-mode output: the predictions of its inference detector (the
    `DetectorOutput` fields, and ``prediction``, that detector's own output, which its
    family's loss reads: TriDet's carries its Trident branches), plus the branch predictions
    and the teacher's predictions that the student's losses need."""

    branches: dict[str, DetectorOutput] = field(default_factory=dict)
    teacher: DetectorOutput | None = None
    prediction: DetectorOutput | None = None


def extend_output(out: DetectorOutput, kind: type[DistillOutput] = DistillOutput, **extra) -> DistillOutput:
    """`out`'s fields as a `kind` (a `DistillOutput`), ``prediction`` `out` itself."""
    fields = {f.name: getattr(out, f.name) for f in dataclasses.fields(DetectorOutput)}
    return kind(**fields, prediction=out, **extra)


class DistillStudent(nn.Module):
    """What every student shares: input checks, the (unregistered) teacher, and the
    delegation of inference to ``self.inference_detector``."""

    training_inputs = ("teacher_feats",)

    def __init__(self, cfg, num_classes: int):
        super().__init__()
        self.student_dim = cfg.data.input_dim
        self.teacher_dim = cfg.distill.teacher_input_dim
        self.teacher_feat_dim = cfg.distill.teacher_feat_dim or cfg.model.fpn_dim
        self.max_seq_len = cfg.data.max_seq_len
        self.hard_weight = cfg.distill.hard_weight
        self.teacher: FrozenTeacher | None = None  # a plain attribute: see teachers.py
        self.kd = TeacherLoss(cfg.distill, cfg.model.fpn_dim, self.teacher_feat_dim, num_classes,
                              cfg.train.center_sample, cfg.train.center_sample_radius)

    @property
    def inference_detector(self) -> nn.Module:
        raise NotImplementedError

    # ------------------------------------------------------------------ interface
    @property
    def max_div_factor(self) -> int:
        return self.inference_detector.max_div_factor

    @property
    def strides(self) -> list[int]:
        return self.inference_detector.strides

    def check_length(self, length: int) -> None:
        self.inference_detector.check_length(length)

    @property
    def loss_normalizer(self) -> float:
        return self.inference_detector.loss_normalizer

    def param_groups(self, weight_decay: float) -> list[dict]:
        return decay_param_groups(self, weight_decay)

    @torch.no_grad()
    def postprocess(self, out: DetectorOutput, metas: list[dict]) -> list[Detections]:
        return self.inference_detector.postprocess(out, metas)

    def attach_teacher(self, teacher: FrozenTeacher) -> None:
        """Use `teacher` in training; checks that its outputs line up with the student's."""
        if teacher.input_dim != self.teacher_dim:
            raise RgbtadError(f"{teacher.run_dir}: the teacher reads {teacher.input_dim}-d features "
                              f"but distill.teacher_input_dim is {self.teacher_dim}")
        if list(teacher.strides) != list(self.strides):
            raise RgbtadError(f"{teacher.run_dir}: the teacher's pyramid strides {teacher.strides} "
                              f"differ from the student's {self.strides}")
        if self.kd.uses_features and teacher.feat_dim != self.teacher_feat_dim:
            raise RgbtadError(f"{teacher.run_dir}: the teacher's features are {teacher.feat_dim}-d "
                              f"but the student expects {self.teacher_feat_dim} "
                              f"(set distill.teacher_feat_dim)")
        try:
            teacher.check_length(self.max_seq_len)
        except ValueError as err:
            raise RgbtadError(f"{teacher.run_dir}: the teacher cannot take data.max_seq_len "
                              f"{self.max_seq_len} steps ({err})") from None
        self.teacher = teacher

    # ------------------------------------------------------------------ helpers
    def _check_inputs(self, feats: torch.Tensor, teacher_feats: torch.Tensor | None) -> None:
        """The student's features in either mode; in training mode also its teacher and the
        teacher's features of the same snippets (the same batch size and length)."""
        if feats.dim() != 3 or feats.shape[1] != self.student_dim:
            raise ValueError(f"the student expects student-only features with {self.student_dim} channels, "
                             f"got {tuple(feats.shape)}")
        if not self.training:
            return
        if self.teacher is None:
            raise RuntimeError("a student in training mode needs its teacher: call "
                               "attach_teacher(load_teacher(...)) first")
        if teacher_feats is None:
            raise ValueError(f"a student in training mode needs teacher_feats, the teacher's "
                             f"{self.teacher_dim}-channel features of the same snippets")
        expected = (feats.shape[0], self.teacher_dim, feats.shape[-1])
        if tuple(teacher_feats.shape) != expected:
            raise ValueError(f"teacher_feats of shape {tuple(teacher_feats.shape)}, expected {expected}")

    def _teach(self, teacher_feats: torch.Tensor, masks: torch.Tensor) -> DetectorOutput:
        return self.teacher(teacher_feats, masks)


class FamilyConventionalStudent:
    """Conventional KD, listed before the family's student base (`DistillStudent` for the
    pyramid heads; `rgbtad.distill.query_students`, `rgbtad.distill.map_students`): one
    detector of the family on the student's features, ``hard_weight x`` its own loss + the
    base's teacher terms (``self.kd``); ``extend(out, **extra)`` makes the family's training
    output."""

    extend = staticmethod(extend_output)

    def __init__(self, cfg, num_classes: int):
        super().__init__(cfg, num_classes)
        self.detector = build_detector(cfg, num_classes)

    @property
    def inference_detector(self) -> nn.Module:
        return self.detector

    @property
    def loss_names(self) -> list[str]:
        return [*self.detector.loss_names, *self.kd.names]

    def forward(self, feats: torch.Tensor, masks: torch.Tensor, teacher_feats: torch.Tensor | None = None):
        self._check_inputs(feats, teacher_feats)
        out = self.detector(feats, masks)
        if not self.training:
            return out
        return self.extend(out, teacher=self._teach(teacher_feats, masks))

    def losses(self, out, gt_segments: list[torch.Tensor], gt_labels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        det = self.detector.losses(out, gt_segments, gt_labels)
        terms, teacher_loss = self.kd(out, out.teacher, gt_segments, gt_labels)
        return {**det, **terms, "final_loss": self.hard_weight * det["final_loss"] + teacher_loss}


class ConventionalKDStudent(FamilyConventionalStudent, DistillStudent):
    """One pyramid detector on the student's features: ``hard_weight·L_det + teacher terms``
    (the family student's detector and forward; ActionFormer's and TriDet's loss names and
    normalizer)."""

    @property
    def loss_names(self) -> list[str]:
        return ["cls_loss", "reg_loss", "final_loss", *self.kd.names]

    def losses(self, out: DistillOutput, gt_segments: list[torch.Tensor],
               gt_labels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        det = self.detector.losses(out.prediction, gt_segments, gt_labels)
        terms, teacher_loss = self.kd(out, out.teacher, gt_segments, gt_labels,
                                      self.detector.loss_normalizer)
        return {"cls_loss": det["cls_loss"], "reg_loss": det["reg_loss"], **terms,
                "final_loss": self.hard_weight * det["final_loss"] + teacher_loss}


class DecomposedStudent(DistillStudent):
    """Lee et al.'s dual-branch student (see the module docstring)."""

    def __init__(self, cfg, num_classes: int):
        super().__init__(cfg, num_classes)
        d = cfg.distill
        self.share = d.share
        self.fuse_at = d.fuse_at
        self.detach_fusion_inputs = d.detach_fusion_inputs
        self.motion_weight = d.motion_weight
        self.joint_weight = d.joint_weight
        # Appearance branch: P_A is this detector's projection; its encoder and neck are the
        # A-path body, and its heads are the heads both branches share.
        self.appearance = build_detector(cfg, num_classes)
        # Motion branch: P_M (and, with share "cls_reg", an encoder and neck): the parts of a
        # second, independently initialised detector of the same family. Its heads are not
        # kept (both branches use the appearance heads); they are drawn all the same, so that
        # a seed gives the initialisation it gave before the parts could be built alone.
        motion = build_detector(cfg, num_classes)
        self.motion_embed = motion.embed
        if self.share == "cls_reg":
            self.motion_encoder = motion.encoder
            self.motion_neck = motion.neck
        try:
            self.fusion = BranchFusion(d.fusion, cfg.model.embd_dim, cfg.model.n_head,
                                       d.laf_pooling, d.laf_window)
        except ValueError as err:
            raise RgbtadError(f"distill config: {err}") from None
        if self.fuse_at == "encoder":  # fused encoder pyramids go straight to a neck and heads
            self.joint = build_pyramid_head(cfg, num_classes, input_dim=cfg.model.embd_dim)
        else:
            self.joint = build_detector(cfg, num_classes, input_dim=cfg.model.embd_dim)

    @property
    def inference_detector(self) -> nn.Module:
        return self.joint

    @property
    def loss_names(self) -> list[str]:
        return ["cls_loss", "reg_loss", "final_loss", "app_cls_loss", "app_reg_loss", *self.kd.names]

    def _motion_body(self) -> tuple[nn.Module, nn.Module]:
        if self.share == "cls_reg":
            return self.motion_encoder, self.motion_neck
        return self.appearance.encoder, self.appearance.neck

    def _fuse(self, a: torch.Tensor, m: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.detach_fusion_inputs:
            a, m = a.detach(), m.detach()
        return self.fusion(a, m, mask)

    def forward(self, feats: torch.Tensor, masks: torch.Tensor,
                teacher_feats: torch.Tensor | None = None) -> DetectorOutput:
        self._check_inputs(feats, teacher_feats)
        self.joint.check_length(feats.shape[-1])
        mask = masks.bool().unsqueeze(1)
        a, _ = self.appearance.embed(feats, mask)
        m, _ = self.motion_embed(feats, mask)
        if self.fuse_at == "projection":
            joint = self.joint(self._fuse(a, m, mask), masks)
            if not self.training:
                return joint
        motion_encoder, motion_neck = self._motion_body()
        a_pyramid, level_masks = self.appearance.encoder(a, mask)
        m_pyramid, _ = motion_encoder(m, mask)
        if self.fuse_at == "encoder":
            fused = [self._fuse(x, y, k) for x, y, k in zip(a_pyramid, m_pyramid, level_masks)]
            joint = self.joint.predict(fused, level_masks)
            if not self.training:
                return joint
        appearance = self.appearance.predict(a_pyramid, level_masks)
        fpn_feats, fpn_masks = motion_neck(m_pyramid, level_masks)
        motion = self.appearance.run_heads(fpn_feats, fpn_masks, m_pyramid)  # the shared heads
        return extend_output(joint, branches={"appearance": appearance, "motion": motion},
                       teacher=self._teach(teacher_feats, masks))

    def losses(self, out: DistillOutput, gt_segments: list[torch.Tensor],
               gt_labels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        joint = self.joint.losses(out.prediction, gt_segments, gt_labels)
        app = self.appearance.losses(out.branches["appearance"], gt_segments, gt_labels)
        terms, teacher_loss = self.kd(out.branches["motion"], out.teacher, gt_segments, gt_labels,
                                      self.appearance.loss_normalizer)
        final = (self.hard_weight * app["final_loss"] + self.motion_weight * teacher_loss
                 + self.joint_weight * joint["final_loss"])
        return {"cls_loss": joint["cls_loss"], "reg_loss": joint["reg_loss"],
                "app_cls_loss": app["cls_loss"], "app_reg_loss": app["reg_loss"], **terms,
                "final_loss": final}


register_model("conventional")(_method_builder("conventional", ConventionalKDStudent))
register_model("decomposed")(_method_builder("decomposed", DecomposedStudent))
