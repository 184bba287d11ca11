"""Detector training: the ActionFormer recipe as a task of the one training engine.

One epoch = one pass over the (randomly truncated) training videos. Every iteration: pad
the batch to `max_seq_len`, forward, the detector's losses (focal + DIoU, plus a student's
distillation terms), backward, gradient clipping, AdamW step, per-iteration LR schedule,
EMA update (`rgbtad.training.engine`, which also writes the resumable checkpoints and the
logs). The data order and augmentation depend only on (seed, epoch), so `--resume` continues
exactly where an interrupted run stopped (at the last finished epoch).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path

import numpy as np
import torch

from rgbtad.config import Config, load_config, save_config
from rgbtad.core.atomic import write_json
from rgbtad.core.errors import RgbtadError
from rgbtad.data.annotations import AnnotationSet, load_annotations
from rgbtad.data.batching import make_loader, pad_batch, set_loader_epoch
from rgbtad.data.datasets import FeatureDataset
from rgbtad.distill import build_model  # the registry's, with the students registered
from rgbtad.features.paired import training_store
from rgbtad.features.store import FeatureStore
from rgbtad.inference.predict import predict
from rgbtad.runs.run_dir import CONFIG_FILE, attach_backbone, clear_run, run_entries, save_run
from rgbtad.runs.teacher import load_teacher
from rgbtad.training import distributed
from rgbtad.training.engine import Engine, EngineSettings, checked_start
from rgbtad.training.optim import make_optimizer, make_scheduler

log = logging.getLogger(__name__)



def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _interrupted_start(cfg: Config, run_dir: Path) -> bool:
    """Whether `run_dir` holds only the config and logs of this same config's training,
    stopped before its first checkpoint (the demo and `ablate` restart such runs)."""
    found = run_entries(run_dir)
    if CONFIG_FILE not in found or not set(found) <= {CONFIG_FILE, "logs"}:
        return False
    try:
        return load_config(run_dir / CONFIG_FILE).to_dict() == cfg.to_dict()
    except RgbtadError:  # an unreadable config.yaml is not this run's
        return False


def evaluate_model(model: torch.nn.Module, cfg: Config, annotations: AnnotationSet,
                   class_names: list[str], device: torch.device, progress: bool = True):
    """Detections and mAP of `model` on the config's validation split.

    mAP is computed against the unclipped ground truth, as `rgbtad evaluate` and the
    reference evaluator do; a class-agnostic detector is scored against the ground truth
    with every label merged into its single class, unless ``test.ext_score_file`` makes its
    detections class-aware (`rgbtad.detection.score_fusion`).
    """
    from rgbtad.detection.score_fusion import score_fusion
    from rgbtad.evaluation.detection import evaluate_detections

    fusion = score_fusion(cfg.test, annotations.class_names)
    class_agnostic = len(class_names) == 1 and len(annotations.class_names) > 1 and fusion is None
    dataset = _validation_set(cfg, annotations, class_names)
    detections = predict(model, dataset, class_names, device, cfg.data.max_seq_len, progress, fusion)
    truth = load_annotations(cfg.data.annotations, clip_to_duration=False).split(cfg.data.val_split)
    if class_agnostic:
        truth = _merge_classes(truth, class_names[0])
    return detections, evaluate_detections(truth, detections, cfg.test.tiou_thresholds)


def _validation_set(cfg: Config, annotations: AnnotationSet, class_names: list[str]) -> FeatureDataset:
    try:
        val = annotations.split(cfg.data.val_split)
    except RgbtadError as err:
        raise RgbtadError(f"{err} (data.val_split)") from None
    class_agnostic = len(class_names) == 1 and len(annotations.class_names) > 1
    return FeatureDataset(val, FeatureStore.from_config(cfg.data), cfg.data, training=False,
                          class_names=class_names, class_agnostic=class_agnostic)


def _merge_classes(annotations: AnnotationSet, name: str) -> AnnotationSet:
    videos = {
        vid: dataclasses.replace(video, segments=[
            dataclasses.replace(seg, label=name, label_id=0) for seg in video.segments])
        for vid, video in annotations.videos.items()
    }
    return dataclasses.replace(annotations, videos=videos, class_names=[name])


def train(cfg: Config, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
          device: str | None = None, progress: bool = True) -> dict:
    """Train a detector as configured; write the run directory; return a summary dict.

    A folder that already holds a run is refused, changing nothing, unless `resume`
    (continue from its last checkpoint) or `overwrite` (its run files are removed once the
    inputs have been checked, just before the first write). A start of the same config
    that was interrupted before its first checkpoint has nothing to keep and starts over.
    `progress`: progress bars (epochs and evaluation) on stderr."""
    run_dir = Path(out_dir)
    state = checked_start(run_dir, cfg.to_dict(), lambda path: load_config(path).to_dict(), resume=resume,
                          overwrite=overwrite, restart=not resume and not overwrite and _interrupted_start(cfg, run_dir))
    dist = distributed.setup(device)
    distributed.barrier(dist)  # every process has checked the folder before the main one writes

    annotations, class_names, num_classes = _classes(cfg)
    loader = _training_loader(cfg, annotations, class_names, dist)
    iters_per_epoch = len(loader)
    # the validation split and its feature files, checked now rather than after the last epoch
    _validation_set(cfg, annotations, class_names).warn_long_features()

    seed_everything(cfg.train.seed)
    model = build_model(cfg, num_classes).to(dist.device)
    if cfg.distill.method != "none":  # the frozen teacher is not part of the model, its EMA or its run
        # before the EMA copy: a student may start from its teacher's weights (C2MS)
        model.attach_teacher(load_teacher(cfg, class_names, dist.device))
    task = DetectorTask(cfg, model, loader, annotations, class_names, dist.device, progress)
    optimizer = make_optimizer(model, cfg.train)
    scheduler = make_scheduler(optimizer, cfg.train, iters_per_epoch)
    t = cfg.train
    settings = EngineSettings(epochs=t.epochs + t.warmup_epochs, clip_grad_l2norm=t.clip_grad_l2norm,
                              ema_decay=t.ema_decay, checkpoint_every=t.checkpoint_every, eval_every=t.eval_every,
                              log_every=t.log_every, progress=progress)
    engine = Engine(task, optimizer, scheduler, settings, run_dir, dist)
    if resume:
        engine.resume(state)
    elif dist.is_main:
        clear_run(run_dir)  # a new run: what the checks above let through is not kept
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / CONFIG_FILE)
    engine.fit()

    summary = {"epochs": settings.epochs}
    if dist.is_main:
        save_run(run_dir, cfg, class_names, engine.final_model.state_dict(),
                 model.state_dict() if engine.ema is not None else None)
        attach_backbone(run_dir, cfg.data.features)  # what `rgbtad detect` needs, when known
        summary.update(task.last_metrics.to_json())
        write_json(run_dir / "summary.json", summary)
    distributed.teardown(dist)
    return summary


def _classes(cfg: Config) -> tuple[AnnotationSet, list[str], int]:
    """(annotations, the detector's class names, its number of classes)."""
    if not cfg.data.annotations:  # else read as the current folder
        raise RgbtadError("config key 'data.annotations' is not set (an annotation file or BSN folder)")
    annotations = load_annotations(cfg.data.annotations)
    class_names = list(annotations.class_names)
    num_classes = cfg.model.num_classes or len(class_names)
    # num_classes 1 over a multi-class file: class-agnostic detection (ActivityNet proposals)
    if num_classes == 1 and len(class_names) > 1:
        class_names = ["action"]
    elif num_classes != len(class_names):
        raise RgbtadError(
            f"{cfg.data.annotations}: has {len(class_names)} classes but model.num_classes is {num_classes}"
        )
    return annotations, class_names, num_classes


def _training_loader(cfg: Config, annotations: AnnotationSet, class_names: list[str], dist):
    """The training batches of this process (its share of `train.batch_size` under DDP)."""
    class_agnostic = len(class_names) == 1 and len(annotations.class_names) > 1
    # distillation: items carry the teacher's features too, teacher_feats (validation reads the student's only)
    train_set = FeatureDataset(annotations.split(cfg.data.train_split), training_store(cfg), cfg.data,
                               training=True, class_names=class_names, seed=cfg.train.seed,
                               class_agnostic=class_agnostic)
    if len(train_set) == 0:
        raise RgbtadError(f"{cfg.data.annotations}: split '{cfg.data.train_split}' has no annotated videos")
    if cfg.train.batch_size % dist.world_size:
        raise RgbtadError(
            f"train.batch_size {cfg.train.batch_size} is not divisible by {dist.world_size} processes"
        )
    loader = make_loader(train_set, batch_size=cfg.train.batch_size // dist.world_size, shuffle=True,
                         seed=cfg.train.seed, num_workers=cfg.data.num_workers,
                         distributed=dist.enabled, drop_last=True)
    if len(loader) == 0:
        raise RgbtadError(
            f"split '{cfg.data.train_split}' has {len(train_set)} videos, fewer than one batch of {cfg.train.batch_size}"
        )
    return loader


def loss_names(model) -> list[str]:
    """The logged losses: ActionFormer's three, then a student's own."""
    base = ["cls_loss", "reg_loss", "final_loss"]
    return base + [name for name in model.loss_names if name not in base]


def metric_names(cfg: Config) -> list[str]:
    return [f"mAP@{t:g}" for t in cfg.test.tiou_thresholds] + ["average_mAP"]


def metric_values(cfg: Config, metrics) -> dict[str, float]:
    values = [float(v) for v in metrics.mAP] + [float(metrics.average_mAP)]
    return dict(zip(metric_names(cfg), values))


def _training_inputs(model, batch: dict, cfg: Config, device: torch.device) -> dict[str, torch.Tensor]:
    """The batch fields the model's training forward reads besides the features
    (``Detector.training_inputs``: a student's ``teacher_feats``), padded as the features."""
    inputs = {}
    for name in model.training_inputs:
        if name not in batch:
            raise RgbtadError(f"the model trains on '{name}' but the training data has none "
                              f"(distill.method is '{cfg.distill.method}')")
        padded, _ = pad_batch(batch[name], max_seq_len=cfg.data.max_seq_len,
                              max_div_factor=model.max_div_factor, training=True)
        inputs[name] = padded.to(device)
    return inputs


class DetectorTask:
    """A detector (or distillation student) as a task of the training engine."""

    def __init__(self, cfg: Config, model, loader, annotations: AnnotationSet, class_names: list[str],
                 device: torch.device, progress: bool):
        self.cfg, self.model, self.loader = cfg, model, loader
        self.annotations, self.class_names, self.device, self.progress = annotations, class_names, device, progress
        self.loss_names = loss_names(model)
        self.metric_names = metric_names(cfg)
        self.last_metrics = None

    def steps_per_epoch(self) -> int:
        return len(self.loader)

    def batches(self, epoch: int):
        set_loader_epoch(self.loader, epoch)
        return self.loader

    def losses(self, net, batch: dict) -> dict[str, torch.Tensor]:
        cfg, model, device = self.cfg, self.model, self.device
        feats, masks = pad_batch(batch["feats"], max_seq_len=cfg.data.max_seq_len,
                                 max_div_factor=model.max_div_factor, training=True)
        inputs = _training_inputs(model, batch, cfg, device)
        outputs = net(feats.to(device), masks.to(device), **inputs)
        return model.losses(outputs, [s.to(device) for s in batch["segments"]],
                            [labels.to(device) for labels in batch["labels"]])

    def evaluate(self, model) -> dict[str, float]:
        _, self.last_metrics = evaluate_model(model, self.cfg, self.annotations, self.class_names, self.device,
                                              self.progress)
        log.info("average mAP %.2f", 100 * self.last_metrics.average_mAP)
        return metric_values(self.cfg, self.last_metrics)

    def state_dict(self) -> dict:
        return {}  # the data order depends on (seed, epoch) only

    def load_state_dict(self, state: dict) -> None:
        pass
