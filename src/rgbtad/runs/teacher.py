"""The teacher of a distillation run: a trained run directory, loaded frozen.

`load_teacher` reads ``distill.teacher_run`` with `rgbtad.runs.run_dir.load_run` (EMA
weights, eval mode), checks its classes against the student's and wraps the model in a
`rgbtad.distill.teachers.FrozenTeacher`; `DistillStudent.attach_teacher` checks the rest.
"""

from __future__ import annotations

import torch

from rgbtad.core.errors import RgbtadError
from rgbtad.distill.teachers import FrozenTeacher
from rgbtad.runs.run_dir import load_run

__all__ = ["load_teacher"]


def load_teacher(cfg, class_names: list[str], device: str | torch.device = "cpu") -> FrozenTeacher:
    """The teacher named by ``cfg.distill.teacher_run``, checked against the student's
    classes (same names, same order)."""
    run_dir = cfg.distill.teacher_run
    if not run_dir:
        raise RgbtadError(f"config key 'distill.teacher_run' is not set "
                          f"(distill.method is '{cfg.distill.method}')")
    teacher_cfg, teacher_classes, model = load_run(run_dir, device)
    if list(teacher_classes) != list(class_names):
        raise RgbtadError(
            f"{run_dir}: the teacher's {len(teacher_classes)} classes differ from the student's "
            f"{len(class_names)} (names and order must match)"
        )
    return FrozenTeacher(model, run_dir, teacher_cfg.data.input_dim, teacher_cfg.model.fpn_dim)
