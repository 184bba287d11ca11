"""The one type for snippet settings, and the one normalisation of backbone inputs.

A `SnippetSpec` says how a video becomes backbone inputs: which modality (``rgb`` frames,
optical ``flow``, temporal gradient ``tg``), how many frames a snippet holds (``frames``),
how many frames lie between snippet starts (``stride``), the frame rate and size the video is
decoded at (``fps``/``size``, None: native), and for flow the method, quantisation bound and
DIS preset. Motion computation (`rgbtad motion`), feature extraction (`rgbtad extract`,
``features.json``), backbone training, a run's ``backbone.json`` and `rgbtad detect` all read
and write these settings through this type, so they share one set of defaults and one
validation. Its `grid` is the time base of the features it makes (`rgbtad.core.timebase`).

Defaults are the THUMOS14 two-stream convention: 16-frame snippets every 4 frames, TV-L1
flow quantised with a bound of 20 px.

`normalize` is the one mapping of stored pixels to backbone input values, per modality (for
numpy arrays and torch tensors alike; same float32 arithmetic, so the same bits):

- ``rgb``: uint8 frames -> ``(x / 255 - mean) / std`` with the backbone's statistics;
- ``flow``: uint8 quantised flow (`rgbtad.motion.flow.quantize_flow`) read as a two-channel
  image, ``(q / 255 - mean) / std``: with symmetric statistics (0.5, 0.5) this is
  ``dequantized / bound`` in [-1, 1], with mmaction2's (128/255) it is ``(q - 128) / 128``;
- ``tg``: int16 grey-level differences of consecutive frames -> ``d / 255 / std`` (the mean
  cancels in a difference).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from rgbtad.core.errors import RgbtadError
from rgbtad.core.timebase import SnippetGrid
from rgbtad.video.decode import Size, output_size

MODALITIES = ("rgb", "flow", "tg")
FLOW_METHODS = ("tvl1", "dis", "farneback")
DIS_PRESETS = ("ultrafast", "fast", "medium")
DEFAULT_FLOW_BOUND = 20.0  # px, the two-stream convention

#: The keys `SnippetSpec.record` writes (features.json settings, backbone training summaries).
RECORD_KEYS = ("modality", "flow_method", "flow_bound", "dis_preset", "snippet_frames", "stride", "fps", "size")


@dataclass(frozen=True)
class SnippetSpec:
    """How a video becomes snippets of backbone input (module doc). Invalid values raise
    `RgbtadError` naming the command-line option."""

    modality: str = "rgb"
    frames: int = 16
    stride: int = 4
    fps: float | None = None
    size: Size = None
    flow_method: str = "tvl1"
    flow_bound: float = DEFAULT_FLOW_BOUND
    dis_preset: str = "fast"

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise RgbtadError(f"unknown modality {self.modality!r}; choose from {', '.join(MODALITIES)}")
        if self.modality == "flow" and self.flow_method not in FLOW_METHODS:
            raise RgbtadError(f"unknown flow method {self.flow_method!r}; choose from {', '.join(FLOW_METHODS)}")
        if self.dis_preset not in DIS_PRESETS:
            raise RgbtadError(f"unknown DIS preset {self.dis_preset!r}; choose from {', '.join(DIS_PRESETS)}")
        for option, value in (("--snippet-frames", self.frames), ("--stride", self.stride)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise RgbtadError(f"invalid {option} {value!r}: must be a positive integer")
        if self.modality != "rgb" and self.frames < 2:
            raise RgbtadError(f"invalid --snippet-frames {self.frames}: motion modalities need at least 2")
        if self.fps is not None and not float(self.fps) > 0:
            raise RgbtadError(f"invalid --fps {self.fps}: must be positive")
        if self.size is not None:
            output_size(1, 1, self.size)  # validates
        if not float(self.flow_bound) > 0:
            raise RgbtadError(f"invalid flow bound {self.flow_bound}: must be positive")
        # canonical types, so that equal settings compare and record equal
        object.__setattr__(self, "frames", int(self.frames))
        object.__setattr__(self, "stride", int(self.stride))
        object.__setattr__(self, "fps", None if self.fps is None else float(self.fps))
        object.__setattr__(self, "size", tuple(int(v) for v in self.size) if isinstance(self.size, (tuple, list))
                           else (None if self.size is None else int(self.size)))
        object.__setattr__(self, "flow_bound", float(self.flow_bound))

    @property
    def motion_method(self) -> str | None:
        """What `rgbtad motion` computes for this modality: a flow method, "tg", or None (rgb)."""
        return {"rgb": None, "flow": self.flow_method, "tg": "tg"}[self.modality]

    @property
    def input_length(self) -> int:
        """Items of the input stream per snippet: frames, or ``frames - 1`` motion items (the
        last repeated to keep ``frames`` time steps)."""
        return self.frames if self.modality == "rgb" else self.frames - 1

    def grid(self, fps: float) -> SnippetGrid:
        """The time base of these snippets in a video decoded at `fps`."""
        return SnippetGrid(self.stride, self.frames, fps)

    def with_(self, **changes: Any) -> "SnippetSpec":
        return replace(self, **changes)

    def record(self) -> dict:
        """The settings as recorded in files (features.json, backbone summaries): flow
        settings only for flow (None otherwise), the DIS preset only for DIS."""
        flow = self.modality == "flow"
        return {
            "modality": self.modality,
            "flow_method": self.flow_method if flow else None,
            "flow_bound": self.flow_bound if flow else None,
            "dis_preset": self.dis_preset if flow and self.flow_method == "dis" else None,
            "snippet_frames": self.frames,
            "stride": self.stride,
            "fps": self.fps,
            "size": list(self.size) if isinstance(self.size, tuple) else self.size,
        }

    @classmethod
    def from_record(cls, record: dict, source: str = "settings") -> "SnippetSpec":
        """The spec of a recorded settings dict (`record`'s keys; absent ones take the
        defaults). `source` names the file in errors."""
        defaults = asdict(cls())
        values = {
            "modality": record.get("modality") or defaults["modality"],
            "frames": record.get("snippet_frames", defaults["frames"]),
            "stride": record.get("stride", defaults["stride"]),
            "fps": record.get("fps"),
            "size": record.get("size"),
            "flow_method": record.get("flow_method") or defaults["flow_method"],
            "flow_bound": record.get("flow_bound") or defaults["flow_bound"],
            "dis_preset": record.get("dis_preset") or defaults["dis_preset"],
        }
        try:
            return cls(**values)
        except (RgbtadError, TypeError, ValueError) as err:
            raise RgbtadError(f"{source}: {err}") from None


def normalize(x, modality: str, mean, std):
    """Stored pixels -> backbone input values (module doc). `x`: numpy array or torch tensor
    with channels last (uint8 for rgb/flow, int16 differences for tg); `mean`/`std` per
    channel, of the same kind as `x` (float32). Returns float32 of `x`'s shape."""
    x = x.astype(np.float32) if isinstance(x, np.ndarray) else x.float()
    if modality == "tg":
        return x / 255.0 / std
    return (x / 255.0 - mean) / std
