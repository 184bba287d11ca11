"""Detections for the mAP evaluator, as flat numpy arrays built in one pass.

Input layouts:

* an ActivityNet results file ``{"results": {video_id: [{"label": name, "score": s,
  "segment": [start, end]}]}}`` (`Predictions.from_file`);
* the same ``{video_id: [detection, ...]}`` mapping in memory (`Predictions.from_results`),
  which is what `rgbtad.data.results` and the inference engine produce;
* parallel per-detection arrays (`Predictions.from_arrays`): video ids, starts, ends,
  labels (class names, or integer label ids) and scores, e.g. from the trainer.

Order matters and is kept: the reference evaluator sorts each class's detections with
numpy's default (not stable) argsort, so equal scores are broken by the order the
detections arrive in, which here is file order (videos in file order, then list order).
Segments are taken as written (not clipped, not reordered), as the reference does; the
evaluator then refuses (or drops) reversed, empty and non-finite ones (`valid_segments`).

A malformed file or entry is an `RgbtadError` naming the file, the video and the entry.
Torch-free: the ``rgbtad evaluate`` command imports this.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from rgbtad.core.errors import RgbtadError
from rgbtad.core.jsonio import read_json_file
from rgbtad.data.results import check_detection_list, detection_values, results_object, segment_fault

__all__ = ["Predictions", "load_predictions"]

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    """Detections as parallel arrays; ``labels`` holds class names (str) or label ids (int)."""

    video_ids: list[str]  # distinct video ids, first-seen order
    video: np.ndarray  # (N,) int64 index into video_ids
    start: np.ndarray  # (N,) float64 seconds
    end: np.ndarray  # (N,) float64 seconds
    score: np.ndarray  # (N,) float64
    labels: list  # (N,) class names, or label ids when `labels_are_ids`
    labels_are_ids: bool = False
    source: str = "<memory>"

    def __len__(self) -> int:
        return int(self.score.shape[0])

    @classmethod
    def from_file(cls, path: str | Path) -> "Predictions":
        data = read_json_file(path, "detections")
        return cls.from_results(results_object(data, path), source=str(path))

    @classmethod
    def from_results(cls, results: Mapping[str, Sequence[Mapping[str, Any]]],
                     source: str = "<memory>") -> "Predictions":
        """Build from ``{video_id: [{"label", "score", "segment"}, ...]}`` (order kept).

        Each detection must pass `rgbtad.data.results.detection_values`; its segment is
        checked later, by `valid_segments`.
        """
        if not isinstance(results, Mapping):
            raise RgbtadError(f"{source}: detections must map video ids to lists of detections")
        columns = _plain_columns(results)
        if columns is None:
            columns = _checked_columns(results, source)
        video_ids, counts, start, end, score, labels = columns
        video = np.repeat(np.arange(len(video_ids), dtype=np.int64),
                          np.asarray(counts, dtype=np.int64))
        return cls(video_ids, video, start, end, score, labels, False, source)

    @classmethod
    def from_arrays(cls, video_ids: Sequence[str], starts: Any, ends: Any, labels: Any,
                    scores: Any, source: str = "<memory>") -> "Predictions":
        """Build from one entry per detection. `labels` are names, or integer label ids.

        Array-likes may be numpy arrays, lists, or CPU tensors (anything `np.asarray` takes).
        """
        index: dict[str, int] = {}
        video = np.fromiter((index.setdefault(str(v), len(index)) for v in video_ids),
                            dtype=np.int64)
        start, end, score = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (starts, ends, scores))
        lab = np.asarray(labels)
        n = video.shape[0]
        if not (start.shape[0] == end.shape[0] == score.shape[0] == lab.shape[0] == n):
            raise RgbtadError(
                f"{source}: detection arrays differ in length (videos {n}, starts {start.shape[0]}, "
                f"ends {end.shape[0]}, labels {lab.shape[0]}, scores {score.shape[0]})"
            )
        if not np.isfinite(score).all():  # segments: see valid_segments
            raise RgbtadError(f"{source}: detections contain a non-finite score")
        if lab.dtype.kind in "iu":
            return cls(list(index), video, start, end, score, lab.astype(np.int64).tolist(), True, source)
        if n and lab.dtype.kind not in "UO":
            raise RgbtadError(f"{source}: detection labels must be class names or integer label ids")
        names = [str(x) for x in lab.tolist()]
        return cls(list(index), video, start, end, score, names, False, source)

    def valid_segments(self, drop_invalid: bool = False) -> "Predictions":
        """These detections, checked: a segment that is reversed (end < start), empty
        (end == start) or not finite can never be a hit, yet the reference scores a
        reversed copy of a ground-truth segment as one (its tIoU is 0/0 = NaN, which passes
        the "not below the threshold" test). Such a detection is an `RgbtadError` naming
        the first one, or with `drop_invalid` is left out, with one warning line."""
        # segment_fault's rule, for all detections at once
        bad = ~(np.isfinite(self.start) & np.isfinite(self.end) & (self.end > self.start))
        if not bad.any():
            return self
        if not drop_invalid:
            i = int(np.flatnonzero(bad)[0])
            v = int(self.video[i])
            start, end = float(self.start[i]), float(self.end[i])
            kind = segment_fault(start, end)
            raise RgbtadError(
                f"{self.source}: video '{self.video_ids[v]}': detection {int((self.video[:i] == v).sum())}: "
                f"segment [{start!r}, {end!r}] is {kind} (end must be greater than start); "
                f"{int(bad.sum())} such detections in all (--drop-invalid leaves them out)"
            )
        log.warning("%s: left out %d detections whose segment is reversed, empty or not finite "
                    "(end <= start)", self.source, int(bad.sum()))
        keep = ~bad
        labels = [label for label, kept in zip(self.labels, keep.tolist()) if kept]
        return Predictions(self.video_ids, self.video[keep], self.start[keep], self.end[keep],
                           self.score[keep], labels, self.labels_are_ids, self.source)


def load_predictions(path: str | Path) -> Predictions:
    """Read an ActivityNet results JSON file."""
    return Predictions.from_file(path)


# video ids, detections per video, start, end and score arrays, labels
_Columns = tuple[list[str], list[int], np.ndarray, np.ndarray, np.ndarray, list[str]]


def _plain_columns(results: Mapping) -> _Columns | None:
    """The columns in one fast pass, when every detection is plain data (a dict, a [start,
    end] list, int or float numbers, a class name) that passes the rule of
    `detection_values`; None for anything else, which `_checked_columns` then decides."""
    video_ids: list[str] = []
    counts: list[int] = []
    starts: list[Any] = []
    ends: list[Any] = []
    labels: list[Any] = []
    scores: list[Any] = []
    try:
        for vid, dets in results.items():
            if type(dets) is not list or not set(map(type, dets)) <= {dict}:
                return None
            segs = [d["segment"] for d in dets]
            if not (set(map(type, segs)) <= {list} and set(map(len, segs)) <= {2}):
                return None
            video_ids.append(str(vid))
            counts.append(len(dets))
            starts += [seg[0] for seg in segs]
            ends += [seg[1] for seg in segs]
            labels += [d["label"] for d in dets]
            scores += [d["score"] for d in dets]
    except KeyError:
        return None
    if not (set(map(type, labels)) <= {str} and all(labels)):
        return None
    try:
        start, end, score = (_plain_numbers(x) for x in (starts, ends, scores))
    except (TypeError, OverflowError):  # not int or float; an int beyond any float
        return None
    if not np.isfinite(score).all():
        return None
    return video_ids, counts, start, end, score, labels


def _plain_numbers(values: list[Any]) -> np.ndarray:
    if not all(t is float or t is int for t in set(map(type, values))):
        raise TypeError
    return np.array(values, dtype=np.float64)


def _checked_columns(results: Mapping, source: str) -> _Columns:
    """The same columns, each detection checked by `detection_values` (the first that fails
    it is an `RgbtadError` naming the file, the video and the detection)."""
    video_ids: list[str] = []
    counts: list[int] = []
    starts: list[float] = []
    ends: list[float] = []
    labels: list[str] = []
    scores: list[float] = []
    for vid, dets in results.items():
        where = f"{source}: video '{vid}'"
        for i, det in enumerate(check_detection_list(dets, where)):
            label, score, start, end = detection_values(det, f"{where}: detection {i}")
            labels.append(str(label))
            scores.append(score)
            starts.append(start)
            ends.append(end)
        video_ids.append(str(vid))
        counts.append(len(dets))
    return (video_ids, counts, np.array(starts, dtype=np.float64), np.array(ends, dtype=np.float64),
            np.array(scores, dtype=np.float64), labels)
