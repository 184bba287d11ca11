"""Figures without pyplot (no global state, no interactive backend), written atomically in
the format the output's extension names. Shared by every plot of `rgbtad.viz`. Torch-free."""

from __future__ import annotations

import os
from pathlib import Path

from rgbtad.core.errors import RgbtadError

__all__ = ["new_figure", "save_figure"]


def new_figure(width: float, height: float):
    """A pyplot-free figure with an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, out_path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write `fig` atomically to `out_path`, in the format its extension names (PNG, PDF, SVG...)."""
    from rgbtad.core.atomic import atomic_path

    out = Path(out_path)
    fmt = out.suffix.lower().lstrip(".")
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        shown = ", ".join(f".{k}" for k in sorted(supported))
        raise RgbtadError(f"{out}: unknown image format '{out.suffix or '(no extension)'}'; use one of {shown}")
    if out.is_dir():
        raise RgbtadError(f"{out}: is a folder, expected an image file name")
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi)
    except OSError as err:
        raise RgbtadError(f"{out}: cannot write ({err.strerror or err})") from None
    return out
