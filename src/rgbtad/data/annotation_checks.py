"""Checks of the raw per-video entries of an annotation file (the ``database`` layouts and the
BSN layout alike) and the class list they imply; every problem is an `RgbtadError` naming the
file and the video (`rgbtad.data.annotations` lists them)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from rgbtad.core.errors import RgbtadError

# Name of a class id that no annotation uses (ids must index the class list).
UNNAMED_CLASS = "unnamed_class_{}"


class RawSegment(NamedTuple):
    start: float
    end: float
    label: str
    label_id: int | None  # None: the file gives no label ids


class RawVideo(NamedTuple):
    video_id: str
    subset: str
    duration: float
    fps: float | None
    segments: list[RawSegment]


def _number(value: Any) -> float | None:
    """`value` as a finite float, or None when it is not a real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def check_videos(source: str, database: dict, info: dict[str, tuple[str, float | None]] | None, *,
                 bsn: bool) -> list[RawVideo]:
    """Every entry of `database`, checked, in file order. `info` (video -> (subset, fps),
    from a subset CSV) wins over the entry's own subset and fps; BSN entries have none."""
    return [_check_video(f"{source}: video '{vid}'", vid, entry, info, bsn) for vid, entry in database.items()]


def _check_video(where: str, vid: Any, entry: Any, info: dict[str, tuple[str, float | None]] | None,
                 bsn: bool) -> RawVideo:
    if not isinstance(entry, dict):
        raise RgbtadError(f"{where}: expected an object, got {type(entry).__name__}")
    subset = None
    fps: float | None = None
    if info is not None and vid in info:
        subset, fps = info[vid]
    if subset is None:
        if bsn:
            raise RgbtadError(f"{where}: not listed in the subset CSV, so it has no subset")
        subset = entry.get("subset")
        if subset is None:
            raise RgbtadError(f"{where}: missing field 'subset'")
        if not isinstance(subset, str) or not subset.strip():
            raise RgbtadError(f"{where}: 'subset' must be a non-empty string, got {subset!r}")
    duration_key = "duration_second" if bsn else "duration"
    if duration_key not in entry:
        raise RgbtadError(f"{where}: missing field '{duration_key}'")
    duration = _number(entry[duration_key])
    if duration is None:
        raise RgbtadError(f"{where}: '{duration_key}' is not a number: {entry[duration_key]!r}")
    if duration < 0:
        raise RgbtadError(f"{where}: '{duration_key}' is negative ({duration})")
    if fps is None and entry.get("fps") is not None:
        fps = _number(entry["fps"])
        if fps is None or fps <= 0:
            raise RgbtadError(f"{where}: 'fps' must be a positive number, got {entry['fps']!r}")
    # missing annotations mean none, as for official ActivityNet test videos
    anns = entry.get("annotations", [])
    if anns is None:
        anns = []
    if not isinstance(anns, list):
        raise RgbtadError(f"{where}: 'annotations' must be a list")
    segments = [_check_annotation(f"{where}: annotation {index}", ann) for index, ann in enumerate(anns)]
    return RawVideo(str(vid), subset, duration, fps, segments)


def _check_annotation(at: str, ann: Any) -> RawSegment:
    if not isinstance(ann, dict):
        raise RgbtadError(f"{at}: expected an object")
    for key in ("segment", "label"):
        if key not in ann:
            raise RgbtadError(f"{at}: missing field '{key}'")
    label = ann["label"]
    if not isinstance(label, str) or not label:
        raise RgbtadError(f"{at}: 'label' must be a non-empty string, got {label!r}")
    seg = ann["segment"]
    if not isinstance(seg, (list, tuple)) or len(seg) != 2:
        raise RgbtadError(f"{at}: 'segment' must be [start, end], got {seg!r}")
    start, end = _number(seg[0]), _number(seg[1])
    if start is None or end is None:
        raise RgbtadError(f"{at}: 'segment' has a non-numeric value: {seg!r}")
    if start < 0:
        raise RgbtadError(f"{at}: segment starts before 0 ({start} s)")
    if start > end:
        raise RgbtadError(f"{at}: segment is reversed (start {start} > end {end})")
    label_id: int | None = None
    if "label_id" in ann:
        raw_id = ann["label_id"]
        if isinstance(raw_id, bool) or not isinstance(raw_id, (int, float)) or raw_id != int(raw_id) or raw_id < 0:
            raise RgbtadError(f"{at}: 'label_id' must be a non-negative integer, got {raw_id!r}")
        label_id = int(raw_id)
    return RawSegment(start, end, label, label_id)


def class_names(source: str, raw_videos: list[RawVideo], fixed: list[str] | None,
                notes: list[str]) -> list[str]:
    """The class list: fixed (BSN action_name.csv), from label ids, or sorted labels."""
    if fixed is not None:
        return list(fixed)
    with_id = without_id = 0
    id_to_label: dict[int, str] = {}
    label_to_id: dict[str, int] = {}
    labels: set[str] = set()
    for vid, _subset, _duration, _fps, segs in raw_videos:
        for _start, _end, label, label_id in segs:
            labels.add(label)
            if label_id is None:
                without_id += 1
                continue
            with_id += 1
            known = id_to_label.setdefault(label_id, label)
            if known != label:
                raise RgbtadError(
                    f"{source}: video '{vid}': label_id {label_id} is {label!r} here but "
                    f"{known!r} elsewhere"
                )
            known_id = label_to_id.setdefault(label, label_id)
            if known_id != label_id:
                raise RgbtadError(
                    f"{source}: video '{vid}': label {label!r} has label_id {label_id} here but "
                    f"{known_id} elsewhere"
                )
    if with_id and without_id:
        raise RgbtadError(
            f"{source}: {without_id} annotation(s) lack 'label_id' while {with_id} have one"
        )
    if not with_id:
        return sorted(labels)
    count = max(id_to_label) + 1
    gaps = [i for i in range(count) if i not in id_to_label]
    if gaps:
        shown = ", ".join(str(g) for g in gaps[:10]) + (" ..." if len(gaps) > 10 else "")
        notes.append(
            f"{source}: no annotation uses label_id {shown}; those classes are named "
            f"'{UNNAMED_CLASS.format(gaps[0])}' etc."
        )
    return [id_to_label.get(i, UNNAMED_CLASS.format(i)) for i in range(count)]
