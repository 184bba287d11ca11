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

The BSN files are read by `rgbtad.data.annotation_bsn`, the checks are
`rgbtad.data.annotation_checks`. These modules must stay free of torch: the evaluator
imports them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from rgbtad.core.errors import RgbtadError
from rgbtad.core.jsonio import read_json_file
from rgbtad.data.annotation_bsn import BSN_JSON, looks_bsn, read_bsn, read_video_info
from rgbtad.data.annotation_checks import RawVideo, check_videos, class_names

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
    if looks_bsn(data):
        return _load_bsn(path, subset_csv, clip, notes, data=data)
    if data and all(isinstance(v, dict) and "annotations" in v for v in data.values()):
        return _from_database(path, data, subset_csv, clip, notes)
    raise RgbtadError(
        f"{path}: unknown annotation layout (expected a 'database' object, a flat "
        "{video: {subset, duration, annotations}} object, or ActivityNet BSN layout)"
    )


def _load_bsn(json_path: Path, subset_csv: str | Path | None, clip: bool, notes: list[str],
              data: dict | None = None) -> AnnotationSet:
    database, info, fixed_classes, classes_path = read_bsn(json_path, subset_csv, data)
    raw_videos = check_videos(str(json_path), database, info, bsn=True)
    return _build(str(json_path), raw_videos, fixed_classes, classes_path, clip, notes)


def _from_database(path: Path, database: dict, subset_csv: str | Path | None,
                   clip: bool, notes: list[str]) -> AnnotationSet:
    info = read_video_info(Path(subset_csv)) if subset_csv is not None else None
    raw_videos = check_videos(str(path), database, info, bsn=False)
    return _build(str(path), raw_videos, None, None, clip, notes)


def _build(source: str, raw_videos: list[RawVideo], fixed_classes: list[str] | None,
           classes_path: Path | None, clip: bool, notes: list[str]) -> AnnotationSet:
    """The AnnotationSet of checked videos: the class list (`class_names`) gives the label
    ids; segments past the end are clipped."""
    names = class_names(source, raw_videos, fixed_classes, notes)
    index = {name: i for i, name in enumerate(names)}
    videos: dict[str, VideoAnnotation] = {}
    for vid, subset, duration, fps, segs in raw_videos:
        segments = []
        clipped = 0
        worst = 0.0
        for start, end, label, _label_id in segs:
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
    return AnnotationSet(videos=videos, class_names=names, source=source)
