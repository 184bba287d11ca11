"""Frozen teachers: any trained detector run (motion-only, two-stream, an imported official
ActionFormer checkpoint, or an earlier distilled student) used read-only during training.

`rgbtad.runs.teacher.load_teacher` reads the run directory (EMA weights, eval mode) and
wraps the model in a `FrozenTeacher`, which switches gradients off. A student holds its
teacher as a plain attribute, not as a submodule, so the teacher is not in the student's
``state_dict``, parameters, optimizer groups, EMA or saved run directory; deep copies of
the student (the EMA) share the teacher instead of copying it.

The teacher runs on the fly, under ``no_grad`` and in eval mode, on its own features of the
same crop as the student's (the batch field ``teacher_feats``). Its outputs are not cached: a training crop is random, and the teacher's outputs
on a crop are not a slice of its outputs on the whole video (local attention windows and
pyramid downsampling see the crop's borders), so a cache would have to be keyed on the
crop and would rarely be hit. The extra forward pass without gradients costs about half of
a plain detector's training step (THUMOS-sized ActionFormer on CPU: 4.7 s against 10.2 s
for two 1152-step inputs).
"""

from __future__ import annotations

from pathlib import Path

import torch

from rgbtad.detection.protocol import Detector, DetectorOutput

__all__ = ["FrozenTeacher"]


class FrozenTeacher:
    """A trained detector that only ever predicts: eval mode, no gradients."""

    def __init__(self, model: Detector, run_dir: str | Path, input_dim: int, feat_dim: int):
        self.model = model.eval()
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.run_dir = Path(run_dir)
        self.input_dim = input_dim  # features the teacher reads
        self.feat_dim = feat_dim  # width of its neck features

    def __deepcopy__(self, memo) -> "FrozenTeacher":
        return self  # shared, never copied (the student's EMA is a deep copy)

    @property
    def strides(self) -> list[int]:
        return list(self.model.strides)

    def check_length(self, length: int) -> None:
        self.model.check_length(length)

    @torch.no_grad()
    def __call__(self, feats: torch.Tensor, masks: torch.Tensor) -> DetectorOutput:
        self.model.eval()
        return self.model(feats, masks)
