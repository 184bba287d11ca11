"""Detector training: the ActionFormer recipe with checkpoints, exact resume and DDP.

One epoch = one pass over the (randomly truncated) training videos. Every iteration: pad
the batch to `max_seq_len`, forward, focal + DIoU losses, backward, gradient clipping,
AdamW step, per-iteration LR schedule, EMA update. At the end of an epoch a resumable
checkpoint holds the raw and EMA weights, optimizer, scheduler and RNG states, so
`--resume` continues exactly where an interrupted run stopped (at the last finished epoch):
the data order and augmentation depend only on (seed, epoch).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from rgbtad.config import Config, load_config, save_config
from rgbtad.data.annotations import AnnotationSet, load_annotations
from rgbtad.data.batching import make_loader, pad_batch, set_loader_epoch
from rgbtad.data.datasets import FeatureDataset
from rgbtad.features.store import FeatureStore
from rgbtad.features.paired import training_store
from rgbtad.distill import build_model, load_teacher
from rgbtad.training import distributed
from rgbtad.inference.predict import predict
from rgbtad.training.logs import TrainingLogger
from rgbtad.training.optim import ModelEma, make_optimizer, make_scheduler
from rgbtad.runs.run_dir import (CONFIG_FILE, attach_backbone, check_no_run, clear_run, run_entries,
                                   save_run)
from rgbtad.core.errors import RgbtadError
from rgbtad.core.atomic import atomic_path, write_json
from rgbtad.core.torchio import load_torch_file

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoints/last.pt"
_CHECKPOINT_KEYS = ("epoch", "model", "ema", "optimizer", "scheduler", "rng")  # see _save_checkpoint


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _check_resume_config(cfg: Config, run_dir: Path) -> None:
    saved = load_config(run_dir / CONFIG_FILE).to_dict()
    current = cfg.to_dict()
    diffs = [f"{section}.{key}" for section in current for key in current[section]
             if current[section][key] != saved[section][key]]
    if diffs:
        raise RgbtadError(
            f"{run_dir / CONFIG_FILE}: --resume with a different config (changed: {', '.join(diffs)})"
        )


def _read_checkpoint(path: Path) -> dict:
    state = load_torch_file(path, "training checkpoint")
    missing = [key for key in _CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise RgbtadError(f"{path}: not a training checkpoint of rgbtad (missing {', '.join(missing)})")
    return state


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
    with every label merged into its single class.
    """
    from rgbtad.evaluation.detection import evaluate_detections

    class_agnostic = len(class_names) == 1 and len(annotations.class_names) > 1
    dataset = _validation_set(cfg, annotations, class_names)
    detections = predict(model, dataset, class_names, device, cfg.data.max_seq_len, progress)
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
    if resume and overwrite:
        raise RgbtadError("--resume and --overwrite exclude each other")
    dist = distributed.setup(device)
    checkpoint_path = run_dir / CHECKPOINT
    state = None
    if resume:
        if not checkpoint_path.is_file():
            raise RgbtadError(f"{run_dir}: nothing to resume (no {CHECKPOINT})")
        _check_resume_config(cfg, run_dir)
        state = _read_checkpoint(checkpoint_path)
    elif not overwrite and not _interrupted_start(cfg, run_dir):
        check_no_run(run_dir, "use --resume to continue its training, --overwrite to replace it, or another --out")
    distributed.barrier(dist)  # every process has checked the folder before the main one writes

    if not cfg.data.annotations:  # else read as the current folder
        raise RgbtadError("config key 'data.annotations' is not set (an annotation file or BSN folder)")
    annotations = load_annotations(cfg.data.annotations)
    class_names = list(annotations.class_names)
    num_classes = cfg.model.num_classes or len(class_names)
    # num_classes 1 over a multi-class file: class-agnostic detection (ActivityNet proposals)
    class_agnostic = num_classes == 1 and len(class_names) > 1
    if class_agnostic:
        class_names = ["action"]
    elif num_classes != len(class_names):
        raise RgbtadError(
            f"{cfg.data.annotations}: has {len(class_names)} classes but model.num_classes is {num_classes}"
        )
    # distillation: [student | teacher] features of the same snippets (validation reads the student's only)
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
    iters_per_epoch = len(loader)
    if iters_per_epoch == 0:
        raise RgbtadError(
            f"split '{cfg.data.train_split}' has {len(train_set)} videos, fewer than one batch of {cfg.train.batch_size}"
        )
    # the validation split and its feature files, checked now rather than after the last epoch
    _validation_set(cfg, annotations, class_names).warn_long_features()

    seed_everything(cfg.train.seed)
    model = build_model(cfg, num_classes).to(dist.device)
    if cfg.distill.method != "none":  # the frozen teacher is not part of the model, its EMA or its run
        # before the EMA copy: a student may start from its teacher's weights (C2MS)
        model.attach_teacher(load_teacher(cfg, class_names, dist.device))
    ema = ModelEma(model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    optimizer = make_optimizer(model, cfg.train)
    scheduler = make_scheduler(optimizer, cfg.train, iters_per_epoch)
    total_epochs = cfg.train.epochs + cfg.train.warmup_epochs
    start_epoch = 0
    if resume:
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.module.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start_epoch = state["epoch"] + 1
        log.info("resuming %s at epoch %d of %d", run_dir, start_epoch + 1, total_epochs)
    elif dist.is_main:
        clear_run(run_dir)  # a new run: what the checks above let through is not kept
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / CONFIG_FILE)

    net = DistributedDataParallel(model) if dist.enabled else model
    logger = TrainingLogger(run_dir / "logs", cfg.test.tiou_thresholds, start_epoch,
                            start_epoch * iters_per_epoch,
                            extra_losses=list(model.loss_names)) if dist.is_main else None
    metrics = None
    try:
        for epoch in range(start_epoch, total_epochs):
            _train_one_epoch(net, model, ema, optimizer, scheduler, loader, train_set, cfg, epoch, progress,
                             iters_per_epoch, dist, logger)
            last = epoch == total_epochs - 1
            eval_now = last or (cfg.train.eval_every > 0 and (epoch + 1) % cfg.train.eval_every == 0)
            # the checkpoint first: an evaluation that fails does not lose the epoch
            if dist.is_main and (last or (epoch + 1) % max(cfg.train.checkpoint_every, 1) == 0):
                _save_checkpoint(checkpoint_path, epoch, model, ema, optimizer, scheduler)
            if dist.is_main and eval_now:
                eval_model = ema.module if ema is not None else model
                _, metrics = evaluate_model(eval_model, cfg, annotations, class_names, dist.device, progress)
                logger.log_val(epoch, (epoch + 1) * iters_per_epoch, list(metrics.mAP),
                               float(metrics.average_mAP))
                log.info("epoch %d: average mAP %.2f", epoch + 1, 100 * metrics.average_mAP)
            distributed.barrier(dist)
    finally:
        if logger is not None:
            logger.close()

    summary = {"epochs": total_epochs}
    if dist.is_main:
        final = ema.module if ema is not None else model
        if metrics is None:  # resumed after the last epoch's checkpoint: nothing was trained
            _, metrics = evaluate_model(final, cfg, annotations, class_names, dist.device, progress)
        save_run(run_dir, cfg, class_names, final.state_dict(),
                 model.state_dict() if ema is not None else None)
        attach_backbone(run_dir, cfg.data.features)  # what `rgbtad detect` needs, when known
        summary.update(metrics.to_json())
        write_json(run_dir / "summary.json", summary)
    distributed.teardown(dist)
    return summary


def _train_one_epoch(net, model, ema, optimizer, scheduler, loader, train_set, cfg: Config,
                     epoch: int, progress: bool, iters_per_epoch: int, dist, logger) -> None:
    net.train()
    set_loader_epoch(loader, epoch)
    total_epochs = cfg.train.epochs + cfg.train.warmup_epochs
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{total_epochs}", unit="it", leave=False,
               disable=not (dist.is_main and progress))
    for index, batch in enumerate(bar):
        step = epoch * iters_per_epoch + index
        feats, masks = pad_batch(batch["feats"], max_seq_len=cfg.data.max_seq_len,
                                 max_div_factor=model.max_div_factor, training=True)
        outputs = net(feats.to(dist.device), masks.to(dist.device))
        losses = model.losses(outputs, [s.to(dist.device) for s in batch["segments"]],
                              [l.to(dist.device) for l in batch["labels"]])
        optimizer.zero_grad(set_to_none=True)
        losses["final_loss"].backward()
        if cfg.train.clip_grad_l2norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_grad_l2norm)
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update(model)
        if not torch.isfinite(losses["final_loss"]):
            raise RuntimeError(f"loss became {losses['final_loss'].item()} at epoch {epoch + 1}, step {step}")
        if logger is not None and (step % max(cfg.train.log_every, 1) == 0 or index == iters_per_epoch - 1):
            # the main process logs its own losses (no extra collective per step)
            values = {k: float(v.detach()) for k, v in losses.items()}
            logger.log_train(epoch, step, scheduler.get_last_lr()[0], values)
            bar.set_postfix(loss=f"{values['final_loss']:.3f}")


def _save_checkpoint(path: Path, epoch: int, model, ema, optimizer, scheduler) -> None:
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "ema": ema.module.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
