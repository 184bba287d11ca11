"""Student and teacher features of the same snippets, for distillation.

`PairedFeatureStore` offers the part of the `FeatureStore` interface that `FeatureDataset`
uses (``root``, ``path``, ``exists``, ``load``); its ``load`` returns a `FeaturePair`, the
student's and the teacher's features of a video cut to the same snippets. The dataset turns
the teacher's into their own item and batch field, ``teacher_feats``, which truncation,
cropping, downsampling and padding cut exactly as the student's ``feats``; the trainer
passes them to the student's training forward (``Detector.training_inputs``).

Only training reads pairs (`training_store`). Validation and `rgbtad infer` read the
student's store alone, so a distilled student never needs motion features.

Both files of a video must hold the same number of snippets. Separate extractions of two
modalities can end a snippet or two apart (optical flow has one frame pair fewer than the
video has frames); up to `MAX_LENGTH_DIFFERENCE` trailing snippets of the longer file are
dropped. A larger difference is an error that names both files.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from rgbtad.core.errors import RgbtadError
from rgbtad.features.store import FeatureStore

__all__ = ["MAX_LENGTH_DIFFERENCE", "FeaturePair", "PairedFeatureStore", "teacher_store", "training_store"]

MAX_LENGTH_DIFFERENCE = 2  # snippets


class FeaturePair(NamedTuple):
    """``T x C_student`` and ``T x C_teacher`` float32 features of the same T snippets."""

    student: np.ndarray
    teacher: np.ndarray


class PairedFeatureStore:
    """The student's and the teacher's features of each video (see the module docstring)."""

    def __init__(self, student: FeatureStore, teacher: FeatureStore):
        self.student = student
        self.teacher = teacher

    @property
    def root(self) -> Path:
        return self.student.root

    def __repr__(self) -> str:
        return f"PairedFeatureStore(student={self.student!r}, teacher={self.teacher!r})"

    def exists(self, video_id: str) -> bool:
        return self.student.exists(video_id) and self.teacher.exists(video_id)

    def path(self, video_id: str) -> Path:
        """The student's file, or the teacher's when only that one is missing (so that
        "missing features" errors name the missing file)."""
        if self.student.exists(video_id) and not self.teacher.exists(video_id):
            return self.teacher.path(video_id)
        return self.student.path(video_id)

    def load(self, video_id: str) -> FeaturePair:
        """Both features, cut to the shorter of the two."""
        student = self.student.load(video_id)
        teacher = self.teacher.load(video_id)
        length = min(len(student), len(teacher))
        if max(len(student), len(teacher)) - length > MAX_LENGTH_DIFFERENCE:
            raise RgbtadError(
                f"{self.student.path(video_id)} has {len(student)} snippets but "
                f"{self.teacher.path(video_id)} has {len(teacher)}: student and teacher "
                f"features must cover the same snippets"
            )
        return FeaturePair(student[:length], teacher[:length])


def teacher_store(cfg) -> FeatureStore:
    """The teacher's features: ``distill.teacher_features`` (default: ``data.features``)
    with ``distill.teacher_channels`` and the student's file prefix and extension."""
    d = cfg.distill
    return FeatureStore(d.teacher_features or cfg.data.features, channels=d.teacher_channels,
                        input_dim=d.teacher_input_dim, prefix=cfg.data.file_prefix,
                        ext=cfg.data.file_ext)


def training_store(cfg) -> FeatureStore | PairedFeatureStore:
    """What training reads: the student's features, paired with the teacher's when
    ``distill.method`` is not "none"."""
    student = FeatureStore.from_config(cfg.data)
    if cfg.distill.method == "none":
        return student
    return PairedFeatureStore(student, teacher_store(cfg))
