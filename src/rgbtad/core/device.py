"""The one device resolver: what a ``--device`` option (or its default) means.

``None``, ``""`` or ``"auto"``: CUDA when available, else the CPU. Under torchrun
(``WORLD_SIZE > 1``) a bare ``cuda`` is this process's ``cuda:LOCAL_RANK``. An unknown
name, or CUDA on a machine without it, is an `RgbtadError` before any work starts.
"""

from __future__ import annotations

import os

import torch

from rgbtad.core.errors import RgbtadError


def resolve_device(device: str | torch.device | None) -> torch.device:
    if isinstance(device, torch.device):
        device = str(device)
    if device in (None, "", "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise RgbtadError(f"--device {device}: not a device (expected cpu, cuda or cuda:N)") from None
    if resolved.type != "cuda":
        return resolved
    if not torch.cuda.is_available():
        raise RgbtadError(f"--device {device} requested but CUDA is not available")
    if resolved.index is None and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0") or 0))
    if resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise RgbtadError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return resolved
