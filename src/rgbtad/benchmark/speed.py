"""`rgbtad bench`: wall time of the RGB-only pipeline against two-stream pipelines, on one video.

Three pipelines are timed in the same process on the same video, stage by stage:

- ``rgb_only``: decode -> RGB backbone -> detector (the product: `rgbtad detect`);
- ``two_stream_tvl1``: decode -> TV-L1 optical flow -> RGB and flow backbones -> two-stream
  detector (RGB and flow features side by side);
- ``two_stream_dis``: the same with DIS optical flow (OpenCV's fast preset).

Every stage runs the library's own code: `rgbtad.video.decode.VideoReader` (resampling,
resizing), `rgbtad.video.motion.motion_chunks` (flow, quantised as stored for training),
`rgbtad.extraction.extract.snippet_encoder` (the snippet grid, normalisation and batching
of `rgbtad extract`) and `rgbtad.engine.inference.predict_video` (padding, forward, decoding
and soft-NMS). Models are randomly initialised: the timing does not depend on the weights
(the detector's random scores give it at least as many NMS candidates as a trained one).

Each pipeline decodes the video once into memory (so a bench video should be a few minutes
at most) and then runs its stages one after another. A stage that takes less than
``short_stage_s`` is repeated ``repeats`` times and its median is reported. TV-L1 is far too
slow to run on a whole minute on a CPU (about 0.5 s per 224x224 frame pair), so it runs on
``tvl1_pairs`` frame pairs taken as four contiguous blocks spread over the video, and its
time is extrapolated per pair to all ``frames - 1`` pairs (``"extrapolated": true`` in the
JSON); the flow backbone of that pipeline then runs on the measured flows repeated to the
full length (its cost does not depend on the values). DIS runs on every pair unless
``dis_pairs`` says otherwise.

The detector is an ActionFormer with the THUMOS14 defaults of `rgbtad.config` (20 classes),
its ``max_seq_len`` scaled to the video: the smallest multiple of the detector's
``max_div_factor`` that holds the video's snippets (so nothing is padded to 2304 steps).
"""

from __future__ import annotations

import logging
import math
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from rgbtad.errors import RgbtadError

log = logging.getLogger(__name__)

PIPELINES = ("rgb_only", "two_stream_tvl1", "two_stream_dis")
CHUNK_FRAMES = 64


@dataclass
class BenchSettings:
    backbone: str = "tsm_r18"  # RGB and flow backbone (random weights)
    snippet_frames: int = 8
    stride: int = 4
    size: int | tuple[int, int] | None = 224  # short side, (W, H), or None: native
    fps: float | None = None  # None: native frame rate
    batch_size: int = 8  # snippets per backbone forward pass
    num_classes: int = 20
    detector_width: int = 512  # embedding, neck and head channels of the detector (THUMOS: 512)
    repeats: int = 3  # runs of a short stage (median reported)
    short_stage_s: float = 2.0  # stages faster than this are repeated
    tvl1_pairs: int = 24  # TV-L1 frame pairs actually computed (0: all)
    dis_pairs: int = 0  # DIS frame pairs actually computed (0: all)
    device: str | None = None
    bf16: bool = False


# --------------------------------------------------------------------------- timing helpers


def _timed(func: Callable[[], object], repeats: int, short_s: float) -> tuple[float, int, object]:
    """(median seconds, runs, last result): one run, and `repeats` in all when it was short."""
    start = time.perf_counter()
    result = func()
    times = [time.perf_counter() - start]
    if times[0] < short_s:
        for _ in range(max(repeats, 1) - 1):
            start = time.perf_counter()
            result = func()
            times.append(time.perf_counter() - start)
    return statistics.median(times), len(times), result


def _stage(seconds: float, runs: int, **extra) -> dict:
    return {"seconds": float(seconds), "runs": int(runs), **extra}


def _decode(video: Path, settings: BenchSettings) -> tuple[list[np.ndarray], dict]:
    from rgbtad.video.decode import VideoReader

    reader = VideoReader(video, fps=settings.fps, size=settings.size, chunk_frames=CHUNK_FRAMES)
    info = {"source_size": [reader.source_width, reader.source_height], "size": [reader.width, reader.height],
            "fps": float(reader.fps)}
    chunks = [chunk.copy() for chunk in reader]
    info["frames"] = int(reader.frames_read)
    return chunks, info


def _blocks(num_frames: int, pairs: int, blocks: int = 4) -> list[tuple[int, int]]:
    """Frame ranges [a, b) of `blocks` contiguous runs spread evenly, `pairs` pairs in all."""
    total = max(num_frames - 1, 0)
    if pairs <= 0 or pairs >= total:
        return [(0, num_frames)]
    blocks = max(1, min(blocks, pairs))
    per = [pairs // blocks + (1 if i < pairs % blocks else 0) for i in range(blocks)]
    ranges = []
    for i, count in enumerate(per):
        start = int(round(i * (total - count) / max(blocks - 1, 1))) if blocks > 1 else 0
        ranges.append((start, start + count + 1))
    return ranges


def _flow(frames: np.ndarray, method: str, pairs: int) -> tuple[list[np.ndarray], int, bool]:
    """Quantised flow of the chosen frame pairs: (chunks, pairs computed, subsampled?)."""
    from rgbtad.video.motion import motion_chunks

    out: list[np.ndarray] = []
    ranges = _blocks(len(frames), pairs)
    for a, b in ranges:
        block = frames[a:b]
        out.extend(motion_chunks((block[i:i + CHUNK_FRAMES] for i in range(0, len(block), CHUNK_FRAMES)), method))
    computed = sum(len(c) for c in out)
    return out, computed, computed < max(len(frames) - 1, 1)


def _repeat_to(chunks: list[np.ndarray], length: int) -> list[np.ndarray]:
    """Items of `chunks` cycled to `length` items, in chunks of CHUNK_FRAMES."""
    items = np.concatenate(chunks, axis=0)
    index = np.arange(length) % len(items)
    return [items[index[i:i + CHUNK_FRAMES]] for i in range(0, length, CHUNK_FRAMES)]


# --------------------------------------------------------------------------- models


def bench_detector(input_dim: int, num_snippets: int, num_classes: int = 20, width: int = 512):
    """An ActionFormer with the THUMOS14 defaults, max_seq_len scaled to `num_snippets`
    (`width`: embedding, neck and head channels)."""
    import torch

    from rgbtad.config import Config
    from rgbtad.detection.model import build_detector_from_config

    cfg = Config()
    cfg.data.input_dim = int(input_dim)
    cfg.model.embd_dim = cfg.model.fpn_dim = cfg.model.head_dim = int(width)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        step = build_detector_from_config(cfg, num_classes).max_div_factor
        cfg.data.max_seq_len = max(step, math.ceil(num_snippets / step) * step)
        model = build_detector_from_config(cfg, num_classes).eval()
    return cfg, model


def _backbone(name: str, modality: str):
    import torch

    from rgbtad.backbones import create_backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return create_backbone(name, modality)


# --------------------------------------------------------------------------- the bench


def run_bench(video: str | Path, settings: BenchSettings | None = None, progress: bool = True) -> dict:
    """Time the three pipelines on `video` (module doc); return the JSON-ready report."""
    import torch

    from rgbtad.engine.distributed import resolve_device
    from rgbtad.engine.inference import predict_video
    from rgbtad.extraction.extract import snippet_encoder
    from rgbtad.video.sampling import num_snippets

    settings = settings or BenchSettings()
    video = Path(video)
    device = resolve_device(settings.device)
    n, stride = int(settings.snippet_frames), int(settings.stride)
    if n < 2 or stride < 1:
        raise RgbtadError(f"invalid snippet settings ({n} frames every {stride}): need >= 2 frames, stride >= 1")
    rgb_net = _backbone(settings.backbone, "rgb")
    flow_net = _backbone(settings.backbone, "flow")

    def encoder(net, modality):
        return snippet_encoder(net, snippet_frames=n, stride=stride, modality=modality, device=str(device),
                               batch_size=settings.batch_size, bf16=settings.bf16)

    rgb_encoder, flow_encoder = encoder(rgb_net, "rgb"), encoder(flow_net, "flow")
    report: dict = {"pipelines": {}, "video": {}, "settings": {**asdict(settings), "device": str(device)},
                    "environment": {"torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                                    "torch": torch.__version__, "machine": platform.machine()}}
    say = (lambda text: print(text, flush=True)) if progress else (lambda text: None)
    repeats, short = settings.repeats, settings.short_stage_s
    detectors: dict[int, tuple] = {}

    def detect_stage(feats: np.ndarray, info: dict) -> dict:
        dim = feats.shape[1]
        if dim not in detectors:
            detectors[dim] = bench_detector(dim, len(feats), settings.num_classes, settings.detector_width)
        cfg, model = detectors[dim]
        model = model.to(device)
        meta = {"video_id": video.stem, "fps": info["fps"], "duration": info["frames"] / info["fps"],
                "feat_stride": stride, "feat_num_frames": n}
        tensor = torch.from_numpy(np.ascontiguousarray(feats.T))
        predict_video(model, tensor, meta, ["c"] * settings.num_classes, device, cfg.data.max_seq_len)  # warm-up
        seconds, runs, dets = _timed(
            lambda: predict_video(model, tensor, meta, ["c"] * settings.num_classes, device, cfg.data.max_seq_len),
            repeats, short)
        return _stage(seconds, runs, snippets=int(len(feats)), max_seq_len=int(cfg.data.max_seq_len),
                      input_dim=int(dim), detections=len(dets))

    for name in PIPELINES:
        say(f"[{name}] decoding {video.name}")
        stages: dict[str, dict] = {}
        seconds, runs, (chunks, info) = _timed(lambda: _decode(video, settings), repeats, short)
        stages["decode"] = _stage(seconds, runs, frames=info["frames"])
        if not report["video"]:
            report["video"] = {"path": str(video), "seconds": info["frames"] / info["fps"], "frames": info["frames"],
                               "fps": info["fps"], "size": info["source_size"], "processed_size": info["size"]}
        frames_total = info["frames"]
        expected = num_snippets(frames_total, n, stride)
        if name != "rgb_only":
            method = "tvl1" if name.endswith("tvl1") else "dis"
            pairs = settings.tvl1_pairs if method == "tvl1" else settings.dis_pairs
            frames = np.concatenate(chunks, axis=0)
            say(f"[{name}] {method} optical flow" + (f" on {pairs} pairs" if 0 < pairs < frames_total - 1 else ""))
            seconds, runs, (flows, computed, partial) = _timed(lambda: _flow(frames, method, pairs), repeats, short)
            frames = None
            all_pairs = max(frames_total - 1, 1)
            per_pair = seconds / max(computed, 1)
            stages["flow"] = _stage(per_pair * all_pairs if partial else seconds, runs, method=method,
                                    measured_pairs=int(computed), total_pairs=int(all_pairs),
                                    seconds_per_pair=per_pair, measured_seconds=seconds, extrapolated=bool(partial))
            if partial:
                flows = _repeat_to(flows, all_pairs)
        say(f"[{name}] RGB backbone ({expected} snippets)")
        seconds, runs, rgb_feats = _timed(lambda: rgb_encoder.encode(iter(chunks), n), repeats, short)
        stages["rgb_backbone"] = _stage(seconds, runs, snippets=int(len(rgb_feats)))
        feats = rgb_feats
        if name != "rgb_only":
            say(f"[{name}] flow backbone")
            seconds, runs, flow_feats = _timed(lambda: flow_encoder.encode(iter(flows), n - 1), repeats, short)
            stages["flow_backbone"] = _stage(seconds, runs, snippets=int(len(flow_feats)),
                                             input="measured flows repeated to the full length"
                                             if stages["flow"]["extrapolated"] else "computed flows")
            length = min(len(rgb_feats), len(flow_feats))
            feats = np.concatenate([rgb_feats[:length], flow_feats[:length]], axis=1)
            flows = None
        say(f"[{name}] detector")
        stages["detector"] = detect_stage(feats, info)
        chunks = None  # free the frames before the next pipeline
        total = sum(stage["seconds"] for stage in stages.values())
        report["pipelines"][name] = {"total_s": total, "stages": stages,
                                     "extrapolated": any(s.get("extrapolated") for s in stages.values())}
    rgb_total = report["pipelines"]["rgb_only"]["total_s"]
    report["ratios"] = {f"{name}_vs_rgb_only": report["pipelines"][name]["total_s"] / rgb_total
                        for name in PIPELINES[1:]}
    return report


def format_report(report: dict) -> str:
    """A table of stage times per pipeline and the ratios."""
    names = ["decode", "flow", "rgb_backbone", "flow_backbone", "detector"]
    v = report["video"]
    lines = [f"video: {v['path']} ({v['seconds']:.1f} s, {v['frames']} frames at {v['fps']:g} fps, "
             f"{v['size'][0]}x{v['size'][1]} -> {v['processed_size'][0]}x{v['processed_size'][1]})",
             f"{'pipeline':<18}" + "".join(f"{name:>15}" for name in names) + f"{'total':>11}"]
    for pipe, data in report["pipelines"].items():
        cells = []
        for name in names:
            stage = data["stages"].get(name)
            cells.append(f"{'-':>15}" if stage is None else
                         f"{stage['seconds']:>14.2f}{'*' if stage.get('extrapolated') else ' '}")
        lines.append(f"{pipe:<18}" + "".join(cells) + f"{data['total_s']:>10.2f}s")
    for pipe, data in report["pipelines"].items():
        flow = data["stages"].get("flow")
        if flow and flow.get("extrapolated"):
            lines.append(f"* {pipe}: {flow['method']} measured on {flow['measured_pairs']} of "
                         f"{flow['total_pairs']} frame pairs ({flow['seconds_per_pair']:.3f} s per pair), "
                         "extrapolated")
    for key, ratio in report["ratios"].items():
        other = key.replace("_vs_rgb_only", "")
        if ratio >= 1:
            lines.append(f"rgb_only is {ratio:.1f}x faster than {other}")
        else:
            lines.append(f"rgb_only is {1 / ratio:.1f}x slower than {other}")
    return "\n".join(lines)


def make_bench_video(source: str | Path, out_path: str | Path, *, seconds: float = 60.0, size: int = 224,
                     fps: float = 30.0) -> Path:
    """A `seconds`-long `size` x `size` H.264 video at `fps`, made by resizing the frames of
    `source` and looping them (forwards then backwards, so motion stays continuous)."""
    import av

    from rgbtad.utils.atomic import atomic_path
    from rgbtad.video.decode import read_video

    frames = read_video(source, fps=fps, size=(size, size))
    cycle = np.concatenate([frames, frames[-2:0:-1]], axis=0) if len(frames) > 2 else frames
    total = int(round(seconds * fps))
    out_path = Path(out_path)
    with atomic_path(out_path, suffix=".tmp" + out_path.suffix) as tmp:
        container = av.open(str(tmp), mode="w")
        try:
            stream = container.add_stream("libx264", rate=int(round(fps)))
            stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
            for i in range(total):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(cycle[i % len(cycle)]), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        finally:
            container.close()
    return out_path
