"""The one time base of the package: snippet index <-> seconds.

Snippet ``i`` of a video covers frames ``[i * stride, i * stride + frames)`` of the video at
``fps`` and is centred at

    t_i = (i * stride + 0.5 * frames) / fps            (seconds)

(ActionFormer's convention; THUMOS14 I3D features: stride 4, frames 16, fps 30, so
``t_i = (4 i + 8) / 30``). Fractional indices ("feature-grid units") are what detectors
predict; `to_seconds` and `to_grid` convert them both ways with the release's arithmetic
(``(g * stride + 0.5 * frames) / fps`` and ``(t * fps - 0.5 * frames) / stride``), so that
targets and decoded segments equal the release's to the last bit. Both accept floats, numpy
arrays and torch tensors (arithmetic only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rgbtad.core.errors import RgbtadError


@dataclass(frozen=True)
class SnippetGrid:
    """Where snippets of one video lie in time (module doc)."""

    stride: float  # frames between consecutive snippets (feat_stride)
    frames: float  # frames per snippet (num_frames)
    fps: float     # frame rate of the frames counted above

    def __post_init__(self) -> None:
        for name in ("stride", "frames", "fps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value > 0:
                raise RgbtadError(f"snippet grid: {name} must be a positive number, got {value!r}")

    @property
    def half_snippet(self) -> float:
        """Half a snippet in grid units, ``0.5 * frames / stride``: how far the first centre
        lies from the video's start."""
        return 0.5 * self.frames / self.stride

    def to_seconds(self, grid: Any) -> Any:
        """Fractional snippet indices to seconds; a scalar gives a float."""
        if isinstance(grid, (list, tuple)):
            grid = np.asarray(grid, dtype=np.float64)
        t = (grid * self.stride + 0.5 * self.frames) / self.fps
        return _plain(t)

    def to_grid(self, seconds: Any) -> Any:
        """Seconds to fractional snippet indices; a scalar gives a float."""
        if isinstance(seconds, (list, tuple)):
            seconds = np.asarray(seconds, dtype=np.float64)
        g = (seconds * self.fps - 0.5 * self.frames) / self.stride
        return _plain(g)

    def centers(self, num_snippets: int) -> np.ndarray:
        """Centre time (s, float64) of each of `num_snippets` snippets."""
        return self.to_seconds(np.arange(int(num_snippets), dtype=np.float64))


def _plain(value: Any) -> Any:
    """A numpy scalar or 0-d array as a float; arrays and tensors as they are."""
    if isinstance(value, (float, int, np.number)) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return float(value)
    return value
