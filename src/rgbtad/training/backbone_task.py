"""Snippet-backbone training as a task of the one engine (`rgbtad.training.engine`).

**Model** (`SnippetClassifier`, one module, so the engine optimises and checkpoints it whole):
the backbone (`rgbtad.backbones.create_backbone`, random initialisation or ``init_from``),
dropout and a linear head over ``num_classes + 1`` outputs (background last), and for
decomposed distillation with ``mimic_weight > 0`` the FitNets regressor (dropped after
training). Trained with cross-entropy, AdamW and the engine's warm-up + cosine schedule
(`rgbtad.training.optim.warmup_cosine`, warm-up over the first twentieth of the steps) for a
fixed number of epochs; deterministic per seed on CPU, no time-based stopping.

**Batches** (`snippet_data`): each epoch draws its snippets (`draw_epoch`) and augments them
from two seeded numpy generators; their states and the per-epoch history are the task's
state, so a resumed run draws what an uninterrupted one would have.

**Cross-modal distillation** (``distill.teacher``: a frozen `SnippetTeacher`, e.g. an optical
flow or temporal-gradient backbone), with the losses of `rgbtad.distill.losses`:

- ``decomposed`` (Lee et al., CVPR 2023, applied at the snippet level): the pooled feature
  is split channel-wise into an appearance half and a motion half; one classifier is shared
  by both halves; the appearance half learns the labels (cross-entropy), the motion half
  learns to reproduce the teacher's class distribution through the shared classifier
  (`softmax_kd_loss` at ``temperature``, times its square) and, with ``mimic_weight > 0``,
  the teacher's feature through the linear regressor (FitNets, `snippet_feature_loss`).
  Sharing the classifier makes the two halves hold different information instead of
  collapsing onto the labels.
- ``conventional`` (the direct, entangled baseline): the whole feature learns the labels
  and mimics the teacher's feature (MSE, same width needed) and class distribution.

The logit term weighs ``distill.weight``, the feature term ``mimic_weight``. This is the
backbone half of the *end-to-end* reading of Lee et al. (METHODS.md 1.2), done in two stages
because a CPU cannot train a backbone through a detector: here the snippet features learn
motion from the teacher, then the detector-level student (`rgbtad.distill`) distils the
motion detector on those features. With frozen features from a backbone that never saw the
teacher, a detector-level student can only re-weigh what the RGB features already hold, and
on the built-in benchmark (classes told apart by motion only) they hold little of it.

**Evaluation** (once, after the last epoch): precise batch-norm statistics under the final
weights (`snippet_eval.precise_batch_norm`, ``bn_batches``), then the accuracy report on
every labelled snippet of ``val_subset`` (for decomposed: the two halves' log-probabilities
summed, and each half alone).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rgbtad.distill.losses import snippet_feature_loss, softmax_kd_loss
from rgbtad.training.backbone_config import BackboneConfig
from rgbtad.training.snippet_data import SnippetSplit, SnippetStore, draw_epoch, epoch_size
from rgbtad.training.snippet_eval import evaluate_snippets, fused, precise_batch_norm
from rgbtad.training.snippet_teacher import SnippetTeacher


class SnippetClassifier(nn.Module):
    """Backbone + dropout + linear head (+ the FitNets regressor of decomposed distillation).
    ``forward`` returns the pooled features; the head reads all of them, or for a decomposed
    student one half at a time."""

    def __init__(self, backbone: nn.Module, num_outputs: int, *, dropout: float, decomposed: bool = False,
                 adapter_dim: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.decomposed = decomposed
        width = int(backbone.feature_dim) // (2 if decomposed else 1)
        self.head = nn.Linear(width, num_outputs)
        self.dropout = nn.Dropout(float(dropout))
        self.adapter = nn.Linear(width, int(adapter_dim)) if adapter_dim else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def heads(self) -> dict:
        """The classifiers of the validation report, by name (features -> logits)."""
        if not self.decomposed:
            return {"head": self.head}
        half = self.head.in_features
        branches = {"appearance": lambda f: self.head(f[:, :half]), "motion": lambda f: self.head(f[:, half:])}
        return {"fused": fused(branches), **branches}


class BackboneTask:
    """A `rgbtad.training.engine.TrainTask`: the snippet classifier on trimmed snippets."""

    def __init__(self, cfg: BackboneConfig, model: SnippetClassifier, store: SnippetStore, split: SnippetSplit,
                 class_names: list[str], *, device, precision: str, teacher: SnippetTeacher | None = None,
                 val: tuple[SnippetStore, SnippetSplit] | None = None):
        self.cfg, self.model, self.store, self.split = cfg, model, store, split
        self.class_names, self.device, self.precision = class_names, device, precision
        self.teacher, self.val = teacher, val
        seed = int(cfg.seed)
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
        self.aug_rng = np.random.default_rng(np.random.SeedSequence([seed, 8]))
        self.background_count = max(1, int(round(cfg.background_factor * cfg.per_class)))
        self.history: list[dict] = []
        self.val_report: dict | None = None
        self._sums = [0.0, 0, 0]  # loss * snippets, correct, snippets of the current epoch
        self.loss_names = ("final_loss", "cls_loss") + (("kd_loss", "mimic_loss") if teacher else ())
        self.metric_names: tuple[str, ...] = ()
        if val is not None:
            self.metric_names = ("accuracy", "balanced_accuracy") + (
                ("appearance_balanced_accuracy", "motion_balanced_accuracy") if model.decomposed else ())

    # ---------------------------------------------------------------- engine protocol

    def steps_per_epoch(self) -> int:
        return math.ceil(epoch_size(self.split, int(self.cfg.per_class), self.background_count)
                         / int(self.cfg.batch_size))

    def total_steps(self) -> int:
        return self.steps_per_epoch() * self.cfg.total_epochs

    def batches(self, epoch: int):
        """(snippets, labels, items) of one epoch; the epoch's mean loss and accuracy go to
        `history` once it is consumed."""
        items = draw_epoch(self.rng, self.split, int(self.cfg.per_class), self.background_count)
        self._sums = [0.0, 0, 0]
        size = int(self.cfg.batch_size)
        for i in range(0, len(items), size):
            chunk = items[i:i + size]
            x = self.store.batch([it for it, _ in chunk], self.aug_rng if self.cfg.augment else None)
            y = torch.tensor([label for _, label in chunk], dtype=torch.long)
            yield x, y, [it for it, _ in chunk]
        loss, correct, seen = self._sums
        self.history.append({"epoch": epoch + 1, "loss": round(loss / max(seen, 1), 5),
                             "train_accuracy": round(correct / max(seen, 1), 5)})

    def losses(self, net: nn.Module, batch) -> dict[str, torch.Tensor]:
        x, y, items = batch
        x, y = x.to(self.device), y.to(self.device)
        m = self.model
        features = net(x)
        if self.teacher is None:
            logits = m.head(m.dropout(features))
            terms = {"cls_loss": F.cross_entropy(logits, y)}
            total = terms["cls_loss"]
        else:
            logits, terms = self._distill_terms(features, y, items)
            d = self.cfg.distill
            total = terms["cls_loss"] + float(d.weight) * terms["kd_loss"] + float(d.mimic_weight) * terms["mimic_loss"]
        self._sums[0] += float(total.detach()) * len(items)
        self._sums[1] += int((logits.argmax(1) == y).sum())
        self._sums[2] += len(items)
        return {"final_loss": total, **terms}

    def _distill_terms(self, features: torch.Tensor, y: torch.Tensor, items) -> tuple[torch.Tensor, dict]:
        """(logits for the labels, the loss terms) of one batch with the teacher (module doc)."""
        m, t = self.model, float(self.cfg.distill.temperature)
        t_features, t_logits = self.teacher(items)
        if m.decomposed:
            half = m.head.in_features
            motion = features[:, half:]
            logits = m.head(m.dropout(features[:, :half]))
            kd = softmax_kd_loss(m.head(motion), t_logits, t)
            mimic = snippet_feature_loss(m.adapter(motion), t_features) if m.adapter is not None \
                else features.new_zeros((), dtype=torch.float32)
        else:
            logits = m.head(m.dropout(features))
            kd = softmax_kd_loss(logits, t_logits, t)
            mimic = snippet_feature_loss(features, t_features)
        return logits, {"cls_loss": F.cross_entropy(logits, y), "kd_loss": kd, "mimic_loss": mimic}

    def evaluate(self, model: SnippetClassifier) -> dict[str, float]:
        """Precise BN under the final weights, then the accuracy on ``val_subset`` (module doc)."""
        cfg = self.cfg
        if int(cfg.bn_batches) > 0:
            # a generator of its own: the same snippets whenever (and however often) it runs
            rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), 9]))
            precise_batch_norm(model.backbone, self.store, draw_epoch(rng, self.split, int(cfg.per_class),
                                                                      self.background_count),
                               batches=int(cfg.bn_batches), batch_size=int(cfg.batch_size), device=self.device,
                               precision=self.precision)
        model.eval()
        if self.val is None:
            self.val_report = None
            return {}
        store, split = self.val
        reports = evaluate_snippets(model.backbone, model.heads(), store, split, self.class_names, batch_size=64,
                                    device=self.device, precision=self.precision)
        if model.decomposed:
            self.val_report = {**reports["fused"],
                               "branches": {n: reports[n]["balanced_accuracy"] for n in ("appearance", "motion")}}
        else:
            self.val_report = reports["head"]
        metrics = {name: self.val_report[name] for name in ("accuracy", "balanced_accuracy")}
        for name, value in self.val_report.get("branches", {}).items():
            metrics[f"{name}_balanced_accuracy"] = value
        return {k: float("nan") if v is None else float(v) for k, v in metrics.items()}

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "aug_rng": self.aug_rng.bit_generator.state,
                "history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.aug_rng.bit_generator.state = state["aug_rng"]
        self.history = list(state["history"])
