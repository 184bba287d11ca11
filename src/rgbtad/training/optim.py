"""Optimizer, learning-rate schedule and model EMA, with the ActionFormer recipe.

The schedule is stepped once per iteration: a linear warmup from 0 that reaches the base
learning rate at the last warmup step, then cosine annealing to 1e-8 over the remaining
steps (the closed form of the `LinearWarmupCosineAnnealingLR` that ActionFormer uses), or
multi-step decay after the warmup.
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
    if cfg.optimizer == "AdamW":
        return torch.optim.AdamW(groups, lr=cfg.learning_rate)
    return torch.optim.SGD(groups, lr=cfg.learning_rate, momentum=cfg.momentum)


def lr_factor(step: int, cfg: TrainConfig, iters_per_epoch: int) -> float:
    """Learning-rate multiplier at optimisation step `step` (0-based)."""
    warmup = cfg.warmup_epochs * iters_per_epoch
    total = (cfg.epochs + cfg.warmup_epochs) * iters_per_epoch
    if step < warmup:
        return step / max(warmup - 1, 1)
    if cfg.schedule == "multistep":
        milestones = [cfg.warmup_epochs * iters_per_epoch + m * iters_per_epoch for m in cfg.schedule_steps]
        return cfg.schedule_gamma ** bisect.bisect_right(milestones, step)
    base = cfg.learning_rate
    progress = (step - warmup) / max(total - warmup, 1)
    return (ETA_MIN + 0.5 * (base - ETA_MIN) * (1 + math.cos(math.pi * progress))) / base


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                   iters_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, cfg, iters_per_epoch)
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
        current = model.state_dict()
        for name, ema_value in self.module.state_dict().items():
            value = current[name].detach()
            if ema_value.dtype.is_floating_point:
                ema_value.mul_(self.decay).add_(value, alpha=1.0 - self.decay)
            else:
                ema_value.copy_(value)
