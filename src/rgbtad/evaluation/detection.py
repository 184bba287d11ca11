"""Temporal action detection mAP (ActivityNet protocol), exact and fast.

The numbers are those of ActionFormer's evaluator (``ANETdetection`` in
``libs/utils/metrics.py`` of happyharrycn/actionformer_release, the version with
``remove_duplicate_annotations`` and Recall@kx), to floating-point rounding and with the
same tie-breaking. The protocol, per class k of the split's ground truth:

1. Ground truth: the raw segments of the JSON file, minus instances shorter than 1e-3 s and
   near-duplicates (see `rgbtad.evaluation.ground_truth`). Never clipped to the duration.
2. Detections of class k (all videos, in input order) are ranked by
   ``np.argsort(scores)[::-1]``: decreasing score, ties broken exactly as numpy's default
   argsort does on that array, which is what the reference does.
3. Each detection, in rank order, looks at the ground truth of class k in its own video,
   ordered by decreasing tIoU (again ``np.argsort(tiou)[::-1]``), and at each threshold t
   takes the first instance not yet matched at t, provided its tIoU is not below t. Matched
   means true positive; otherwise (nothing left above t, a duplicate of an already matched
   instance, or no ground truth of class k in that video at all) false positive.
   ``tIoU = inter / (len_gt + len_det - inter)`` with ``inter = max(0, min(ends) - max(starts))``.
4. AP at t: precision and recall after each detection, precision made non-increasing from
   the right, summed over the points where recall changes (VOC 2011 all-point
   interpolation; recall is padded with 0 and 1, precision with 0 and 0).
5. mAP at t is the mean AP over the classes present in the split's ground truth (a class
   with no detections scores 0); average mAP is the mean over thresholds.

Recall@kx (also as ActionFormer reports it, k in (1, 5)): for class k and a video with n
ground-truth instances of that class, keep the top k*n detections of class k in that video
by score; an instance is recalled at t when any of them overlaps it with tIoU >= t (no
one-to-one matching). Per class, recalled instances / instances; reported as the mean over
classes.

Decisions where the reference is silent or fragile:

* Detections are matched to classes by label *name* against the ground truth's label
  names (``label -> label_id``). A name that is not a class anywhere in the ground-truth
  file (a model trained on more classes than the split's ground truth, or a typo) is
  ignored: it counts in no class's AP or recall, as in the reference, whose
  ``label -> class index`` replacement leaves such a label unmapped so that it never joins
  a class's group. With ``strict=True`` (``rgbtad evaluate --strict``) such a name is an
  `RgbtadError` naming both files instead. A class that exists in the file but has no
  instance in the evaluated split cannot affect any AP and is dropped (the reference
  leaves such label ids unmapped, where they can collide with another class's index; it
  never happens when the split holds all classes, as THUMOS14's test split does).
* Detections (of a ground-truth class) on videos outside the evaluated split, or absent
  from the ground-truth file, are false positives of their class, as in the reference: it
  does not filter by video, and a video without ground truth of the class fails its
  ``groupby('video-id').get_group`` and is counted ``fp = 1``. They lower precision,
  never recall. ``strict`` does not change this.
* Whatever was ignored or counted as off-split false positives is reported in one warning
  line (logger ``rgbtad.evaluation.detection``) naming the unknown labels and the videos,
  with the number of detections affected; the same text is in `DetectionMetrics.notes`.
* A results file that is malformed (not JSON, no ``results``, a missing field, a
  non-numeric score or segment) is an `RgbtadError` naming the file and the entry.
* A detection whose segment is reversed (end < start), empty (end == start) or not finite
  is an `RgbtadError` naming the first one; ``drop_invalid=True`` (``rgbtad evaluate
  --drop-invalid``) leaves such detections out with one warning instead. The reference
  takes them, and scores a reversed copy of a ground-truth segment as a hit (its tIoU is
  0/0 = NaN, and NaN is "not below" any threshold): a file of reversed perfect
  predictions gets mAP 100 at recall 0. On inputs without such segments the numbers are
  the reference's, unchanged.

Speed: the greedy matching is sequential only within one (class, video) pair, so it runs in
lock-step over all pairs at once, vectorised over pairs and thresholds; a detection that
overlaps no instance of its class by at least the smallest threshold is decided without
entering the loop. THUMOS14-sized input (42k detections) takes a few tens of milliseconds.

Torch-free: ``rgbtad evaluate`` never imports torch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from rgbtad.core.errors import RgbtadError
from rgbtad.evaluation.ground_truth import GroundTruth, load_ground_truth
from rgbtad.evaluation.predictions import Predictions, load_predictions

__all__ = [
    "ANET_TIOU",
    "DetectionMetrics",
    "RECALL_TOP_K",
    "THUMOS_TIOU",
    "evaluate_detection_files",
    "evaluate_detections",
    "parse_tiou",
    "segment_tiou",
]

log = logging.getLogger(__name__)

THUMOS_TIOU: list[float] = [0.3, 0.4, 0.5, 0.6, 0.7]
ANET_TIOU: list[float] = np.linspace(0.5, 0.95, 10).tolist()
RECALL_TOP_K: tuple[int, ...] = (1, 5)

_NAMED_TIOU = {"thumos": THUMOS_TIOU, "thumos14": THUMOS_TIOU,
               "anet": ANET_TIOU, "activitynet": ANET_TIOU}


def parse_tiou(text: str | Sequence[float]) -> list[float]:
    """'thumos' -> 0.3:0.1:0.7, 'anet' -> 0.5:0.05:0.95 (np.linspace), or '0.3,0.5' -> [0.3, 0.5]."""
    if not isinstance(text, str):
        values = [float(x) for x in text]
        label = repr(list(text))
    else:
        label = repr(text)
        named = _NAMED_TIOU.get(text.strip().lower())
        if named is not None:
            return list(named)
        try:
            values = [float(part) for part in text.split(",")]
        except ValueError:
            values = []
    if not values or not all(math.isfinite(v) and 0.0 < v <= 1.0 for v in values):
        raise RgbtadError(
            f"tIoU thresholds {label}: expected 'thumos', 'anet' or a comma-separated list of "
            "numbers in (0, 1], such as 0.3,0.5"
        )
    return values


def segment_tiou(det_start: np.ndarray, det_end: np.ndarray, gt_start: np.ndarray,
                 gt_end: np.ndarray) -> np.ndarray:
    """tIoU of every detection (rows) with every ground-truth segment (columns).

    Written operation for operation as the reference's ``segment_iou`` so the values, and
    therefore the tie-breaking of the sorts that use them, are bit-identical.
    """
    inter = (np.minimum(det_end[:, None], gt_end[None, :])
             - np.maximum(det_start[:, None], gt_start[None, :])).clip(0)
    union = (gt_end - gt_start)[None, :] + (det_end - det_start)[:, None] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


@dataclass
class DetectionMetrics:
    """Result of one evaluation. Values are fractions in [0, 1].

    ``per_class_ap[k, t]`` is the AP of ``class_names[k]`` at ``tiou[t]``; ``mAP[t]`` its
    mean over classes; ``recall[t, j]`` is Recall@``recall_top_k[j]``x at ``tiou[t]``, mean
    over classes (see the module docstring for the definition).
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


# ----------------------------------------------------------------------------------------
# Entry points


def evaluate_detection_files(gt_path: str | Path, pred_path: str | Path, split: str | None = None,
                             tiou_thresholds: Sequence[float] | None = None, *,
                             strict: bool = False, drop_invalid: bool = False) -> DetectionMetrics:
    """Evaluate an ActivityNet results file against an ActionFormer ground-truth file.

    Detections whose label is not a class of the ground-truth file are ignored, and those
    on videos outside the evaluated ground truth are false positives, both as in the
    reference and with one warning; ``strict=True`` makes an unknown label an error.
    A reversed, empty or non-finite segment is an error, or left out with `drop_invalid`.
    """
    gt = load_ground_truth(gt_path, split)
    preds = load_predictions(pred_path)
    return evaluate_detections(gt, preds, tiou_thresholds, strict=strict, drop_invalid=drop_invalid)


def evaluate_detections(ground_truth: GroundTruth | str | Path | Any,
                        predictions: Predictions | Mapping[str, Sequence[Mapping]] | str | Path,
                        tiou_thresholds: Sequence[float] | None = None,
                        split: str | None = None,
                        top_k: Sequence[int] = RECALL_TOP_K, *,
                        strict: bool = False, drop_invalid: bool = False) -> DetectionMetrics:
    """Evaluate in memory.

    `ground_truth`: a `GroundTruth`, a path to an ActionFormer JSON file, or an
    `AnnotationSet` (see `GroundTruth.from_annotation_set` about clipped segments); `split`
    selects the subset for the last two. `predictions`: a `Predictions`, a
    ``{video_id: [{"label", "score", "segment"}]}`` mapping, or a results-file path.

    A detection whose label name is not a class of the ground truth is ignored (as the
    reference does) unless `strict`, where it is an `RgbtadError`; a detection on a video
    outside the evaluated ground truth is a false positive of its class. Both are reported
    in one warning line (see the module docstring). A detection whose segment is reversed,
    empty or not finite is an `RgbtadError`, or with `drop_invalid` left out with a warning.
    """
    if isinstance(ground_truth, GroundTruth):
        gt = ground_truth
        if split is not None and (gt.split or "").lower() != split.lower():
            raise ValueError("split= applies only when ground_truth is a path or an AnnotationSet")
    elif isinstance(ground_truth, (str, Path)):
        gt = load_ground_truth(ground_truth, split)
    elif hasattr(ground_truth, "videos"):
        gt = GroundTruth.from_annotation_set(ground_truth, split)
    else:
        raise TypeError("ground_truth must be a GroundTruth, a path, or an AnnotationSet")
    if isinstance(predictions, Predictions):
        preds = predictions
    elif isinstance(predictions, (str, Path)):
        preds = load_predictions(predictions)
    else:
        preds = Predictions.from_results(predictions)
    preds = preds.valid_segments(drop_invalid)
    thresholds = parse_tiou(THUMOS_TIOU if tiou_thresholds is None else tiou_thresholds)
    return _evaluate(gt, preds, thresholds, tuple(int(k) for k in top_k), strict=strict)


# ----------------------------------------------------------------------------------------
# Implementation


def _class_of_detections(gt: GroundTruth, preds: Predictions,
                         strict: bool) -> tuple[np.ndarray, dict[str, int]]:
    """Class index (into gt.class_ids) of every detection, -1 for those not evaluated (class
    not in the split, or label name unknown to the ground truth); and the unknown names
    with their detection counts, in first-seen order (an error instead when `strict`)."""
    unknown_counts: dict[str, int] = {}
    if preds.labels_are_ids:
        ids = np.asarray(preds.labels, dtype=np.int64)
        known = None
    else:
        names = gt.label_ids
        unknown = set(preds.labels).difference(names)
        if unknown and strict:
            first = next(i for i, lab in enumerate(preds.labels) if lab in unknown)
            vid = preds.video_ids[int(preds.video[first])]
            more = f" (and {len(unknown) - 1} other unknown labels)" if len(unknown) > 1 else ""
            raise RgbtadError(
                f"{preds.source}: label '{preds.labels[first]}' (video '{vid}') is not a class "
                f"of the ground truth {gt.source}{more}"
            )
        if unknown:
            for lab in preds.labels:
                if lab in unknown:
                    unknown_counts[lab] = unknown_counts.get(lab, 0) + 1
            known = np.fromiter((lab not in unknown for lab in preds.labels), dtype=bool,
                                count=len(preds.labels))
            ids = np.fromiter((names.get(x, 0) for x in preds.labels), dtype=np.int64,
                              count=len(preds.labels))
        else:
            known = None
            ids = np.fromiter((names[x] for x in preds.labels), dtype=np.int64,
                              count=len(preds.labels))
    class_ids = np.asarray(gt.class_ids, dtype=np.int64)  # sorted
    pos = np.minimum(np.searchsorted(class_ids, ids), len(class_ids) - 1)
    cls = np.where(class_ids[pos] == ids, pos, -1)
    if known is not None:
        cls[~known] = -1
    return cls, unknown_counts


def _listed(items: Sequence[str], limit: int) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _evaluate(gt: GroundTruth, preds: Predictions, thresholds: list[float],
              top_k: tuple[int, ...], strict: bool = False) -> DetectionMetrics:
    if gt.num_instances == 0:
        raise RgbtadError(f"{gt.source}: no ground-truth instances to evaluate against")
    thr = np.asarray(thresholds, dtype=np.float64)
    n_thr, n_k = thr.shape[0], len(top_k)
    n_cls = len(gt.class_ids)
    notes: list[str] = []

    # --- detections as arrays, restricted to the split's classes (input order kept) ---
    det_class, unknown_labels = _class_of_detections(gt, preds, strict)
    keep = det_class >= 0
    n_unknown = sum(unknown_labels.values())
    if unknown_labels:
        counts = [f"'{name}' ({n})" for name, n in unknown_labels.items()]
        plural = "s that are not classes" if len(unknown_labels) > 1 else " that is not a class"
        notes.append(
            f"{n_unknown} detections with {len(unknown_labels)} label{plural} of the ground "
            f"truth {gt.source} were ignored: {_listed(counts, 10)}"
        )
    n_absent = int((~keep).sum()) - n_unknown
    if n_absent:
        notes.append(f"{n_absent} detections of classes absent from the evaluated "
                     "ground truth were ignored")
    # map prediction videos to ground-truth video indices; others get fresh indices
    n_gt_videos = len(gt.video_ids)
    vid_map = np.empty(len(preds.video_ids), dtype=np.int64)
    outside = 0
    for i, vid in enumerate(preds.video_ids):
        j = gt.video_index.get(vid)
        if j is None:
            j = n_gt_videos + outside
            outside += 1
        vid_map[i] = j
    det_video = vid_map[preds.video][keep] if len(preds) else np.zeros(0, np.int64)
    det_class = det_class[keep]
    det_start = preds.start[keep]
    det_end = preds.end[keep]
    det_score = preds.score[keep]
    n_det = det_score.shape[0]
    off_split = det_video >= n_gt_videos
    if off_split.any():
        off_videos = np.unique(det_video[off_split])  # first-seen order: indices grow with it
        names = [f"'{preds.video_ids[i]}'" for i in np.flatnonzero(np.isin(vid_map, off_videos))]
        where = f" (split '{gt.split}')" if gt.split is not None else ""
        notes.append(
            f"{int(off_split.sum())} detections on {len(off_videos)} videos "
            f"that are not in the evaluated ground truth{where} count as false positives: "
            f"{_listed(names, 5)}"
        )
    n_videos_all = n_gt_videos + outside

    # --- rank of each detection within its class: np.argsort(score)[::-1], as the reference ---
    by_class = np.argsort(det_class, kind="stable")  # class-major, input order inside a class
    class_bounds = np.concatenate([[0], np.cumsum(np.bincount(det_class, minlength=n_cls))])
    ranked = np.empty(n_det, dtype=np.int64)  # class-major, rank order inside a class
    rank = np.empty(n_det, dtype=np.int64)
    for c in range(n_cls):
        lo, hi = class_bounds[c], class_bounds[c + 1]
        members = by_class[lo:hi]
        order = members[np.argsort(det_score[members])[::-1]]
        ranked[lo:hi] = order
        rank[order] = np.arange(hi - lo)

    # --- ground truth grouped into (class, video) blocks, file order inside a block ---
    gt_key = gt.instance_class * n_videos_all + gt.instance_video
    gt_order = np.argsort(gt_key, kind="stable")
    gt_start = gt.instance_start[gt_order]
    gt_end = gt.instance_end[gt_order]
    n_gt = gt_start.shape[0]
    block_keys, block_gt_lo, block_gt_n = np.unique(gt_key[gt_order], return_index=True,
                                                    return_counts=True)
    npos = np.bincount(gt.instance_class, minlength=n_cls).astype(np.float64)

    # detections that share a block with ground truth; all others are false positives
    det_key = det_class * n_videos_all + det_video
    pos = np.minimum(np.searchsorted(block_keys, det_key), len(block_keys) - 1)  # GT is never empty
    in_block = block_keys[pos] == det_key
    cand = np.flatnonzero(in_block)
    cand = cand[np.lexsort((rank[cand], pos[cand]))]  # by block, then rank
    cand_block = pos[cand]
    blocks, blk_lo, blk_n = np.unique(cand_block, return_index=True, return_counts=True)

    t_min = thr.min()
    k_max = max(top_k) if top_k else 0
    hits = np.zeros((n_cls, n_thr, n_k), dtype=np.float64)
    block_class = block_keys // n_videos_all
    live_ids: list[np.ndarray] = []
    live_tiou: list[np.ndarray] = []
    live_gt: list[np.ndarray] = []
    live_width = 0
    for b, lo, n in zip(blocks.tolist(), blk_lo.tolist(), blk_n.tolist()):
        ids = cand[lo:lo + n]  # rank order
        g_lo, g_n = int(block_gt_lo[b]), int(block_gt_n[b])
        tm = segment_tiou(det_start[ids], det_end[ids], gt_start[g_lo:g_lo + g_n],
                          gt_end[g_lo:g_lo + g_n])
        # Recall@kx: the block's detections in input order, top k*n by score
        if k_max:
            back = np.argsort(ids)  # rank order -> input order
            top = back[np.argsort(det_score[ids[back]])[::-1][:k_max * g_n]]
            over = tm[top][None, :, :] >= thr[:, None, None]  # (T, rows, G)
            cls_hits = hits[block_class[b]]
            for j, k in enumerate(top_k):
                cls_hits[:, j] += over[:, :k * g_n, :].any(axis=1).sum(axis=1)
        # greedy matching inputs: each row's ground truth by decreasing tIoU
        if g_n == 1:
            order = np.zeros((n, 1), dtype=np.int64)
            st = tm
        else:
            order = np.argsort(tm, axis=1)[:, ::-1]
            st = np.take_along_axis(tm, order, axis=1)
        n_pass = (~(st < t_min)).sum(axis=1)  # a prefix of each row (NaN sorts first, passes)
        live = n_pass > 0
        if not live.any():
            continue
        width = int(n_pass.max())
        live_width = max(live_width, width)
        live_ids.append(ids[live])
        live_tiou.append(st[live, :width])
        live_gt.append(order[live, :width] + g_lo)

    tp_det = np.zeros((n_det, n_thr), dtype=bool)
    if live_ids:
        tp_det[np.concatenate(live_ids)] = _greedy_lockstep(live_tiou, live_gt, live_width, thr, n_gt)

    # --- AP per class and threshold (VOC 2011 all-point interpolation) ---
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
    m_ap = ap.mean(axis=1)

    recall = np.zeros((n_thr, n_k, n_cls))
    for c in range(n_cls):
        recall[:, :, c] = hits[c] / npos[c]
    mean_recall = recall.mean(axis=2) if n_cls else np.zeros((n_thr, n_k))

    if notes:  # one line, whatever the number of kinds
        where = f"{preds.source}: " if preds.source != "<memory>" else ""
        log.warning("%s%s", where, "; ".join(notes))
    return DetectionMetrics(
        tiou=list(thresholds),
        mAP=m_ap,
        average_mAP=float(m_ap.mean()),
        per_class_ap=ap.T.copy(),
        class_names=list(gt.class_names),
        recall=mean_recall,
        recall_top_k=top_k,
        num_ground_truth=int(n_gt),
        num_detections=int(n_det),
        num_videos=len(gt.video_ids),
        split=gt.split,
        notes=notes,
    )


def _greedy_lockstep(tious: list[np.ndarray], gt_ids: list[np.ndarray], width: int,
                     thr: np.ndarray, n_gt: int) -> np.ndarray:
    """Greedy matching of every block at once; returns TP flags (rows, T) for the live rows.

    `tious[b]` holds block b's live detections (rank order) x their candidate ground truth
    sorted by decreasing tIoU; `gt_ids[b]` the matching global ground-truth ids. Step s
    handles the s-th detection of every block that has one: blocks never share ground truth,
    so this is the reference's sequential loop, reordered across independent blocks.
    """
    counts = np.array([t.shape[0] for t in tious], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rows = int(counts.sum())
    tiou = np.full((rows, width), -np.inf)
    gids = np.full((rows, width), n_gt, dtype=np.int64)  # n_gt: a never-used dummy column
    for s, t, g in zip(starts.tolist(), tious, gt_ids):
        tiou[s:s + t.shape[0], :t.shape[1]] = t
        gids[s:s + t.shape[0], :t.shape[1]] = g
    locked = np.zeros((thr.shape[0], n_gt + 1), dtype=bool)
    tp = np.zeros((rows, thr.shape[0]), dtype=bool)
    by_len = np.argsort(-counts, kind="stable")
    starts_sorted, counts_sorted = starts[by_len], counts[by_len]
    t_idx = np.arange(thr.shape[0])[None, :]
    for step in range(int(counts_sorted[0])):
        active = int(np.searchsorted(-counts_sorted, -step, side="left"))
        r = starts_sorted[:active] + step
        g = gids[r]  # (A, W)
        ok = ~(tiou[r][:, None, :] < thr[None, :, None])  # (A, T, W)
        ok &= ~locked[:, g].transpose(1, 0, 2)
        hit = ok.any(axis=2)  # (A, T)
        if not hit.any():
            continue
        first = ok.argmax(axis=2)  # (A, T)
        chosen = np.take_along_axis(g, first, axis=1)  # (A, T)
        a_i, t_i = np.nonzero(hit)
        locked[t_idx[0, t_i], chosen[a_i, t_i]] = True
        tp[r] = hit
    return tp


def _interpolated_ap(prec: np.ndarray, rec: np.ndarray) -> float:
    """VOC 2011 all-point AP: monotone precision summed over the steps of recall."""
    mprec = np.concatenate([[0.0], prec, [0.0]])
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))
