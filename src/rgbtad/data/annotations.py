"""Ground-truth annotations: every supported layout is read into one `AnnotationSet`.

Supported inputs (`load_annotations` picks the reader from what it finds):

* **ActionFormer JSON** -- ``{"database": {vid: {"subset", "duration", "fps",
  "annotations": [{"label", "label_id", "segment": [s, e]}]}}}``. Class names come from
  ``label_id -> label`` and must be consistent; ids that no annotation uses get the
  placeholder name ``unnamed_class_<id>`` (with a warning) so that ids still index the list.
* **Official ActivityNet JSON** -- the same ``database`` layout without ``label_id`` (and
  usually without ``fps``; a ``taxonomy`` key is ignored). Class names are then the labels
  found in the file, sorted alphabetically, and ``label_id`` is the index in that list.
* **Flat JSON** -- ``{vid: {"subset", "duration", "annotations": [...]}}`` without the
  ``database`` wrapper (e.g. mmaction2's test fixtures); read like the official layout.
* **ActivityNet-1.3 in BSN layout** -- a folder (or the path of its JSON file) holding
  ``anet_anno_action.json`` (``{"v_<id>": {"duration_second", "annotations": [...]}}``),
  ``video_info_new.csv`` (``video,numFrame,seconds,fps,rfps,subset,featureFrame``), which
  gives each video its subset and fps, and optionally ``action_name.csv`` (one header line,
  then one class name per line). With ``action_name.csv`` the class ids follow its line
  order; without it, the sorted label names. Video ids keep the ``v_`` prefix exactly as
  the files spell them, so features named ``v_<id>.npy`` need no ``file_prefix``.

Validation: a missing field, a non-numeric value, a negative or reversed segment
(``start < 0`` or ``start > end``), an unknown label id or a conflicting class mapping is
an `RgbtadError` naming the file and the video. Videos without annotations are kept (they
are needed for inference lists). Segments running past the video's end are clipped to its
duration (unless ``clip_to_duration=False``); when a segment overshoots by more than
``CLIP_WARN_TOLERANCE`` seconds an `AnnotationWarning` names the video and the number of
clipped segments (one warning per video). Smaller overshoots are rounding noise (about 200
ActivityNet videos end a few milliseconds past their duration) and are clipped silently.
Zero-length segments are kept; the evaluator drops them itself.

This module must stay free of torch: the evaluator imports it.
"""

from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from rgbtad.core.csvio import open_csv
from rgbtad.core.errors import RgbtadError
from rgbtad.core.jsonio import read_json_file

__all__ = [
    "AnnotationSet",
    "AnnotationWarning",
    "CLIP_WARN_TOLERANCE",
    "Segment",
    "VideoAnnotation",
    "load_annotations",
]

# Segments that end at most this many seconds past the video's duration are clipped silently.
CLIP_WARN_TOLERANCE = 0.1

# Name of a class id that no annotation uses (ids must index the class list).
UNNAMED_CLASS = "unnamed_class_{}"

BSN_JSON = "anet_anno_action.json"
BSN_INFO_CSV = "video_info_new.csv"
BSN_CLASSES_CSV = "action_name.csv"


class AnnotationWarning(UserWarning):
    """Something in an annotation file was repaired (e.g. segments clipped to the duration)."""


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float  # seconds
    label: str
    label_id: int  # index into AnnotationSet.class_names


@dataclass
class VideoAnnotation:
    video_id: str
    subset: str  # as spelled in the file ("Validation", "training", ...)
    duration: float  # seconds
    fps: float | None
    segments: list[Segment] = field(default_factory=list)


@dataclass
class AnnotationSet:
    videos: dict[str, VideoAnnotation]  # insertion order = file order
    class_names: list[str]  # index == label_id
    source: str  # the path it came from, for error messages

    def __len__(self) -> int:
        return len(self.videos)

    def __iter__(self) -> Iterator[VideoAnnotation]:
        return iter(self.videos.values())

    @property
    def label_to_id(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.class_names)}

    @property
    def subsets(self) -> list[str]:
        """Subset names present, in order of first appearance, spelled as in the file."""
        seen: dict[str, str] = {}
        for video in self.videos.values():
            seen.setdefault(video.subset.lower(), video.subset)
        return list(seen.values())

    @property
    def num_segments(self) -> int:
        return sum(len(video.segments) for video in self.videos.values())

    def split(self, name: str | Iterable[str]) -> "AnnotationSet":
        """The videos whose subset matches `name` (case-insensitive).

        `name` may also be a list of subset names, or a comma-separated string, to join
        several subsets. Class names are kept whole, so label ids stay valid.
        """
        names = [name] if isinstance(name, str) else list(name)
        wanted = [part.strip().lower() for item in names for part in str(item).split(",")]
        wanted = [w for w in wanted if w]
        present = {video.subset.lower() for video in self.videos.values()}
        missing = [w for w in wanted if w not in present]
        if not wanted or missing:
            shown = ", ".join(repr(s) for s in self.subsets) or "none"
            asked = ", ".join(repr(m) for m in missing) if missing else repr(name)
            raise RgbtadError(f"{self.source}: no subset {asked}; subsets present: {shown}")
        keep = set(wanted)
        videos = {vid: v for vid, v in self.videos.items() if v.subset.lower() in keep}
        return AnnotationSet(videos=videos, class_names=list(self.class_names), source=self.source)


# ----------------------------------------------------------------------------------------
# Loading


def load_annotations(path: str | Path, *, subset_csv: str | Path | None = None,
                     clip_to_duration: bool = True) -> AnnotationSet:
    """Read an annotation file (or a BSN-layout folder) into an `AnnotationSet`.

    `subset_csv` is a CSV with at least the columns ``video`` and ``subset`` (and optionally
    ``fps``), in the layout of BSN's ``video_info_new.csv``. It is required for a BSN JSON
    that has no ``video_info_new.csv`` beside it; for the other layouts it overrides the
    subset (and fps) of the videos it lists.
    `clip_to_duration=False` keeps segments that run past the video's end unchanged.
    """
    notes: list[str] = []
    result = _load(Path(path), subset_csv, clip_to_duration, notes)
    for note in notes:
        warnings.warn(note, AnnotationWarning, stacklevel=2)
    return result


def _load(path: Path, subset_csv: str | Path | None, clip: bool, notes: list[str]) -> AnnotationSet:
    if path.is_dir():
        json_path = path / BSN_JSON
        if not json_path.is_file():
            raise RgbtadError(
                f"{path}: folder is not an ActivityNet BSN annotation folder (no {BSN_JSON})"
            )
        return _load_bsn(json_path, subset_csv, clip, notes)
    if not path.is_file():
        raise RgbtadError(f"{path}: annotation file not found")
    data = read_json_file(path, "annotation")
    if not isinstance(data, dict):
        raise RgbtadError(f"{path}: expected a JSON object at the top level")
    if "database" in data:
        database = data["database"]
        if not isinstance(database, dict):
            raise RgbtadError(f"{path}: 'database' must be an object of videos")
        return _from_database(path, database, subset_csv, clip, notes)
    if _looks_bsn(data):
        return _load_bsn(path, subset_csv, clip, notes, data=data)
    if data and all(isinstance(v, dict) and "annotations" in v for v in data.values()):
        return _from_database(path, data, subset_csv, clip, notes)
    raise RgbtadError(
        f"{path}: unknown annotation layout (expected a 'database' object, a flat "
        "{video: {subset, duration, annotations}} object, or ActivityNet BSN layout)"
    )


def _looks_bsn(data: dict) -> bool:
    first = next(iter(data.values()), None)
    return isinstance(first, dict) and "duration_second" in first


def _read_csv_rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    with open_csv(path) as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise RgbtadError(
                f"{path}: missing column(s) {', '.join(missing)} (header: {','.join(header)})"
            )
        return list(reader)


def _read_video_info(path: Path) -> dict[str, tuple[str, float | None]]:
    """video -> (subset, fps) from a BSN-style video_info CSV."""
    if not path.is_file():
        raise RgbtadError(f"{path}: subset CSV not found")
    rows = _read_csv_rows(path, ("video", "subset"))
    info: dict[str, tuple[str, float | None]] = {}
    for line, row in enumerate(rows, start=2):
        video = (row.get("video") or "").strip()
        subset = (row.get("subset") or "").strip()
        if not video or not subset:
            raise RgbtadError(f"{path}: line {line}: empty 'video' or 'subset'")
        fps: float | None = None
        raw = (row.get("fps") or "").strip()
        if raw:
            try:
                fps = float(raw)
            except ValueError:
                raise RgbtadError(f"{path}: line {line}: fps {raw!r} is not a number") from None
            if not math.isfinite(fps) or fps <= 0:
                raise RgbtadError(f"{path}: line {line}: fps must be positive, got {raw}")
        info[video] = (subset, fps)
    return info


def _read_class_csv(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise RgbtadError(f"{path}: cannot read ({err})") from None
    names = [line.strip() for line in lines[1:] if line.strip()]  # first line is a header
    if not names:
        raise RgbtadError(f"{path}: no class names")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RgbtadError(f"{path}: duplicate class name(s) {', '.join(map(repr, duplicates))}")
    return names


def _load_bsn(json_path: Path, subset_csv: str | Path | None, clip: bool, notes: list[str],
              data: dict | None = None) -> AnnotationSet:
    folder = json_path.parent
    if data is None:
        data = read_json_file(json_path, "annotation")
        if not isinstance(data, dict):
            raise RgbtadError(f"{json_path}: expected a JSON object of videos")
    info_path = Path(subset_csv) if subset_csv is not None else folder / BSN_INFO_CSV
    if subset_csv is None and not info_path.is_file():
        raise RgbtadError(
            f"{json_path}: BSN layout needs {BSN_INFO_CSV} beside it for the subsets"
        )
    info = _read_video_info(info_path)
    classes_path = folder / BSN_CLASSES_CSV
    class_names = _read_class_csv(classes_path) if classes_path.is_file() else None
    return _build(json_path, data, info, class_names, classes_path, clip, notes, bsn=True)


def _from_database(path: Path, database: dict, subset_csv: str | Path | None,
                   clip: bool, notes: list[str]) -> AnnotationSet:
    info = _read_video_info(Path(subset_csv)) if subset_csv is not None else None
    return _build(path, database, info, None, None, clip, notes, bsn=False)


def _number(value: Any) -> float | None:
    """`value` as a finite float, or None when it is not a real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _build(path: Path, database: dict, info: dict[str, tuple[str, float | None]] | None,
           class_names: list[str] | None, classes_path: Path | None, clip: bool,
           notes: list[str], *, bsn: bool) -> AnnotationSet:
    """Validate raw per-video dicts and turn them into an AnnotationSet."""
    source = str(path)
    duration_key = "duration_second" if bsn else "duration"
    # First pass: validate and collect raw (start, end, label, label_id or None).
    raw_videos: list[tuple[str, str, float, float | None, list[tuple[float, float, str, int | None]]]] = []
    for vid, entry in database.items():
        where = f"{source}: video '{vid}'"
        if not isinstance(entry, dict):
            raise RgbtadError(f"{where}: expected an object, got {type(entry).__name__}")
        # subset
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
        # duration
        if duration_key not in entry:
            raise RgbtadError(f"{where}: missing field '{duration_key}'")
        duration = _number(entry[duration_key])
        if duration is None:
            raise RgbtadError(f"{where}: '{duration_key}' is not a number: {entry[duration_key]!r}")
        if duration < 0:
            raise RgbtadError(f"{where}: '{duration_key}' is negative ({duration})")
        # fps (optional)
        if fps is None and entry.get("fps") is not None:
            fps = _number(entry["fps"])
            if fps is None or fps <= 0:
                raise RgbtadError(f"{where}: 'fps' must be a positive number, got {entry['fps']!r}")
        # annotations (missing means none, as for official ActivityNet test videos)
        anns = entry.get("annotations", [])
        if anns is None:
            anns = []
        if not isinstance(anns, list):
            raise RgbtadError(f"{where}: 'annotations' must be a list")
        segs: list[tuple[float, float, str, int | None]] = []
        for index, ann in enumerate(anns):
            at = f"{where}: annotation {index}"
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
            segs.append((start, end, label, label_id))
        raw_videos.append((str(vid), subset, duration, fps, segs))

    class_names = _class_names(source, raw_videos, class_names, notes)
    index = {name: i for i, name in enumerate(class_names)}

    videos: dict[str, VideoAnnotation] = {}
    for vid, subset, duration, fps, segs in raw_videos:
        segments = []
        clipped = 0
        worst = 0.0
        for start, end, label, label_id in segs:
            if label not in index:  # only possible with action_name.csv
                raise RgbtadError(
                    f"{source}: video '{vid}': label {label!r} is not in {classes_path}"
                )
            if clip and end > duration:
                worst = max(worst, end - duration)
                clipped += 1
                end = duration
                start = min(start, duration)
            segments.append(Segment(start, end, label, index[label]))
        if worst > CLIP_WARN_TOLERANCE:
            notes.append(
                f"{source}: video '{vid}': clipped {clipped} segment(s) running past its "
                f"duration ({duration:g} s) by up to {worst:.2f} s"
            )
        videos[vid] = VideoAnnotation(vid, subset, duration, fps, segments)
    return AnnotationSet(videos=videos, class_names=class_names, source=source)


def _class_names(source: str, raw_videos: list, fixed: list[str] | None,
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
