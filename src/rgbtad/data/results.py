"""Detections on disk: ActivityNet results JSON and a flat CSV.

JSON (the official ActivityNet layout, which ActionFormer, BMN and mmaction2 also read)::

    {"version": "VERSION 1.3",
     "results": {video_id: [{"label": name, "score": s, "segment": [start, end]}, ...]},
     "external_data": {"used": false, "details": ""}}

CSV: a header ``video_id,start,end,label,score`` and one detection per row.

In memory, detections are ``{video_id: [{"label": str, "score": float, "segment": [s, e]}]}``.
Times are seconds and scores are written at full float precision (no rounding), so a
round trip is exact. Writes are atomic; reading a malformed file (a missing field, a
non-numeric value, a segment that does not end after it starts) is an `RgbtadError`
naming the file (and the video or line), and so is writing such a detection. Torch-free.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from rgbtad.core.atomic import write_text
from rgbtad.core.csvio import open_csv
from rgbtad.core.errors import RgbtadError
from rgbtad.core.jsonio import read_json_file

__all__ = [
    "CSV_HEADER",
    "read_results",
    "read_results_csv",
    "read_results_json",
    "write_results",
    "write_results_csv",
    "write_results_json",
]

CSV_HEADER = ("video_id", "start", "end", "label", "score")
DEFAULT_VERSION = "VERSION 1.3"

Detections = dict[str, list[dict[str, Any]]]


def _check_detection(det: Any, where: str, *, text: bool = False) -> dict[str, Any]:
    """One detection as {"label": str, "score": float, "segment": [float, float]}."""
    if not isinstance(det, Mapping):
        raise RgbtadError(f"{where}: expected an object with label, score and segment")
    for key in ("label", "score", "segment"):
        if key not in det:
            raise RgbtadError(f"{where}: missing field '{key}'")
    label = det["label"]
    if not isinstance(label, str) or not label:
        raise RgbtadError(f"{where}: 'label' must be a non-empty class name, got {label!r}")
    score = _finite(det["score"], text)
    if score is None:
        raise RgbtadError(f"{where}: 'score' is not a finite number: {det['score']!r}")
    seg = det["segment"]
    if isinstance(seg, (str, bytes)) or not isinstance(seg, Sequence) or len(seg) != 2:
        raise RgbtadError(f"{where}: 'segment' must be [start, end], got {seg!r}")
    start, end = _finite(seg[0], text), _finite(seg[1], text)
    if start is None or end is None:
        raise RgbtadError(f"{where}: 'segment' has a non-numeric value: {list(seg)!r}")
    if not end > start:  # reversed or empty: never a detection (see rgbtad.evaluation)
        raise RgbtadError(f"{where}: 'segment' [{start!r}, {end!r}] must end after it starts")
    return {"label": label, "score": score, "segment": [start, end]}


def _finite(value: Any, text: bool = False) -> float | None:
    """`value` as a finite float, else None. Strings count only when `text` (CSV cells)."""
    if isinstance(value, bool) or (isinstance(value, (str, bytes)) and not text):
        return None
    try:
        number = float(value)  # accepts numpy scalars and 0-d tensors alike
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _normalise(path: Path, detections_by_video: Mapping[str, Sequence[Any]]) -> Detections:
    if not isinstance(detections_by_video, Mapping):
        raise TypeError("detections_by_video must map video ids to lists of detections")
    out: Detections = {}
    for vid, dets in detections_by_video.items():
        out[str(vid)] = [
            _check_detection(det, f"{path}: video '{vid}': detection {i}") for i, det in enumerate(dets)
        ]
    return out


def write_results_json(path: str | Path, detections_by_video: Mapping[str, Sequence[Any]], *,
                       version: str = DEFAULT_VERSION, external_data: Mapping | None = None,
                       indent: int | None = None) -> Path:
    """Write ActivityNet results JSON atomically; return the path."""
    path = Path(path)
    results = _normalise(path, detections_by_video)
    payload = {
        "version": version,
        "results": results,
        "external_data": dict(external_data) if external_data is not None else {"used": False, "details": ""},
    }
    write_text(path, json.dumps(payload, indent=indent) + "\n")
    return path


def write_results_csv(path: str | Path, detections_by_video: Mapping[str, Sequence[Any]]) -> Path:
    """Write ``video_id,start,end,label,score`` rows atomically; return the path."""
    path = Path(path)
    results = _normalise(path, detections_by_video)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for vid, dets in results.items():
        for det in dets:
            # repr() of a float is the shortest text that reads back to the same value
            writer.writerow([vid, repr(det["segment"][0]), repr(det["segment"][1]), det["label"],
                             repr(det["score"])])
    write_text(path, buffer.getvalue())
    return path


def write_results(path: str | Path, detections_by_video: Mapping[str, Sequence[Any]]) -> Path:
    """Write JSON or CSV, chosen by the file extension (.csv means CSV, anything else JSON)."""
    if Path(path).suffix.lower() == ".csv":
        return write_results_csv(path, detections_by_video)
    return write_results_json(path, detections_by_video)


def read_results_json(path: str | Path) -> Detections:
    """Read ActivityNet results JSON into ``{video_id: [detection, ...]}`` (file order)."""
    path = Path(path)
    data = read_json_file(path, "results")
    if not isinstance(data, dict) or "results" not in data:
        raise RgbtadError(f"{path}: not an ActivityNet results file (no top-level 'results' object)")
    results = data["results"]
    if not isinstance(results, dict):
        raise RgbtadError(f"{path}: 'results' must be an object mapping video ids to lists")
    out: Detections = {}
    for vid, dets in results.items():
        if not isinstance(dets, list):
            raise RgbtadError(f"{path}: video '{vid}': expected a list of detections")
        out[vid] = [
            _check_detection(det, f"{path}: video '{vid}': detection {i}") for i, det in enumerate(dets)
        ]
    return out


def read_results_csv(path: str | Path) -> Detections:
    """Read a ``video_id,start,end,label,score`` CSV into ``{video_id: [detection, ...]}``."""
    path = Path(path)
    if not path.is_file():
        raise RgbtadError(f"{path}: results file not found")
    out: Detections = {}
    with open_csv(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != CSV_HEADER:
            raise RgbtadError(f"{path}: header must be {','.join(CSV_HEADER)}")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(CSV_HEADER):
                raise RgbtadError(f"{path}: line {line}: expected {len(CSV_HEADER)} columns, got {len(row)}")
            vid, start, end, label, score = row
            det = _check_detection(
                {"label": label, "score": score, "segment": [start, end]}, f"{path}: line {line}",
                text=True,
            )
            out.setdefault(vid, []).append(det)
    return out


def read_results(path: str | Path) -> Detections:
    """Read JSON or CSV results, chosen by the file extension."""
    if Path(path).suffix.lower() == ".csv":
        return read_results_csv(path)
    return read_results_json(path)
