"""The conventional and decomposed students over TadTR (``model.name: tadtr``), a set
predictor whose outputs are queries, not per-position predictions; registered for
(``distill.method``, ``tadtr``) with `rgbtad.distill.students.register_family_student`, so
``build_model`` gives them for a TadTR config. Their teacher must be a TadTR too, with the
same window (``data.max_seq_len``); its queries teach the student's through the Hungarian
matching of `rgbtad.distill.query_losses` (``kd_cls_loss``, ``kd_reg_loss``, ``feat_loss``).

`TadTRConventionalStudent`: one TadTR on the RGB features, ``hard_weight x`` TadTR's set
loss on the ground truth plus the query KD of its queries against the teacher's.

`TadTRDecomposedStudent`: Lee et al.'s dual-branch student (`rgbtad.distill.students`), on
TadTR's stages:

* two input projections of the RGB windows, ``A = P_A(F)`` and ``M = P_M(F)`` (TadTR's
  ``input_proj``: 1x1 conv + GroupNorm);
* per branch a deformable encoder and a decoder with its own action queries (``share:
  cls_reg``), or one encoder + decoder and one set of queries for both (``share: full``);
* the heads shared by both branches, literally the same modules: "the head" of a set
  predictor is its final classification and regression layers, here the class and segment
  FFNs (``class_embed``, ``segment_embed``, which also refine each decoder layer's segments)
  and the actionness regressor, another final prediction layer read from each branch's own
  memory. So the motion branch's queries are decoded by the appearance branch's FFNs;
* asymmetric objectives: ``L_app`` = TadTR's set loss of the appearance branch on the ground
  truth (logged as ``app_loss_ce`` ... ``app_loss_actionness``, last layer; its
  ``final_loss`` counts every layer); ``L_mot`` = the query KD of the motion branch;
* the joint detector, trained on the ground truth and the only path at inference, where
  ``distill.fuse_at`` says:

  - ``encoder`` (default): `rgbtad.distill.fusion.BranchFusion` (``distill.fusion``, LAF by
    default) of the two encoder memories, step by step (one level, the same time steps),
    decoded by a joint decoder with its own queries and FFNs (a TadTR without input
    projection and encoder). Inference: P_A, P_M, both encoders, the fusion, the joint decoder;
  - ``projection``: the fusion of A and M, read by a whole joint TadTR (its own projection,
    encoder and decoder). Inference: P_A, P_M, the fusion and the joint TadTR.

  ``L = hard_weight L_app + motion_weight L_mot + joint_weight L_joint``;
  ``detach_fusion_inputs`` keeps the joint loss out of the branches.

The fusions read a mask of the steps TadTR treats as real: with ``tadtr.mask_padding`` False
(the release's THUMOS windows) every step of the window, padding included, as the encoders
see it; with True the valid steps only.

Eval mode runs the inference path on whole videos, cut into TadTR's test windows, and returns
a plain `TadTROutput`; ``postprocess`` is the joint TadTR's. Parameter groups are TadTR's
(weight decay on every parameter, ``reference_points`` / ``sampling_offsets`` at
``tadtr.lr_linear_proj_mult`` x the learning rate).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from rgbtad.core.errors import RgbtadError
from rgbtad.detection.registry import build_detector
from rgbtad.detection.tadtr import TadTR, TadTROutput, TadTRSpec, spec_from_config
from rgbtad.detection.tadtr_attention import sine_position_encoding
from rgbtad.detection.tadtr_postprocess import test_windows
from rgbtad.detection.tadtr_transformer import DeformableTransformer, refine_segments
from rgbtad.distill.fusion import BranchFusion
from rgbtad.distill.query_losses import QueryKDLoss
from rgbtad.distill.students import DistillStudent, FamilyConventionalStudent, register_family_student
from rgbtad.distill.teachers import FrozenTeacher

__all__ = ["TadTRConventionalStudent", "TadTRDecomposedStudent", "TadTRDistillOutput", "cut_windows",
           "decode_queries", "encode_windows"]

_APP_TERMS = ("loss_ce", "loss_segments", "loss_iou", "loss_actionness")


@dataclass
class TadTRDistillOutput(TadTROutput):
    """A TadTR student's training-mode output: its inference detector's `TadTROutput`, plus
    the branch outputs and the teacher's output that its losses need."""

    branches: dict[str, TadTROutput] = field(default_factory=dict)
    teacher: TadTROutput | None = None


def _extend(out: TadTROutput, **extra) -> TadTRDistillOutput:
    fields = {f.name: getattr(out, f.name) for f in dataclasses.fields(TadTROutput)}
    return TadTRDistillOutput(**fields, **extra)


# --------------------------------------------------------------------------- TadTR's stages
# TadTR.forward / run_windows cut apart, so that a student can fuse between the encoder and
# the decoder and decode with another decoder's queries (tests check them against TadTR's).

def cut_windows(feats: torch.Tensor, masks: torch.Tensor, spec: TadTRSpec, training: bool):
    """TadTR's windows of ``B x C x L`` features: ``N x C x window`` zero-padded windows,
    their ``N x window`` valid steps, and per video its ``(start, end)`` windows."""
    masks = masks.bool()
    lengths = [int(n) for n in masks.sum(1).tolist()]
    if training:
        windows = [[(0, spec.window)] for _ in lengths]
    else:
        windows = [test_windows(max(n, 1), spec.window, spec.test_overlap) for n in lengths]
    rows = [(v, s, e) for v, spans in enumerate(windows) for s, e in spans]
    x = feats.new_zeros(len(rows), feats.shape[1], spec.window)
    valid = torch.zeros(len(rows), spec.window, dtype=torch.bool, device=feats.device)
    for i, (v, s, e) in enumerate(rows):
        e = min(e, feats.shape[-1])
        x[i, :, :e - s] = feats[v, :, s:e] * masks[v, s:e]
        valid[i, :e - s] = masks[v, s:e]
    return x, valid, windows


def _place(out: TadTROutput, windows: list[list[tuple[int, int]]]) -> TadTROutput:
    """`out` (one row per window) labelled with its videos and their steps."""
    rows = [(v, s, e) for v, spans in enumerate(windows) for s, e in spans]
    device = out.scale.device
    out.video = torch.tensor([r[0] for r in rows], device=device)
    out.start = torch.tensor([float(r[1]) for r in rows], device=device)
    out.end = torch.tensor([float(r[2]) for r in rows], device=device)
    out.windows = windows
    return out


def _padding(spec: TadTRSpec, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    padding = ~valid if spec.mask_padding else torch.zeros_like(valid)
    return padding, (~padding).sum(1).float() / valid.shape[1]


def encode_windows(transformer: DeformableTransformer, spec: TadTRSpec, src: torch.Tensor,
                   padding: torch.Tensor, valid_ratio: torch.Tensor) -> torch.Tensor:
    """The encoder memory ``N x window x D`` of projected ``N x D x window`` windows."""
    pos = sine_position_encoding(~padding, spec.hidden_dim)
    return transformer.encode(src.transpose(1, 2), pos.transpose(1, 2), padding, valid_ratio)


def decode_queries(heads: TadTR, transformer: DeformableTransformer, queries: nn.Embedding, memory: torch.Tensor,
                   padding: torch.Tensor, valid_ratio: torch.Tensor) -> TadTROutput:
    """`transformer`'s decoder over `queries` and `memory`, read by the class, segment and
    actionness heads of `heads` (whose spec it follows)."""
    s = heads.spec
    decoded = transformer.decode(memory, padding, valid_ratio, queries.weight,
                                 heads.segment_embed if s.seg_refine else None)
    logits, segments = [], []
    for layer, hidden in enumerate(decoded.hidden):
        head = min(layer, len(heads.class_embed) - 1)
        logits.append(heads.class_embed[head](hidden))
        if decoded.segments is not None:
            segments.append(decoded.segments[layer])
        else:
            segments.append(refine_segments(heads.segment_embed[head](hidden), decoded.references[layer]))
    memory = memory.transpose(1, 2)
    actionness = heads.actionness(memory, segments[-1]) if heads.actionness is not None else None
    num, window = padding.shape
    scale = (~padding).sum(1).float() if s.mask_padding else torch.full((num,), float(window), device=memory.device)
    empty = torch.zeros(num, device=memory.device)
    return TadTROutput(logits, segments, list(decoded.hidden), actionness, memory,
                       video=torch.arange(num, device=memory.device), start=empty, end=empty + window, scale=scale)


def _decoder_only(model: TadTR) -> TadTR:
    """`model` without its input projection and encoder (it decodes a fused memory)."""
    model.input_proj = None
    model.transformer.encoder = None
    model.transformer.level_embed = None
    return model


# --------------------------------------------------------------------------- the students
class _QueryStudent(DistillStudent):
    """What the TadTR students share: the query KD, TadTR's parameter groups, and the
    teacher checks of query distillation."""

    def __init__(self, cfg, num_classes: int):
        super().__init__(cfg, num_classes)
        self.spec = spec_from_config(cfg, num_classes)
        self.teacher_feat_dim = cfg.distill.teacher_feat_dim or self.spec.hidden_dim  # query width
        self.kd = QueryKDLoss(cfg.distill, self.spec, self.teacher_feat_dim)

    def param_groups(self, weight_decay: float) -> list[dict]:
        return TadTR.param_groups(self, weight_decay)  # TadTR's rule over every parameter (reads self.spec)

    def attach_teacher(self, teacher: FrozenTeacher) -> None:
        """Use `teacher`, a TadTR run, in training; checks that its queries can teach."""
        model = teacher.model
        if not isinstance(model, TadTR):
            raise RgbtadError(f"{teacher.run_dir}: a TadTR student learns from a TadTR teacher's queries, "
                              f"but the teacher is {type(model).__name__}")
        if teacher.input_dim != self.teacher_dim:
            raise RgbtadError(f"{teacher.run_dir}: the teacher reads {teacher.input_dim}-d features "
                              f"but distill.teacher_input_dim is {self.teacher_dim}")
        if model.spec.window != self.spec.window:
            raise RgbtadError(f"{teacher.run_dir}: the teacher's window (data.max_seq_len) is {model.spec.window} "
                              f"steps, the student's {self.spec.window}")
        if self.kd.uses_features and model.spec.hidden_dim != self.teacher_feat_dim:
            raise RgbtadError(f"{teacher.run_dir}: the teacher's queries are {model.spec.hidden_dim}-d "
                              f"but the student expects {self.teacher_feat_dim} (set distill.teacher_feat_dim)")
        try:
            self.kd.layer_pairs(self.spec.dec_layers, model.spec.dec_layers)
        except ValueError as err:
            raise RgbtadError(f"{teacher.run_dir}: {err}") from None
        self.teacher = teacher


@register_family_student("conventional", "tadtr")
class TadTRConventionalStudent(FamilyConventionalStudent, _QueryStudent):
    """One TadTR on the student's features: ``hard_weight x`` set loss + query KD."""

    extend = staticmethod(_extend)


@register_family_student("decomposed", "tadtr")
class TadTRDecomposedStudent(_QueryStudent):
    """Lee et al.'s dual-branch student on TadTR (see the module docstring)."""

    def __init__(self, cfg, num_classes: int):
        super().__init__(cfg, num_classes)
        d = cfg.distill
        self.share, self.fuse_at, self.detach_fusion_inputs = d.share, d.fuse_at, d.detach_fusion_inputs
        self.motion_weight, self.joint_weight = d.motion_weight, d.joint_weight
        # appearance branch: P_A (input_proj), its encoder, decoder and queries, and the heads
        # both branches share (class_embed, segment_embed, actionness)
        self.appearance = build_detector(cfg, num_classes)
        # motion branch: the P_M (and with share "cls_reg" the transformer and queries) of a
        # second TadTR; its heads are not kept
        motion = build_detector(cfg, num_classes)
        self.motion_proj = motion.input_proj
        if self.share == "cls_reg":
            self.motion_transformer = motion.transformer
            self.motion_queries = motion.query_embed
        try:
            self.fusion = BranchFusion(d.fusion, self.spec.hidden_dim, self.spec.num_heads, d.laf_pooling,
                                       d.laf_window)
        except ValueError as err:
            raise RgbtadError(f"distill config: {err}") from None
        if self.fuse_at == "encoder":
            self.joint = _decoder_only(build_detector(cfg, num_classes))
        else:
            self.joint = build_detector(cfg, num_classes, input_dim=self.spec.hidden_dim)

    @property
    def inference_detector(self) -> nn.Module:
        return self.joint

    @property
    def loss_names(self) -> list[str]:
        app = [f"app_{name}" for name in _APP_TERMS if name in self.appearance.loss_names]
        return [*self.joint.loss_names, *app, *self.kd.names]

    def _motion_parts(self) -> tuple[DeformableTransformer, nn.Embedding]:
        if self.share == "cls_reg":
            return self.motion_transformer, self.motion_queries
        return self.appearance.transformer, self.appearance.query_embed

    def _fuse(self, a: torch.Tensor, m: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        if self.detach_fusion_inputs:
            a, m = a.detach(), m.detach()
        return self.fusion(a, m, keep)

    def forward(self, feats: torch.Tensor, masks: torch.Tensor,
                teacher_feats: torch.Tensor | None = None) -> TadTROutput:
        self._check_inputs(feats, teacher_feats)
        if feats.dim() != 3 or masks.dim() != 2 or feats.shape[::2] != masks.shape:
            raise ValueError(f"expected B x C x L features and B x L masks, got "
                             f"{tuple(feats.shape)} and {tuple(masks.shape)}")
        self.joint.check_length(feats.shape[-1])
        x, valid, windows = cut_windows(feats, masks, self.spec, self.training)
        padding, valid_ratio = _padding(self.spec, valid)
        keep = (~padding).unsqueeze(1)  # the steps TadTR treats as real (module docstring)
        a, m = self.appearance.input_proj(x), self.motion_proj(x)
        if self.fuse_at == "projection":
            joint = self.joint.run_windows(self._fuse(a, m, keep), valid)
            if not self.training:
                return _place(joint, windows)
        transformer, queries = self._motion_parts()
        a_memory = encode_windows(self.appearance.transformer, self.spec, a, padding, valid_ratio)
        m_memory = encode_windows(transformer, self.spec, m, padding, valid_ratio)
        if self.fuse_at == "encoder":
            fused = self._fuse(a_memory.transpose(1, 2), m_memory.transpose(1, 2), keep).transpose(1, 2)
            joint = decode_queries(self.joint, self.joint.transformer, self.joint.query_embed, fused, padding,
                                   valid_ratio)
            if not self.training:
                return _place(joint, windows)
        app = self.appearance
        appearance = decode_queries(app, app.transformer, app.query_embed, a_memory, padding, valid_ratio)
        motion = decode_queries(app, transformer, queries, m_memory, padding, valid_ratio)  # the shared heads
        return _extend(_place(joint, windows), branches={"appearance": appearance, "motion": motion},
                       teacher=self._teach(teacher_feats, masks))

    def losses(self, out: TadTRDistillOutput, gt_segments: list[torch.Tensor],
               gt_labels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        joint = self.joint.losses(out, gt_segments, gt_labels)
        app = self.appearance.losses(out.branches["appearance"], gt_segments, gt_labels)
        terms, teacher_loss = self.kd(out.branches["motion"], out.teacher, gt_segments, gt_labels)
        final = (self.hard_weight * app["final_loss"] + self.motion_weight * teacher_loss
                 + self.joint_weight * joint["final_loss"])
        return {**joint, **{f"app_{name}": app[name] for name in _APP_TERMS if name in app}, **terms,
                "final_loss": final}
