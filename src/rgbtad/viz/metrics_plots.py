"""Plots of evaluation results and training logs.

* `plot_per_class_ap`: horizontal bars of each class's AP (at one tIoU threshold, or
  averaged over the thresholds), best class on top, with the mAP as a dashed line.
* `plot_model_comparison`: mAP of several models, grouped bars per tIoU threshold plus the
  average over thresholds.
* `plot_training_curves`: the loss columns of the trainer's ``logs/train.csv`` against the
  step, and the average mAP of ``logs/val.csv`` against the epoch, one line per run.

Values are drawn in percent. Figures are written atomically in the format the output's
extension names. Torch-free, like ``rgbtad evaluate`` which calls `plot_per_class_ap`.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from rgbtad.core.csvio import open_csv
from rgbtad.core.errors import RgbtadError
from rgbtad.evaluation.metrics import DetectionMetrics
from rgbtad.viz.figures import new_figure, save_figure

__all__ = [
    "plot_model_comparison",
    "plot_per_class_ap",
    "plot_training_curves",
    "read_log_csv",
]

TIOU_MATCH = 1e-6
# train.csv columns that are not losses
_NON_LOSS = ("epoch", "step", "lr")
_LOSS_ORDER = ("final_loss", "cls_loss", "reg_loss")


def _tiou_index(tious: Sequence[float], tiou: float, where: str) -> int:
    for i, t in enumerate(tious):
        if abs(float(t) - float(tiou)) <= TIOU_MATCH:
            return i
    shown = ", ".join(f"{t:g}" for t in tious)
    raise RgbtadError(f"{where}: tIoU {tiou:g} was not evaluated (thresholds: {shown})")


# ----------------------------------------------------------------------------------------
# Per-class AP


def plot_per_class_ap(metrics: Any, out_path: str | os.PathLike, tiou: float | None = None, *,
                      title: str | None = None, dpi: int = 120) -> Path:
    """Horizontal bar chart of per-class AP, sorted, with the mAP as a vertical line.

    `metrics` is a `DetectionMetrics`. `tiou` picks one evaluated threshold; None averages
    each class's AP over all thresholds (and the line is then the average mAP). Returns the
    written path.
    """
    ap = np.asarray(metrics.per_class_ap, dtype=np.float64)
    names = list(metrics.class_names)
    if ap.ndim != 2 or ap.shape[0] != len(names) or not names:
        raise ValueError("metrics.per_class_ap must be (classes x thresholds) with one row per class name")
    if tiou is None:
        values = ap.mean(axis=1)
        mean = float(metrics.average_mAP)
        what = f"AP averaged over tIoU {', '.join(f'{t:g}' for t in metrics.tiou)}"
        line_label = f"average mAP {100 * mean:.2f}"
    else:
        t = _tiou_index(metrics.tiou, tiou, "per-class AP plot")
        values = ap[:, t]
        mean = float(np.asarray(metrics.mAP)[t])
        what = f"AP at tIoU {float(metrics.tiou[t]):g}"
        line_label = f"mAP@{float(metrics.tiou[t]):g} {100 * mean:.2f}"

    order = np.argsort(-values, kind="stable")  # best first
    n = len(names)
    fig = new_figure(8.0, 1.4 + 0.26 * n)
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]  # best class at the top
    pct = 100 * values[order]
    ax.barh(y, pct, height=0.7, color="tab:blue", zorder=2)
    ax.axvline(100 * mean, color="tab:red", linestyle="--", linewidth=1.2, label=line_label, zorder=3)
    small = max(6.0, min(9.0, 300.0 / n))
    ax.set_yticks(y, [names[i] for i in order], fontsize=small)
    for yi, v in zip(y, pct):
        ax.text(v + 0.8, yi, f"{v:.1f}", va="center", ha="left", fontsize=small - 1, color="0.25",
                zorder=4, bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=0.3))
    ax.set_xlim(0, 108)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlabel("AP (%)")
    ax.grid(axis="x", color="0.9", zorder=0)
    ax.legend(loc="lower right", fontsize=8)
    split = getattr(metrics, "split", None)
    head = title or "per-class AP" + (f" (split '{split}')" if split else "")
    ax.set_title(f"{head}\n{what}", fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return save_figure(fig, out_path, dpi=dpi)


# ----------------------------------------------------------------------------------------
# Model comparison


def _summary_entry(name: str, entry: Any) -> tuple[list[float], list[float], float]:
    if isinstance(entry, DetectionMetrics):
        entry = entry.to_json()
    if not isinstance(entry, Mapping):
        raise RgbtadError(f"model '{name}': expected {{tiou, mAP, average_mAP}}, got {type(entry).__name__}")
    for key in ("tiou", "mAP"):
        if key not in entry:
            raise RgbtadError(f"model '{name}': missing '{key}'")
    try:
        tious = [float(t) for t in entry["tiou"]]
        maps = [float(m) for m in entry["mAP"]]
    except (TypeError, ValueError):
        raise RgbtadError(f"model '{name}': 'tiou' and 'mAP' must be lists of numbers") from None
    if len(tious) != len(maps) or not tious:
        raise RgbtadError(f"model '{name}': 'tiou' and 'mAP' must be non-empty and of equal length")
    average = entry.get("average_mAP")
    try:
        average = float(np.mean(maps)) if average is None else float(average)
    except (TypeError, ValueError):
        raise RgbtadError(f"model '{name}': 'average_mAP' is not a number") from None
    return tious, maps, average


def plot_model_comparison(summary: Mapping[str, Any], out_path: str | os.PathLike, *,
                          title: str | None = None, dpi: int = 120) -> Path:
    """Grouped bars: mAP of each model at each tIoU threshold, and the average mAP.

    `summary`: model name -> ``{"tiou": [...], "mAP": [...], "average_mAP": x}`` (what
    ``rgbtad evaluate --json`` writes; a `DetectionMetrics` works too). Models evaluated at
    different thresholds are drawn on the union of thresholds, each where it has a value.
    """
    if not summary:
        raise ValueError("summary must hold at least one model")
    entries = {str(name): _summary_entry(str(name), e) for name, e in summary.items()}
    thresholds: list[float] = []
    for tious, _, _ in entries.values():
        for t in tious:
            if all(abs(t - u) > TIOU_MATCH for u in thresholds):
                thresholds.append(t)
    thresholds.sort()
    groups = [f"{t:g}" for t in thresholds] + ["avg"]
    n_models = len(entries)
    width = 0.8 / n_models
    fig = new_figure(max(6.0, 1.0 + 0.35 * len(groups) * n_models + 0.6 * len(groups)), 4.5)
    ax = fig.add_subplot()
    x = np.arange(len(groups), dtype=np.float64)
    label_bars = len(groups) * n_models <= 40
    top = 0.0
    for m, (name, (tious, maps, average)) in enumerate(entries.items()):
        vals = []
        for t in thresholds:
            hit = [v for u, v in zip(tious, maps) if abs(u - t) <= TIOU_MATCH]
            vals.append(100 * hit[0] if hit else math.nan)
        vals.append(100 * average)
        pos = x - 0.4 + width * (m + 0.5)
        bars = ax.bar(pos, vals, width=width * 0.95, label=name, color=f"C{m % 10}", zorder=2)
        top = max(top, np.nanmax(vals))
        if label_bars:
            ax.bar_label(bars, labels=["" if math.isnan(v) else f"{v:.1f}" for v in vals],
                         fontsize=7, padding=1)
    ax.axvline(len(thresholds) - 0.5, color="0.6", linewidth=0.8, linestyle=":")
    ax.set_xticks(x, groups)
    ax.set_xlabel("tIoU threshold")
    ax.set_ylabel("mAP (%)")
    ax.set_ylim(0, max(10.0, top * 1.15))
    ax.grid(axis="y", color="0.9", zorder=0)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title or "mAP by tIoU threshold", fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return save_figure(fig, out_path, dpi=dpi)


# ----------------------------------------------------------------------------------------
# Training curves


def read_log_csv(path: str | os.PathLike, required: Sequence[str]) -> dict[str, np.ndarray]:
    """A numeric CSV log as column -> float array (empty cells are NaN).

    A missing file, a missing required column or a non-numeric cell is an `RgbtadError`
    naming the file (and the line and column).
    """
    path = Path(path)
    if not path.is_file():
        raise RgbtadError(f"{path}: log file not found")
    with open_csv(path) as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise RgbtadError(
                f"{path}: missing column(s) {', '.join(missing)} (header: {','.join(header) or 'none'})"
            )
        columns: dict[str, list[float]] = {h: [] for h in header}
        for line, row in enumerate(reader, start=2):
            for raw_key, cell in row.items():
                if raw_key is None:
                    raise RgbtadError(f"{path}: line {line}: more cells than header columns")
                key = raw_key.strip()
                cell = (cell or "").strip()
                try:
                    columns[key].append(float(cell) if cell else math.nan)
                except ValueError:
                    raise RgbtadError(f"{path}: line {line}: column '{key}' is not a number: {cell!r}") from None
    return {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}


def _train_csv(path: str | os.PathLike) -> Path:
    """A train.csv path, or a run directory / logs folder holding one."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "logs" / "train.csv", path / "train.csv"):
            if candidate.is_file():
                return candidate
        raise RgbtadError(f"{path}: no logs/train.csv or train.csv in this folder")
    return path


def _smooth(values: np.ndarray, weight: float = 0.8) -> np.ndarray:
    """Exponential moving average that skips NaNs and is unbiased at the start."""
    out = np.full_like(values, np.nan)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(values):
        if math.isnan(v):
            continue
        acc = weight * acc + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = acc / norm
    return out


def plot_training_curves(log_csv_paths: Mapping[str, str | os.PathLike], out_path: str | os.PathLike,
                         val_csv_paths: Mapping[str, str | os.PathLike] | None = None, *,
                         title: str | None = None, dpi: int = 120) -> Path:
    """Loss curves (one panel per loss column, against the step) and validation average mAP.

    `log_csv_paths`: run name -> the trainer's ``logs/train.csv`` (a run directory or its
    ``logs`` folder also works). Panels: ``final_loss``, ``cls_loss``, ``reg_loss``, then
    any further loss columns, each with one line per run (noisy curves are drawn faintly
    with a smoothed line on top). `val_csv_paths`: run name -> ``logs/val.csv``; when None,
    a ``val.csv`` beside each ``train.csv`` is used if it exists. Runs whose val.csv holds no
    rows yet are left out of the mAP panel.
    """
    if not log_csv_paths:
        raise ValueError("log_csv_paths must name at least one run")
    runs, train_paths = _read_train_logs(log_csv_paths)
    val = _read_val_logs(val_csv_paths, train_paths)

    losses = [k for k in _LOSS_ORDER if any(k in t for t in runs.values())]
    for table in runs.values():
        losses += [k for k in table if k not in _NON_LOSS and k not in losses]
    panels = losses + (["average_mAP"] if val else [])
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = new_figure(4.2 * ncols, 3.2 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    colours = {name: f"C{i % 10}" for i, name in enumerate(dict.fromkeys([*runs, *val]))}
    for ax, panel in zip(axes, panels):
        if panel == "average_mAP":
            _plot_val_panel(ax, val, colours)
        else:
            _plot_loss_panel(ax, panel, runs, colours)
        ax.grid(color="0.9")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, out_path, dpi=dpi)


def _read_train_logs(log_csv_paths: Mapping[str, str | os.PathLike]
                     ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Path]]:
    """run name -> train.csv columns, and run name -> the train.csv read."""
    runs: dict[str, dict[str, np.ndarray]] = {}
    train_paths: dict[str, Path] = {}
    for name, path in log_csv_paths.items():
        csv_path = _train_csv(path)
        table = read_log_csv(csv_path, ("step",))
        if not any(k not in _NON_LOSS for k in table):
            raise RgbtadError(f"{csv_path}: no loss columns (expected {', '.join(_LOSS_ORDER)})")
        if table["step"].size == 0:
            raise RgbtadError(f"{csv_path}: no rows logged yet")
        runs[str(name)] = table
        train_paths[str(name)] = csv_path
    return runs, train_paths


def _read_val_logs(val_csv_paths: Mapping[str, str | os.PathLike] | None,
                   train_paths: Mapping[str, Path]) -> dict[str, dict[str, np.ndarray]]:
    """run name -> val.csv columns, for the runs whose val.csv holds an average mAP."""
    val: dict[str, dict[str, np.ndarray]] = {}
    if val_csv_paths is None:
        candidates = {n: p.parent / "val.csv" for n, p in train_paths.items() if (p.parent / "val.csv").is_file()}
    else:
        candidates = {str(n): Path(p) for n, p in val_csv_paths.items()}
    for name, path in candidates.items():
        table = read_log_csv(path, ("epoch", "average_mAP"))
        if np.isfinite(table["average_mAP"]).any():
            val[name] = table
    return val


def _plot_val_panel(ax, val: Mapping[str, dict[str, np.ndarray]], colours: Mapping[str, str]) -> None:
    from matplotlib.ticker import MaxNLocator

    for name, table in val.items():
        ok = np.isfinite(table["epoch"]) & np.isfinite(table["average_mAP"])
        ax.plot(table["epoch"][ok], 100 * table["average_mAP"][ok], marker="o", markersize=3,
                color=colours[name], label=name)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("average mAP (%)")
    ax.set_title("validation average mAP", fontsize=10)


def _plot_loss_panel(ax, panel: str, runs: Mapping[str, dict[str, np.ndarray]],
                     colours: Mapping[str, str]) -> None:
    """One loss column of every run that logs it: noisy curves faintly, smoothed on top."""
    for name, table in runs.items():
        if panel not in table:
            continue
        steps, values = table["step"], table[panel]
        ok = np.isfinite(steps) & np.isfinite(values)
        steps, values = steps[ok], values[ok]
        if steps.size >= 30:
            ax.plot(steps, values, color=colours[name], alpha=0.3, linewidth=0.8)
            ax.plot(steps, _smooth(values), color=colours[name], linewidth=1.4, label=name)
        else:
            ax.plot(steps, values, color=colours[name], linewidth=1.2, marker=".",
                    markersize=3, label=name)
    ax.set_xlabel("step")
    ax.set_title(panel, fontsize=10)
