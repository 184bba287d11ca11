"""Evaluation of a snippet classifier: precise batch-norm statistics and the accuracy report."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rgbtad.core.precision import autocast
from rgbtad.training.snippet_data import Item, SnippetSplit, SnippetStore


def precise_batch_norm(net: torch.nn.Module, store: SnippetStore, items: list[tuple[Item, int]], *,
                       batches: int, batch_size: int, device, precision: str) -> None:
    """Replace the batch norms' running statistics by their average over `batches` batches
    of training snippets (un-augmented) under the final weights ("precise BN", as
    detectron2's PreciseBN hook). The running averages of training follow weights that
    changed under them; after a short training (the quick demo's flow backbone: 48 steps)
    they were so stale that the network predicted background for every snippet in eval mode
    while it classified 69 % right with batch statistics. Leaves `net` in eval mode."""
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or not items:
        net.eval()
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    net.train()
    with torch.no_grad(), autocast(precision, device):
        for i in range(0, min(len(items), batches * batch_size), batch_size):
            net(store.batch([it for it, _ in items[i:i + batch_size]]).to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    net.eval()


def evaluate_snippets(net, heads: dict, store: SnippetStore, split: SnippetSplit, class_names: list[str], *,
                      batch_size: int = 64, device=None, precision: str = "fp32") -> dict[str, dict]:
    """Accuracy of every classifier in `heads` (name -> callable from features to logits) on
    every labelled snippet of `split`, from one forward pass of `net` per snippet: overall,
    class-balanced, per class, and the confusion matrix (rows: truth, columns: prediction).
    `precision`: ``fp32`` or ``bf16`` (resolved, `rgbtad.core.precision`), as in training."""
    items = split.items()
    k = len(class_names)
    confusions = {name: np.zeros((k, k), dtype=np.int64) for name in heads}
    device = device if device is not None else torch.device("cpu")
    with torch.inference_mode(), autocast(precision, device):
        for i in range(0, len(items), batch_size):
            chunk = items[i:i + batch_size]
            features = net(store.batch([it for it, _ in chunk]).to(device))
            labels = np.array([label for _, label in chunk])
            for name, head in heads.items():
                np.add.at(confusions[name], (labels, head(features).argmax(1).cpu().numpy()), 1)
    return {name: accuracy_report(confusion, class_names) for name, confusion in confusions.items()}


def accuracy_report(confusion: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, balanced accuracy (mean over the classes present), per class, confusion."""
    totals = confusion.sum(1)
    per_class = {class_names[i]: (round(float(confusion[i, i] / totals[i]), 4) if totals[i] else None)
                 for i in range(len(class_names))}
    present = [v for v in per_class.values() if v is not None]
    return {
        "snippets": int(totals.sum()),
        "accuracy": round(float(np.trace(confusion) / max(totals.sum(), 1)), 4),
        "balanced_accuracy": round(float(np.mean(present)), 4) if present else None,
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def fused(branches: dict):
    """Classifier of a decomposed backbone at evaluation: the branches' log-probabilities summed."""
    return lambda f: sum(F.log_softmax(classify(f), 1) for classify in branches.values())
