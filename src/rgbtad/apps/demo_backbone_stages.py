"""The demo's backbone stages: train each snippet backbone (as `rgbtad train-backbone`
does), extract its features of every video, and put RGB and flow features side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rgbtad.apps.demo_layout import backbone_dir, features_dir, flow_dir, videos_dir
from rgbtad.apps.demo_plan import BACKBONE, BackboneSpec, DemoSettings
from rgbtad.core.atomic import write_npy
from rgbtad.core.errors import RgbtadError


def backbone_config(spec: BackboneSpec, ann_path: Path, out: Path, settings: DemoSettings, seed: int,
                    precision: str):
    """The `rgbtad train-backbone` config of one demo backbone (for ``demo_out`` with the
    default settings: ``configs/backbone_synthetic_*.yaml``)."""
    import dataclasses

    from rgbtad.training.backbone_config import build_backbone_config

    if spec.modality != "rgb":
        epochs = settings.clip_epochs
    else:
        epochs = settings.rgb_clip_epochs if spec.init_from is None else settings.kd_clip_epochs
    snippets = settings.snippets(spec.modality).with_(stride=settings.val_stride)
    values = {
        "annotations": str(ann_path), "videos": str(videos_dir(out)), "backbone": BACKBONE,
        "snippets": dataclasses.asdict(snippets), "flow_dir": str(flow_dir(out)) if spec.modality == "flow" else None,
        "subset": "train", "val_subset": "test", "epochs": epochs, "per_class": settings.clip_per_class,
        "batch_size": settings.clip_batch_size, "seed": seed, "precision": precision,
        "init_from": None if spec.init_from is None else str(backbone_dir(out, spec.init_from)),
        "distill": {"teacher": None if spec.teacher is None else str(backbone_dir(out, spec.teacher)),
                    "mode": spec.distill},
    }
    return build_backbone_config(values)


def train_demo_backbone(ann_path: Path, out: Path, settings: DemoSettings, spec: BackboneSpec, seed: int,
                        device: str | None, precision: str) -> None:
    """Train (or find, or finish) one backbone run, as `rgbtad train-backbone` does."""
    from rgbtad.training.backbone_run import CHECKPOINT, is_finished
    from rgbtad.training.backbones import train_backbone

    run_dir = backbone_dir(out, spec.name)
    if is_finished(run_dir):
        return
    resume = (run_dir / CHECKPOINT).is_file()
    train_backbone(backbone_config(spec, ann_path, out, settings, seed, precision), run_dir, resume=resume,
                   overwrite=not resume, device=device, progress=False)


def extract_demo_features(videos: list[Path], out: Path, settings: DemoSettings, spec: BackboneSpec,
                          device: str | None, precision: str) -> None:
    from rgbtad.features.extract import extract_features
    from rgbtad.training.backbone_run import WEIGHTS_FILE

    report = extract_features(
        videos, features_dir(out, spec.name), backbone=BACKBONE,
        weights=str(backbone_dir(out, spec.name) / WEIGHTS_FILE),
        snippets=settings.snippets(spec.modality), device=device, batch_size=32,
        precision=precision, flow_dir=flow_dir(out) if spec.modality == "flow" else None, progress=False,
    )
    if not report.ok:
        raise RgbtadError(f"feature extraction ({spec.name}) failed for some videos:\n{report.summary()}")


def concat_features(out: Path, parts: tuple[str, ...], name: str) -> None:
    """Two-stream features: the modalities' snippet features side by side (RGB first)."""
    target = features_dir(out, name)
    for path in sorted(features_dir(out, parts[0]).glob("*.npy")):
        dest = target / path.name
        if dest.is_file():
            continue
        arrays = [np.load(features_dir(out, part) / path.name) for part in parts]
        length = min(a.shape[0] for a in arrays)
        write_npy(dest, np.concatenate([a[:length] for a in arrays], axis=1))
