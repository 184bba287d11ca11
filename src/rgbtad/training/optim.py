"""Optimizer, learning-rate schedule and model EMA, with the ActionFormer recipe.

The one schedule (`warmup_cosine`), stepped once per iteration by every task of the engine
(detectors and snippet backbones): a linear warmup from 0 that reaches the base learning rate
at the last warmup step, then cosine annealing to 1e-8 over the remaining steps (the closed
form of the `LinearWarmupCosineAnnealingLR` that ActionFormer uses). Detectors count their
warmup in epochs and may decay in steps after it instead (`lr_factor`); snippet backbones
warm up over the first twentieth of their steps (`rgbtad.training.backbone_task`).
"""

from __future__ import annotations

import bisect
import copy
import math

import torch
from torch import nn

from rgbtad.config import TrainConfig

ETA_MIN = 1e-8


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # weight decay only on conv / linear weights (the detector decides which those are)
    groups = model.param_groups(cfg.weight_decay)
    # foreach: one kernel per step for all tensors instead of one per tensor (torch picks it
    # only on CUDA by default; the detectors' many small tensors make it matter on CPUs too)
    if cfg.optimizer == "AdamW":
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, foreach=True)
    return torch.optim.SGD(groups, lr=cfg.learning_rate, momentum=cfg.momentum, foreach=True)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, base_lr: float) -> float:
    """Learning-rate multiplier at optimisation step `step` (0-based) of `total_steps`: linear
    from 0 over `warmup_steps` (the base rate at the last of them; none when 0), then cosine
    down to `ETA_MIN` (absolute, hence `base_lr`; a base rate of 0 stays 0)."""
    if step < warmup_steps:
        return step / max(warmup_steps - 1, 1)
    if base_lr <= 0:
        return 0.0
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return (ETA_MIN + 0.5 * (base_lr - ETA_MIN) * (1 + math.cos(math.pi * progress))) / base_lr


def lr_factor(step: int, cfg: TrainConfig, iters_per_epoch: int) -> float:
    """The detector's learning-rate multiplier at optimisation step `step` (0-based)."""
    warmup = cfg.warmup_epochs * iters_per_epoch
    total = (cfg.epochs + cfg.warmup_epochs) * iters_per_epoch
    if cfg.schedule == "multistep" and step >= warmup:
        milestones = [cfg.warmup_epochs * iters_per_epoch + m * iters_per_epoch for m in cfg.schedule_steps]
        return cfg.schedule_gamma ** bisect.bisect_right(milestones, step)
    return warmup_cosine(step, warmup, total, cfg.learning_rate)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                   iters_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, cfg, iters_per_epoch)
    )


def warmup_cosine_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                            base_lr: float) -> torch.optim.lr_scheduler.LambdaLR:
    """`warmup_cosine` as a per-iteration scheduler of `optimizer`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup_steps, total_steps, base_lr)
    )


class ModelEma:
    """Exponential moving average of every weight and buffer, updated each iteration."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        # the same mul_ and add_ per tensor, batched over all floating tensors (foreach)
        averaged, current, copied, sources = [], [], [], []
        values = model.state_dict()
        for name, ema_value in self.module.state_dict().items():
            if ema_value.dtype.is_floating_point:
                averaged.append(ema_value)
                current.append(values[name])
            else:
                copied.append(ema_value)
                sources.append(values[name])
        torch._foreach_mul_(averaged, self.decay)
        torch._foreach_add_(averaged, current, alpha=1.0 - self.decay)
        for ema_value, value in zip(copied, sources):
            ema_value.copy_(value)
