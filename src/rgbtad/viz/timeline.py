"""Timeline plots: the ground truth of one video above the detections of one or more models.

Layout: one row for the ground truth and one row per model, time in seconds on the x axis.
Every segment is a bar coloured by its class (the same colour in every row, with a legend
of the classes drawn); detection bars are more opaque the higher their score. Overlapping
bars are packed into thin lanes inside their row so that none hides another, and the
ground-truth segments are shaded faintly across all rows to make misses easy to spot.

Detectors emit hundreds of overlapping, low-scoring segments per video, so each model row
shows only detections scoring at least `min_score`, and of those the `top_k` best per
class (``DEFAULT_TOP_K`` when not given). When even that leaves more overlapping bars than
``max_lanes`` lanes can hold, the lowest-scoring ones are left out and the row label says
how many are shown.

Figures are built with `matplotlib.figure.Figure` (no pyplot, so no global state and no
interactive backend) and written atomically; the format follows the output's extension.
Torch-free.
"""

from __future__ import annotations

import colorsys
import difflib
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from rgbtad.core.errors import RgbtadError
from rgbtad.viz.figures import new_figure, save_figure

__all__ = [
    "DEFAULT_TOP_K",
    "class_colours",
    "parse_named_paths",
    "plot_timeline",
    "plot_video_timeline",
]

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 10  # detections per class and model when top_k is not given
MIN_ALPHA = 0.15  # opacity of a detection scoring 0 (so that it stays visible)
GT_SHADE_ALPHA = 0.10
ROW_GAP = 0.6  # between rows, in lane heights

# (start, end, label, score); ground truth has score None
_Interval = tuple[float, float, str, "float | None"]
# (row label, lanes of intervals, is ground truth)
_Row = tuple[str, list[list[_Interval]], bool]


# ----------------------------------------------------------------------------------------
# Colours and names


def class_colours(class_names: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """A fixed RGB colour (components in [0, 1]) for each class, by its position in the list.

    Up to 10 classes get matplotlib's ``tab10`` colours and up to 20 ``tab20``; beyond that
    hues are spread by the golden ratio with alternating saturation and brightness, so that
    neighbouring class ids stay distinguishable.
    """
    from matplotlib import colormaps

    names = list(dict.fromkeys(class_names))
    n = len(names)
    if n <= 10:
        palette = [tuple(c[:3]) for c in colormaps["tab10"].colors[:n]]
    elif n <= 20:
        palette = [tuple(c[:3]) for c in colormaps["tab20"].colors[:n]]
    else:
        palette = []
        for i in range(n):
            hue = (i * 0.6180339887498949) % 1.0
            sat = 0.75 if i % 2 == 0 else 0.55
            val = 0.90 if (i // 2) % 2 == 0 else 0.70
            palette.append(colorsys.hsv_to_rgb(hue, sat, val))
    return {name: tuple(float(x) for x in colour) for name, colour in zip(names, palette)}


def parse_named_paths(specs: Iterable[str]) -> dict[str, Path]:
    """``["a.json", "ours=b.json"]`` -> ``{"a": Path("a.json"), "ours": Path("b.json")}``.

    A spec is ``NAME=PATH`` or a bare ``PATH`` (named after the file's stem). A spec that is
    an existing file is always a bare path, even if its name contains ``=``. Two specs with
    the same name are an error.
    """
    out: dict[str, Path] = {}
    for spec in specs:
        if "=" in spec and not Path(spec).is_file():
            name, _, path = spec.partition("=")
            name, path = name.strip(), path.strip()
            if not name or not path:
                raise RgbtadError(f"'{spec}': expected NAME=PATH or PATH")
        else:
            name, path = Path(spec).stem, spec
        if name in out:
            raise RgbtadError(f"'{spec}': the name '{name}' is used twice; name them with NAME=PATH")
        out[name] = Path(path)
    return out


# ----------------------------------------------------------------------------------------
# Input normalisation


def _as_interval(item: Any, where: str, with_score: bool) -> _Interval:
    """A Segment, a results-style dict or a (start, end, label[, score]) tuple."""
    score = None
    if isinstance(item, Mapping):
        try:
            start, end = item["segment"]
            label = item["label"]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{where}: expected {{'label', 'segment': [start, end]}}, got {item!r}") from None
        score = item.get("score")
    elif hasattr(item, "start") and hasattr(item, "end") and hasattr(item, "label"):
        start, end, label = item.start, item.end, item.label
        score = getattr(item, "score", None)
    elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) in (3, 4):
        start, end, label = item[0], item[1], item[2]
        score = item[3] if len(item) == 4 else None
    else:
        raise ValueError(f"{where}: expected a segment, a detection dict or a tuple, got {item!r}")
    if with_score:
        score = 1.0 if score is None else float(score)
    else:
        score = None
    return float(start), float(end), str(label), score


def select_detections(detections: Sequence[_Interval], min_score: float,
                      top_k: int | None) -> list[_Interval]:
    """Detections scoring >= min_score, the `top_k` best per class, best first."""
    k = DEFAULT_TOP_K if top_k is None else int(top_k)
    if k < 1:
        raise RgbtadError(f"top_k must be a positive number of detections per class, got {top_k}")
    kept = [d for d in detections if d[3] is not None and d[3] >= min_score and math.isfinite(d[3])]
    kept.sort(key=lambda d: -d[3])
    per_class: dict[str, int] = {}
    out = []
    for det in kept:
        seen = per_class.get(det[2], 0)
        if seen < k:
            out.append(det)
            per_class[det[2]] = seen + 1
    return out


def pack_lanes(intervals: Sequence[_Interval], max_lanes: int) -> tuple[list[list[_Interval]], int]:
    """Greedy packing (input order = priority) into lanes of non-overlapping intervals.

    Returns the lanes and the number of intervals that did not fit into `max_lanes` lanes.
    """
    lanes: list[list[_Interval]] = []
    dropped = 0
    for iv in intervals:
        for lane in lanes:
            if all(iv[1] <= o[0] or iv[0] >= o[1] for o in lane):
                lane.append(iv)
                break
        else:
            if len(lanes) < max_lanes:
                lanes.append([iv])
            else:
                dropped += 1
    return lanes, dropped


# ----------------------------------------------------------------------------------------
# Plots


def plot_timeline(ground_truth_segments: Sequence[Any],
                  detections_by_model: Mapping[str, Sequence[Any]], *,
                  duration: float | None, out_path: str | os.PathLike, title: str | None = None,
                  class_names: Sequence[str] | None = None, min_score: float = 0.0,
                  top_k: int | None = None, max_lanes: int = 8, dpi: int = 120) -> Path:
    """Draw ground truth and per-model detections of one video on a shared time axis.

    `ground_truth_segments`: `Segment` objects, ``{"label", "segment"}`` dicts or
    ``(start, end, label)`` tuples. `detections_by_model`: model name -> detections as
    ``{"label", "score", "segment"}`` dicts (the results-file layout), objects with
    start/end/label/score, or ``(start, end, label, score)`` tuples. `duration` (seconds)
    sets the time axis; None or 0 fits it to the segments. `class_names` fixes the class
    colours (e.g. ``AnnotationSet.class_names``, so that colours agree across videos);
    labels not in it are coloured after it. `min_score` / `top_k` (per class and model,
    default ``DEFAULT_TOP_K``) choose which detections are drawn; `max_lanes` caps the
    lanes of overlapping bars in one row. Returns the written path.
    """
    gt = [_as_interval(s, f"ground truth segment {i}", False) for i, s in enumerate(ground_truth_segments)]
    models: dict[str, list[_Interval]] = {}
    for name, dets in detections_by_model.items():
        models[str(name)] = [_as_interval(d, f"model '{name}': detection {i}", True)
                             for i, d in enumerate(dets)]
    if max_lanes < 1:
        raise ValueError(f"max_lanes must be at least 1, got {max_lanes}")

    shown = {name: select_detections(dets, min_score, top_k) for name, dets in models.items()}
    # classes and colours: the given list first, then any other label, sorted
    labels_used = {iv[2] for iv in gt} | {d[2] for dets in shown.values() for d in dets}
    order = list(class_names or [])
    order += sorted(labels_used.difference(order))
    colours = class_colours(order)
    duration = _axis_duration(duration, gt, shown)
    rows = _rows(gt, shown, models, max_lanes)

    # geometry: each row gets at least one lane; lane height 1, gap between rows
    heights = [max(1, len(lanes)) for _, lanes, _ in rows]
    total_height = sum(heights) + ROW_GAP * (len(rows) - 1)
    fig = new_figure(12.0, 1.2 + 0.32 * total_height + 0.25 * len(rows))
    ax = fig.add_subplot()
    for iv in gt:
        ax.axvspan(max(iv[0], 0.0), min(iv[1], duration), color="0.5", alpha=GT_SHADE_ALPHA,
                   linewidth=0, zorder=0)
    ticks, tick_labels = _draw_rows(ax, rows, heights, total_height, colours, duration, _opacity(shown))
    _style_axes(ax, duration, total_height, ticks, tick_labels)
    ax.set_title(f"{title}\n" if title else "", loc="center")
    ax.text(1.0, 1.0, _caption(min_score, top_k), transform=ax.transAxes, ha="right", va="bottom",
            fontsize=8, color="0.35")
    _add_legend(fig, [c for c in order if c in labels_used], colours)
    return save_figure(fig, out_path, dpi=dpi)


def _axis_duration(duration: float | None, gt: list[_Interval],
                   shown: Mapping[str, list[_Interval]]) -> float:
    """The time axis: `duration`, or fitted to the segments when it is None, 0 or not finite."""
    ends = [iv[1] for iv in gt] + [d[1] for dets in shown.values() for d in dets]
    if duration is None or not math.isfinite(duration) or duration <= 0:
        duration = max(ends, default=0.0) or 1.0
    return float(duration)


def _opacity(shown: Mapping[str, list[_Interval]]) -> Callable[[float], float]:
    """score -> opacity: raw scores when they are probabilities, else scaled by the maximum."""
    all_scores = [d[3] for dets in shown.values() for d in dets]
    top = max(all_scores, default=1.0)
    low = min(all_scores, default=0.0)
    scale = 1.0 if (low >= 0.0 and top <= 1.0) else (top if top > 0 else 1.0)

    def alpha(score: float) -> float:
        a = min(max(score / scale, 0.0), 1.0)
        return MIN_ALPHA + (1.0 - MIN_ALPHA) * a

    return alpha


def _rows(gt: list[_Interval], shown: Mapping[str, list[_Interval]],
          models: Mapping[str, list[_Interval]], max_lanes: int) -> list[_Row]:
    """The ground-truth row (every segment, as many lanes as needed), then one row per model."""
    rows: list[_Row] = []
    gt_sorted = sorted(gt, key=lambda iv: (iv[0], iv[1]))
    gt_lanes, _ = pack_lanes(gt_sorted, max(max_lanes, len(gt_sorted)) or 1)
    rows.append((f"ground truth\n({len(gt)})", gt_lanes, True))
    for name, dets in shown.items():
        lanes, dropped = pack_lanes(dets, max_lanes)
        total = len(models[name])
        drawn = len(dets) - dropped
        rows.append((f"{name}\n({drawn} of {total})", lanes, False))
    return rows


def _draw_rows(ax, rows: list[_Row], heights: list[int], total_height: float,
               colours: Mapping[str, tuple[float, float, float]], duration: float,
               alpha: Callable[[float], float]) -> tuple[list[float], list[str]]:
    """Draw the rows top to bottom with a line between them; returns their y ticks and labels."""
    y_top = total_height
    ticks, tick_labels = [], []
    for r, ((label, lanes, is_gt), h) in enumerate(zip(rows, heights)):
        row_bottom = y_top - h
        for j, lane in enumerate(lanes):
            y = y_top - (j + 1) + 0.1  # lane j from the top of the row
            _draw_lane(ax, lane, y, is_gt, colours, duration, alpha)
        ticks.append(row_bottom + h / 2)
        tick_labels.append(label)
        if r < len(rows) - 1:
            ax.axhline(row_bottom - ROW_GAP / 2, color="0.75", linewidth=0.8, zorder=1)
        y_top = row_bottom - ROW_GAP
    return ticks, tick_labels


def _draw_lane(ax, lane: list[_Interval], y: float, is_gt: bool,
               colours: Mapping[str, tuple[float, float, float]], duration: float,
               alpha: Callable[[float], float]) -> None:
    """One bar per interval, clipped to the time axis: ground truth solid with a black edge,
    detections as opaque as their score."""
    for start, end, cls, score in lane:
        s, e = max(start, 0.0), min(end, duration)
        if e < s:
            continue
        width = max(e - s, duration * 1e-3)  # zero-length segments stay visible
        colour = colours[cls]
        if is_gt:
            ax.broken_barh([(s, width)], (y, 0.8), facecolors=[colour],
                           edgecolors="black", linewidth=0.6, zorder=2)
        else:
            a = alpha(score)
            ax.broken_barh([(s, width)], (y, 0.8), facecolors=[(*colour, a)],
                           edgecolors=[(*colour, min(1.0, a + 0.25))], linewidth=0.8, zorder=2)


def _style_axes(ax, duration: float, total_height: float, ticks: list[float],
                tick_labels: list[str]) -> None:
    ax.set_xlim(0.0, duration)
    ax.set_ylim(-0.2, total_height + 0.2)
    ax.set_yticks(ticks, tick_labels)
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel("time (s)")
    ax.grid(axis="x", color="0.9", linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def _caption(min_score: float, top_k: int | None) -> str:
    caption = "detection opacity ∝ score"
    if min_score > 0:
        caption += f"; score ≥ {min_score:g}"
    caption += f"; top {DEFAULT_TOP_K if top_k is None else int(top_k)} per class"
    return caption


def _add_legend(fig, drawn_labels: list[str], colours: Mapping[str, tuple[float, float, float]]) -> None:
    """A legend of the classes drawn, below the plot."""
    if drawn_labels:
        from matplotlib.patches import Patch

        handles = [Patch(facecolor=colours[c], edgecolor="black", linewidth=0.4, label=c)
                   for c in drawn_labels]
        ncol = min(len(handles), 6)
        fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)


def _close_matches(word: str, choices: Iterable[str]) -> str:
    near = difflib.get_close_matches(word, list(choices), n=3)
    return f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""


def plot_video_timeline(annotations: Any, results: Mapping[str, Any], video_id: str,
                        out_path: str | os.PathLike, *, title: str | None = None,
                        min_score: float = 0.0, top_k: int | None = None, max_lanes: int = 8,
                        dpi: int = 120) -> Path:
    """`plot_timeline` for one video of an annotation set.

    `annotations`: an `AnnotationSet` or the path of an annotation file. `results`: model
    name -> detections of all videos, as a ``{video_id: [{"label", "score", "segment"}]}``
    mapping (what `read_results_json` returns) or the path of a results file (JSON, or CSV
    by extension). A video absent from a model's results gives that model an empty row.
    A video that is not in the annotations is an `RgbtadError` naming it and the file.
    """
    from rgbtad.data.annotations import load_annotations
    from rgbtad.data.results import read_results

    if isinstance(annotations, (str, os.PathLike)):
        annotations = load_annotations(annotations)
    video = annotations.videos.get(video_id)
    if video is None:
        raise RgbtadError(
            f"{annotations.source}: no video '{video_id}' among its {len(annotations.videos)} videos"
            f"{_close_matches(video_id, annotations.videos)}"
        )
    detections: dict[str, list] = {}
    missing = []
    for name, res in results.items():
        if isinstance(res, (str, os.PathLike)):
            res = read_results(res)
        if video_id not in res:
            missing.append(str(name))
        detections[str(name)] = list(res.get(video_id, []))
    if missing:
        log.warning("no detections for video '%s' in the results of %s", video_id, ", ".join(missing))
    if title is None:
        title = f"{video_id} ({video.duration:.1f} s, subset {video.subset})"
    return plot_timeline(
        video.segments, detections, duration=video.duration, out_path=out_path, title=title,
        class_names=annotations.class_names, min_score=min_score, top_k=top_k,
        max_lanes=max_lanes, dpi=dpi,
    )
