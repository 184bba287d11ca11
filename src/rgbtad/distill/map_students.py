"""The conventional and decomposed students over G-TAD (``model.name: gtad``), a detector
whose output is a 2-D proposal map per window, not per-level dense predictions; registered
for (``distill.method``, ``gtad``) with `rgbtad.distill.students.register_family_student`, so
``build_model`` gives them for a G-TAD config. Their teacher must be a G-TAD too, with the
same window (``data.max_seq_len``), ``max_duration`` and number of map classes: its proposal
map, start / end probabilities and graph features teach the student's anchor by anchor
(`rgbtad.distill.map_losses`: ``kd_cls_loss``, ``kd_reg_loss``, ``feat_loss``).

`GTADConventionalStudent`: one G-TAD on the RGB features, ``hard_weight x`` G-TAD's loss on
the ground truth plus the map KD of its outputs against the teacher's.

`GTADDecomposedStudent`: Lee et al.'s dual-branch student (`rgbtad.distill.students`), on
G-TAD's stages:

* two input embeddings of the RGB windows, ``A = P_A(F)`` and ``M = P_M(F)`` (G-TAD's
  grouped conv + ReLU);
* per branch the GCNeXt backbone (block1, block2; ``share: full``: one backbone for both);
* the heads shared by both branches, literally the same modules: "the head" of G-TAD is
  what turns the backbone's features into its predictions, the start / end heads (on
  block1's features) and the sub-graph alignment with the 2-D map layers (on block2's graph
  features), whose last 1x1 conv is the map's classification and IoU-regression layer. So
  the motion branch's map is produced by the appearance branch's map head;
* asymmetric objectives: ``L_app`` = G-TAD's loss of the appearance branch on the ground
  truth (logged ``app_cls_loss``, ``app_reg_loss``, ``app_boundary_loss``); ``L_mot`` = the
  map KD of the motion branch against the teacher;
* the joint detector, trained with G-TAD's loss on the ground truth and the only path at
  inference, where ``distill.fuse_at`` says:

  - ``encoder`` (default): `rgbtad.distill.fusion.BranchFusion` (``distill.fusion``, LAF by
    default, ``model.n_head`` attention heads) of the two branches' graph features, snippet
    by snippet (one level, the same time steps), read by a joint G-TAD head with its own
    start / end heads, alignment and map layers (a G-TAD without embedding and backbone). It
    has one graph, the fused features: its start / end heads read them too, and its
    ``gtad.context`` "all" is the k-NN of that one graph. Inference: P_A, P_M, both
    backbones, the fusion, the joint head;
  - ``projection``: the fusion of A and M, read by a whole joint G-TAD (its own embedding,
    backbone and heads). Inference: P_A, P_M, the fusion and the joint G-TAD.

  ``L = hard_weight L_app + motion_weight L_mot + joint_weight L_joint``;
  ``detach_fusion_inputs`` keeps the joint loss out of the branches.

The fusions read the window's valid snippets (its video's, not the zero padding) and return
zeros on padding, as G-TAD's input is zero there. Eval mode cuts each video into G-TAD's
sliding windows with G-TAD's own code (`GTAD.windows`), runs the inference path
``gtad.eval_chunk`` windows at a time and returns a plain `GTADOutput`; ``postprocess`` is
the joint G-TAD's. Parameter groups are G-TAD's (weight decay on every parameter).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from rgbtad.core.errors import RgbtadError
from rgbtad.detection.gtad import GTAD, GTADOutput, spec_from_config
from rgbtad.detection.gtad_blocks import gather_neighbours, knn_indices
from rgbtad.detection.registry import build_detector
from rgbtad.distill.fusion import BranchFusion
from rgbtad.distill.map_losses import MapKDLoss, window_valid
from rgbtad.distill.students import DistillStudent, FamilyConventionalStudent, register_family_student
from rgbtad.distill.teachers import FrozenTeacher

__all__ = ["GTADConventionalStudent", "GTADDecomposedStudent", "GTADDistillOutput", "graph_backbone",
           "map_head"]

_APP_TERMS = ("cls_loss", "reg_loss", "boundary_loss")


@dataclass
class GTADDistillOutput(GTADOutput):
    """A G-TAD student's training-mode output: its inference detector's `GTADOutput`, plus
    the branch outputs and the teacher's output that its losses need."""

    branches: dict[str, GTADOutput] = field(default_factory=dict)
    teacher: GTADOutput | None = None


def _extend(out: GTADOutput, **extra) -> GTADDistillOutput:
    fields = {f.name: getattr(out, f.name) for f in dataclasses.fields(GTADOutput)}
    return GTADDistillOutput(**fields, **extra)


# --------------------------------------------------------------------------- G-TAD's stages
# GTAD.forward / network cut apart, so that a student can fuse between the backbone and the
# head and run one head on two backbones (tests check them against G-TAD's).

def graph_backbone(block1: nn.Module, block2: nn.Module, embedded: torch.Tensor):
    """G-TAD's GCNeXt backbone on embedded windows: (base, graph, the blocks' k-NN indices)."""
    base, index1 = block1(embedded)
    graph, index2 = block2(base)
    return base, graph, (index1, index2)


def map_head(heads: GTAD, base: torch.Tensor, graph: torch.Tensor, indices: tuple[torch.Tensor, ...]):
    """The start / end heads of `heads` on `base` and its alignment and map layers on
    `graph` (context "all": the neighbours of `indices`): (map, start, end)."""
    start = torch.sigmoid(heads.start_head[1](heads.start_head[0](base)[0])).squeeze(1)
    end = torch.sigmoid(heads.end_head[1](heads.end_head[0](base)[0])).squeeze(1)
    sources = [graph]
    if heads.spec.context != "none":
        index = knn_indices(graph, heads.spec.knn_k) if heads.spec.context == "last" \
            else torch.cat(indices, dim=2)
        sources.append(gather_neighbours(graph, index).mean(dim=-1))
    proposal_map = torch.sigmoid(heads.map_layers(heads.align_conv(sources)))
    return proposal_map, start, end


def _head_only(model: GTAD) -> GTAD:
    """`model` without its embedding and backbone (it reads fused graph features)."""
    model.embed = model.block1 = model.block2 = None
    return model


# --------------------------------------------------------------------------- the students
class _MapStudent(DistillStudent):
    """What the G-TAD students share: the map KD, G-TAD's parameter groups, and the teacher
    checks of map distillation."""

    def __init__(self, cfg, num_classes: int):
        super().__init__(cfg, num_classes)
        self.spec = spec_from_config(cfg, num_classes)
        self.teacher_feat_dim = cfg.distill.teacher_feat_dim or self.spec.hidden_dim_1d  # graph width
        self.kd = MapKDLoss(cfg.distill, self.spec, self.teacher_feat_dim)

    def param_groups(self, weight_decay: float) -> list[dict]:
        return GTAD.param_groups(self, weight_decay)  # G-TAD's rule, over every parameter

    def attach_teacher(self, teacher: FrozenTeacher) -> None:
        """Use `teacher`, a G-TAD run, in training; checks that its maps line up."""
        model, run = teacher.model, teacher.run_dir
        if not isinstance(model, GTAD):
            raise RgbtadError(f"{run}: a G-TAD student learns from a G-TAD teacher's proposal maps, "
                              f"but the teacher is {type(model).__name__}")
        if teacher.input_dim != self.teacher_dim:
            raise RgbtadError(f"{run}: the teacher reads {teacher.input_dim}-d features "
                              f"but distill.teacher_input_dim is {self.teacher_dim}")
        theirs, ours = model.spec, self.spec
        for key, what in (("temporal_scale", "window (data.max_seq_len)"), ("max_duration", "gtad.max_duration"),
                          ("num_map_classes", "number of map classes (gtad.multiclass)")):
            if getattr(theirs, key) != getattr(ours, key):
                raise RgbtadError(f"{run}: the teacher's {what} is {getattr(theirs, key)}, "
                                  f"the student's {getattr(ours, key)}")
        if self.kd.uses_features and theirs.hidden_dim_1d != self.teacher_feat_dim:
            raise RgbtadError(f"{run}: the teacher's graph features are {theirs.hidden_dim_1d}-d but the "
                              f"student expects {self.teacher_feat_dim} (set distill.teacher_feat_dim)")
        self.teacher = teacher


@register_family_student("conventional", "gtad")
class GTADConventionalStudent(FamilyConventionalStudent, _MapStudent):
    """One G-TAD on the student's features: ``hard_weight x`` G-TAD's loss + map KD."""

    extend = staticmethod(_extend)


@register_family_student("decomposed", "gtad")
class GTADDecomposedStudent(_MapStudent):
    """Lee et al.'s dual-branch student on G-TAD (see the module docstring)."""

    def __init__(self, cfg, num_classes: int):
        super().__init__(cfg, num_classes)
        d = cfg.distill
        self.share, self.fuse_at, self.detach_fusion_inputs = d.share, d.fuse_at, d.detach_fusion_inputs
        self.motion_weight, self.joint_weight = d.motion_weight, d.joint_weight
        # appearance branch: P_A (embed), its backbone, and the heads both branches share
        # (start_head, end_head, align_conv, map_layers)
        self.appearance = build_detector(cfg, num_classes)
        # motion branch: the P_M (and with share "cls_reg" the backbone) of a second G-TAD;
        # its heads are not kept
        motion = build_detector(cfg, num_classes)
        self.motion_embed = motion.embed
        if self.share == "cls_reg":
            self.motion_block1, self.motion_block2 = motion.block1, motion.block2
        try:
            self.fusion = BranchFusion(d.fusion, self.spec.hidden_dim_1d, cfg.model.n_head, d.laf_pooling,
                                       d.laf_window)
        except ValueError as err:
            raise RgbtadError(f"distill config: {err}") from None
        if self.fuse_at == "encoder":
            self.joint = _head_only(build_detector(cfg, num_classes))
        else:
            self.joint = build_detector(cfg, num_classes, input_dim=self.spec.hidden_dim_1d)

    @property
    def inference_detector(self) -> nn.Module:
        return self.joint

    @property
    def loss_names(self) -> list[str]:
        return [*self.joint.loss_names, *(f"app_{name}" for name in _APP_TERMS), *self.kd.names]

    def _motion_blocks(self) -> tuple[nn.Module, nn.Module]:
        if self.share == "cls_reg":
            return self.motion_block1, self.motion_block2
        return self.appearance.block1, self.appearance.block2

    def _fuse(self, a: torch.Tensor, m: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        if self.detach_fusion_inputs:
            a, m = a.detach(), m.detach()
        return self.fusion(a, m, keep)

    def _run(self, x: torch.Tensor, keep: torch.Tensor) -> dict[str, tuple]:
        """The paths on windows ``W x C x T`` (`keep` ``W x 1 x T``: valid snippets), each a
        (map, start, end, graph features); eval mode runs only the joint (inference) path."""
        app = self.appearance
        a, m = torch.relu(app.embed(x)), torch.relu(self.motion_embed(x))
        paths = {}
        if self.fuse_at == "projection":
            paths["joint"] = self.joint.network(self._fuse(a, m, keep))
            if not self.training:
                return paths
        a_base, a_graph, a_index = graph_backbone(app.block1, app.block2, a)
        m_base, m_graph, m_index = graph_backbone(*self._motion_blocks(), m)
        if self.fuse_at == "encoder":
            fused = self._fuse(a_graph, m_graph, keep)
            paths["joint"] = (*map_head(self.joint, fused, fused, (knn_indices(fused, self.spec.knn_k),)), fused)
            if not self.training:
                return paths
        paths["appearance"] = (*map_head(app, a_base, a_graph, a_index), a_graph)
        paths["motion"] = (*map_head(app, m_base, m_graph, m_index), m_graph)  # the shared heads
        return paths

    def forward(self, feats: torch.Tensor, masks: torch.Tensor,
                teacher_feats: torch.Tensor | None = None) -> GTADOutput:
        self._check_inputs(feats, teacher_feats)
        windows, video, starts, lengths = self.appearance.windows(feats, masks)
        keep = window_valid(lengths, video, starts, windows.shape[-1]).unsqueeze(1)
        if not self.training:
            parts = [self._run(x, k)["joint"] for x, k in zip(windows.split(self.spec.eval_chunk),
                                                               keep.split(self.spec.eval_chunk))]
            return GTADOutput(*(torch.cat(p) for p in zip(*parts)), video, starts, lengths)
        paths = {name: GTADOutput(*path, video, starts, lengths) for name, path in self._run(windows, keep).items()}
        joint = paths.pop("joint")
        return _extend(joint, branches=paths, teacher=self._teach(teacher_feats, masks))

    def losses(self, out: GTADDistillOutput, gt_segments: list[torch.Tensor],
               gt_labels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        joint = self.joint.losses(out, gt_segments, gt_labels)
        app = self.appearance.losses(out.branches["appearance"], gt_segments, gt_labels)
        terms, teacher_loss = self.kd(out.branches["motion"], out.teacher, gt_segments, gt_labels)
        final = (self.hard_weight * app["final_loss"] + self.motion_weight * teacher_loss
                 + self.joint_weight * joint["final_loss"])
        return {**joint, **{f"app_{name}": app[name] for name in _APP_TERMS}, **terms, "final_loss": final}
