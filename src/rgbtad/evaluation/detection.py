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
  non-numeric score or segment: the rule of `rgbtad.data.results.detection_values`) is an
  `RgbtadError` naming the file and the entry.
* A detection whose segment is reversed (end < start), empty (end == start) or not finite
  is an `RgbtadError` naming the first one; ``drop_invalid=True`` (``rgbtad evaluate
  --drop-invalid``) leaves such detections out with one warning instead. The reference
  takes them, and scores a reversed copy of a ground-truth segment as a hit (its tIoU is
  0/0 = NaN, and NaN is "not below" any threshold): a file of reversed perfect
  predictions gets mAP 100 at recall 0. On inputs without such segments the numbers are
  the reference's, unchanged.

The steps live in `rgbtad.evaluation.selection` (which detections are scored, as what),
`rgbtad.evaluation.matching` (steps 2 and 3, Recall@kx hits; its docstring says why it is
fast) and `rgbtad.evaluation.metrics` (steps 4 and 5, `DetectionMetrics`).

Torch-free: ``rgbtad evaluate`` never imports torch.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from rgbtad.core.errors import RgbtadError
from rgbtad.evaluation.ground_truth import GroundTruth, load_ground_truth
from rgbtad.evaluation.matching import ground_truth_blocks, match_detections, rank_within_classes
from rgbtad.evaluation.metrics import RECALL_TOP_K, DetectionMetrics, average_precision, mean_recall
from rgbtad.evaluation.predictions import Predictions, load_predictions
from rgbtad.evaluation.selection import select_detections

if TYPE_CHECKING:
    from rgbtad.data.annotations import AnnotationSet

__all__ = [
    "ANET_TIOU",
    "THUMOS_TIOU",
    "evaluate_detection_files",
    "evaluate_detections",
    "parse_tiou",
]

log = logging.getLogger(__name__)

THUMOS_TIOU: list[float] = [0.3, 0.4, 0.5, 0.6, 0.7]
ANET_TIOU: list[float] = np.linspace(0.5, 0.95, 10).tolist()

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


def evaluate_detections(ground_truth: GroundTruth | str | Path | AnnotationSet,
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
    gt = _as_ground_truth(ground_truth, split)
    if isinstance(predictions, Predictions):
        preds = predictions
    elif isinstance(predictions, (str, Path)):
        preds = load_predictions(predictions)
    else:
        preds = Predictions.from_results(predictions)
    preds = preds.valid_segments(drop_invalid)
    thresholds = parse_tiou(THUMOS_TIOU if tiou_thresholds is None else tiou_thresholds)
    return _evaluate(gt, preds, thresholds, tuple(int(k) for k in top_k), strict=strict)


def _as_ground_truth(ground_truth: Any, split: str | None) -> GroundTruth:
    """The ground truths `evaluate_detections` takes: a `GroundTruth` (already split); a path
    (str or Path) to an ActionFormer JSON file; or an annotation set, that is an
    `rgbtad.data.annotations.AnnotationSet` or any object with the same ``videos`` mapping
    (read by `GroundTruth.from_annotation_set`). Anything else is a TypeError naming it."""
    if isinstance(ground_truth, GroundTruth):
        if split is not None and (ground_truth.split or "").lower() != split.lower():
            raise ValueError("split= applies only when ground_truth is a path or an AnnotationSet")
        return ground_truth
    if isinstance(ground_truth, (str, Path)):
        return load_ground_truth(ground_truth, split)
    if isinstance(getattr(ground_truth, "videos", None), Mapping):
        return GroundTruth.from_annotation_set(ground_truth, split)
    raise TypeError("ground_truth must be a GroundTruth, a path to an ActionFormer JSON file, or an "
                    f"AnnotationSet (an object with a 'videos' mapping), got {type(ground_truth).__name__}")


def _evaluate(gt: GroundTruth, preds: Predictions, thresholds: list[float],
              top_k: tuple[int, ...], strict: bool = False) -> DetectionMetrics:
    """The protocol on checked inputs (segments are not checked here: see `valid_segments`)."""
    if gt.num_instances == 0:
        raise RgbtadError(f"{gt.source}: no ground-truth instances to evaluate against")
    thr = np.asarray(thresholds, dtype=np.float64)
    n_cls = len(gt.class_ids)
    dets = select_detections(gt, preds, strict)
    ranked, rank, class_bounds = rank_within_classes(dets.cls, dets.score, n_cls)
    blocks = ground_truth_blocks(gt, dets.num_videos)
    tp_det, hits = match_detections(dets, rank, blocks, thr, top_k, n_cls)
    npos = np.bincount(gt.instance_class, minlength=n_cls).astype(np.float64)
    ap = average_precision(tp_det, ranked, class_bounds, npos)
    m_ap = ap.mean(axis=1)
    if dets.notes:  # one line, whatever the number of kinds
        where = f"{preds.source}: " if preds.source != "<memory>" else ""
        log.warning("%s%s", where, "; ".join(dets.notes))
    return DetectionMetrics(
        tiou=list(thresholds),
        mAP=m_ap,
        average_mAP=float(m_ap.mean()),
        per_class_ap=ap.T.copy(),
        class_names=list(gt.class_names),
        recall=mean_recall(hits, npos),
        recall_top_k=top_k,
        num_ground_truth=int(blocks.start.shape[0]),
        num_detections=int(dets.score.shape[0]),
        num_videos=len(gt.video_ids),
        split=gt.split,
        notes=dets.notes,
    )
