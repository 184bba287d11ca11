"""Ground truth for the mAP evaluator, read exactly the way ActionFormer's evaluator reads it.

Why the evaluator has its own small reader instead of `rgbtad.data.annotations`: the
annotation loader repairs what it reads (it clips segments that run past the video's end,
and rejects reversed segments), which is right for training but changes the metric. The
reference evaluator (ActionFormer, ``libs/utils/metrics.py``: ``load_gt_seg_from_json`` and
``remove_duplicate_annotations``) scores against the raw segments of the JSON file; on
THUMOS14 26 test segments run past their video's end (most of them in video_test_0000270),
and clipping them moves mAP. So this reader keeps every segment as written, and applies
only the reference's own clean-up, per video and in file order:

* an instance shorter than ``DUPLICATE_TOL`` (1e-3 s, ``end - start < tol``) is dropped;
* an instance whose start and end are both within ``tol`` of an instance already *kept* in
  the same video with the same ``label_id`` is a duplicate and is dropped.

Subsets compare case-insensitively (the reference lower-cases the file's subset only).
Label ids come from ``label_id``; a file without any ``label_id`` (the official ActivityNet
layout) numbers the label names in sorted order. The classes evaluated are the label ids
that occur in the selected split, in increasing id order, as in the reference.

Torch-free: the ``rgbtad evaluate`` command imports this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from rgbtad.core.errors import RgbtadError
from rgbtad.core.jsonio import read_json_file

__all__ = ["DUPLICATE_TOL", "GroundTruth", "load_ground_truth"]

# Tolerance of the reference's duplicate / too-short rule, in seconds.
DUPLICATE_TOL = 1e-3


@dataclass
class GroundTruth:
    """Ground-truth instances of one split, as flat arrays in file order (after clean-up).

    ``class_ids[k]`` is the label id of evaluated class ``k`` and ``class_names[k]`` its
    name; ``instance_class`` holds class indices ``k`` (not label ids). ``label_ids`` maps
    every label name of the whole file (all subsets) to its label id, so a detection of a
    class that exists in the dataset but not in this split can be told apart from a typo.
    """

    video_ids: list[str]  # videos of the split, file order (with or without instances)
    class_ids: list[int]
    class_names: list[str]
    label_ids: dict[str, int]
    instance_video: np.ndarray  # (M,) int64 index into video_ids
    instance_start: np.ndarray  # (M,) float64 seconds
    instance_end: np.ndarray  # (M,) float64 seconds
    instance_class: np.ndarray  # (M,) int64 index into class_ids
    source: str = "<memory>"
    split: str | None = None
    num_dropped: int = 0  # instances removed as duplicates or shorter than DUPLICATE_TOL
    _video_index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self._video_index:
            self._video_index = {vid: i for i, vid in enumerate(self.video_ids)}

    @property
    def num_instances(self) -> int:
        return int(self.instance_start.shape[0])

    @property
    def video_index(self) -> dict[str, int]:
        return self._video_index

    # ------------------------------------------------------------------------------------
    # Constructors

    @classmethod
    def from_file(cls, path: str | Path, split: str | None = None) -> "GroundTruth":
        """Read an ActionFormer-format (or official ActivityNet) ground-truth JSON file."""
        data = read_json_file(path, "ground-truth")
        if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
            raise RgbtadError(
                f"{path}: not an ActionFormer/ActivityNet ground-truth file "
                "(no top-level 'database' object)"
            )
        return cls.from_database(data["database"], split=split, source=str(path))

    @classmethod
    def from_database(cls, database: dict, split: str | None = None,
                      source: str = "<memory>") -> "GroundTruth":
        """Build from the ``database`` object of an ActionFormer JSON file (already parsed)."""
        records: list[tuple[str, str | None, list[tuple[float, float, str, Any]]]] = []
        for vid, video in database.items():
            if not isinstance(video, dict):
                raise RgbtadError(f"{source}: video '{vid}': expected an object")
            subset = video.get("subset")
            if split is not None and not isinstance(subset, str):
                raise RgbtadError(f"{source}: video '{vid}': missing 'subset'")
            anns = video.get("annotations")
            if not isinstance(anns, list):
                raise RgbtadError(f"{source}: video '{vid}': missing 'annotations' list")
            rows = []
            if split is not None and subset.lower() != split.lower():
                # outside the split only the class names matter (label -> label_id)
                for i, ann in enumerate(anns):
                    if not isinstance(ann, dict) or not isinstance(ann.get("label"), str):
                        raise RgbtadError(f"{source}: video '{vid}': annotation {i}: missing 'label' name")
                    rows.append((0.0, 0.0, ann["label"], ann.get("label_id")))
                records.append((str(vid), subset, rows))
                continue
            for i, ann in enumerate(anns):
                where = f"{source}: video '{vid}': annotation {i}"
                if not isinstance(ann, dict):
                    raise RgbtadError(f"{where}: expected an object")
                seg, label = ann.get("segment"), ann.get("label")
                if not isinstance(label, str):
                    raise RgbtadError(f"{where}: missing 'label' name")
                if not isinstance(seg, (list, tuple)) or len(seg) < 2:
                    raise RgbtadError(f"{where}: 'segment' must be [start, end]")
                start, end = _number(seg[0]), _number(seg[1])
                if start is None or end is None:
                    raise RgbtadError(f"{where}: 'segment' is not two finite numbers: {seg!r}")
                rows.append((start, end, label, ann.get("label_id")))
            records.append((str(vid), subset, rows))
        return cls._build(records, split, source)

    @classmethod
    def from_annotation_set(cls, annotations: Any, split: str | None = None) -> "GroundTruth":
        """Build from an `rgbtad.data.annotations.AnnotationSet` (duck-typed, no import).

        The segments are whatever the set holds: `load_annotations` clips segments that run
        past a video's end, which the reference evaluator does not. For numbers comparable
        with ActionFormer's, load with ``clip_to_duration=False`` or use `from_file`.
        """
        names = list(getattr(annotations, "class_names", []) or [])
        records = []
        for video in annotations.videos.values():
            rows = [(float(s.start), float(s.end), s.label, int(s.label_id)) for s in video.segments]
            records.append((video.video_id, video.subset, rows))
        source = str(getattr(annotations, "source", "<annotations>"))
        gt = cls._build(records, split, source)
        for index, name in enumerate(names):
            gt.label_ids.setdefault(name, index)
        return gt

    @classmethod
    def _build(cls, records: Iterable[tuple[str, str | None, list]], split: str | None,
               source: str) -> "GroundTruth":
        records = list(records)
        # Label ids: from the file when every annotation has one, else sorted label names.
        all_rows = [row for _, _, rows in records for row in rows]
        has_id = [row[3] is not None for row in all_rows]
        label_ids: dict[str, int] = {}
        if all_rows and not any(has_id):
            label_ids = {name: i for i, name in enumerate(sorted({row[2] for row in all_rows}))}
        else:
            for vid, _, rows in records:
                for start, end, label, lid in rows:
                    if lid is None or isinstance(lid, bool) or not isinstance(lid, (int, float)) \
                            or int(lid) != lid:
                        raise RgbtadError(
                            f"{source}: video '{vid}': label '{label}' has no integer 'label_id'"
                        )
                    known = label_ids.setdefault(label, int(lid))
                    if known != int(lid):
                        raise RgbtadError(
                            f"{source}: label '{label}' has two label ids ({known} and {int(lid)})"
                        )
        id_to_name: dict[int, str] = {}
        for name, lid in label_ids.items():
            other = id_to_name.setdefault(lid, name)
            if other != name:
                raise RgbtadError(f"{source}: label id {lid} names two classes ('{other}' and '{name}')")

        wanted = split.lower() if split is not None else None
        video_ids: list[str] = []
        v_idx: list[int] = []
        starts: list[float] = []
        ends: list[float] = []
        lids: list[int] = []
        dropped = 0
        subsets_seen: dict[str, str] = {}
        for vid, subset, rows in records:
            if isinstance(subset, str):
                subsets_seen.setdefault(subset.lower(), subset)
            if wanted is not None and (not isinstance(subset, str) or subset.lower() != wanted):
                continue
            index = len(video_ids)
            video_ids.append(vid)
            kept = _remove_duplicates([(s, e, label_ids[label]) for s, e, label, _ in rows])
            dropped += len(rows) - len(kept)
            for s, e, lid in kept:
                v_idx.append(index)
                starts.append(s)
                ends.append(e)
                lids.append(lid)
        if wanted is not None and not video_ids:
            shown = ", ".join(repr(s) for s in subsets_seen.values()) or "none"
            raise RgbtadError(f"{source}: no videos in subset '{split}'; subsets present: {shown}")
        if not starts:
            where = f"subset '{split}'" if split is not None else "the file"
            raise RgbtadError(f"{source}: no ground-truth instances in {where}")

        lid_arr = np.asarray(lids, dtype=np.int64)
        class_ids = sorted(set(lids))
        lookup = {lid: k for k, lid in enumerate(class_ids)}
        return cls(
            video_ids=video_ids,
            class_ids=class_ids,
            class_names=[id_to_name[lid] for lid in class_ids],
            label_ids=label_ids,
            instance_video=np.asarray(v_idx, dtype=np.int64),
            instance_start=np.asarray(starts, dtype=np.float64),
            instance_end=np.asarray(ends, dtype=np.float64),
            instance_class=np.fromiter((lookup[x] for x in lid_arr.tolist()), dtype=np.int64,
                                       count=len(lids)),
            source=source,
            split=split,
            num_dropped=dropped,
        )


def load_ground_truth(path: str | Path, split: str | None = None) -> GroundTruth:
    """Read the ground truth of `split` (all videos when None) from an ActionFormer JSON file."""
    return GroundTruth.from_file(path, split)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _remove_duplicates(rows: list[tuple[float, float, int]],
                       tol: float = DUPLICATE_TOL) -> list[tuple[float, float, int]]:
    """The reference's per-video clean-up: drop too-short instances and near-duplicates.

    A row is kept when ``end - start >= tol`` and no previously *kept* row with the same
    label id has both its start and its end within ``tol``. Order is preserved.
    """
    if len(rows) <= 16:
        return _remove_duplicates_loop(rows, tol)
    # Fast path: after sorting by (label, start) any near-duplicate pair would show up
    # between neighbours; with none, only the length rule applies.
    arr = np.asarray(rows, dtype=np.float64)
    order = np.lexsort((arr[:, 0], arr[:, 2]))
    sa = arr[order]
    close = (np.abs(np.diff(sa[:, 0])) <= tol) & (sa[1:, 2] == sa[:-1, 2])
    if not close.any():
        return [row for row in rows if row[1] - row[0] >= tol]
    return _remove_duplicates_loop(rows, tol)


def _remove_duplicates_loop(rows: list[tuple[float, float, int]],
                            tol: float) -> list[tuple[float, float, int]]:
    kept: list[tuple[float, float, int]] = []
    for s, e, lid in rows:
        if e - s < tol:
            continue
        if any(abs(s - ks) <= tol and abs(e - ke) <= tol and lid == kl for ks, ke, kl in kept):
            continue
        kept.append((s, e, lid))
    return kept
