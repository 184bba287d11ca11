"""Pre-extracted snippet features: one ``<prefix><video_id><ext>`` .npy file per video.

Each file holds a ``T x C`` array (T snippets, C channels). Snippet ``i`` covers frames
``[i * feat_stride, i * feat_stride + num_frames)`` and is placed at its centre::

    t_i = (i * feat_stride + 0.5 * num_frames) / fps            (seconds)

(`rgbtad.core.timebase.SnippetGrid` converts both ways). THUMOS14 I3D features are 2048-d with RGB in channels 0-1023 and
flow in 1024-2047; `parse_channels` names those halves. numpy only.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rgbtad.core.errors import RgbtadError

if TYPE_CHECKING:  # pragma: no cover
    from rgbtad.config import DataConfig

__all__ = [
    "FeatureStore",
    "NAMED_CHANNELS",
    "parse_channels",
]

# Named channel ranges of two-stream (RGB | flow) features, as in ActionFormer's THUMOS14 I3D.
NAMED_CHANNELS = {"rgb": (0, 1024), "flow": (1024, 2048)}


def parse_channels(spec: str, total_dim: int | None = None) -> slice:
    """Turn a channel spec into a slice over the feature dimension.

    ``"all"``; ``"rgb"`` (0:1024); ``"flow"`` (1024:2048); or ``"start:end"`` with either
    side optional (``"1024:"``). With `total_dim` the range must fit inside it.
    """
    if not isinstance(spec, str):
        raise RgbtadError(f"channels: expected a string, got {spec!r}")
    text = spec.strip().lower()
    if text == "all":
        return slice(0, total_dim) if total_dim is not None else slice(None)
    if text in NAMED_CHANNELS:
        start, stop = NAMED_CHANNELS[text]
    elif ":" in text:
        left, _, right = text.partition(":")
        try:
            start = int(left) if left.strip() else 0
            stop = int(right) if right.strip() else None
        except ValueError:
            raise RgbtadError(
                f"channels {spec!r}: expected 'all', 'rgb', 'flow' or 'start:end' with integers"
            ) from None
        if stop is None:
            if total_dim is None:
                return slice(start, None)
            stop = total_dim
        if start < 0 or stop <= start:
            raise RgbtadError(f"channels {spec!r}: need 0 <= start < end")
    else:
        raise RgbtadError(f"channels {spec!r}: expected 'all', 'rgb', 'flow' or 'start:end'")
    if total_dim is not None and stop > total_dim:
        raise RgbtadError(
            f"channels {spec!r} ({start}:{stop}) do not fit in {total_dim}-d features"
        )
    return slice(start, stop)


class FeatureStore:
    """Reads, checks and slices per-video feature files under one folder.

    `channels` selects a channel range (see `parse_channels`); `input_dim`, when given, is
    the dimension every loaded array must have after that selection.
    """

    def __init__(self, root: str | os.PathLike, *, channels: str = "all", input_dim: int | None = None,
                 prefix: str = "", ext: str = ".npy"):
        self.root = Path(root)
        if not str(root):
            raise RgbtadError("feature folder is not set (data.features)")
        if not self.root.is_dir():
            raise RgbtadError(f"{self.root}: feature folder not found")
        parse_channels(channels)  # fail early on a malformed spec
        self.channels = channels
        self.input_dim = input_dim
        self.prefix = prefix or ""
        self.ext = ext or ""

    @classmethod
    def from_config(cls, data_cfg: "DataConfig", root: str | os.PathLike | None = None) -> "FeatureStore":
        return cls(root if root is not None else data_cfg.features, channels=data_cfg.channels,
                   input_dim=data_cfg.input_dim, prefix=data_cfg.file_prefix, ext=data_cfg.file_ext)

    def __repr__(self) -> str:
        return (f"FeatureStore({str(self.root)!r}, channels={self.channels!r}, "
                f"input_dim={self.input_dim}, prefix={self.prefix!r}, ext={self.ext!r})")

    def path(self, video_id: str) -> Path:
        return self.root / f"{self.prefix}{video_id}{self.ext}"

    def exists(self, video_id: str) -> bool:
        return self.path(video_id).is_file()

    def video_ids(self) -> list[str]:
        """Ids of every feature file in the folder (sorted), prefix and extension removed."""
        ids = []
        for entry in os.scandir(self.root):
            name = entry.name
            if not entry.is_file() or not name.startswith(self.prefix) or not name.endswith(self.ext):
                continue
            core = name[len(self.prefix): len(name) - len(self.ext)]
            if core:
                ids.append(core)
        return sorted(ids)

    def num_snippets(self, video_id: str) -> int | None:
        """T of the video's ``T x C`` array from the .npy header alone (no data is read);
        None when the file is missing or not a 2-D .npy array (`load` says why)."""
        try:
            array = np.load(self.path(video_id), mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile):
            return None
        if not isinstance(array, np.ndarray):  # an .npz archive
            array.close()
            return None
        return int(array.shape[0]) if array.ndim == 2 else None

    def load_raw(self, video_id: str) -> np.ndarray:
        """The array exactly as stored (no checks, no channel selection, no conversion)."""
        path = self.path(video_id)
        if not path.is_file():
            raise RgbtadError(f"{path}: feature file not found (video '{video_id}')")
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise RgbtadError(f"{path}: not a readable .npy array ({reason})") from None

    def load(self, video_id: str) -> np.ndarray:
        """A float32 ``T x C`` array after channel selection, checked for shape and values."""
        path = self.path(video_id)
        array = self.load_raw(video_id)
        if not isinstance(array, np.ndarray):  # an .npz archive
            array.close()
            raise RgbtadError(f"{path}: expected one .npy array, found an .npz archive")
        if array.ndim != 2:
            raise RgbtadError(f"{path}: features must be 2-D (T x C), got shape {array.shape}")
        if array.shape[0] == 0:
            raise RgbtadError(f"{path}: features are empty (0 snippets)")
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise RgbtadError(f"{path}: features must be numeric, got dtype {array.dtype}")
        try:
            selector = parse_channels(self.channels, array.shape[1])
        except RgbtadError as err:
            raise RgbtadError(f"{path}: {err}") from None
        with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf, reported below
            feats = np.ascontiguousarray(array[:, selector], dtype=np.float32)
        if self.input_dim is not None and feats.shape[1] != self.input_dim:
            raise RgbtadError(
                f"{path}: feature dimension {feats.shape[1]} after selecting channels "
                f"'{self.channels}', expected {self.input_dim}"
            )
        finite = np.isfinite(feats)
        if not finite.all():
            bad_rows = np.flatnonzero(~finite.all(axis=1))
            raise RgbtadError(
                f"{path}: features contain NaN or infinite values (in {bad_rows.size} of "
                f"{feats.shape[0]} snippets, first at snippet {bad_rows[0]})"
            )
        return feats
