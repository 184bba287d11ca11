"""The results of `rgbtad ablate` (`rgbtad.apps.ablate`): results.json and the Markdown of
results.md, from the runs of every cell and seed (fractions in the JSON, % in the table)."""

from __future__ import annotations

import itertools
import math
import statistics

from rgbtad.core.errors import RgbtadError
from rgbtad.evaluation.intervals import paired_difference, seed_interval

__all__ = ["format_table", "summarise"]


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(grid, runs: dict[str, dict[int, dict]]) -> dict:
    """results.json: per cell its runs, means over seeds, spread and gain (fractions, not %)."""
    tious = {tuple(run["tiou"]) for cell_runs in runs.values() for run in cell_runs.values()}
    if len(tious) != 1:
        raise RgbtadError(f"{grid.path}: the cells report mAP at different tIoU thresholds {sorted(tious)}")
    baseline = runs.get(grid.baseline) if grid.baseline else None
    cells = []
    for cell in grid.cells:
        cell_runs = runs[cell.name]
        averages = [cell_runs[seed]["average_mAP"] for seed in grid.seeds]
        per_tiou = list(zip(*(cell_runs[seed]["mAP"] for seed in grid.seeds)))
        entry = {
            "name": cell.name,
            "set": cell.override_texts(),
            "runs": {str(seed): {"mAP": cell_runs[seed]["mAP"], "average_mAP": cell_runs[seed]["average_mAP"]}
                     for seed in grid.seeds},
            "mAP_mean": [statistics.fmean(values) for values in per_tiou],
            "average_mAP_mean": statistics.fmean(averages),
            "average_mAP_std": _std(averages),
            "gain_mean": None,
            "gain_std": None,
            "num_seeds": len(grid.seeds),
        }
        entry["average_mAP_ci"] = _bounds(seed_interval(averages))
        if baseline is not None:
            gains = [cell_runs[seed]["average_mAP"] - baseline[seed]["average_mAP"] for seed in grid.seeds]
            entry["gain_mean"], entry["gain_std"] = statistics.fmean(gains), _std(gains)
            entry["gain_ci"] = _bounds(seed_interval(gains))
        cells.append(entry)
    return {"grid": str(grid.path), "tiou": list(next(iter(tious))), "seeds": grid.seeds,
            "baseline": grid.baseline, "cells": cells, "pairs": _pairs(grid, runs)}


def _bounds(interval) -> list[float] | None:
    return None if interval.low is None else [interval.low, interval.high]


def _pairs(grid, runs: dict[str, dict[int, dict]]) -> list[dict]:
    """Average mAP of cell ``a`` minus cell ``b``, per seed, for every two cells."""
    out = []
    for a, b in itertools.combinations([cell.name for cell in grid.cells], 2):
        diff = paired_difference({s: runs[a][s]["average_mAP"] for s in grid.seeds},
                                 {s: runs[b][s]["average_mAP"] for s in grid.seeds})
        out.append({"a": a, "b": b, "mean": diff.mean, "ci": _bounds(diff), "num_seeds": diff.n})
    return out


def format_table(results: dict) -> str:
    """The Markdown table of results.md (mAP in %)."""
    tious = [f"{t:g}" for t in results["tiou"]]
    baseline = results["baseline"]
    seeds = ", ".join(str(s) for s in results["seeds"])
    lines = [f"mAP (%) at tIoU {', '.join(tious)}: mean over seeds {seeds}. Avg: mean ± standard "
             f"deviation over seeds; 95 % CI: its t interval."
             + (f" Δ: mean over seeds of the difference to {baseline}'s Avg (same seed), with its 95 % "
                f"interval." if baseline else ""),
             ""]
    header = ["Cell", *tious, "Avg", "95 % CI", *(["Δ"] if baseline else []), "Seeds"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join([":---", *["---:"] * (len(header) - 1)]) + "|")
    for cell in results["cells"]:
        row = [cell["name"], *(_pct(v) for v in cell["mAP_mean"])]
        avg = _pct(cell["average_mAP_mean"])
        row.append(f"{avg} ± {_pct(cell['average_mAP_std'])}" if cell["num_seeds"] > 1 else avg)
        row.append(_interval_text(cell["average_mAP_ci"]))
        if baseline:
            row.append("—" if cell["name"] == baseline else
                       f"{100 * cell['gain_mean']:+.1f} {_interval_text(cell['gain_ci'], signed=True)}".strip())
        row.append(str(cell["num_seeds"]))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines + _pairs_table(results)) + "\n"


def _pairs_table(results: dict) -> list[str]:
    """Paired differences (mAP points) of every two cells: ``a - b`` [95 % interval]."""
    if not results["pairs"]:
        return []
    lines = ["", "Paired differences of Avg (a − b, mAP points, same seeds) with their 95 % interval; "
             "\\* marks an interval that excludes zero.", "", "| a | b | a − b | 95 % CI |", "|:---|:---|---:|---:|"]
    for pair in results["pairs"]:
        ci = pair["ci"]
        star = " \\*" if ci is not None and (ci[0] > 0 or ci[1] < 0) else ""
        lines.append(f"| {pair['a']} | {pair['b']} | {100 * pair['mean']:+.1f}{star} | "
                     f"{_interval_text(ci, signed=True) or '—'} |")
    return lines


def _interval_text(bounds: list[float] | None, signed: bool = False) -> str:
    if bounds is None:
        return ""
    fmt = "{:+.1f}" if signed else "{:.1f}"
    return f"[{fmt.format(100 * bounds[0])}, {fmt.format(100 * bounds[1])}]"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}" if math.isfinite(value) else "nan"
