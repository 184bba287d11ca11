"""Cross-modal distillation into RGB-only detectors: frozen teachers, the conventional,
decomposed (Lee et al. 2023) and C2MS-Net (Yu et al. 2026) students, branch fusions and
distillation losses.

``build_model(cfg, num_classes)`` is the entry point the trainer and the run directory
use: a plain ActionFormer when ``distill.method`` is "none", else the configured student.
A student trains with ``model.attach_teacher(load_teacher(cfg, class_names, device))``
and predicts without any teacher.
"""

from rgbtad.detection import build_detector
from rgbtad.distill.c2ms import C2MSStudent
from rgbtad.distill.students import (
    ConventionalKDStudent,
    DecomposedStudent,
    DistillOutput,
    DistillStudent,
)
from rgbtad.distill.teachers import FrozenTeacher, load_teacher

STUDENTS = {"conventional": ConventionalKDStudent, "decomposed": DecomposedStudent, "c2ms": C2MSStudent}


def build_model(cfg, num_classes: int):
    """The detector or student described by ``cfg`` for ``num_classes`` classes."""
    if cfg.distill.method == "none":
        return build_detector(cfg, num_classes)
    return STUDENTS[cfg.distill.method](cfg, num_classes)


__all__ = ["STUDENTS", "C2MSStudent", "ConventionalKDStudent", "DecomposedStudent", "DistillOutput",
           "DistillStudent", "FrozenTeacher", "build_model", "load_teacher"]
