"""Train (or distil) a video backbone as a snippet classifier: `rgbtad train-backbone`.

Used by the built-in benchmark (`rgbtad demo`) and by anyone who trains a backbone on their
own annotated videos: a backbone (e.g. ``tsm_tiny``) is trained for RGB frames or a motion
modality on trimmed snippets of the annotated videos, its weights are then given to feature
extraction (``rgbtad extract --weights DIR/backbone.pt``). An RGB backbone can learn from a
frozen motion backbone trained the same way (``distill.teacher``).

The pieces: the config (`backbone_config`), the snippets, labels, sampling and augmentation
(`snippet_data`), the model, losses and evaluation as a task of the one training engine
(`backbone_task`, `rgbtad.training.engine`: schedule, checkpoints, exact resume, logs), the
teacher (`snippet_teacher`) and the run directory (`backbone_run`). This module puts them
together: `train_backbone(cfg, out_dir)`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch

from rgbtad.core.atomic import atomic_path, write_json
from rgbtad.core.device import resolve_device
from rgbtad.core.errors import RgbtadError
from rgbtad.core.precision import resolve_precision
from rgbtad.core.torchio import load_torch_file
from rgbtad.runs.run_dir import clear_run
from rgbtad.training import distributed
from rgbtad.training.backbone_config import BackboneConfig, load_backbone_config, save_backbone_config
from rgbtad.training.backbone_run import (
    CONFIG_FILE,
    ENTRIES,
    FORMAT,
    HEAD_FILE,
    SUMMARY_FILE,
    WEIGHTS_FILE,
    BackboneRun,
    open_backbone_run,
)
from rgbtad.training.backbone_task import BackboneTask, SnippetClassifier
from rgbtad.training.engine import Engine, EngineSettings, checked_start
from rgbtad.training.optim import warmup_cosine_scheduler
from rgbtad.training.snippet_data import BACKGROUND, SnippetStore, collect_snippets
from rgbtad.training.snippet_teacher import SnippetTeacher

log = logging.getLogger(__name__)


def train_backbone(cfg: BackboneConfig, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
                   device: str | None = None, progress: bool = True) -> BackboneRun:
    """Train the snippet classifier `cfg` describes; write the run directory `out_dir`.

    A folder that already holds a backbone run is refused, changing nothing, unless `resume`
    (continue from its last checkpoint, with the same config) or `overwrite` (its run files
    are removed once the inputs have been checked). `device`: cpu or cuda (default: cuda
    when available). Bad input raises a one-line `RgbtadError` naming the file."""
    began = time.perf_counter()
    run_dir = Path(out_dir)
    state = checked_start(run_dir, cfg.to_dict(), lambda path: load_backbone_config(path).to_dict(), resume=resume,
                          overwrite=overwrite, entries=ENTRIES)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RgbtadError("backbone training runs in one process (not under torchrun)")
    dev = resolve_device(device)
    precision = resolve_precision(cfg.precision, dev)
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    try:
        with torch.random.fork_rng(devices=[]):
            task, settings = _build_task(cfg, dev, precision, progress)
            if state is None:
                clear_run(run_dir, ENTRIES)  # a new run: what the checks let through is not kept
                run_dir.mkdir(parents=True, exist_ok=True)
                save_backbone_config(cfg, run_dir / CONFIG_FILE)
            total = task.total_steps()
            optimizer = torch.optim.AdamW(task.model.parameters(), lr=float(cfg.lr),
                                          weight_decay=float(cfg.weight_decay), foreach=True)
            scheduler = warmup_cosine_scheduler(optimizer, total // 20, total, float(cfg.lr))
            engine = Engine(task, optimizer, scheduler, EngineSettings(epochs=cfg.total_epochs, **settings),
                            run_dir, distributed.DistInfo(device=dev))
            torch.manual_seed(int(cfg.seed) + 1)  # dropout
            if state is not None:
                engine.resume(state)
            engine.fit()
    finally:
        if cfg.threads:
            torch.set_num_threads(old_threads)
    return _write_outputs(cfg, run_dir, task, precision, seconds=time.perf_counter() - began,
                          resumed_after=None if state is None else int(state["epoch"]) + 1)


def _build_task(cfg: BackboneConfig, dev, precision: str, progress: bool) -> tuple[BackboneTask, dict]:
    """The task (model, teacher and decoded snippets), checking every input; the engine settings."""
    from rgbtad.backbones import create_backbone
    from rgbtad.backbones.layers import channels_last_if_2d
    from rgbtad.data.annotations import load_annotations
    from rgbtad.features.extract import check_extraction_inputs

    snippets = cfg.snippets
    check_extraction_inputs(batch_size=cfg.batch_size, flow_dir=cfg.flow_dir)
    videos = Path(cfg.videos)
    if not videos.is_dir():
        raise RgbtadError(f"{videos}: video folder not found")
    ann = load_annotations(cfg.annotations)
    class_names = list(ann.class_names) + [BACKGROUND]
    teacher = None
    if cfg.distill.teacher is not None:
        teacher = SnippetTeacher.load(cfg.distill.teacher, snippets, class_names=class_names, device=dev)
    decomposed = teacher is not None and cfg.distill.mode == "decomposed"
    torch.manual_seed(int(cfg.seed))
    net = create_backbone(cfg.backbone, cfg.modality, **cfg.backbone_kwargs)
    if cfg.init_from is not None:
        _load_init(net, cfg)
    if decomposed and net.feature_dim % 2:
        raise RgbtadError(f"{cfg.backbone}: decomposed distillation splits the feature in halves; "
                          f"its width {net.feature_dim} is odd")
    if teacher is not None and not decomposed and teacher.feature_dim != net.feature_dim:
        raise RgbtadError(f"{cfg.distill.teacher}: conventional distillation mimics the teacher's feature, "
                          f"{teacher.feature_dim} wide; the student's is {net.feature_dim}")
    mimic = decomposed and float(cfg.distill.mimic_weight) > 0
    model = SnippetClassifier(net, len(class_names), dropout=cfg.dropout, decomposed=decomposed,
                              adapter_dim=teacher.feature_dim if mimic else None)
    model.to(dev)
    channels_last_if_2d(model.backbone)
    store = SnippetStore(snippets, net.input_mean, net.input_std)
    split = collect_snippets(ann, cfg.subset, videos, store, flow_dir=cfg.flow_dir, start_step=1,
                             progress=progress, desc=f"load {cfg.subset} ({cfg.modality})")
    missing = [class_names[i] for i, items in enumerate(split.by_class) if not items]
    if len(missing) == len(class_names):
        raise RgbtadError(f"{cfg.annotations}: no usable snippets in subset {cfg.subset!r}")
    if missing:
        log.warning("no training snippets for: %s", ", ".join(missing))
    if teacher is not None:
        teacher.load_videos(ann, cfg.subset, videos, progress=progress)
    val = None
    if cfg.val_subset is not None:
        val_store = SnippetStore(snippets, net.input_mean, net.input_std)
        val = val_store, collect_snippets(ann, cfg.val_subset, videos, val_store, flow_dir=cfg.flow_dir,
                                          start_step=snippets.stride, progress=progress,
                                          desc=f"load {cfg.val_subset} ({cfg.modality})")
        if not val[1].items():
            raise RgbtadError(f"{cfg.annotations}: no usable snippets in subset {cfg.val_subset!r}")
    task = BackboneTask(cfg, model, store, split, class_names, device=dev, precision=precision, teacher=teacher,
                        val=val)
    settings = {"precision": precision, "progress": progress, "log_every": 10,
                "label": f"train {cfg.backbone}/{cfg.modality}"}
    return task, settings


def _load_init(net, cfg: BackboneConfig) -> None:
    """Start `net` from the backbone of a finished run with the same architecture."""
    run = open_backbone_run(cfg.init_from, "init_from")
    theirs = {"backbone": run.config.backbone, "modality": run.config.modality,
              "backbone_kwargs": run.config.backbone_kwargs}
    mine = {"backbone": cfg.backbone, "modality": cfg.modality, "backbone_kwargs": cfg.backbone_kwargs}
    diff = [f"{k} {theirs[k]!r} (this training {v!r})" for k, v in mine.items() if theirs[k] != v]
    if diff:
        raise RgbtadError(f"{run.path}: cannot start from it, other architecture: {', '.join(diff)}")
    try:
        net.load_state_dict(load_torch_file(run.weights, "backbone weights"))
    except (OSError, RuntimeError) as err:
        raise RgbtadError(f"{run.weights}: cannot load the initial weights ({err})") from None


def resolved_settings(cfg: BackboneConfig, precision: str) -> dict:
    """The config as recorded in summary.json: absolute paths, the epochs and precision used."""
    settings = cfg.to_dict()

    def absolute(path):
        return None if path is None else str(Path(path).resolve())

    for key in ("annotations", "videos", "flow_dir", "init_from"):
        settings[key] = absolute(settings[key])
    settings["distill"]["teacher"] = absolute(settings["distill"]["teacher"])
    settings.update(epochs=cfg.total_epochs, precision=precision)
    return settings


def _write_outputs(cfg: BackboneConfig, run_dir: Path, task: BackboneTask, precision: str, *, seconds: float,
                   resumed_after: int | None) -> BackboneRun:
    """backbone.pt and head.pt, then summary.json (last: it marks the run finished)."""
    model = task.model.cpu()
    with atomic_path(run_dir / HEAD_FILE, suffix=".tmp.pt") as tmp:
        torch.save(model.head.state_dict(), tmp)
    with atomic_path(run_dir / WEIGHTS_FILE, suffix=".tmp.pt") as tmp:
        torch.save(model.backbone.state_dict(), tmp)
    summary = {"format": FORMAT, "settings": resolved_settings(cfg, precision), "class_names": task.class_names,
               "train_snippets_available": {task.class_names[i]: len(v) for i, v in enumerate(task.split.by_class)},
               "history": task.history, "val": task.val_report, "seconds": round(seconds, 2),
               "resumed_after_epoch": resumed_after, "weights": WEIGHTS_FILE, "head": HEAD_FILE}
    write_json(run_dir / SUMMARY_FILE, summary)
    return open_backbone_run(run_dir, "run")
