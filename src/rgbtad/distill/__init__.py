"""Cross-modal distillation into RGB-only detectors: frozen teachers, the conventional,
decomposed (Lee et al. 2023) and C2MS-Net (Yu et al. 2026) students, branch fusions and
distillation losses.

Importing this package registers the students in the model registry
(`rgbtad.detection.registry`) under their ``distill.method``: "conventional",
"decomposed" and "c2ms". ``build_model(cfg, num_classes)`` (the registry's, re-exported
here so that importing it from here registers the students) is then a plain detector when
``distill.method`` is "none", else the configured student. A student trains with
``model.attach_teacher(rgbtad.runs.teacher.load_teacher(cfg, class_names, device))`` and the
batch field ``teacher_feats``, and predicts without any teacher.
"""

from rgbtad.detection.registry import build_model
from rgbtad.distill.c2ms import C2MSStudent
from rgbtad.distill.map_students import GTADConventionalStudent, GTADDecomposedStudent
from rgbtad.distill.query_students import TadTRConventionalStudent, TadTRDecomposedStudent
from rgbtad.distill.students import (
    ConventionalKDStudent,
    DecomposedStudent,
    DistillOutput,
    DistillStudent,
)
from rgbtad.distill.teachers import FrozenTeacher

__all__ = ["C2MSStudent", "ConventionalKDStudent", "DecomposedStudent", "DistillOutput", "DistillStudent",
           "FrozenTeacher", "GTADConventionalStudent", "GTADDecomposedStudent",
           "TadTRConventionalStudent", "TadTRDecomposedStudent", "build_model"]
