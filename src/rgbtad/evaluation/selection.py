"""Which detections the evaluator scores, and as what (see `rgbtad.evaluation.detection`).

A detection is scored in the class its label names, when that class has ground truth in the
evaluated split; the others are left out (an unknown label is an error with `strict`). A
detection on a video outside the evaluated ground truth stays, as a false positive of its
class: its video gets an index after the ground truth's videos, so that it shares no
(class, video) block with any instance. What was left out or counted as off-split is
described in `Selection.notes`, one line each, for the evaluator's one warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from rgbtad.core.errors import RgbtadError
from rgbtad.evaluation.ground_truth import GroundTruth
from rgbtad.evaluation.predictions import Predictions

__all__ = ["Selection", "select_detections"]


@dataclass
class Selection:
    """The scored detections as parallel arrays, in input order."""

    cls: np.ndarray  # (N,) int64 index into gt.class_ids
    video: np.ndarray  # (N,) int64: gt.video_ids indices, then off-split videos after them
    start: np.ndarray  # (N,) float64
    end: np.ndarray  # (N,) float64
    score: np.ndarray  # (N,) float64
    num_videos: int  # ground-truth videos plus off-split videos
    notes: list[str] = field(default_factory=list)


def select_detections(gt: GroundTruth, preds: Predictions, strict: bool) -> Selection:
    """The detections of `preds` that are scored against `gt`, and the notes on the others."""
    det_class, unknown_labels = _class_of_detections(gt, preds, strict)
    keep = det_class >= 0
    notes = _label_notes(gt, unknown_labels, int((~keep).sum()))
    vid_map, num_videos = _video_index(gt, preds)
    det_video = vid_map[preds.video][keep] if len(preds) else np.zeros(0, np.int64)
    off_split = det_video >= len(gt.video_ids)
    if off_split.any():
        notes.append(_off_split_note(gt, preds, vid_map, det_video, off_split))
    return Selection(det_class[keep], det_video, preds.start[keep], preds.end[keep], preds.score[keep],
                     num_videos, notes)


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


def _video_index(gt: GroundTruth, preds: Predictions) -> tuple[np.ndarray, int]:
    """Ground-truth video index of each of `preds.video_ids`, fresh indices after the
    ground truth's for the others; and the number of videos in all."""
    n_gt_videos = len(gt.video_ids)
    vid_map = np.empty(len(preds.video_ids), dtype=np.int64)
    outside = 0
    for i, vid in enumerate(preds.video_ids):
        j = gt.video_index.get(vid)
        if j is None:
            j = n_gt_videos + outside
            outside += 1
        vid_map[i] = j
    return vid_map, n_gt_videos + outside


def _label_notes(gt: GroundTruth, unknown_labels: dict[str, int], n_left_out: int) -> list[str]:
    """Notes on detections left out: unknown label names, then classes absent from the split."""
    notes = []
    n_unknown = sum(unknown_labels.values())
    if unknown_labels:
        counts = [f"'{name}' ({n})" for name, n in unknown_labels.items()]
        plural = "s that are not classes" if len(unknown_labels) > 1 else " that is not a class"
        notes.append(
            f"{n_unknown} detections with {len(unknown_labels)} label{plural} of the ground "
            f"truth {gt.source} were ignored: {_listed(counts, 10)}"
        )
    n_absent = n_left_out - n_unknown
    if n_absent:
        notes.append(f"{n_absent} detections of classes absent from the evaluated "
                     "ground truth were ignored")
    return notes


def _off_split_note(gt: GroundTruth, preds: Predictions, vid_map: np.ndarray, det_video: np.ndarray,
                    off_split: np.ndarray) -> str:
    off_videos = np.unique(det_video[off_split])  # first-seen order: indices grow with it
    names = [f"'{preds.video_ids[i]}'" for i in np.flatnonzero(np.isin(vid_map, off_videos))]
    where = f" (split '{gt.split}')" if gt.split is not None else ""
    return (
        f"{int(off_split.sum())} detections on {len(off_videos)} videos "
        f"that are not in the evaluated ground truth{where} count as false positives: "
        f"{_listed(names, 5)}"
    )


def _listed(items: Sequence[str], limit: int) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
