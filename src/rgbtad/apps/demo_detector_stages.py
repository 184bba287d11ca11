"""The demo's detector stages: one ActionFormer per model on the synthetic defaults, trained
(or found, or resumed), then its detections on the test split and their mAP."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rgbtad.apps.demo_layout import detector_run_dir, features_dir, features_root, predictions_file
from rgbtad.apps.demo_plan import DemoSettings, ModelSpec
from rgbtad.core.errors import RgbtadError


def detector_config(spec: ModelSpec, ann_path: Path, out: Path, settings: DemoSettings, seed: int):
    """The detector config of one demo model: configs' synthetic defaults + this model's data."""
    from rgbtad.config import build_config

    dims = {folder.name: _feature_dim(folder) for folder in features_root(out).iterdir() if folder.is_dir()}
    values = synthetic_detector_defaults()
    values["data"].update({"annotations": str(ann_path), "features": str(features_dir(out, spec.features)),
                           "input_dim": dims[spec.features], "feat_stride": settings.stride,
                           "num_frames": settings.snippet_frames})
    values["train"].update({"epochs": settings.detector_epochs, "warmup_epochs": settings.detector_warmup,
                            "ema_decay": settings.detector_ema_decay, "seed": seed,
                            # a resumable checkpoint every 5 epochs: saving one took 0.2 s, 10 % of
                            # a decomposed student's epoch in the quick demo
                            "checkpoint_every": 5})
    values["model"].update({key: settings.detector_dim for key in ("embd_dim", "fpn_dim", "head_dim")})
    cfg = build_config(values, [o.format(out=out, dim=dims) for o in spec.overrides])
    cfg.data.max_seq_len = _max_seq_len(cfg, settings)
    return cfg


def _max_seq_len(cfg, settings: DemoSettings) -> int:
    """The shortest sequence that holds the longest benchmark video whole (the quick demo's
    20 s videos at stride 4: 128 instead of 256 steps, half the detector's work)."""
    import math

    from rgbtad.detection import seq_len_holding

    frames = math.ceil(settings.max_duration * settings.fps)
    return seq_len_holding(cfg, max(frames - settings.snippet_frames, 0) // settings.stride + 1)


def _feature_dim(folder: Path) -> int:
    first = next(iter(sorted(folder.glob("*.npy"))), None)
    if first is None:
        raise RgbtadError(f"{folder}: no feature files")
    return int(np.load(first, mmap_mode="r").shape[1])


def synthetic_detector_defaults() -> dict:
    """`configs/synthetic.yaml` as a dict (the file ships inside the package)."""
    from importlib import resources

    import yaml

    text = resources.files("rgbtad.apps").joinpath("synthetic.yaml").read_text()
    return yaml.safe_load(text)


def train_and_evaluate(spec: ModelSpec, ann_path: Path, out: Path, settings: DemoSettings, seed: int,
                       device: str | None) -> dict:
    """A worker's job: train (or find) the model's run, detect on the test split, evaluate;
    returns the metrics. No progress bars: those of parallel workers would interleave (the
    parent logs each stage's start and result)."""
    from rgbtad.evaluation.detection import evaluate_detection_files
    from rgbtad.inference.predict import infer_features
    from rgbtad.runs.run_dir import MODEL_FILE
    from rgbtad.training.engine import CHECKPOINT
    from rgbtad.training.trainer import train

    run_dir = detector_run_dir(out, spec.name)
    cfg = detector_config(spec, ann_path, out, settings, seed)
    if not (run_dir / MODEL_FILE).is_file():
        resume = (run_dir / CHECKPOINT).is_file()
        train(cfg, run_dir, resume=resume, device=device, progress=False)
    pred = predictions_file(out, spec.name)
    if not pred.is_file():
        infer_features(run_dir, features_dir=cfg.data.features, annotations=ann_path, split="test",
                       out_path=pred, device=device, progress=False)
    metrics = evaluate_detection_files(ann_path, pred, split="test", tiou_thresholds=cfg.test.tiou_thresholds)
    return metrics.to_json()
