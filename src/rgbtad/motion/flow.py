"""Motion from RGB frames: dense optical flow (TV-L1, DIS, Farneback) and temporal gradient.

Conventions:

- **Optical flow** is computed between consecutive frames on grayscale images
  (``cv2.COLOR_RGB2GRAY``). ``flow[t, y, x] = (dx, dy)`` in pixels means that the point at
  ``(x, y)`` in frame ``t`` moves to ``(x + dx, y + dy)`` in frame ``t + 1``: channel 0 is
  horizontal (positive to the right), channel 1 vertical (positive downwards). ``N`` frames
  give ``N - 1`` flows.
- Methods: ``"tvl1"`` (OpenCV contrib Dual TV-L1, default parameters; the two-stream
  standard, about 0.46 s per 224x224 pair on one core here), ``"dis"`` (DIS, presets
  ``ultrafast`` / ``fast`` / ``medium``), ``"farneback"`` (pyramid scale 0.5, 3 levels,
  window 15, 3 iterations, poly_n 5, poly_sigma 1.2).
- **Storage quantization** (the two-stream convention): clip to ``[-bound, bound]`` (default
  20 px), map linearly onto 0..255 and round: ``q = round((clip(f) + bound) * 255 / (2 bound))``.
  `dequantize_flow` inverts it (error at most ``bound / 255``, 0.078 px for bound 20). Zero
  motion is stored as 128 (127.5 rounded to even). Backbones are fed ``dequantize / bound``,
  i.e. ``q * 2 / 255 - 1`` in [-1, 1].
- **Temporal gradient** (METHODS §1.5): ``TG_t = I_{t+1} - I_t`` per pixel and channel, 3
  channels, ``N - 1`` items for ``N`` frames. `temporal_gradient` works on [0, 1] pixels
  (uint8 input is divided by 255); given the backbone's per-channel ``std`` it returns the
  difference of *normalized* frames, ``(I_{t+1} - I_t) / std`` (the mean cancels). TG is cheap,
  so feature extraction computes it on the fly; it is not stored for training.
- Streams: `motion_chunks` turns a stream of frame chunks into a stream of compact motion
  chunks (uint8 quantized flow, or int16 exact grey-level differences for TG), carrying one
  frame across chunk borders. A one-frame video yields a single all-zero motion item.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from rgbtad.video.snippets import DEFAULT_FLOW_BOUND, DIS_PRESETS, FLOW_METHODS

MOTION_METHODS = FLOW_METHODS + ("tg",)


def _check_method(method: str, dis_preset: str) -> None:
    if method not in FLOW_METHODS:
        raise ValueError(f"unknown flow method {method!r}; choose from {', '.join(FLOW_METHODS)}")
    if method == "dis" and dis_preset not in DIS_PRESETS:
        raise ValueError(f"unknown DIS preset {dis_preset!r}; choose from {', '.join(DIS_PRESETS)}")


class FlowEstimator:
    """A reusable optical-flow estimator: ``estimator(prev_gray, next_gray) -> H x W x 2``."""

    def __init__(self, method: str = "tvl1", dis_preset: str = "fast"):
        import cv2

        _check_method(method, dis_preset)
        self.method = method
        self.dis_preset = dis_preset
        if method == "tvl1":
            self._impl = cv2.optflow.DualTVL1OpticalFlow_create()
        elif method == "dis":
            preset = {
                "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
                "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
            }[dis_preset]
            self._impl = cv2.DISOpticalFlow_create(preset)
        else:
            self._impl = None

    def __call__(self, prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
        import cv2

        if self.method == "farneback":
            flow = cv2.calcOpticalFlowFarneback(prev_gray, next_gray, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        else:
            flow = self._impl.calc(prev_gray, next_gray, None)
        return np.asarray(flow, dtype=np.float32)


def to_gray(frames: np.ndarray) -> np.ndarray:
    """N x H x W x 3 uint8 RGB -> N x H x W uint8 grayscale."""
    import cv2

    return np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]) \
        if len(frames) else np.zeros((0,) + frames.shape[1:3], np.uint8)


def compute_flow(frames: np.ndarray, method: str = "tvl1", dis_preset: str = "fast") -> np.ndarray:
    """Optical flow between consecutive frames: N x H x W x 3 uint8 -> (N-1) x H x W x 2 float32."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be N x H x W x 3, got shape {frames.shape}")
    estimator = FlowEstimator(method, dis_preset)
    gray = to_gray(frames)
    out = np.empty((max(len(frames) - 1, 0),) + frames.shape[1:3] + (2,), dtype=np.float32)
    for t in range(len(frames) - 1):
        out[t] = estimator(gray[t], gray[t + 1])
    return out


def quantize_flow(flow: np.ndarray, bound: float = DEFAULT_FLOW_BOUND) -> np.ndarray:
    """Clip to [-bound, bound] and map linearly onto 0..255 (uint8), rounding to nearest."""
    if bound <= 0:
        raise ValueError("bound must be positive")
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound))
    return np.rint(scaled).astype(np.uint8)


def dequantize_flow(q: np.ndarray, bound: float = DEFAULT_FLOW_BOUND) -> np.ndarray:
    """Inverse of `quantize_flow`: uint8 -> float32 pixels in [-bound, bound]."""
    if bound <= 0:
        raise ValueError("bound must be positive")
    return (q.astype(np.float32) * np.float32(2.0 * bound / 255.0) - np.float32(bound)).astype(np.float32)


def temporal_gradient(frames: np.ndarray, std: Iterable[float] | None = None) -> np.ndarray:
    """TG_t = I_{t+1} - I_t: N x H x W x C -> (N-1) x H x W x C float32.

    uint8 frames are first scaled to [0, 1]; float frames are used as they are. With `std`
    (per channel, for [0, 1] pixels) the result is the difference of mean/std-normalized
    frames.
    """
    frames = np.asarray(frames)
    x = frames.astype(np.float32) / 255.0 if frames.dtype == np.uint8 else frames.astype(np.float32)
    tg = x[1:] - x[:-1]
    if std is not None:
        tg = tg / np.asarray(tuple(std), dtype=np.float32)
    return tg


def motion_chunks(chunks: Iterable[np.ndarray], method: str, *, bound: float = DEFAULT_FLOW_BOUND,
                  dis_preset: str = "fast", on_item=None) -> Iterator[np.ndarray]:
    """Stream of frame chunks -> stream of motion chunks, one item per consecutive frame pair.

    method "tvl1" / "dis" / "farneback": uint8 quantized flow (n x H x W x 2, see
    `quantize_flow` with `bound`); method "tg": int16 exact differences ``I_{t+1} - I_t`` in
    grey levels (n x H x W x 3). One frame is carried across chunk borders. A stream of a
    single frame yields one all-zero item (a still image has no motion). `on_item(n)` is
    called after every n items (for progress bars).
    """
    if method != "tg":
        estimator = FlowEstimator(method, dis_preset)
    prev = None        # last frame of the previous chunk (RGB for tg, grayscale for flow)
    shape = None
    emitted = 0
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        shape = chunk.shape[1:3]
        if method == "tg":
            cur = chunk.astype(np.int16)
            seq = cur if prev is None else np.concatenate([prev[None], cur], axis=0)
            if len(seq) > 1:
                out = seq[1:] - seq[:-1]
                emitted += len(out)
                if on_item:
                    on_item(len(out))
                yield out
            prev = cur[-1]
        else:
            gray = to_gray(chunk)
            seq = gray if prev is None else np.concatenate([prev[None], gray], axis=0)
            if len(seq) > 1:
                out = np.empty((len(seq) - 1,) + shape + (2,), dtype=np.uint8)
                for t in range(len(seq) - 1):
                    out[t] = quantize_flow(estimator(seq[t], seq[t + 1]), bound)
                    if on_item:
                        on_item(1)
                emitted += len(out)
                yield out
            prev = gray[-1]
    if emitted == 0 and prev is not None:
        if method == "tg":
            yield np.zeros((1,) + shape + (3,), dtype=np.int16)
        else:
            yield np.full((1,) + shape + (2,), quantize_flow(np.zeros(1, np.float32), bound)[0], dtype=np.uint8)
