"""Inference on pre-extracted features: a trained detector over every video of a split.

Videos go through one at a time, as in the reference: each is padded to `max_seq_len`, or,
when longer, to the next multiple of the detector's `max_div_factor`, so inputs longer than
the training length work. With ``test.ext_score_file`` set, every video's detections are
fused with its video-level class scores (`rgbtad.detection.score_fusion`) in `predict_video`,
the one place all callers (training evaluation, `rgbtad infer`, `rgbtad detect`) pass through.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from tqdm import tqdm

from rgbtad.core.device import resolve_device
from rgbtad.core.errors import RgbtadError
from rgbtad.data.annotations import AnnotationSet, load_annotations
from rgbtad.data.batching import pad_batch
from rgbtad.data.datasets import FeatureDataset
from rgbtad.data.detections import Detections
from rgbtad.data.results import write_results_json
from rgbtad.detection.score_fusion import ScoreFusion, score_fusion
from rgbtad.features.store import FeatureStore
from rgbtad.runs.run_dir import load_run

log = logging.getLogger(__name__)


@torch.no_grad()
def predict(model: torch.nn.Module, dataset: FeatureDataset, class_names: list[str],
            device: torch.device, max_seq_len: int, progress: bool = True,
            fusion: ScoreFusion | None = None) -> dict[str, list[dict]]:
    """Run `model` (in eval mode) on every item of `dataset`; return ActivityNet-style
    detections per video: {video_id: [{"label", "score", "segment": [start, end]}]}. With a
    `fusion`, labels are named after its classes."""
    model.eval()
    class_names = fusion.class_names if fusion is not None else class_names
    results: dict[str, list[dict]] = {}
    for index in tqdm(range(len(dataset)), desc="inference", unit="video", disable=not progress,
                      leave=False):
        item = dataset[index]
        meta = {key: item[key] for key in ("video_id", "fps", "duration", "feat_stride", "feat_num_frames")}
        detections = predict_video(model, item["feats"], meta, device, max_seq_len, fusion=fusion)
        results[item["video_id"]] = detections.to_results(class_names)
    return results


@torch.no_grad()
def predict_video(model: torch.nn.Module, feats: torch.Tensor, meta: dict, device: torch.device,
                  max_seq_len: int, forward=None, fusion: ScoreFusion | None = None) -> Detections:
    """Detections of one video from its ``C x T`` features: padded alone (module doc), the
    forward pass, then `model.postprocess` with `meta` (video_id, fps, duration, feat_stride,
    feat_num_frames). `forward(feats, masks) -> DetectorOutput` replaces `model`'s own forward
    when given (an ONNX Runtime session); `model` still supplies padding and post-processing.
    `fusion`: the video-level class scores to fuse in (labels then index its classes)."""
    feats, masks = pad_batch([feats], max_seq_len=max_seq_len, max_div_factor=model.max_div_factor,
                             training=False)
    outputs = (forward or model)(feats.to(device), masks.to(device))
    (detections,) = model.postprocess(outputs, [meta])
    return detections if fusion is None else fusion.apply(detections)


def _class_names_for(run_classes: list[str], annotations: AnnotationSet) -> list[str]:
    """Labels are named after the annotation file when it defines the same number of
    classes (its label_id order); otherwise after the run's own class list."""
    if annotations.class_names and len(annotations.class_names) == len(run_classes):
        if list(annotations.class_names) != list(run_classes):
            log.warning("%s: class names differ from the run's; using the annotation file's",
                        annotations.source)
        return list(annotations.class_names)
    if annotations.class_names:
        log.warning("%s: defines %d classes but the detector has %d; naming labels after the run",
                    annotations.source, len(annotations.class_names), len(run_classes))
    return list(run_classes)


def infer_features(run_dir: str | Path, *, features_dir: str | Path, annotations: str | Path,
                   split: str | None, out_path: str | Path, device: str | None = None,
                   progress: bool = True) -> int:
    """`rgbtad infer`: detections for every video of `split` in ActivityNet results JSON."""
    torch_device = resolve_device(device)
    cfg, run_classes, model = load_run(run_dir, torch_device)
    ann = load_annotations(annotations)
    subset = ann.split(split or cfg.data.val_split)
    if not subset.videos:
        raise RgbtadError(f"{annotations}: split '{split or cfg.data.val_split}' has no videos")
    fusion = score_fusion(cfg.test, ann.class_names)
    # with a score fusion the labels are the fusion's classes (`predict`), not the run's
    class_names = list(run_classes) if fusion is not None else _class_names_for(run_classes, ann)
    dataset = FeatureDataset(subset, FeatureStore.from_config(cfg.data, features_dir), cfg.data,
                             training=False, class_names=class_names,
                             class_agnostic=len(class_names) == 1)
    dataset.warn_long_features()
    results = predict(model, dataset, class_names, torch_device, cfg.data.max_seq_len, progress, fusion)
    write_results_json(out_path, results)
    return len(results)
