"""The run directory of a snippet-backbone training (`rgbtad train-backbone`).

Layout::

    DIR/config.yaml          the resolved `BackboneConfig` (every default written out)
    DIR/backbone.pt          the backbone's own state_dict (the "native" checkpoint layout):
                             ``create_backbone(name, modality, weights=DIR/backbone.pt)``,
                             ``rgbtad extract --weights DIR/backbone.pt``
    DIR/head.pt              the linear classifier over the classes + background
    DIR/summary.json         settings (the config with absolute paths, the epochs and
                             precision used), class names, snippets available per class,
                             per-epoch history (loss, train accuracy), validation report
                             (accuracy, balanced, per class, confusion; a decomposed
                             student's halves too), seconds of the last invocation and
                             ``resumed_after_epoch`` (epochs done before a --resume; null)
    DIR/logs/                train.csv, val.csv, tensorboard/ (`rgbtad.training.logs`)
    DIR/checkpoints/last.pt  the engine's resumable checkpoint (`rgbtad.training.engine`)

summary.json is written last: a folder with it holds a finished run, which can be a teacher
(``distill.teacher``) or a starting point (``init_from``) of another training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rgbtad.core.errors import RgbtadError
from rgbtad.core.jsonio import read_json_file
from rgbtad.runs.run_dir import CONFIG_FILE
from rgbtad.training.backbone_config import BackboneConfig, load_backbone_config
from rgbtad.training.engine import CHECKPOINT

FORMAT = "rgbtad-backbone-run-1"
WEIGHTS_FILE = "backbone.pt"
HEAD_FILE = "head.pt"
SUMMARY_FILE = "summary.json"
ENTRIES = (CONFIG_FILE, WEIGHTS_FILE, HEAD_FILE, SUMMARY_FILE, "checkpoints", "logs")

__all__ = ["BackboneRun", "CHECKPOINT", "CONFIG_FILE", "ENTRIES", "FORMAT", "HEAD_FILE", "SUMMARY_FILE",
           "WEIGHTS_FILE", "is_finished", "open_backbone_run"]


@dataclass(frozen=True)
class BackboneRun:
    """A finished backbone run: its folder, config and summary."""

    path: Path
    config: BackboneConfig
    summary: dict[str, Any]

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS_FILE

    @property
    def head(self) -> Path:
        return self.path / HEAD_FILE

    @property
    def class_names(self) -> list[str]:
        return list(self.summary.get("class_names", []))

    @property
    def history(self) -> list[dict]:
        """Per epoch: loss and train accuracy (summary.json's ``history``)."""
        return self.summary.get("history", [])

    @property
    def val(self) -> dict | None:
        """The validation report (None without a validation subset)."""
        return self.summary.get("val")


def is_finished(run_dir: str | Path) -> bool:
    """Whether `run_dir` holds a finished backbone run (its summary and weights)."""
    run_dir = Path(run_dir)
    return all((run_dir / name).is_file() for name in (SUMMARY_FILE, WEIGHTS_FILE, HEAD_FILE, CONFIG_FILE))


def open_backbone_run(run_dir: str | Path, role: str) -> BackboneRun:
    """The finished backbone run in `run_dir`; `role` says what it is for in errors ("teacher")."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RgbtadError(f"{run_dir}: {role} not found (a backbone run directory of `rgbtad train-backbone`)")
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE, HEAD_FILE, SUMMARY_FILE) if not (run_dir / name).is_file()]
    if missing:
        raise RgbtadError(f"{run_dir}: not a finished backbone run, as a {role} must be (no {', '.join(missing)})")
    summary = read_json_file(run_dir / SUMMARY_FILE, "backbone run summary")
    if not isinstance(summary, dict) or summary.get("format") != FORMAT:
        raise RgbtadError(f"{run_dir / SUMMARY_FILE}: not a backbone run summary (format {FORMAT})")
    return BackboneRun(run_dir, load_backbone_config(run_dir / CONFIG_FILE), summary)
