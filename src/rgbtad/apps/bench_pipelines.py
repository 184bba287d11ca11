"""How `rgbtad bench` times each pipeline, stage by stage, on one video.

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

Each ``time_*`` function records its stages in ``stages[pipeline][stage]`` (the JSON entry
of the stage: seconds, runs and what was timed).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from rgbtad.apps.bench import BenchSettings

PIPELINES = ("rgb_only", "two_stream_tvl1", "two_stream_dis")
RUNTIMES = ("torch", "onnxruntime", "onnxruntime-int8")
CALIBRATION_SNIPPETS = 32  # int8 runtime: snippets of the video itself, spread over it
CHUNK_FRAMES = 64
# the timed jobs of one backbone round, (pipeline, stage), in the order round 0 runs them
BACKBONE_TASKS = (("rgb_only", "rgb_backbone"), ("two_stream_tvl1", "rgb_backbone"),
                  ("two_stream_tvl1", "flow_backbone"), ("two_stream_dis", "rgb_backbone"),
                  ("two_stream_dis", "flow_backbone"), ("two_stream_tvl1", "flow"))


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
    from rgbtad.export.backbone import export_backbone
    from rgbtad.export.quantize import quantize_backbone
    from rgbtad.export.runtime import OrtBackbone

    with tempfile.TemporaryDirectory() as tmp:  # the session holds the graph once loaded
        path = Path(tmp) / f"{name}_{modality}.onnx"
        export_backbone(net, path, snippet_frames=snippet_frames, width=size[0], height=size[1])
        error = None
        if runtime == "onnxruntime-int8":
            int8 = path.with_suffix(".int8.onnx")
            error = quantize_backbone(path, int8, calibration(net))
            path = int8
        return OrtBackbone(path, device), error


def _encoder(modality: str, chunks: np.ndarray, length: int, size: tuple[int, int], settings: BenchSettings,
             device, precision: str):
    """The snippet encoder of one modality's backbone, in `settings.runtime`; an int8 backbone is
    calibrated on the video's own snippets (not timed: an export step). Returns (encoder, int8
    relative feature error or None)."""
    from rgbtad.export.quantize import calibration_batches
    from rgbtad.features.extract import snippet_encoder
    from rgbtad.video.snippets import SnippetSpec

    n, stride = int(settings.snippet_frames), int(settings.stride)

    def make(net):
        return snippet_encoder(net, SnippetSpec(modality=modality, frames=n, stride=stride), device=str(device),
                               batch_size=settings.batch_size, precision="fp32" if precision == "int8" else precision)

    def calibration(net):
        return calibration_batches(make(net).input_batches(iter([chunks]), length), CALIBRATION_SNIPPETS)

    net, error = _backbone(settings.backbone, modality, settings.runtime, n, size, device, calibration)
    return make(net), error


# --------------------------------------------------------------------------- stages


def time_decoding(video: Path, settings: BenchSettings, stages: dict, say: Callable[[str], None]):
    """One decode per pipeline, round-robin; returns the frames of the last one and the video's
    info (sizes, fps, frames)."""
    say(f"decoding {video.name} (once per pipeline)")
    timed = _median_runs({name: lambda: _decode(video, settings) for name in PIPELINES}, settings.repeats,
                         settings.short_stage_s)
    frames, info = timed[PIPELINES[-1]][2]
    for name in PIPELINES:
        stages[name]["decode"] = _stage(*timed[name][:2], frames=info["frames"])
    return frames, info


def time_dis(frames: np.ndarray, info: dict, total_pairs: int, settings: BenchSettings, stages: dict,
             say: Callable[[str], None]) -> np.ndarray:
    """DIS on every pair (short), its time scaled to the `total_pairs` the snippets read;
    returns the flows, also the flow-backbone input of both two-stream pipelines."""
    from rgbtad.motion.flow import motion_chunks

    say(f"DIS optical flow ({info['frames'] - 1} frame pairs, {total_pairs} of them read by the snippets)")
    timed = _median_runs({"dis": lambda: list(motion_chunks(_chunked(frames), "dis"))}, settings.repeats,
                         settings.short_stage_s)
    seconds, runs, dis_chunks = timed["dis"]
    flows = np.concatenate(dis_chunks, axis=0)
    per_pair = seconds / len(flows)
    stages["two_stream_dis"]["flow"] = _stage(per_pair * total_pairs, runs, method="dis", measured_pairs=len(flows),
                                              total_pairs=total_pairs, seconds_per_pair=per_pair,
                                              measured_seconds=seconds, extrapolated=False)
    return flows


@dataclass(frozen=True)
class _Rounds:
    """The work of the interleaved backbone rounds: round r encodes the frames
    ``frames[frame_rounds[r]]`` and the flows ``flows[flow_rounds[r]]`` and runs TV-L1 on the
    pairs that start at ``tvl1[r]``."""

    frames: np.ndarray
    flows: np.ndarray
    frame_rounds: list[tuple[int, int]]
    flow_rounds: list[tuple[int, int]]
    tvl1: list[list[int]]
    encoders: dict  # by modality
    snippet_frames: int


def time_backbones(frames: np.ndarray, flows: np.ndarray, info: dict, total_pairs: int, settings: BenchSettings,
                   device, precision: str, stages: dict,
                   say: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Every pipeline's backbones (and the TV-L1 pairs) in interleaved rounds, passes of them
    repeated while short; returns the RGB and flow features and the int8 feature errors by
    modality (empty unless int8)."""
    from rgbtad.video.sampling import num_snippets

    n, stride = int(settings.snippet_frames), int(settings.stride)
    num_frames = info["frames"]
    expected = num_snippets(num_frames, n, stride)
    encoders, quantization = {}, {}
    for modality, chunks, length in (("rgb", frames, n), ("flow", flows, n - 1)):
        encoders[modality], error = _encoder(modality, chunks, length, info["size"], settings, device, precision)
        if error is not None:
            quantization[modality] = error
    frame_rounds = rounds(num_frames, n, stride, settings.batch_size)
    flow_rounds = rounds(len(flows), n - 1, stride, settings.batch_size)
    if len(frame_rounds) != len(flow_rounds):  # the sampling rule gives both streams the same T
        raise RuntimeError(f"{len(frame_rounds)} frame rounds but {len(flow_rounds)} flow rounds")
    positions = pair_positions(num_frames, settings.tvl1_pairs)
    schedule = [positions[i::max(len(frame_rounds), 1)] for i in range(len(frame_rounds))]
    say(f"backbones: {expected} snippets in {len(frame_rounds)} rounds, with TV-L1 on {len(positions)} "
        f"frame pairs")
    work = _Rounds(frames, flows, frame_rounds, flow_rounds, schedule, encoders, n)
    passes = [_one_pass(work, 0, say)]
    while len(passes) < max(settings.repeats, 1) and max(passes[0][0].values()) < settings.short_stage_s:
        passes.append(_one_pass(work, len(passes), say))
    outputs, measured = passes[-1][1], passes[-1][2]
    for task in BACKBONE_TASKS:
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
    return rgb_feats, flow_feats, quantization


def _one_pass(work: _Rounds, index: int, say: Callable[[str], None]):
    """One pass over the rounds, each round's tasks in an order rotated by one from the last
    round's; `say` (the first pass only) reports every tenth of the rounds. Returns the seconds
    and outputs per task and the TV-L1 pairs computed."""
    from rgbtad.motion.flow import motion_chunks

    n, tasks = work.snippet_frames, BACKBONE_TASKS
    sums = {task: 0.0 for task in tasks}
    outputs: dict[tuple, list] = {task: [] for task in tasks}
    tvl1_pairs = 0
    for r, ((fa, fb), (ga, gb)) in enumerate(zip(work.frame_rounds, work.flow_rounds)):
        order = tasks[r % len(tasks):] + tasks[:r % len(tasks)]
        for task in order:
            start = time.perf_counter()
            if task[1] == "rgb_backbone":
                result = [work.encoders["rgb"].encode(iter([work.frames[fa:fb]]), n)]
            elif task[1] == "flow_backbone":
                result = [work.encoders["flow"].encode(iter([work.flows[ga:gb]]), n - 1)]
            else:
                result = [list(motion_chunks(iter([work.frames[j:j + 2]]), "tvl1")) for j in work.tvl1[r]]
                tvl1_pairs += len(work.tvl1[r])
            sums[task] += time.perf_counter() - start
            outputs[task].extend(result)
        if index == 0 and (r + 1) % max(1, len(work.frame_rounds) // 10) == 0:
            say(f"  round {r + 1}/{len(work.frame_rounds)}")
    return sums, outputs, tvl1_pairs


def time_detectors(video: Path, rgb_feats: np.ndarray, flow_feats: np.ndarray, info: dict,
                   settings: BenchSettings, device, stages: dict, say: Callable[[str], None]) -> None:
    """Each pipeline's detector on its features (RGB, or RGB | flow): a warm-up, then
    round-robin repeats (short)."""
    import torch

    from rgbtad.inference.predict import predict_video

    say("detectors")
    inputs = {"rgb_only": rgb_feats,
              **{name: np.concatenate([rgb_feats, flow_feats], axis=1) for name in PIPELINES[1:]}}
    meta = {"video_id": video.stem, "fps": info["fps"], "duration": info["frames"] / info["fps"],
            "feat_stride": int(settings.stride), "feat_num_frames": int(settings.snippet_frames)}
    calls, described = {}, {}
    for name, feats in inputs.items():
        cfg, model = bench_detector(feats.shape[1], len(feats), settings.num_classes, settings.detector_width)
        model = model.to(device)
        tensor = torch.from_numpy(np.ascontiguousarray(feats.T))
        calls[name] = (lambda m=model, t=tensor, c=cfg: predict_video(m, t, meta, device, c.data.max_seq_len))
        calls[name]()  # warm-up
        described[name] = {"snippets": int(len(feats)), "max_seq_len": int(cfg.data.max_seq_len),
                           "input_dim": int(feats.shape[1])}
    timed = _median_runs(calls, settings.repeats, settings.short_stage_s)
    for name in PIPELINES:
        seconds, runs, dets = timed[name]
        stages[name]["detector"] = _stage(seconds, runs, **described[name], detections=len(dets))
