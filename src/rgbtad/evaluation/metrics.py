"""From matches to the reported figures: AP per class and threshold (VOC 2011 all-point
interpolation), Recall@kx averaged over classes, and `DetectionMetrics` with its table and
JSON (steps 4 and 5 of the protocol in `rgbtad.evaluation.detection`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DetectionMetrics", "RECALL_TOP_K", "average_precision", "mean_recall"]

RECALL_TOP_K: tuple[int, ...] = (1, 5)


def average_precision(tp_det: np.ndarray, ranked: np.ndarray, class_bounds: np.ndarray,
                      npos: np.ndarray) -> np.ndarray:
    """AP (T, C) of each class at each threshold from the true-positive flags (N, T), with
    the detections of class c in rank order at ``ranked[class_bounds[c]:class_bounds[c + 1]]``
    and `npos` its ground-truth instances; a class without detections scores 0."""
    n_thr, n_cls = tp_det.shape[1], npos.shape[0]
    ap = np.zeros((n_thr, n_cls))
    for c in range(n_cls):
        lo, hi = class_bounds[c], class_bounds[c + 1]
        if hi == lo:
            continue
        tp = tp_det[ranked[lo:hi]].T.astype(np.float64)  # (T, n) in rank order
        tp_cum = np.cumsum(tp, axis=1)
        fp_cum = np.cumsum(1.0 - tp, axis=1)
        rec = tp_cum / npos[c]
        prec = tp_cum / (tp_cum + fp_cum)
        for t in range(n_thr):
            ap[t, c] = _interpolated_ap(prec[t], rec[t])
    return ap


def _interpolated_ap(prec: np.ndarray, rec: np.ndarray) -> float:
    """VOC 2011 all-point AP: monotone precision summed over the steps of recall."""
    mprec = np.concatenate([[0.0], prec, [0.0]])
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def mean_recall(hits: np.ndarray, npos: np.ndarray) -> np.ndarray:
    """Recall@kx (T, K) averaged over classes, from the hits (C, T, K) and `npos` (C,)."""
    n_cls, n_thr, n_k = hits.shape
    recall = np.zeros((n_thr, n_k, n_cls))
    for c in range(n_cls):
        recall[:, :, c] = hits[c] / npos[c]
    return recall.mean(axis=2) if n_cls else np.zeros((n_thr, n_k))


@dataclass
class DetectionMetrics:
    """Result of one evaluation. Values are fractions in [0, 1].

    ``per_class_ap[k, t]`` is the AP of ``class_names[k]`` at ``tiou[t]``; ``mAP[t]`` its
    mean over classes; ``recall[t, j]`` is Recall@``recall_top_k[j]``x at ``tiou[t]``, mean
    over classes (see `rgbtad.evaluation.detection` for the definition).
    """

    tiou: list[float]
    mAP: np.ndarray  # (T,)
    average_mAP: float
    per_class_ap: np.ndarray  # (C, T)
    class_names: list[str]
    recall: np.ndarray  # (T, K)
    recall_top_k: tuple[int, ...] = RECALL_TOP_K
    num_ground_truth: int = 0
    num_detections: int = 0  # detections evaluated (of the split's classes)
    num_videos: int = 0  # videos in the evaluated split
    split: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def average_recall(self) -> np.ndarray:
        """Recall@kx averaged over thresholds, shape (K,)."""
        return self.recall.mean(axis=0)

    def to_json(self) -> dict[str, Any]:
        return {
            "tiou": [float(t) for t in self.tiou],
            "mAP": [float(x) for x in self.mAP],
            "average_mAP": float(self.average_mAP),
            "recall": {f"{k}x": [float(x) for x in self.recall[:, j]]
                       for j, k in enumerate(self.recall_top_k)},
            "average_recall": {f"{k}x": float(x)
                               for k, x in zip(self.recall_top_k, self.average_recall)},
            "per_class_ap": {name: [float(x) for x in row]
                             for name, row in zip(self.class_names, self.per_class_ap)},
            "num_classes": len(self.class_names),
            "num_ground_truth": int(self.num_ground_truth),
            "num_detections": int(self.num_detections),
            "num_videos": int(self.num_videos),
            "split": self.split,
        }

    def format_table(self) -> str:
        """mAP and Recall@kx per tIoU threshold, in percent, with their averages."""
        heads = [f"{t:.2f}" for t in self.tiou] + ["avg"]
        width = max(6, *(len(h) for h in heads))
        rows = [("tIoU", heads),
                ("mAP", [f"{100 * x:.2f}" for x in self.mAP] + [f"{100 * self.average_mAP:.2f}"])]
        for j, k in enumerate(self.recall_top_k):
            vals = list(self.recall[:, j]) + [self.average_recall[j]]
            rows.append((f"R@{k}x", [f"{100 * x:.2f}" for x in vals]))
        where = f"split '{self.split}'" if self.split is not None else "all videos"
        lines = [
            f"{where}: {self.num_videos} videos, {len(self.class_names)} classes, "
            f"{self.num_ground_truth} ground-truth instances, {self.num_detections} detections "
            "(values in %)"
        ]
        for name, cells in rows:
            lines.append(f"{name:<6}" + "".join(f"{c:>{width + 1}}" for c in cells))
        return "\n".join(lines)
