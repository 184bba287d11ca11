"""`rgbtad bench`: wall time of the RGB-only pipeline against two-stream pipelines, on one video.

Three pipelines are timed in the same process on the same video, stage by stage
(`rgbtad.apps.bench_pipelines` says how; `rgbtad.apps.bench_report` what is reported):

- ``rgb_only``: decode -> RGB backbone -> detector (the product: `rgbtad detect`);
- ``two_stream_tvl1``: decode -> TV-L1 optical flow -> RGB and flow backbones -> two-stream
  detector (RGB and flow features side by side);
- ``two_stream_dis``: the same with DIS optical flow (OpenCV's fast preset).

The backbones of every pipeline run alike: PyTorch at the precision `rgbtad.core.precision`
decides, or exported and run by ONNX Runtime, in float32 (``runtime="onnxruntime"``) or
quantized to int8 (``"onnxruntime-int8"``: static quantization calibrated on
``CALIBRATION_SNIPPETS`` (`rgbtad.apps.bench_pipelines`) snippets of the video itself, `rgbtad.export.quantize.quantize_backbone`;
calibration is an export step and not timed).
The bench holds the decoded frames and flows in memory: use a video of a few minutes at most.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from rgbtad.apps.bench_pipelines import (
    PIPELINES,
    RUNTIMES,
    flow_pairs_needed,
    time_backbones,
    time_decoding,
    time_detectors,
    time_dis,
)
from rgbtad.apps.bench_report import bench_report
from rgbtad.core.errors import RgbtadError


@dataclass
class BenchSettings:
    backbone: str = "tsm_r18"  # RGB and flow backbone (random weights)
    snippet_frames: int = 8
    stride: int = 16  # about 0.5 s at 30 fps, the grid of `rgbtad detect`'s fast setting
    size: int | tuple[int, int] | None = 224  # short side, (W, H), or None: native
    fps: float | None = None  # None: native frame rate
    batch_size: int = 8  # snippets per backbone forward pass
    num_classes: int = 20
    detector_width: int = 512  # embedding, neck and head channels of the detector (THUMOS: 512)
    repeats: int = 3  # runs of a short stage (median reported)
    short_stage_s: float = 2.0  # stages faster than this are repeated
    tvl1_pairs: int = 24  # TV-L1 frame pairs actually computed (0: all)
    device: str | None = None
    precision: str = "auto"  # backbones: auto (bf16 where native, `rgbtad.core.precision`), fp32 or bf16
    # backbones: "onnxruntime-int8" (the fastest path: `export --int8-calibration`, then
    # `detect --onnx`), "onnxruntime" (float32 graphs) or "torch" (as plain `rgbtad detect`)
    runtime: str = "onnxruntime-int8"


def run_bench(video: str | Path, settings: BenchSettings | None = None, progress: bool = True) -> dict:
    """Time the three pipelines on `video` (module doc); return the JSON-ready report."""
    from rgbtad.core.device import resolve_device

    settings = settings or BenchSettings()
    video = Path(video)
    device = resolve_device(settings.device)
    precision = _backbone_precision(settings, device)
    n, stride = int(settings.snippet_frames), int(settings.stride)
    if n < 2 or stride < 1 or settings.batch_size < 1:
        raise RgbtadError(f"invalid bench settings ({n} frames every {stride}, batch {settings.batch_size}): "
                          "need >= 2 frames, stride >= 1, batch >= 1")
    say = (lambda text: print(text, flush=True)) if progress else (lambda text: None)
    stages: dict[str, dict[str, dict]] = {name: {} for name in PIPELINES}
    info, rgb_feats, flow_feats, quantization = _features(video, settings, device, precision, stages, say)
    time_detectors(video, rgb_feats, flow_feats, info, settings, device, stages, say)
    return bench_report(video, info, settings, device, precision, quantization, stages)


def _backbone_precision(settings: BenchSettings, device) -> str:
    """The backbones' precision: int8 or fp32 for ONNX Runtime, else what `settings.precision`
    resolves to on `device`."""
    from rgbtad.core.precision import resolve_precision

    if settings.runtime not in RUNTIMES:
        raise RgbtadError(f"unknown backbone runtime {settings.runtime!r}; choose from {', '.join(RUNTIMES)}")
    if settings.runtime != "torch":
        if settings.precision == "bf16":
            raise RgbtadError("bf16 needs the torch runtime (ONNX Runtime backbones run in float32 or int8)")
        return "int8" if settings.runtime == "onnxruntime-int8" else "fp32"
    return resolve_precision(settings.precision, device)


def _features(video: Path, settings: BenchSettings, device, precision: str, stages: dict,
              say: Callable[[str], None]):
    """Decoding, flow and backbones timed; returns the video's info, the RGB and flow features
    and the int8 feature errors. The frames and flows live only in here: the detectors run
    without them in memory."""
    frames, info = time_decoding(video, settings, stages, say)
    total_pairs = max(flow_pairs_needed(info["frames"], int(settings.snippet_frames), int(settings.stride)), 1)
    flows = time_dis(frames, info, total_pairs, settings, stages, say)
    rgb_feats, flow_feats, quantization = time_backbones(frames, flows, info, total_pairs, settings, device,
                                                         precision, stages, say)
    return info, rgb_feats, flow_feats, quantization


def make_bench_video(source: str | Path, out_path: str | Path, *, seconds: float = 60.0, size: int = 224,
                     fps: float = 30.0) -> Path:
    """A `seconds`-long `size` x `size` H.264 video at `fps`, made by resizing the frames of
    `source` and looping them (forwards then backwards, so motion stays continuous)."""
    from rgbtad.video.decode import read_video
    from rgbtad.video.encode import write_h264

    frames = read_video(source, fps=fps, size=(size, size))
    cycle = np.concatenate([frames, frames[-2:0:-1]], axis=0) if len(frames) > 2 else frames
    total = int(round(seconds * fps))
    return write_h264(out_path, (cycle[i % len(cycle)] for i in range(total)), fps=fps, width=size, height=size)

