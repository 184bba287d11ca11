"""Atomic file writes: write to a temporary file beside the target, then rename.

An interrupted process never leaves a truncated output behind, and a reader never sees a
half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it onto `target`.

    `suffix` defaults to the target's suffix plus ".tmp"; pass the real suffix where a library
    picks a format from the file name (numpy, matplotlib).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix if suffix is not None else target.suffix + ".tmp",
        dir=target.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates owner-only files; give the result the usual umask-based mode
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    write_text(target, json.dumps(obj, indent=indent) + "\n")


def write_npy(target: str | os.PathLike, array) -> None:
    import numpy as np

    # numpy appends ".npy" to names that lack it, so the temporary name must end in .npy.
    with atomic_path(target, suffix=".tmp.npy") as tmp:
        np.save(tmp, array)
