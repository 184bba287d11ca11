"""What every detector offers: the `Detector` protocol and its output, `DetectorOutput`.

A detector is an ``nn.Module`` from snippet features to dense per-level predictions. The
trainer, inference, ONNX export, the run directory and the distillation students use
nothing else of a model than what `Detector` lists (plus the ``nn.Module`` basics:
``state_dict``, ``parameters``, ``train`` / ``eval``, ``to``). ActionFormer
(`rgbtad.detection.actionformer`) and every student (`rgbtad.distill`) implement it, and
`rgbtad.detection.registry.build_model` builds them by name::

    out = model(feats, masks)                          # B x C x L features, B x L bool masks
    out = model(feats, masks, teacher_feats=t)         # training, a student: its `training_inputs`
    losses = model.losses(out, gt_segments, gt_labels)   # training: a dict with "final_loss"
    detections = model.postprocess(out, metas)         # eval: per video, in seconds

`PyramidDetector` adds the staged parts a student that recombines a detector's stages needs
(the decomposed student runs two projections and encoders into shared heads).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from rgbtad.data.detections import Detections

__all__ = ["Detector", "DetectorOutput", "PyramidDetector"]


@dataclass
class DetectorOutput:
    """Per-level predictions (lists over pyramid levels, finest first).

    cls_logits: ``B x T_l x K``; offsets: ``B x T_l x 2`` (start / end distances in units of
    the level stride, >= 0); masks: ``B x T_l`` bool; points: ``T_l x 4`` rows
    ``(t, lo, hi, stride)`` on the input grid; feats: the neck features ``B x C x T_l``
    (for distillation); encoder_feats: the encoder's pyramid before the neck.
    """

    cls_logits: list[torch.Tensor]
    offsets: list[torch.Tensor]
    masks: list[torch.Tensor]
    points: list[torch.Tensor]
    feats: list[torch.Tensor] = field(default_factory=list)
    encoder_feats: list[torch.Tensor] = field(default_factory=list)


@runtime_checkable
class Detector(Protocol):
    """A temporal action detector on pre-extracted snippet features.

    Members (what the trainer, inference, export and distillation rely on):

    * ``forward(feats, masks, **inputs)``: ``feats`` ``B x C x L`` float, ``masks`` ``B x L``
      bool (True on real snippets), ``L`` padded as `rgbtad.data.batching.pad_batch` pads
      (``max_seq_len``, or a multiple of ``max_div_factor`` at inference). The same in
      training and eval mode: the detector's own input features. ``inputs`` are the extra
      batch fields named in ``training_inputs``, padded like ``feats``; they are read in
      training mode only (eval mode predicts from ``feats`` alone). Returns a
      `DetectorOutput` (in training mode a subclass may carry what ``losses`` needs).
    * ``losses(out, gt_segments, gt_labels)``: the training losses of a training-mode
      output, ground truth per video (``N x 2`` segments on the input grid, ``N`` labels);
      a dict holding every name of ``loss_names``, ``"final_loss"`` the one to minimise.
    * ``postprocess(out, metas)``: decoding and NMS of an eval-mode output; per video (one
      ``meta`` dict each: video_id, fps, duration, feat_stride, feat_num_frames) its
      `rgbtad.data.detections.Detections` (segments in seconds, scores, label ids).
    * ``loss_names``: the keys of ``losses`` (training logs have one column each).
    * ``training_inputs``: names of the extra batch fields the training forward reads
      (``()`` for a plain detector, ``("teacher_feats",)`` for a distillation student).
    * ``strides``: the stride of every pyramid level on the input grid, finest first.
    * ``max_div_factor``: what inference inputs longer than ``max_seq_len`` are padded to a
      multiple of (every level and attention window then divides the length).
    * ``check_length(length)``: raise ``ValueError`` unless an input of ``length`` steps fits.
    * ``loss_normalizer``: the current divisor of the detection losses (ActionFormer: an EMA
      of the number of positives); distillation terms are divided by it to stay on the
      detection loss's scale.
    * ``param_groups(weight_decay)``: optimizer parameter groups (which weights decay).
    """

    loss_names: tuple[str, ...] | list[str]
    training_inputs: tuple[str, ...]

    @property
    def strides(self) -> list[int]: ...

    @property
    def max_div_factor(self) -> int: ...

    @property
    def loss_normalizer(self) -> float: ...

    def forward(self, feats: torch.Tensor, masks: torch.Tensor, **inputs: torch.Tensor) -> DetectorOutput: ...

    def losses(self, out: DetectorOutput, gt_segments: list[torch.Tensor],
               gt_labels: list[torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def postprocess(self, out: DetectorOutput, metas: list[dict]) -> list[Detections]: ...

    def check_length(self, length: int) -> None: ...

    def param_groups(self, weight_decay: float) -> list[dict]: ...


@runtime_checkable
class PyramidDetector(Detector, Protocol):
    """A `Detector` whose stages can be run one by one (masks ``B x 1 x T_l`` here):

    * ``embed(x, mask)``: the projection, ``B x C x T`` -> ``(B x D x T, mask)``;
    * ``encoder(x, mask)``: the projected features -> the encoder pyramid ``(feats, masks)``;
    * ``predict(pyramid, pyramid_masks)``: neck + heads -> `DetectorOutput`;
    * ``run_heads(fpn_feats, fpn_masks, pyramid)``: the classification and regression heads
      alone on neck features (``pyramid`` is passed through as ``encoder_feats``).
    """

    embed: nn.Module
    encoder: nn.Module

    def predict(self, pyramid: list[torch.Tensor], pyramid_masks: list[torch.Tensor]) -> DetectorOutput: ...

    def run_heads(self, fpn_feats: list[torch.Tensor], fpn_masks: list[torch.Tensor],
                  pyramid: list[torch.Tensor]) -> DetectorOutput: ...
