"""The ActivityNet-1.3 BSN layout: ``anet_anno_action.json`` with ``video_info_new.csv``
(subset and fps of each video, also the layout of every `subset_csv`) and optionally
``action_name.csv`` (the class list) beside it; see `rgbtad.data.annotations`."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from rgbtad.core.csvio import open_csv
from rgbtad.core.errors import RgbtadError
from rgbtad.core.jsonio import read_json_file

BSN_JSON = "anet_anno_action.json"
BSN_INFO_CSV = "video_info_new.csv"
BSN_CLASSES_CSV = "action_name.csv"


def looks_bsn(data: dict) -> bool:
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


def read_video_info(path: Path) -> dict[str, tuple[str, float | None]]:
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


def read_bsn(json_path: Path, subset_csv: str | Path | None, data: dict | None = None):
    """``(videos, video info, class names or None, path of action_name.csv)`` of the BSN
    layout around `json_path` (`data`: its content, when already read)."""
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
    info = read_video_info(info_path)
    classes_path = folder / BSN_CLASSES_CSV
    class_names = _read_class_csv(classes_path) if classes_path.is_file() else None
    return data, info, class_names, classes_path
