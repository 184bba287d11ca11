"""Student and teacher features of the same snippets, side by side, for distillation.

`PairedFeatureStore` offers the part of the `FeatureStore` interface that `FeatureDataset`
uses (``root``, ``path``, ``exists``, ``load``). ``load`` returns the student's features and
the teacher's concatenated along channels, ``[student | teacher]``, so that truncation,
cropping, downsampling and padding cut both in exactly the same way; the student model
splits them again after ``data.input_dim`` channels.

Only training reads pairs (`training_store`). Validation and `rgbtad infer` read the
student's store alone, so a distilled student never needs motion features.

Both files of a video must hold the same number of snippets. Separate extractions of two
modalities can end a snippet or two apart (optical flow has one frame pair fewer than the
video has frames); up to `MAX_LENGTH_DIFFERENCE` trailing snippets of the longer file are
dropped. A larger difference is an error that names both files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rgbtad.features.store import FeatureStore
from rgbtad.core.errors import RgbtadError

__all__ = ["MAX_LENGTH_DIFFERENCE", "PairedFeatureStore", "teacher_store", "training_store"]

MAX_LENGTH_DIFFERENCE = 2  # snippets


class PairedFeatureStore:
    """Concatenated ``[student | teacher]`` features of each video (see the module docstring)."""

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

    def load(self, video_id: str) -> np.ndarray:
        """``T x (C_student + C_teacher)`` float32, both cut to the shorter of the two."""
        student = self.student.load(video_id)
        teacher = self.teacher.load(video_id)
        length = min(len(student), len(teacher))
        if max(len(student), len(teacher)) - length > MAX_LENGTH_DIFFERENCE:
            raise RgbtadError(
                f"{self.student.path(video_id)} has {len(student)} snippets but "
                f"{self.teacher.path(video_id)} has {len(teacher)}: student and teacher "
                f"features must cover the same snippets"
            )
        return np.concatenate([student[:length], teacher[:length]], axis=1)


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
