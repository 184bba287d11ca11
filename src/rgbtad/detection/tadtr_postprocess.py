"""TadTR's inference on whole videos: test windows, per-window top-k decoding and the
cross-window fusion of their detections.

Release counterparts (xlliu7/TadTR): the test-mode slicing of ``get_dataset_dict``
(``datasets/data_utils.py``), ``PostProcess`` (``models/tadtr.py``, ``postproc_rank`` 1) and
``TADEvaluator.cross_window_fusion`` with ``apply_nms`` / ``temporal_nms``
(``datasets/tad_eval.py``, ``util/segment_ops.py``):

* windows of ``window`` steps every ``window (1 - overlap)`` steps (offsets truncated to
  integers); a video no longer than one window is one window; when the complete windows
  miss the end, one more, incomplete window starts at ``int(stride n)`` and ends with the
  video (the model sees it zero-padded to ``window``);
* per window: scores ``sigmoid(logit)`` (times the actionness when the branch exists) of
  every query x class, the ``topk`` best (100), segments ``(c -/+ w / 2) x scale`` shifted by
  the window's start;
* fusion, for every pair of neighbouring windows: the detections (of the whole video) that
  intersect their overlap ``[next start, this end]`` go through per-class greedy NMS
  (``IoU = inter / (len_i + len_j - inter)``, suppress ``IoU > threshold``, 0.4) and are kept
  as NMS leaves them; every detection outside all overlaps is kept as is. As in the release,
  a detection that meets two overlaps is judged (and can be kept) twice.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rgbtad.detection.tadtr_matcher import cw_to_bounds

__all__ = ["fuse_windows", "per_class_nms", "temporal_nms", "test_windows", "window_top_k"]


def test_windows(length: int, window: int, overlap: float) -> list[tuple[int, int]]:
    """The release's test windows ``(start, end)`` over a `length`-step video."""
    if length <= window:
        return [(0, length)]
    stride = window * (1 - overlap)
    count = int(math.floor((length / window - 1) / (1 - overlap) + 1))
    windows = [(int(i * stride), int(i * stride) + window) for i in range(count)]
    if (count - 1) * stride + window < length:
        windows.append((int(stride * count), length))
    return windows


def window_top_k(logits: torch.Tensor, segments: torch.Tensor, actionness: torch.Tensor | None,
                 topk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One window's ``Q x K`` logits, ``Q x 2`` (centre, width) segments, ``Q x 1``
    actionness or None: the `topk` best ``(scores, labels, (start, end))``, best first, in
    the window's normalised units."""
    prob = logits.sigmoid()
    if actionness is not None:
        prob = prob * actionness
    num_classes = logits.shape[-1]
    scores, index = torch.topk(prob.reshape(-1), min(topk, prob.numel()))
    query = torch.div(index, num_classes, rounding_mode="floor")
    return scores, index % num_classes, cw_to_bounds(segments)[query]


def temporal_nms(dets: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS of rows ``(start, end, score, ...)`` (``temporal_nms``): the kept rows,
    in the order they were kept."""
    start, end, scores = dets[:, 0], dets[:, 1], dets[:, 2]
    lengths = end - start
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        inter = np.minimum(end[i], end[order[1:]]) - np.maximum(start[i], start[order[1:]])
        iou = inter / (lengths[i] + lengths[order[1:]] - inter).astype(float)
        order = order[np.where(iou <= threshold)[0] + 1]
    return dets[keep, :]


def per_class_nms(dets: np.ndarray, threshold: float) -> np.ndarray:
    """`temporal_nms` per class (column 3, classes ascending), then all rows by score,
    descending (``apply_nms``)."""
    kept = [temporal_nms(dets[dets[:, 3] == cls], threshold) for cls in np.unique(dets[:, 3])]
    kept = np.concatenate(kept, axis=0)
    return kept[kept[:, 2].argsort()[::-1], :]


def fuse_windows(dets: np.ndarray, windows: list[tuple[int, int]], threshold: float) -> np.ndarray:
    """The video's detections (rows ``start, end, score, label`` in its own steps, window
    after window) after NMS inside each overlap of neighbouring `windows`."""
    if len(windows) <= 1 or len(dets) == 0:
        return dets
    kept, anywhere = [], np.zeros(len(dets), dtype=bool)
    for (_, end), (next_start, _) in zip(windows[:-1], windows[1:]):
        inside = (np.minimum(dets[:, 1], end) - np.maximum(dets[:, 0], next_start)) > 0
        if inside.any():
            rows = dets[inside]
            order = per_class_nms(np.concatenate((rows, np.arange(len(rows))[:, None]), axis=1), threshold)
            kept.append(rows[order[:, -1].astype(np.int64)])
        anywhere |= inside
    kept.append(dets[~anywhere])
    return np.concatenate(kept, axis=0)
