"""The one training engine: detectors and snippet backbones train through the same loop.

A *task* says what is trained (`TrainTask`): the model, one epoch's batches, a batch's
losses, and the validation metrics. The engine owns everything else, the same way for every
task: the per-iteration learning-rate schedule (`rgbtad.training.optim`), gradient clipping,
the model EMA, autocast for the forward pass (`rgbtad.core.precision`), DDP
(`rgbtad.training.distributed`), progress bars, logs (`rgbtad.training.logs`: CSV and
TensorBoard) and checkpoints with exact resume.

Every ``checkpoint_every`` epochs (and after the last) ``checkpoints/last.pt`` receives the
raw and EMA weights, optimizer, scheduler, the global RNG states and the task's own state
(e.g. its sampling generators), so a resumed run continues as if it had never stopped: a
task's batches must depend only on its seed, its own state and the epoch. The checkpoint is
written before the evaluation, so an evaluation that fails does not lose the epoch.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from rgbtad.core.atomic import atomic_path
from rgbtad.core.errors import RgbtadError
from rgbtad.core.precision import autocast
from rgbtad.core.torchio import load_torch_file
from rgbtad.runs.run_dir import CONFIG_FILE, RUN_ENTRIES, check_no_run
from rgbtad.training import distributed
from rgbtad.training.logs import TrainingLogger
from rgbtad.training.optim import ModelEma

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoints/last.pt"
_CHECKPOINT_KEYS = ("epoch", "model", "ema", "optimizer", "scheduler", "rng")  # "task": optional


class TrainTask(Protocol):
    """What the engine trains."""

    #: the trained module: optimised, averaged (EMA), checkpointed
    model: torch.nn.Module
    #: names of the losses `losses` returns; "final_loss" is the one minimised
    loss_names: Sequence[str]
    #: names of the metrics `evaluate` returns, in log order
    metric_names: Sequence[str]

    def steps_per_epoch(self) -> int: ...

    def batches(self, epoch: int) -> Iterable[Any]:
        """The batches of `epoch` (0-based), determined by the seed, the epoch and `state_dict`."""

    def losses(self, net: torch.nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """The losses of one batch through `net` (the model, or its DDP wrapper)."""

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Validation metrics of `model` (the EMA when there is one)."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass(frozen=True)
class EngineSettings:
    epochs: int                   # all epochs, warm-up included
    clip_grad_l2norm: float = 0.0  # 0: no clipping
    ema_decay: float = 0.0        # 0: no EMA
    checkpoint_every: int = 1
    eval_every: int = 0           # 0: only after the last epoch
    log_every: int = 20           # iterations between rows of logs/train.csv
    precision: str = "fp32"       # resolved (`rgbtad.core.precision.resolve_precision`)
    progress: bool = True
    label: str = "epoch"          # progress-bar label


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def read_checkpoint(path: Path) -> dict:
    state = load_torch_file(path, "training checkpoint")
    missing = [key for key in _CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise RgbtadError(f"{path}: not a training checkpoint of rgbtad (missing {', '.join(missing)})")
    return state


def checked_start(run_dir: Path, current: dict, load_saved: Callable[[Path], dict], *, resume: bool,
                  overwrite: bool, entries: tuple[str, ...] = RUN_ENTRIES, restart: bool = False) -> dict | None:
    """The checkpoint to resume from (None: a new run), once `run_dir` has been checked, changing
    nothing: `resume` needs the engine's checkpoint and the config saved there (`load_saved` of
    its config file, a nested dict) equal to `current`; a new run needs a folder without another
    run of layout `entries`, unless `overwrite` or `restart` (the caller found this same run
    stopped before its first checkpoint)."""
    if resume and overwrite:
        raise RgbtadError("--resume and --overwrite exclude each other")
    if not resume:
        if not (overwrite or restart):
            check_no_run(run_dir, "use --resume to continue its training, --overwrite to replace it, or another --out",
                         entries=entries)
        return None
    if not (run_dir / CHECKPOINT).is_file():
        raise RgbtadError(f"{run_dir}: nothing to resume (no {CHECKPOINT})")
    changed = changed_keys(load_saved(run_dir / CONFIG_FILE), current)
    if changed:
        raise RgbtadError(f"{run_dir / CONFIG_FILE}: --resume with a different config (changed: {', '.join(changed)})")
    return read_checkpoint(run_dir / CHECKPOINT)


def changed_keys(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ between two nested config dicts."""
    out = []
    for key in list(current) + [key for key in saved if key not in current]:
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(prefix + key)
    return out


class Engine:
    """Runs a `TrainTask` to the end, from scratch or from `run_dir`'s checkpoint."""

    def __init__(self, task: TrainTask, optimizer, scheduler, settings: EngineSettings, run_dir: Path,
                 dist: distributed.DistInfo):
        self.task, self.optimizer, self.scheduler = task, optimizer, scheduler
        self.settings, self.run_dir, self.dist = settings, Path(run_dir), dist
        self.ema = ModelEma(task.model, settings.ema_decay) if settings.ema_decay > 0 else None
        self.start_epoch = 0

    @property
    def final_model(self) -> torch.nn.Module:
        """What the run keeps: the EMA when there is one, else the trained model."""
        return self.ema.module if self.ema is not None else self.task.model

    def resume(self, state: dict) -> None:
        """Continue from a checkpoint read with `read_checkpoint`."""
        self.task.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        if state.get("task") is not None:
            self.task.load_state_dict(state["task"])
        self.start_epoch = int(state["epoch"]) + 1
        log.info("resuming %s at epoch %d of %d", self.run_dir, self.start_epoch + 1, self.settings.epochs)

    def fit(self) -> dict[str, float]:
        """Train the remaining epochs; the metrics of the last evaluation (evaluated now when a
        resumed run had nothing left to train)."""
        s, task, dist = self.settings, self.task, self.dist
        steps = task.steps_per_epoch()
        net = DistributedDataParallel(task.model) if dist.enabled else task.model
        logger = TrainingLogger(self.run_dir / "logs", task.metric_names, self.start_epoch, self.start_epoch * steps,
                                losses=list(task.loss_names)) if dist.is_main else None
        metrics = None
        try:
            for epoch in range(self.start_epoch, s.epochs):
                self._train_one_epoch(net, epoch, steps, logger)
                last = epoch == s.epochs - 1
                if dist.is_main and (last or (epoch + 1) % max(s.checkpoint_every, 1) == 0):
                    self._save_checkpoint(epoch)
                if dist.is_main and (last or (s.eval_every > 0 and (epoch + 1) % s.eval_every == 0)):
                    metrics = task.evaluate(self.final_model)
                    logger.log_val(epoch, (epoch + 1) * steps, metrics)
                distributed.barrier(dist)
        finally:
            if logger is not None:
                logger.close()
        if dist.is_main and metrics is None:  # resumed after the last epoch's checkpoint
            metrics = task.evaluate(self.final_model)
        return metrics or {}

    def _train_one_epoch(self, net, epoch: int, steps: int, logger: TrainingLogger | None) -> None:
        s, task, dist = self.settings, self.task, self.dist
        net.train()
        bar = tqdm(task.batches(epoch), total=steps, desc=f"{s.label} {epoch + 1}/{s.epochs}", unit="it",
                   leave=False, disable=not (dist.is_main and s.progress))
        for index, batch in enumerate(bar):
            step = epoch * steps + index
            with autocast(s.precision, dist.device):
                losses = task.losses(net, batch)
            loss = losses["final_loss"]
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if s.clip_grad_l2norm > 0:
                torch.nn.utils.clip_grad_norm_(task.model.parameters(), s.clip_grad_l2norm)
            self.optimizer.step()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(task.model)
            if not torch.isfinite(loss):
                raise RuntimeError(f"loss became {loss.item()} at epoch {epoch + 1}, step {step}")
            if logger is not None and (step % max(s.log_every, 1) == 0 or index == steps - 1):
                # the main process logs its own losses (no extra collective per step)
                values = {k: float(v.detach()) for k, v in losses.items()}
                logger.log_train(epoch, step, self.scheduler.get_last_lr()[0], values)
                bar.set_postfix(loss=f"{values['final_loss']:.3f}")

    def _save_checkpoint(self, epoch: int) -> None:
        state = {
            "epoch": epoch,
            "model": self.task.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(),
            "task": self.task.state_dict(),
        }
        with atomic_path(self.run_dir / CHECKPOINT) as tmp:
            torch.save(state, tmp)
