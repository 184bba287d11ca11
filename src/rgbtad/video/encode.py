"""The project's one H.264 writer (PyAV / libx264), and an exact RGB to YUV 4:2:0 conversion.

`write_h264` encodes an iterable of frames into an H.264 ``yuv420p`` video at a constant frame
rate, atomically (a temporary file beside the target, renamed when complete, so an interrupted
run leaves no truncated video). The container follows the file name (``.mp4``: MP4). Frame
``k`` gets the timestamp ``k / fps``; the rate is ``fps`` as a fraction (denominator at most
1001, so 29.97 is 2997/100 and 30000/1001 stays itself).

A frame is either ``H x W x 3`` uint8 RGB, converted to ``yuv420p`` by FFmpeg's swscale, or
``(3H/2) x W`` uint8 planar YUV 4:2:0 (`rgb_to_yuv420p`), encoded as given.

**Determinism.** ``deterministic=True`` runs x264 single-threaded and without macroblock-tree
rate control (``mbtree=0``): with it, this x264 build produced different bitstreams from run
to run for identical input. Together with `rgb_to_yuv420p` (which does not depend on swscale's
flags or version) the same frames then give the same bytes. Otherwise x264 runs with its
defaults (threads chosen by x264, crf 23, preset medium unless given).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np

from rgbtad.core.atomic import atomic_path


def fps_fraction(fps: float) -> Fraction:
    """The frame rate as the fraction written into the stream (denominator at most 1001)."""
    return Fraction(fps).limit_denominator(1001)


_YUV_MATRIX = np.array([[0.256788, 0.504129, 0.097906],
                        [-0.148223, -0.290993, 0.439216],
                        [0.439216, -0.367788, -0.071427]], dtype=np.float32)
_YUV_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float32)


def rgb_to_yuv420p(image: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 RGB -> (3H/2) x W uint8 planar YUV 4:2:0 (BT.601, limited range).

    Done here rather than by swscale so that the encoder input is defined by this code alone
    (not by swscale's flags or version). Chroma is the mean of each 2 x 2 block.
    """
    import cv2

    h, w = image.shape[:2]
    yuv = image.reshape(-1, 3).astype(np.float32) @ _YUV_MATRIX.T + _YUV_OFFSET
    yuv = yuv.reshape(h, w, 3)
    chroma = cv2.resize(np.ascontiguousarray(yuv[..., 1:]), (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    flat = np.concatenate([yuv[..., 0].ravel(), chroma[..., 0].ravel(), chroma[..., 1].ravel()])
    return np.clip(flat + 0.5, 0, 255).astype(np.uint8).reshape(h * 3 // 2, w)


def _x264_options(crf: int | None, preset: str | None, deterministic: bool) -> dict[str, str]:
    options = {}
    if crf is not None:
        options["crf"] = str(int(crf))
    if preset is not None:
        options["preset"] = str(preset)
    if deterministic:
        options["threads"] = "1"
        options["x264-params"] = "mbtree=0"
    return options


def write_h264(path: str | Path, frames: Iterable[np.ndarray], *, fps: float, width: int, height: int,
               crf: int | None = None, preset: str | None = None, deterministic: bool = False) -> Path:
    """Encode `frames` (RGB ``H x W x 3`` or planar ``yuv420p``, uint8) as an H.264 yuv420p video
    of ``width x height`` pixels at `fps`, atomically; returns `path`.

    `crf` / `preset`: x264's (None: x264's defaults); `deterministic`: see the module doc.
    """
    import av

    path = Path(path)
    rate = fps_fraction(fps)
    with atomic_path(path, suffix=".tmp" + path.suffix) as tmp:
        with av.open(str(tmp), mode="w") as container:
            stream = container.add_stream("libx264", rate=rate,
                                          options=_x264_options(crf, preset, deterministic))
            stream.width, stream.height, stream.pix_fmt = int(width), int(height), "yuv420p"
            if deterministic:
                stream.codec_context.thread_count = 1
            for index, image in enumerate(frames):
                image = np.ascontiguousarray(image)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24" if image.ndim == 3 else "yuv420p")
                frame.pts = index
                frame.time_base = 1 / rate
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path
