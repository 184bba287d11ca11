"""Detection straight from videos: decode -> RGB backbone -> RGB-only detector -> detections.

No optical flow is computed anywhere on this path. A run directory holds everything needed:
the detector (config.yaml, classes.json, model.pt) and the backbone that made its training
features (backbone.json, backbone.pt; see `rgbtad.runs.run_dir.attach_backbone`).

Per video:

1. **Features**, with the very code of `rgbtad extract` (`rgbtad.features.extract.
   snippet_encoder`): PyAV decoding in chunks of 64 frames at the backbone's fps and size,
   snippets of ``snippet_frames`` frames every ``stride`` frames, normalisation with the
   backbone's mean and std, batches through the backbone under ``inference_mode``. Only the
   ``T x C`` features are kept (an hour at 30 fps with stride 4 and 512-d features is about
   55 MB), so memory stays bounded for long videos.
2. **Detector**, as `rgbtad infer` runs it (`rgbtad.inference.predict.predict_video`): the
   run's channel selection, downsampling / resizing (`rgbtad.data.datasets.detector_input`),
   padding, forward, decoding and soft-NMS.
3. **Time**: snippet ``i`` is centred at ``(i * stride + snippet_frames / 2) / fps`` with the
   decoder's output fps; the duration is ``frames / fps``; segments are clipped to
   ``[0, duration]``.

``Detector.from_run(run, onnx="model.onnx")`` runs the detector (and the backbone, when
exported with it) with ONNX Runtime instead (`rgbtad.export.runtime`).

    >>> detector = Detector.from_run("runs/rgb_only")
    >>> result = detector.detect("video.mp4")
    >>> for d in result.segments[:3]:
    ...     print(d.label, d.score, d.start, d.end)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from rgbtad.core.errors import RgbtadError
from rgbtad.data.detections import Detection

log = logging.getLogger(__name__)

__all__ = ["DetectReport", "Detection", "Detector", "VideoDetections", "detect_videos"]


@dataclass
class VideoDetections:
    """Detections of one video, best first, and the video's time base."""

    video_id: str
    duration: float  # seconds: frames / fps
    fps: float  # frame rate the features were computed at
    segments: list[Detection] = field(default_factory=list)
    path: Path | None = None
    num_frames: int = 0
    num_snippets: int = 0

    def to_results(self) -> list[dict]:
        return [d.to_result() for d in self.segments]


class Detector:
    """Videos in, detections out; see the module doc. Build it with `from_run`."""

    def __init__(self, *, cfg, class_names: list[str], model: torch.nn.Module, backbone: torch.nn.Module,
                 spec: dict, device: torch.device, forward=None, batch_size: int = 8,
                 precision: str = "auto", progress: bool = False, run_dir: Path | None = None):
        from rgbtad.detection.score_fusion import score_fusion
        from rgbtad.features.extract import snippet_encoder
        from rgbtad.features.store import parse_channels

        self.cfg = cfg
        # with test.ext_score_file, labels are the score file's classes (a class-aware run's, ordered so)
        self.fusion = score_fusion(cfg.test, class_names if len(class_names) > 1 else None)
        self.class_names = self.fusion.class_names if self.fusion is not None else list(class_names)
        self.model = model
        self.backbone = backbone
        self.spec = spec
        self.device = device
        self.forward = forward
        self.run_dir = run_dir
        where = run_dir if run_dir is not None else "detector"
        feature_dim = int(backbone.feature_dim)
        try:
            self._channels = parse_channels(cfg.data.channels, feature_dim)
        except RgbtadError as err:
            raise RgbtadError(f"{where}: the backbone gives {feature_dim}-d features: {err}") from None
        selected = len(range(*self._channels.indices(feature_dim)))
        if selected != cfg.data.input_dim:
            raise RgbtadError(f"{where}: the backbone gives {feature_dim}-d features ({selected} after "
                              f"channels '{cfg.data.channels}'), the detector expects {cfg.data.input_dim}")
        if (spec["stride"], spec["snippet_frames"]) != (cfg.data.feat_stride, cfg.data.num_frames):
            raise RgbtadError(
                f"{where}: backbone settings give snippets of {spec['snippet_frames']} frames every "
                f"{spec['stride']}, the detector was trained with {cfg.data.num_frames} every "
                f"{cfg.data.feat_stride} (data.num_frames / data.feat_stride)")
        self.encoder = snippet_encoder(backbone, spec["snippets"], device=str(device), batch_size=batch_size,
                                       precision=precision, progress=progress)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str | torch.device | None = None,
                 onnx: str | Path | None = None, *, batch_size: int = 8, precision: str = "auto",
                 progress: bool = False) -> "Detector":
        """The detector and backbone of run directory `run_dir` on `device` (default: CUDA
        when available). `onnx`: an ``rgbtad export`` file to run the detector (and the
        backbone, if exported with it) with ONNX Runtime. `precision` of the backbone:
        ``auto`` (bfloat16 autocast where the device runs it natively, `rgbtad.core.precision`),
        ``fp32`` or ``bf16``; it need not be the one the training features were made with
        (bf16 and fp32 features agree to about 1e-2)."""
        from rgbtad.core.device import resolve_device
        from rgbtad.features.extract import load_backbone
        from rgbtad.runs.run_dir import load_backbone_spec, load_run

        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise RgbtadError(f"{run_dir}: run directory not found")
        torch_device = resolve_device(str(device) if device is not None else None)
        cfg, class_names, model = load_run(run_dir, torch_device)
        spec = load_backbone_spec(run_dir)
        forward = None
        backbone = None
        if onnx is not None:
            from rgbtad.export.runtime import OrtBackbone, OrtDetector

            forward = OrtDetector(onnx, torch_device)
            forward.check_model(model, int(cfg.data.input_dim), len(class_names))
            if forward.backbone_path is not None:
                backbone = OrtBackbone(forward.backbone_path, torch_device)
                if backbone.snippet_frames != spec["snippet_frames"]:
                    raise RgbtadError(f"{forward.backbone_path}: exported for {backbone.snippet_frames}-frame "
                                      f"snippets, {run_dir} uses {spec['snippet_frames']}")
        if backbone is None:
            backbone, _ = load_backbone(spec["backbone"], "rgb", spec["weights"])
            if spec["feature_dim"] is not None and int(spec["feature_dim"]) != int(backbone.feature_dim):
                raise RgbtadError(f"{run_dir}: backbone.json says {spec['feature_dim']}-d features, "
                                  f"{spec['backbone']} gives {backbone.feature_dim}")
        # the preprocessing the features were made with
        if spec["input_mean"] is not None:
            backbone.input_mean = tuple(float(v) for v in spec["input_mean"])
        if spec["input_std"] is not None:
            backbone.input_std = tuple(float(v) for v in spec["input_std"])
        if len(tuple(backbone.input_mean)) != 3 or len(tuple(backbone.input_std)) != 3:
            raise RgbtadError(f"{run_dir}: input_mean and input_std need 3 values (RGB)")
        return cls(cfg=cfg, class_names=class_names, model=model, backbone=backbone, spec=spec,
                   device=torch_device, forward=forward, batch_size=batch_size, precision=precision,
                   progress=progress, run_dir=run_dir)

    # ------------------------------------------------------------------ steps
    def features(self, video: str | Path) -> tuple[np.ndarray, dict]:
        """``(T x C float32 features, entry)`` of `video`, as `rgbtad extract` computes them;
        `entry` has num_frames, num_snippets, fps, duration, width and height."""
        video = Path(video)
        return self.encoder.run(video)

    def detect_features(self, features: np.ndarray, *, video_id: str, fps: float, duration: float,
                        min_score: float = 0.0) -> VideoDetections:
        """Detections from the backbone's ``T x C`` features of one video."""
        from rgbtad.data.datasets import detector_input
        from rgbtad.inference.predict import predict_video

        feats = np.ascontiguousarray(np.asarray(features, dtype=np.float32)[:, self._channels])
        if len(feats) == 0:
            raise RgbtadError(f"{video_id}: no snippets")
        tensor, feat_stride, num_frames = detector_input(feats, self.cfg.data)
        meta = {"video_id": video_id, "fps": float(fps), "duration": float(duration),
                "feat_stride": feat_stride, "feat_num_frames": num_frames}
        detections = predict_video(self.model, tensor, meta, self.device, self.cfg.data.max_seq_len,
                                   forward=self.forward, fusion=self.fusion)
        return VideoDetections(video_id=video_id, duration=float(duration), fps=float(fps),
                               segments=detections.named(self.class_names, min_score),
                               num_snippets=int(len(feats)))

    def detect(self, video: str | Path, min_score: float = 0.0) -> VideoDetections:
        """Detections of one video file (best first); `min_score` drops weaker ones."""
        from rgbtad.video.decode import video_stem

        video = Path(video)
        feats, entry = self.features(video)
        result = self.detect_features(feats, video_id=video_stem(video), fps=entry["fps"],
                                      duration=entry["duration"], min_score=min_score)
        result.path = video
        result.num_frames = int(entry["num_frames"])
        return result

    def detect_many(self, videos: Iterable[str | Path], min_score: float = 0.0,
                    progress: bool | None = None) -> tuple[list[VideoDetections], list[tuple[Path, str]]]:
        """Detections of every video; a video that fails (unreadable, truncated...) is listed
        in the second value with a one-line message naming it, and the others complete."""
        from tqdm import tqdm

        from rgbtad.core.batch import failure_message

        videos = [Path(v) for v in videos]
        show = self.encoder.progress if progress is None else progress
        results: list[VideoDetections] = []
        failures: list[tuple[Path, str]] = []
        for video in tqdm(videos, desc="detect", unit="video", disable=not show or len(videos) < 2, position=0):
            try:
                results.append(self.detect(video, min_score=min_score))
            except KeyboardInterrupt:
                raise
            except Exception as err:  # noqa: BLE001 - one bad video must not stop the batch
                failures.append((video, failure_message(video, err)))
        return results, failures


# --------------------------------------------------------------------------- the command


@dataclass
class DetectReport:
    results: list[VideoDetections]
    failures: list[tuple[Path, str]]
    outputs: list[Path]

    def summary(self) -> str:
        lines = [f"{r.video_id}: {len(r.segments)} detections, {r.duration:.1f} s"
                 + (f", best {r.segments[0].label} {r.segments[0].score:.3f} "
                    f"[{r.segments[0].start:.2f}, {r.segments[0].end:.2f}]" if r.segments else "")
                 for r in self.results]
        lines.append(f"{len(self.results)} done, {len(self.failures)} failed")
        lines += [f"  FAILED {message}" for _, message in self.failures]
        return "\n".join(lines)


def detect_videos(run_dir: str | Path, videos: Sequence[str | Path], *, out: str | Path,
                  csv: str | Path | None = None, plot_dir: str | Path | None = None, min_score: float = 0.0,
                  device: str | None = None, onnx: str | Path | None = None, batch_size: int = 8,
                  precision: str = "auto", progress: bool = True) -> DetectReport:
    """`rgbtad detect`: detections of `videos` into ActivityNet results JSON `out` (and CSV,
    and a timeline PNG per video under `plot_dir`). Failed videos are reported, not written."""
    from rgbtad.data.results import write_results_csv, write_results_json

    out = Path(out)
    if out.is_dir():
        raise RgbtadError(f"{out}: is a folder, expected a results JSON file name")
    if plot_dir is not None and Path(plot_dir).exists() and not Path(plot_dir).is_dir():
        raise RgbtadError(f"{plot_dir}: exists and is not a folder")
    detector = Detector.from_run(run_dir, device=device, onnx=onnx, batch_size=batch_size, precision=precision,
                                 progress=progress)
    results, failures = detector.detect_many(videos, min_score=min_score)
    by_video = {r.video_id: r.to_results() for r in results}
    outputs = [write_results_json(out, by_video)]
    if csv is not None:
        outputs.append(write_results_csv(csv, by_video))
    if plot_dir is not None:
        from rgbtad.viz.timeline import plot_timeline

        for r in results:
            outputs.append(plot_timeline(
                [], {"detections": r.to_results()}, duration=r.duration,
                out_path=Path(plot_dir) / f"{r.video_id}.png", class_names=detector.class_names,
                min_score=min_score, title=f"{r.video_id} ({r.duration:.1f} s)"))
    return DetectReport(results=results, failures=failures, outputs=outputs)
