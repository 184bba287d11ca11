"""`rgbtad bench`: wall time of the RGB-only pipeline against two-stream pipelines, on one video.

Three pipelines are timed in the same process on the same video, stage by stage:

- ``rgb_only``: decode -> RGB backbone -> detector (the product: `rgbtad detect`);
- ``two_stream_tvl1``: decode -> TV-L1 optical flow -> RGB and flow backbones -> two-stream
  detector (RGB and flow features side by side);
- ``two_stream_dis``: the same with DIS optical flow (OpenCV's fast preset).

The backbones of every pipeline run alike: PyTorch at the precision `rgbtad.core.precision`
decides, or exported and run by ONNX Runtime, in float32 (``runtime="onnxruntime"``) or
quantized to int8 (``"onnxruntime-int8"``: static quantization calibrated on
``CALIBRATION_SNIPPETS`` snippets of the video itself, `rgbtad.export.onnx.quantize_backbone`;
calibration is an export step and not timed).
Every stage runs the library's own code: `rgbtad.video.decode.VideoReader` (resampling,
resizing), `rgbtad.motion.flow.motion_chunks` (flow, quantised as stored for training),
`rgbtad.features.extract.snippet_encoder` (the snippet grid, normalisation and batching
of `rgbtad extract`) and `rgbtad.inference.predict.predict_video` (padding, forward, decoding
and soft-NMS). Models are randomly initialised: the timing does not depend on the weights
(the detector's random scores give it at least as many NMS candidates as a trained one).

**Interleaving.** On a machine shared with other jobs the speed of a minutes-long stage
drifts with the load, which would bias whichever pipeline ran during a busy spell. So the
pipelines are not run one after the other: every pipeline decodes the video (one decode each,
in turn, repeated when short), then the backbones run in *rounds* of ``batch_size`` snippets
(``snippets / batch_size`` rounds), each round timing the same snippets for every
pipeline's backbones in a rotating order, and the TV-L1 frame pairs are spread over the
rounds as well. A stage's time is the sum over its rounds, so all pipelines see the same
load. Short stages (decoding, DIS, the detector; under ``short_stage_s``) are repeated
``repeats`` times, round-robin over the pipelines, and their median is reported.

A two-stream pipeline needs the flow of the frame pairs its snippets read, and no other:
``(N - 1)`` pairs per snippet when the snippets do not overlap (stride >= N - 1), every pair
of the covered frames otherwise (`flow_pairs_needed`); flow times are per pair times that
count. TV-L1 is far too slow to run on a whole minute on a CPU (about 0.5 s per 224x224 frame
pair), so it runs on ``tvl1_pairs`` frame pairs spread evenly over the video, and its time is
extrapolated per pair (``"extrapolated": true`` in the JSON). DIS runs on every pair (its
flows feed both pipelines' flow backbones; the cost of a backbone does not depend on the
values) and its time is scaled to the needed pairs in the same way.

The detector is an ActionFormer with the THUMOS14 defaults of `rgbtad.config` (20 classes),
its ``max_seq_len`` scaled to the video: the smallest multiple of the detector's
``max_div_factor`` that holds the video's snippets (so nothing is padded to 2304 steps).
The bench holds the decoded frames and flows in memory: use a video of a few minutes at most.
"""

from __future__ import annotations

import logging
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from rgbtad.core.errors import RgbtadError

log = logging.getLogger(__name__)

PIPELINES = ("rgb_only", "two_stream_tvl1", "two_stream_dis")
RUNTIMES = ("torch", "onnxruntime", "onnxruntime-int8")
CALIBRATION_SNIPPETS = 32  # int8 runtime: snippets of the video itself, spread over it
CHUNK_FRAMES = 64


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


# --------------------------------------------------------------------------- timing helpers


def _median_runs(funcs: dict[str, Callable[[], object]], repeats: int, short_s: float) -> dict[str, tuple]:
    """Run each function once, round-robin; if every run was short, `repeats` rounds in all.
    Returns {name: (median seconds, runs, last result)}."""
    times: dict[str, list[float]] = {name: [] for name in funcs}
    results: dict[str, object] = {}
    for index in range(max(repeats, 1)):
        for name, func in funcs.items():
            start = time.perf_counter()
            results[name] = func()
            times[name].append(time.perf_counter() - start)
        if index == 0 and max(t[0] for t in times.values()) >= short_s:
            break
    return {name: (statistics.median(times[name]), len(times[name]), results[name]) for name in funcs}


def _stage(seconds: float, runs: int, **extra) -> dict:
    return {"seconds": float(seconds), "runs": int(runs), **extra}


def _decode(video: Path, settings: BenchSettings) -> tuple[np.ndarray, dict]:
    from rgbtad.video.decode import VideoReader

    reader = VideoReader(video, fps=settings.fps, size=settings.size, chunk_frames=CHUNK_FRAMES)
    info = {"source_size": [reader.source_width, reader.source_height], "size": [reader.width, reader.height],
            "fps": float(reader.fps)}
    frames = np.concatenate([chunk.copy() for chunk in reader], axis=0)
    info["frames"] = int(reader.frames_read)
    return frames, info


def _chunked(array: np.ndarray):
    return (array[i:i + CHUNK_FRAMES] for i in range(0, len(array), CHUNK_FRAMES))


def pair_positions(num_frames: int, pairs: int) -> list[int]:
    """First frame of each of `pairs` frame pairs spread evenly over a video (all pairs when
    `pairs` is 0 or at least the number of pairs)."""
    total = max(num_frames - 1, 0)
    if pairs <= 0 or pairs >= total:
        return list(range(total))
    return [int(round(i * (total - 1) / max(pairs - 1, 1))) for i in range(pairs)]


def flow_pairs_needed(num_frames: int, snippet_frames: int, stride: int) -> int:
    """Frame pairs whose flow the snippets of `snippet_frames` frames every `stride` read."""
    from rgbtad.video.sampling import num_snippets

    total = max(num_frames - 1, 0)
    if num_frames < snippet_frames:
        return total
    count = num_snippets(num_frames, snippet_frames, stride)
    return min(total, (count - 1) * min(stride, snippet_frames - 1) + snippet_frames - 1)


def rounds(num_items: int, span: int, stride: int, per_round: int) -> list[tuple[int, int]]:
    """Item ranges [a, b) of consecutive rounds of `per_round` snippets of `span` items every
    `stride` (the snippet grid of `rgbtad.video.sampling`): round r holds snippets
    ``r*per_round ...`` and the items they cover. A stream shorter than one snippet is one round."""
    from rgbtad.video.sampling import num_snippets

    count = num_snippets(num_items, span, stride)
    if num_items < span:
        return [(0, num_items)] if num_items > 0 else []
    out = []
    for first in range(0, count, per_round):
        last = min(first + per_round, count) - 1
        out.append((first * stride, last * stride + span))
    return out


# --------------------------------------------------------------------------- models


def bench_detector(input_dim: int, num_snippets: int, num_classes: int = 20, width: int = 512):
    """An ActionFormer with the THUMOS14 defaults, max_seq_len scaled to `num_snippets`
    (`width`: embedding, neck and head channels)."""
    import torch

    from rgbtad.config import Config
    from rgbtad.detection import build_detector, seq_len_holding

    cfg = Config()
    cfg.data.input_dim = int(input_dim)
    cfg.model.embd_dim = cfg.model.fpn_dim = cfg.model.head_dim = int(width)
    cfg.data.max_seq_len = seq_len_holding(cfg, num_snippets)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_detector(cfg, num_classes).eval()
    return cfg, model


def _backbone(name: str, modality: str, runtime: str, snippet_frames: int, size: tuple[int, int], device,
              calibration: Callable | None = None):
    """A randomly initialised backbone, as a PyTorch module or exported to ONNX and run by ONNX
    Runtime as `rgbtad detect --onnx` runs it: in float32 (``onnxruntime``) or quantized to int8
    (``onnxruntime-int8``, as `rgbtad export --int8-calibration` writes it) on the input batches
    that ``calibration(net)`` returns. Returns (backbone, int8 relative feature error or None)."""
    import tempfile

    import torch

    from rgbtad.backbones import create_backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = create_backbone(name, modality)
    if runtime == "torch":
        return net, None
    from rgbtad.export.onnx import OrtBackbone, export_backbone, quantize_backbone

    with tempfile.TemporaryDirectory() as tmp:  # the session holds the graph once loaded
        path = Path(tmp) / f"{name}_{modality}.onnx"
        export_backbone(net, path, snippet_frames=snippet_frames, width=size[0], height=size[1])
        error = None
        if runtime == "onnxruntime-int8":
            int8 = path.with_suffix(".int8.onnx")
            error = quantize_backbone(path, int8, calibration(net))
            path = int8
        return OrtBackbone(path, device), error


# --------------------------------------------------------------------------- the bench


def run_bench(video: str | Path, settings: BenchSettings | None = None, progress: bool = True) -> dict:
    """Time the three pipelines on `video` (module doc); return the JSON-ready report."""
    import torch

    from rgbtad.core.device import resolve_device
    from rgbtad.core.precision import cpu_model, native_bf16, resolve_precision
    from rgbtad.export.onnx import calibration_batches
    from rgbtad.features.extract import snippet_encoder
    from rgbtad.inference.predict import predict_video
    from rgbtad.motion.flow import motion_chunks
    from rgbtad.video.sampling import num_snippets
    from rgbtad.video.snippets import SnippetSpec

    settings = settings or BenchSettings()
    video = Path(video)
    device = resolve_device(settings.device)
    if settings.runtime not in RUNTIMES:
        raise RgbtadError(f"unknown backbone runtime {settings.runtime!r}; choose from {', '.join(RUNTIMES)}")
    if settings.runtime != "torch":
        if settings.precision == "bf16":
            raise RgbtadError("bf16 needs the torch runtime (ONNX Runtime backbones run in float32 or int8)")
        precision = "int8" if settings.runtime == "onnxruntime-int8" else "fp32"
    else:
        precision = resolve_precision(settings.precision, device)
    n, stride = int(settings.snippet_frames), int(settings.stride)
    if n < 2 or stride < 1 or settings.batch_size < 1:
        raise RgbtadError(f"invalid bench settings ({n} frames every {stride}, batch {settings.batch_size}): "
                          "need >= 2 frames, stride >= 1, batch >= 1")
    say = (lambda text: print(text, flush=True)) if progress else (lambda text: None)
    repeats, short = settings.repeats, settings.short_stage_s
    stages: dict[str, dict[str, dict]] = {name: {} for name in PIPELINES}
    two_stream = PIPELINES[1:]

    quantization: dict[str, float] = {}

    def encoder(modality, chunks, length):
        def make(net):
            return snippet_encoder(net, SnippetSpec(modality=modality, frames=n, stride=stride), device=str(device),
                                   batch_size=settings.batch_size, precision="fp32" if precision == "int8" else precision)

        def calibration(net):  # int8: calibrated on the video's own snippets (not timed: an export step)
            return calibration_batches(make(net).input_batches(iter([chunks]), length), CALIBRATION_SNIPPETS)

        net, error = _backbone(settings.backbone, modality, settings.runtime, n, info["size"], device, calibration)
        if error is not None:
            quantization[modality] = error
        return make(net)

    # decoding: one decode per pipeline, round-robin (the frames of the last one are kept)
    say(f"decoding {video.name} (once per pipeline)")
    timed = _median_runs({name: lambda: _decode(video, settings) for name in PIPELINES}, repeats, short)
    frames, info = timed[PIPELINES[-1]][2]
    for name in PIPELINES:
        stages[name]["decode"] = _stage(*timed[name][:2], frames=info["frames"])
    num_frames = info["frames"]
    total_pairs = max(flow_pairs_needed(num_frames, n, stride), 1)
    expected = num_snippets(num_frames, n, stride)

    # DIS on every pair (short): also the flow-backbone input of both two-stream pipelines
    say(f"DIS optical flow ({num_frames - 1} frame pairs, {total_pairs} of them read by the snippets)")
    timed = _median_runs({"dis": lambda: list(motion_chunks(_chunked(frames), "dis"))}, repeats, short)
    seconds, runs, dis_chunks = timed["dis"]
    flows = np.concatenate(dis_chunks, axis=0)
    dis_chunks = None
    per_pair = seconds / len(flows)
    stages["two_stream_dis"]["flow"] = _stage(per_pair * total_pairs, runs, method="dis", measured_pairs=len(flows),
                                              total_pairs=total_pairs, seconds_per_pair=per_pair,
                                              measured_seconds=seconds, extrapolated=False)

    # backbones (and TV-L1 pairs) in interleaved rounds
    rgb_encoder, flow_encoder = encoder("rgb", frames, n), encoder("flow", flows, n - 1)
    frame_rounds = rounds(num_frames, n, stride, settings.batch_size)
    flow_rounds = rounds(len(flows), n - 1, stride, settings.batch_size)
    if len(frame_rounds) != len(flow_rounds):  # the sampling rule gives both streams the same T
        raise RuntimeError(f"{len(frame_rounds)} frame rounds but {len(flow_rounds)} flow rounds")
    positions = pair_positions(num_frames, settings.tvl1_pairs)
    schedule = [positions[i::max(len(frame_rounds), 1)] for i in range(len(frame_rounds))]
    tasks = [("rgb_only", "rgb_backbone"), ("two_stream_tvl1", "rgb_backbone"),
             ("two_stream_tvl1", "flow_backbone"), ("two_stream_dis", "rgb_backbone"),
             ("two_stream_dis", "flow_backbone"), ("two_stream_tvl1", "flow")]
    say(f"backbones: {expected} snippets in {len(frame_rounds)} rounds, with TV-L1 on {len(positions)} "
        f"frame pairs")

    def one_pass(index: int):
        sums = {task: 0.0 for task in tasks}
        outputs: dict[tuple, list] = {task: [] for task in tasks}
        tvl1_pairs = 0
        for r, ((fa, fb), (ga, gb)) in enumerate(zip(frame_rounds, flow_rounds)):
            order = tasks[r % len(tasks):] + tasks[:r % len(tasks)]
            for task in order:
                start = time.perf_counter()
                if task[1] == "rgb_backbone":
                    result = [rgb_encoder.encode(iter([frames[fa:fb]]), n)]
                elif task[1] == "flow_backbone":
                    result = [flow_encoder.encode(iter([flows[ga:gb]]), n - 1)]
                else:
                    result = [list(motion_chunks(iter([frames[j:j + 2]]), "tvl1")) for j in schedule[r]]
                    tvl1_pairs += len(schedule[r])
                sums[task] += time.perf_counter() - start
                outputs[task].extend(result)
            if progress and index == 0 and (r + 1) % max(1, len(frame_rounds) // 10) == 0:
                say(f"  round {r + 1}/{len(frame_rounds)}")
        return sums, outputs, tvl1_pairs

    passes = [one_pass(0)]
    while len(passes) < max(repeats, 1) and max(passes[0][0].values()) < short:
        passes.append(one_pass(len(passes)))
    outputs, measured = passes[-1][1], passes[-1][2]
    for task in tasks:
        seconds = statistics.median(p[0][task] for p in passes)
        pipeline, stage = task
        if stage == "flow":
            per_pair = seconds / max(measured, 1)
            stages[pipeline][stage] = _stage(per_pair * total_pairs, len(passes), method="tvl1",
                                             measured_pairs=measured, total_pairs=total_pairs,
                                             seconds_per_pair=per_pair, measured_seconds=seconds,
                                             extrapolated=measured < total_pairs)
        else:
            stages[pipeline][stage] = _stage(seconds, len(passes), snippets=expected, rounds=len(frame_rounds))
            if stage == "flow_backbone" and pipeline == "two_stream_tvl1":
                stages[pipeline][stage]["input"] = "DIS flows (same shape; the cost does not depend on the values)"
    rgb_feats = np.concatenate(outputs[("rgb_only", "rgb_backbone")], axis=0)
    flow_feats = np.concatenate(outputs[("two_stream_dis", "flow_backbone")], axis=0)
    if len(rgb_feats) != expected or len(flow_feats) != expected:
        raise RuntimeError(f"{len(rgb_feats)} RGB and {len(flow_feats)} flow snippets, expected {expected}")
    frames = flows = None

    # detectors (short): warm-up, then round-robin repeats
    say("detectors")
    inputs = {"rgb_only": rgb_feats, **{name: np.concatenate([rgb_feats, flow_feats], axis=1) for name in two_stream}}
    meta = {"video_id": video.stem, "fps": info["fps"], "duration": num_frames / info["fps"],
            "feat_stride": stride, "feat_num_frames": n}
    labels = ["c"] * settings.num_classes
    calls, described = {}, {}
    for name, feats in inputs.items():
        cfg, model = bench_detector(feats.shape[1], len(feats), settings.num_classes, settings.detector_width)
        model = model.to(device)
        tensor = torch.from_numpy(np.ascontiguousarray(feats.T))
        calls[name] = (lambda m=model, t=tensor, c=cfg: predict_video(m, t, meta, labels, device, c.data.max_seq_len))
        calls[name]()  # warm-up
        described[name] = {"snippets": int(len(feats)), "max_seq_len": int(cfg.data.max_seq_len),
                           "input_dim": int(feats.shape[1])}
    timed = _median_runs(calls, repeats, short)
    for name in PIPELINES:
        seconds, runs, dets = timed[name]
        stages[name]["detector"] = _stage(seconds, runs, **described[name], detections=len(dets))

    order = ["decode", "flow", "rgb_backbone", "flow_backbone", "detector"]
    report: dict = {
        "pipelines": {}, "ratios": {},
        "video": {"path": str(video), "seconds": num_frames / info["fps"], "frames": num_frames, "fps": info["fps"],
                  "size": info["source_size"], "processed_size": info["size"]},
        "settings": {**asdict(settings), "device": str(device), "precision": precision,
                     # int8: relative L2 error of each backbone's features on its calibration snippets
                     "int8_feature_error": quantization or None},
        "environment": {"torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                        "torch": torch.__version__, "machine": platform.machine(), "cpu": cpu_model(),
                        "native_bf16": native_bf16(device)},
    }
    for name in PIPELINES:
        ordered = {key: stages[name][key] for key in order if key in stages[name]}
        report["pipelines"][name] = {"total_s": sum(stage["seconds"] for stage in ordered.values()),
                                     "stages": ordered,
                                     "extrapolated": any(st.get("extrapolated") for st in ordered.values())}
    rgb_total = report["pipelines"]["rgb_only"]["total_s"]
    report["ratios"] = {f"{name}_vs_rgb_only": report["pipelines"][name]["total_s"] / rgb_total
                        for name in two_stream}
    return report


def format_report(report: dict) -> str:
    """A table of stage times per pipeline and the ratios."""
    names = ["decode", "flow", "rgb_backbone", "flow_backbone", "detector"]
    v = report["video"]
    lines = [f"video: {v['path']} ({v['seconds']:.1f} s, {v['frames']} frames at {v['fps']:g} fps, "
             f"{v['size'][0]}x{v['size'][1]} -> {v['processed_size'][0]}x{v['processed_size'][1]})",
             f"backbones in {report['settings']['precision']} ({report['settings']['runtime']}) on "
             f"{report['environment']['cpu']} "
             f"({report['environment']['torch_threads']} torch threads)",
             *([f"int8 backbones: features {', '.join(f'{m} {100 * e:.1f} %' for m, e in errors.items())} off "
                "float32 (relative L2, calibration snippets)"] if (errors := report['settings'].get('int8_feature_error'))
               else []),
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
    from rgbtad.video.decode import read_video
    from rgbtad.video.encode import write_h264

    frames = read_video(source, fps=fps, size=(size, size))
    cycle = np.concatenate([frames, frames[-2:0:-1]], axis=0) if len(frames) > 2 else frames
    total = int(round(seconds * fps))
    return write_h264(out_path, (cycle[i % len(cycle)] for i in range(total)), fps=fps, width=size, height=size)
