"""The demo's outputs: summary.json, report.md and plots, and the one line on what the
figures mean."""

from __future__ import annotations

from pathlib import Path

from rgbtad.apps.demo_layout import REPORT_FILE, SUMMARY_FILE, detector_run_dir, plots_dir, predictions_file
from rgbtad.core.atomic import write_json, write_text

SUMMARY_KEYS = ("tiou", "mAP", "average_mAP")
TIMELINE_VIDEOS = 3


def write_report(out: Path, ann_path: Path, summary: dict, models: list, timings: dict) -> None:
    """summary.json (the figures), report.md (tables and timings), plots/ (PNG)."""
    from rgbtad.data.annotations import load_annotations
    from rgbtad.runs.run_dir import TRAIN_LOG
    from rgbtad.viz.metrics_plots import plot_model_comparison, plot_training_curves
    from rgbtad.viz.timeline import plot_video_timeline

    metrics = summary["models"]
    write_json(out / SUMMARY_FILE, {
        "models": {name: {key: m[key] for key in SUMMARY_KEYS} for name, m in metrics.items()},
        "settings": summary["settings"], "seed": summary["seed"], "precision": summary["precision"],
        "cpu": summary["cpu"], "jobs": summary["jobs"],
    })
    plots = plots_dir(out)
    plot_model_comparison({name: {key: m[key] for key in SUMMARY_KEYS} for name, m in metrics.items()},
                          plots / "models.png", title="Synthetic benchmark, test split")
    plot_training_curves({spec.name: detector_run_dir(out, spec.name) / TRAIN_LOG for spec in models},
                         plots / "training_curves.png")
    annotations = load_annotations(ann_path).split("test")
    predictions = {spec.name: predictions_file(out, spec.name) for spec in models}
    timelines = []
    for video_id in list(annotations.videos)[:TIMELINE_VIDEOS]:
        path = plots / f"timeline_{video_id}.png"
        plot_video_timeline(annotations, predictions, video_id, path, top_k=3)
        timelines.append(path)
    write_text(out / REPORT_FILE, _markdown(summary, models, timings, timelines, out))


def demo_verdict(models: dict[str, dict]) -> str:
    """One line on what the demo's figures mean: the cost of dropping optical flow
    (two_stream - rgb_only) and the share of it the best RGB-only student recovers."""
    avg = {name: 100 * m["average_mAP"] for name, m in models.items()}
    gap = avg["two_stream"] - avg["rgb_only"]
    line = f"dropping optical flow costs {gap:+.1f} points of average mAP (two_stream - rgb_only)"
    students = [name for name in avg if name not in ("rgb_only", "two_stream") and not name.startswith("motion")]
    if not students or gap <= 0:
        return line
    best = max(students, key=avg.get)
    gain = avg[best] - avg["rgb_only"]
    return (line + f"; the best RGB-only student, {best}, {'recovers' if gain > 0 else 'loses'} "
            f"{abs(gain):.1f} points ({100 * gain / gap:.0f} % of the gap) with no flow at inference")


def _markdown(summary: dict, models: list, timings: dict, timelines: list[Path], out: Path) -> str:
    metrics = summary["models"]
    tious = next(iter(metrics.values()))["tiou"]
    lines = ["# rgbtad demo: the built-in synthetic benchmark", "",
             f"Seed {summary['seed']}; backbone precision {summary['precision']} on {summary['cpu']} "
             f"({summary['jobs']} stages at a time, one torch thread each); settings: "
             + ", ".join(f"{k}={v}" for k, v in summary["settings"].items()), "",
             "## mAP (%) on the test split", "",
             "| model | " + " | ".join(f"{t:g}" for t in tious) + " | avg | what it is |",
             "|---|" + "---|" * (len(tious) + 2)]
    descriptions = {spec.name: spec.description for spec in models}
    for name, m in metrics.items():
        cells = " | ".join(f"{100 * v:.1f}" for v in m["mAP"])
        lines.append(f"| {name} | {cells} | **{100 * m['average_mAP']:.1f}** | {descriptions.get(name, '')} |")
    lines += ["", "## Per-class AP (%), averaged over tIoU", ""]
    names = list(metrics)
    lines += ["| class | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    classes = list(next(iter(metrics.values()))["per_class_ap"])
    for cls in classes:
        row = []
        for name in names:
            values = metrics[name]["per_class_ap"].get(cls)
            row.append(f"{100 * sum(values) / len(values):.1f}" if values else "-")
        lines.append(f"| {cls} | " + " | ".join(row) + " |")
    lines += ["", "## Stage timings", "", "| stage | seconds |", "|---|---|"]
    total = 0.0
    for stage, timing in timings.items():
        total += timing["seconds"]
        note = " (reused)" if timing.get("reused") else ""
        lines.append(f"| {stage} | {timing['seconds']:.1f}{note} |")
    lines.append(f"| total | {total:.1f} |")
    lines += ["", "## Plots", "", "![models](plots/models.png)", "",
              "![training curves](plots/training_curves.png)", ""]
    lines += [f"![{path.stem}]({path.relative_to(out).as_posix()})" for path in timelines]
    return "\n".join(lines) + "\n"
