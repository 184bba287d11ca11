"""The demo folder ``OUT`` of `rgbtad demo --out OUT`: where each stage writes and the next reads.

Layout::

    data/          videos/*.mp4, annotations.json, benchmark.json (`rgbtad.synthetic.generate`)
    flow/          <video>.flow.npz (+ .flow.json)
    backbones/     rgb/, flow/, rgb_kd/, ...: backbone run directories (backbone.pt, head.pt,
                   summary.json with snippet accuracy per class, logs/, checkpoints/)
    features/      one folder per backbone, and two_stream/  (<video>.npy, T x C)
    runs/NAME/     a run directory per model (`rgbtad infer` accepts it; `rgbtad.runs.run_dir`)
    predictions/   NAME.json (ActivityNet results on the test split)
    plots/         timelines and training curves
    summary.json, report.md, timings.json
    demo.json      the settings, seed and precision the folder was made with
"""

from __future__ import annotations

from pathlib import Path

from rgbtad.synthetic.generate import VIDEO_DIR

SETTINGS_FILE = "demo.json"
TIMINGS_FILE = "timings.json"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"


def data_dir(out: Path) -> Path:
    return out / "data"


def videos_dir(out: Path) -> Path:
    return data_dir(out) / VIDEO_DIR


def flow_dir(out: Path) -> Path:
    return out / "flow"


def backbone_dir(out: Path, name: str) -> Path:
    """The run directory of the demo's backbone `name` (`rgbtad.training.backbone_run`)."""
    return out / "backbones" / name


def features_root(out: Path) -> Path:
    return out / "features"


def features_dir(out: Path, name: str) -> Path:
    return features_root(out) / name


def detector_run_dir(out: Path, name: str) -> Path:
    return out / "runs" / name


def predictions_file(out: Path, name: str) -> Path:
    return out / "predictions" / f"{name}.json"


def plots_dir(out: Path) -> Path:
    return out / "plots"
