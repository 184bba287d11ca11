"""Output paths checked before the work starts.

A command that cannot write its result should say so at once, not after an hour of
training or decoding, and without leaving anything behind: the check creates nothing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rgbtad.core.errors import RgbtadError


def check_writable_output(path: str | os.PathLike, option: str, *, folder: bool = False) -> Path:
    """Return `path` if a command can write it, else raise `RgbtadError` naming `option`
    (the flag or argument that gave it). A file output must not be an existing folder, a
    folder output (`folder=True`) not an existing file; no parent may be a file; and the
    nearest existing folder must accept new files (probed with a nameless temporary file,
    which also catches read-only file systems and permissions that `os.access` misses)."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise RgbtadError(f"{option} {path}: exists and is not a folder")
    if not folder and path.is_dir():
        raise RgbtadError(f"{option} {path}: is a folder, expected a file name")
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RgbtadError(f"{option} {path}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise RgbtadError(f"{option} {path}: cannot write in {existing} ({err.strerror or err})") from None
    return path
