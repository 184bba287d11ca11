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
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from rgbtad.core.errors import RgbtadError
from rgbtad.core.jsonio import read_json_file

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
        if not isinstance(data, dict) or "results" not in data:
            raise RgbtadError(
                f"{path}: not an ActivityNet results file (no top-level 'results' object)"
            )
        if not isinstance(data["results"], dict):
            raise RgbtadError(f"{path}: 'results' must be an object mapping video ids to lists")
        return cls.from_results(data["results"], source=str(path))

    @classmethod
    def from_results(cls, results: Mapping[str, Sequence[Mapping[str, Any]]],
                     source: str = "<memory>") -> "Predictions":
        """Build from ``{video_id: [{"label", "score", "segment"}, ...]}`` (order kept)."""
        if not isinstance(results, Mapping):
            raise RgbtadError(f"{source}: detections must map video ids to lists of detections")
        video_ids: list[str] = []
        counts: list[int] = []
        starts: list[Any] = []
        ends: list[Any] = []
        labels: list[Any] = []
        scores: list[Any] = []
        try:
            for vid, dets in results.items():
                if not isinstance(dets, (list, tuple)):
                    raise TypeError
                video_ids.append(str(vid))
                counts.append(len(dets))
                segs = [d["segment"] for d in dets]
                starts += [s[0] for s in segs]
                ends += [s[1] for s in segs]
                labels += [d["label"] for d in dets]
                scores += [d["score"] for d in dets]
            arrays = [_float_array(x) for x in (starts, ends, scores)]
            if not np.isfinite(arrays[2]).all():  # segments: see valid_segments
                raise ValueError
            label_types = set(map(type, labels))
        except (KeyError, TypeError, IndexError, ValueError):
            _raise_first_problem(results, source)
            raise  # not reached: _raise_first_problem always raises
        if all(issubclass(t, str) for t in label_types):
            are_ids = False
            if label_types != {str}:
                labels = [str(x) for x in labels]
        elif all(issubclass(t, (int, np.integer)) and not issubclass(t, bool) for t in label_types):
            are_ids = True
            labels = [int(x) for x in labels]
        else:
            _raise_first_problem(results, source)
        video = np.repeat(np.arange(len(video_ids), dtype=np.int64),
                          np.asarray(counts, dtype=np.int64))
        return cls(video_ids, video, arrays[0], arrays[1], arrays[2], labels, are_ids, source)

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
        bad = ~(np.isfinite(self.start) & np.isfinite(self.end) & (self.end > self.start))
        if not bad.any():
            return self
        if not drop_invalid:
            i = int(np.flatnonzero(bad)[0])
            v = int(self.video[i])
            start, end = float(self.start[i]), float(self.end[i])
            kind = "reversed" if end < start else "empty" if end == start else "not finite"
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


def _float_array(values: list[Any]) -> np.ndarray:
    """Plain numbers only: numpy would also turn bools and numeric strings into floats."""
    if not all(_is_number_type(t) for t in set(map(type, values))):
        raise ValueError
    return np.array(values, dtype=np.float64)


def _is_number_type(t: type) -> bool:
    return t is float or t is int or (issubclass(t, (np.floating, np.integer)))


def _raise_first_problem(results: Mapping, source: str) -> None:
    """Find the first bad entry (slow path, only after the fast parse failed) and raise."""
    for vid, dets in results.items():
        if not isinstance(dets, (list, tuple)):
            raise RgbtadError(f"{source}: video '{vid}': expected a list of detections")
        for i, det in enumerate(dets):
            where = f"{source}: video '{vid}': detection {i}"
            if not isinstance(det, Mapping):
                raise RgbtadError(f"{where}: expected an object with label, score and segment")
            for key in ("label", "score", "segment"):
                if key not in det:
                    raise RgbtadError(f"{where}: missing field '{key}'")
            label = det["label"]
            if not (isinstance(label, str) or (isinstance(label, int) and not isinstance(label, bool))):
                raise RgbtadError(f"{where}: 'label' must be a class name, got {label!r}")
            if not _finite(det["score"]):
                raise RgbtadError(f"{where}: 'score' is not a finite number: {det['score']!r}")
            seg = det["segment"]
            if isinstance(seg, (str, bytes)) or not isinstance(seg, Sequence) or len(seg) < 2:
                raise RgbtadError(f"{where}: 'segment' must be [start, end], got {seg!r}")
            if not (_is_number_type(type(seg[0])) and _is_number_type(type(seg[1]))):
                raise RgbtadError(f"{where}: 'segment' is not two numbers: {list(seg)!r}")
    kinds = sorted({type(d["label"]).__name__ for dets in results.values() for d in dets})
    raise RgbtadError(f"{source}: labels mix class names and ids ({', '.join(kinds)})")


def _finite(value: Any) -> bool:
    return _is_number_type(type(value)) and math.isfinite(float(value))
