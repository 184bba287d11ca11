"""Detections on disk: ActivityNet results JSON and a flat CSV, and the one rule for a detection.

JSON (the official ActivityNet layout, which ActionFormer, BMN and mmaction2 also read)::

    {"version": "VERSION 1.3",
     "results": {video_id: [{"label": name, "score": s, "segment": [start, end]}, ...]},
     "external_data": {"used": false, "details": ""}}

CSV: a header ``video_id,start,end,label,score`` and one detection per row.

In memory, detections are ``{video_id: [{"label": str, "score": float, "segment": [s, e]}]}``.
Times are seconds and scores are written at full float precision (no rounding), so a
round trip is exact. Writes are atomic; reading a malformed file (a missing field, a
non-numeric value, a segment that does not end after it starts) is an `RgbtadError`
naming the file (and the video or line), and so is writing such a detection.

The rule for a detection (`detection_values` and `segment_fault`) is also the evaluator's
(`rgbtad.evaluation.predictions`), which applies the segment part later so that
``--drop-invalid`` can leave such detections out. Torch-free.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from rgbtad.core.atomic import write_text
from rgbtad.core.csvio import open_csv
from rgbtad.core.errors import RgbtadError
from rgbtad.core.jsonio import read_json_file

__all__ = [
    "CSV_HEADER",
    "check_detection_list",
    "detection_values",
    "is_number_type",
    "read_results",
    "read_results_csv",
    "read_results_json",
    "results_object",
    "segment_fault",
    "write_results",
    "write_results_csv",
    "write_results_json",
]

CSV_HEADER = ("video_id", "start", "end", "label", "score")
DEFAULT_VERSION = "VERSION 1.3"

Detections = dict[str, list[dict[str, Any]]]


# ----------------------------------------------------------------------------------------
# The rule for a detection


def detection_values(det: Any, where: str, *, text: bool = False) -> tuple[str, float, float, float]:
    """``(label, score, start, end)`` of one detection, or an `RgbtadError` ``where: problem``.

    A detection is a mapping with the fields ``label``, a non-empty class name (str);
    ``score``, a finite number; and ``segment``, ``[start, end]`` (a list or tuple of two
    numbers). Numbers are int, float or numpy scalars, never bool; with `text` (CSV cells)
    they are the text of a number instead. Whether the segment ends after it starts, and is
    finite, is `segment_fault`'s part of the rule.
    """
    if not isinstance(det, Mapping):
        raise RgbtadError(f"{where}: expected an object with label, score and segment")
    for key in ("label", "score", "segment"):
        if key not in det:
            raise RgbtadError(f"{where}: missing field '{key}'")
    label = det["label"]
    if not isinstance(label, str) or not label:
        raise RgbtadError(f"{where}: 'label' must be a non-empty class name, got {label!r}")
    score = _number(det["score"], text)
    if score is None or not math.isfinite(score):
        raise RgbtadError(f"{where}: 'score' is not a finite number: {det['score']!r}")
    seg = det["segment"]
    if not isinstance(seg, (list, tuple)) or len(seg) != 2:
        raise RgbtadError(f"{where}: 'segment' must be [start, end], got {seg!r}")
    start, end = _number(seg[0], text), _number(seg[1], text)
    if start is None or end is None:
        raise RgbtadError(f"{where}: 'segment' has a non-numeric value: {list(seg)!r}")
    return label, score, start, end


def segment_fault(start: float, end: float) -> str | None:
    """What is wrong with the segment [start, end]: "reversed" (end < start), "empty"
    (end == start), "not finite", or None for a segment that can be a detection."""
    if end < start:
        return "reversed"
    if end == start:
        return "empty"
    if not (math.isfinite(start) and math.isfinite(end)):
        return "not finite"
    return None


def check_detection_list(dets: Any, where: str) -> Sequence[Any]:
    """The detections of one video: a list (or tuple), else an `RgbtadError` naming `where`."""
    if not isinstance(dets, (list, tuple)):
        raise RgbtadError(f"{where}: expected a list of detections")
    return dets


def results_object(data: Any, path: str | Path) -> dict[str, Any]:
    """The ``results`` object of a parsed ActivityNet results file, else an `RgbtadError`."""
    if not isinstance(data, dict) or "results" not in data:
        raise RgbtadError(f"{path}: not an ActivityNet results file (no top-level 'results' object)")
    if not isinstance(data["results"], dict):
        raise RgbtadError(f"{path}: 'results' must be an object mapping video ids to lists")
    return data["results"]


def is_number_type(t: type) -> bool:
    """A number in the rule: int, float or a numpy scalar. Not bool (an int subclass), and
    not str: numpy would turn both into floats."""
    return t is float or t is int or issubclass(t, (np.floating, np.integer))


def _number(value: Any, text: bool) -> float | None:
    """`value` as a float, else None. Strings count only when `text` (CSV cells)."""
    if not (isinstance(value, str) if text else is_number_type(type(value))):
        return None
    try:
        return float(value)
    except (ValueError, OverflowError):  # text that is no number; an int beyond any float
        return None


def _checked(det: Any, where: str, *, text: bool = False) -> dict[str, Any]:
    """One detection as {"label": str, "score": float, "segment": [float, float]}."""
    label, score, start, end = detection_values(det, where, text=text)
    fault = segment_fault(start, end)
    if fault == "not finite":
        raise RgbtadError(f"{where}: 'segment' [{start!r}, {end!r}] is not finite")
    if fault is not None:  # reversed or empty: never a detection (see rgbtad.evaluation)
        raise RgbtadError(f"{where}: 'segment' [{start!r}, {end!r}] must end after it starts")
    return {"label": label, "score": score, "segment": [start, end]}


def _normalise(path: Path, detections_by_video: Mapping[str, Sequence[Any]]) -> Detections:
    if not isinstance(detections_by_video, Mapping):
        raise TypeError("detections_by_video must map video ids to lists of detections")
    out: Detections = {}
    for vid, dets in detections_by_video.items():
        where = f"{path}: video '{vid}'"
        out[str(vid)] = [_checked(det, f"{where}: detection {i}")
                         for i, det in enumerate(check_detection_list(dets, where))]
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
    out: Detections = {}
    for vid, dets in results_object(read_json_file(path, "results"), path).items():
        where = f"{path}: video '{vid}'"
        out[vid] = [_checked(det, f"{where}: detection {i}")
                    for i, det in enumerate(check_detection_list(dets, where))]
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
            det = _checked(
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
