"""Training logs: CSV files (always) and TensorBoard events (when tensorboard is installed)."""

from __future__ import annotations

import csv
from pathlib import Path

from rgbtad.core.atomic import write_text


class CsvLog:
    """Append-only CSV with a fixed header. On resume, rows from epochs that will be
    re-run (epoch >= start_epoch) are dropped, so the log never holds duplicates."""

    def __init__(self, path: Path, fields: list[str], start_epoch: int = 0):
        self.path = path
        self.fields = fields
        rows: list[dict] = []
        if path.is_file() and start_epoch > 0:
            with path.open(newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["epoch"]) < start_epoch]
        lines = [",".join(fields)] + [",".join(r.get(f, "") for f in fields) for r in rows]
        write_text(path, "\n".join(lines) + "\n")

    def append(self, row: dict) -> None:
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            )


class TrainingLogger:
    """logs/train.csv (every `log_every` iterations: epoch, step, lr and the task's losses),
    logs/val.csv (each evaluation: epoch and the task's metrics) and TensorBoard scalars under
    logs/tensorboard (train/<loss>, train/lr, val/<metric>)."""

    def __init__(self, log_dir: Path, metric_names: list[str], start_epoch: int, start_step: int,
                 losses: list[str]):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.losses = list(losses)
        self.metric_names = list(metric_names)
        self.train_csv = CsvLog(log_dir / "train.csv", ["epoch", "step", "lr", *self.losses], start_epoch)
        self.val_csv = CsvLog(log_dir / "val.csv", ["epoch", *self.metric_names], start_epoch)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a pinned dependency; tolerate its absence anyway
            self.tb = None
        else:
            self.tb = SummaryWriter(str(log_dir / "tensorboard"), purge_step=start_step or None)

    def log_train(self, epoch: int, step: int, lr: float, losses: dict[str, float]) -> None:
        self.train_csv.append({"epoch": epoch, "step": step, "lr": lr, **losses})
        if self.tb is not None:
            self.tb.add_scalar("train/lr", lr, step)
            for name, value in losses.items():
                self.tb.add_scalar(f"train/{name}", value, step)

    def log_val(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self.val_csv.append({"epoch": epoch, **metrics})
        if self.tb is not None:
            for name in self.metric_names:
                self.tb.add_scalar(f"val/{name}", metrics[name], step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
