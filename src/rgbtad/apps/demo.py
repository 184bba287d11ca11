"""`rgbtad demo`: the whole pipeline on the built-in synthetic benchmark, on this CPU.

Stages (each reuses its finished output on a second run, so an interrupted demo continues):

1. ``data``: render the benchmark videos and annotations (`rgbtad.synthetic.generate`);
2. ``motion``: optical flow of every video, stored once (`rgbtad.motion.storage`);
3. ``backbones``: small RGB and motion snippet backbones trained on trimmed train snippets
   (`rgbtad.training.backbones.train_backbone`, what `rgbtad train-backbone` runs, with the
   configs of ``configs/backbone_synthetic_*.yaml``), and the distilled students' RGB
   backbones, fine-tuned from the plain RGB one on the same snippets with the frozen motion
   backbone as teacher (conventional or decomposed); the precision `rgbtad.core.precision`
   decides (bfloat16 only where native); only the backbones that the chosen models read are
   trained; an interrupted training resumes from its last epoch;
4. ``features``: snippet features of every video per backbone (`rgbtad.features.extract`,
   same precision), and the two-stream features (RGB and flow side by side);
5. ``detectors``: one ActionFormer per model (`rgbtad.training.trainer`), then detections on
   the test split and their mAP;
6. ``report``: ``summary.json``, ``report.md``, timelines and training curves.

Layout of ``OUT``::

    data/          videos/*.mp4, annotations.json, benchmark.json
    flow/          <video>.flow.npz (+ .flow.json)
    backbones/     rgb/, flow/, rgb_kd/, ...: backbone run directories (backbone.pt, head.pt,
                   summary.json with snippet accuracy per class, logs/, checkpoints/)
    features/      one folder per backbone, and two_stream/  (<video>.npy, T x C)
    runs/NAME/     a run directory per model (`rgbtad infer` accepts it)
    predictions/   NAME.json (ActivityNet results on the test split)
    plots/         timelines and training curves
    summary.json, report.md, timings.json
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from rgbtad.core.atomic import write_json, write_npy
from rgbtad.core.errors import RgbtadError
from rgbtad.core.precision import cpu_model
from rgbtad.video.snippets import SnippetSpec

log = logging.getLogger(__name__)

BACKBONE = "tsm_tiny"


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the benchmark and of every training; `quick` shrinks them to about 3 minutes."""

    num_train: int = 60
    num_test: int = 30
    size: int = 64
    fps: float = 10.0
    min_duration: float = 20.0
    max_duration: float = 40.0
    snippet_frames: int = 8
    stride: int = 4  # frames between snippets (0.4 s): the feature grid of extraction and detectors
    val_stride: int = 8  # spacing of the backbones' validation snippets (a report only)
    flow_method: str = "dis"
    clip_epochs: int = 6  # motion backbones
    rgb_clip_epochs: int = 12  # the plain RGB backbone: appearance learns slower
    kd_clip_epochs: int = 6  # distilled RGB backbones, fine-tuned from the plain one
    clip_per_class: int = 64
    clip_batch_size: int = 32
    detector_dim: int = 128
    detector_epochs: int = 16
    detector_warmup: int = 2
    detector_ema_decay: float = 0.99  # a short training needs a short average (quick: 0.9)
    classes: tuple[str, ...] | None = None  # action classes of the benchmark (None: all twelve)
    # detectors to train (None: all of `demo_models`); concat fusion is the ablation's (`rgbtad ablate`)
    models: tuple[str, ...] | None = ("rgb_only", "motion_only", "two_stream", "conventional_kd", "decomposed_laf")

    def snippets(self, modality: str) -> SnippetSpec:
        """The snippets of every backbone stage for `modality` (training, extraction)."""
        return SnippetSpec(modality=modality, frames=self.snippet_frames, stride=self.stride, fps=self.fps,
                           size=self.size, flow_method=self.flow_method)

    @classmethod
    def quick(cls) -> "DemoSettings":
        """Two motion pairs (one told apart by direction, one by speed) and two appearance
        classes, 16 + 8 short videos, short trainings (small batches: more updates), and the
        detectors that make the point: rgb_only, its teacher, two_stream and the decomposed
        student with local attentive fusion."""
        return cls(num_train=16, num_test=8, min_duration=16.0, max_duration=20.0, clip_epochs=6,
                   rgb_clip_epochs=6, kd_clip_epochs=8, clip_per_class=32, clip_batch_size=16, detector_dim=64,
                   detector_epochs=20, detector_warmup=2, detector_ema_decay=0.9,
                   classes=("belt_left", "belt_right", "lift_fast", "lift_slow", "ball_bounce", "ring_pulse"),
                   models=("rgb_only", "motion_only", "two_stream", "decomposed_laf"))


@dataclass(frozen=True)
class BackboneSpec:
    """One snippet backbone of the demo; its features go to ``features/<name>``."""

    name: str
    modality: str
    teacher: str | None = None  # name of the frozen backbone it is distilled from
    distill: str = "decomposed"
    init_from: str | None = None  # name of the backbone it starts from


def _distilled(name: str, teacher: str, distill: str) -> BackboneSpec:
    return BackboneSpec(name, "rgb", teacher, distill, init_from="rgb")


def demo_backbones(with_tg: bool = False) -> list[BackboneSpec]:
    """Teachers before students. Each distilled student has its own RGB backbone: the
    backbone half of Lee et al.'s end-to-end student (`rgbtad.training.backbone_task`),
    fine-tuned from the plain RGB backbone as their student starts from the pretrained RGB
    network. `with_tg` adds the temporal-gradient teacher and its student's backbone."""
    specs = [BackboneSpec("rgb", "rgb"), BackboneSpec("flow", "flow"),
             _distilled("rgb_kd_conventional", "flow", "conventional"), _distilled("rgb_kd", "flow", "decomposed")]
    if with_tg:
        specs += [BackboneSpec("tg", "tg"), _distilled("rgb_kd_tg", "tg", "decomposed")]
    return specs


@dataclass(frozen=True)
class ModelSpec:
    """One detector of the demo: which features it reads and how it is trained."""

    name: str
    features: str  # folder name under features/
    description: str
    overrides: tuple[str, ...] = field(default=())
    teacher: str | None = None  # the model whose run it distils (trained first)


def demo_models(with_tg: bool = False) -> list[ModelSpec]:
    """The demo's detectors, in training order (teachers before their students).

    The students read RGB features only at test time, from RGB backbones distilled from the
    motion backbone (`demo_backbones`); at training time they also see the optical-flow
    features of the same snippets through the frozen `motion_only` teacher.
    """
    teacher = ("distill.teacher_run={out}/runs/motion_only", "distill.teacher_features={out}/features/flow",
               "distill.teacher_input_dim={dim[flow]}")
    models = [
        ModelSpec("rgb_only", "rgb", "ActionFormer on RGB features"),
        ModelSpec("motion_only", "flow", "ActionFormer on optical-flow features (the teacher)"),
        ModelSpec("two_stream", "two_stream", "ActionFormer on RGB + flow features"),
        ModelSpec("conventional_kd", "rgb_kd_conventional",
                  "RGB student, feature + logit mimicking of the flow teacher (backbone and detector)",
                  ("distill.method=conventional", "distill.feat_weight=1.0", *teacher), "motion_only"),
        ModelSpec("decomposed", "rgb_kd", "decomposed RGB student, concat fusion (Lee et al.)",
                  ("distill.method=decomposed", "distill.fusion=concat", *teacher), "motion_only"),
        ModelSpec("decomposed_laf", "rgb_kd", "decomposed RGB student, local attentive fusion (Lee et al.)",
                  ("distill.method=decomposed", "distill.fusion=laf", *teacher), "motion_only"),
    ]
    if with_tg:
        tg_teacher = tuple(o.replace("motion_only", "motion_tg").replace("features/flow", "features/tg")
                           .replace("dim[flow]", "dim[tg]") for o in teacher)
        models += [
            ModelSpec("motion_tg", "tg", "ActionFormer on temporal-gradient features (the TG teacher)"),
            ModelSpec("decomposed_laf_tg", "rgb_kd_tg", "decomposed RGB student, LAF, temporal-gradient teacher",
                      ("distill.method=decomposed", "distill.fusion=laf", *tg_teacher), "motion_tg"),
        ]
    return models


def _tg_models(with_tg: bool) -> list[ModelSpec]:
    """The models `--with-tg` adds (always trained when asked for)."""
    plain = {m.name for m in demo_models(False)}
    return [m for m in demo_models(with_tg) if m.name not in plain]


def needed_backbones(backbones: list[BackboneSpec], models: list[ModelSpec]) -> list[BackboneSpec]:
    """The backbones whose features `models` read, with the teachers and starting points they
    need, in the order of `backbones` (teachers first)."""
    by_name = {b.name: b for b in backbones}
    wanted = {part for m in models for part in (("rgb", "flow") if m.features == "two_stream" else (m.features,))}
    todo = list(wanted)
    while todo:
        spec = by_name[todo.pop()]
        for other in (spec.teacher, spec.init_from):
            if other is not None and other not in wanted:
                wanted.add(other)
                todo.append(other)
    return [b for b in backbones if b.name in wanted]


class StageClock:
    """Wall time per stage, kept in timings.json. A stage keeps the timing of the run that
    first finished it; a later run that finds its outputs marks it reused."""

    def __init__(self, path: Path):
        import json

        self.path = path
        self.timings: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}

    def run(self, name: str, func, *args, **kwargs):
        start = time.perf_counter()
        result = func(*args, **kwargs)
        self.record(name, time.perf_counter() - start)
        return result

    def record(self, name: str, seconds: float) -> None:
        previous = self.timings.get(name)
        self.timings[name] = {"seconds": round(seconds, 2)} if previous is None else {**previous, "reused": True}
        write_json(self.path, self.timings)


def run_demo(out_dir: str | Path, *, quick: bool = False, seed: int = 0, device: str | None = None,
             with_tg: bool = False, jobs: int = 2, precision: str = "auto") -> dict:
    """Run (or finish) the demo in `out_dir`; return the summary. `with_tg` adds the
    temporal-gradient teacher and its student; `jobs` stages (backbones, features,
    detectors) run at once, one torch thread each (`run_stages`); `precision` of backbone
    training and extraction (`rgbtad.core.precision`: auto picks bfloat16 only where the hardware
    runs it natively)."""
    from rgbtad.core.device import resolve_device
    from rgbtad.core.precision import resolve_precision

    if int(jobs) < 1:
        raise RgbtadError(f"invalid jobs {jobs}: must be >= 1")
    settings = DemoSettings.quick() if quick else DemoSettings()
    precision = resolve_precision(precision, resolve_device(device))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, settings, seed, precision)
    clock = StageClock(out / "timings.json")

    with worker_pool(int(jobs)) as pool:
        ann_path = clock.run("data", _generate, out, settings, seed)
        videos = sorted((out / "data" / "videos").glob("*.mp4"))
        clock.run("motion", _motion, videos, out, settings)
        chosen = None if settings.models is None else {*settings.models, *(m.name for m in _tg_models(with_tg))}
        models = [m for m in demo_models(with_tg) if chosen is None or m.name in chosen]
        backbones = needed_backbones(demo_backbones(with_tg), models)
        stages = demo_stages(backbones, models, videos, ann_path, out, settings, seed, device, precision)
        done = run_stages(stages, clock, int(jobs), pool)
    results = {m.name: done[f"detector_{m.name}"] for m in models}
    from rgbtad.apps.report import write_report

    summary = {"models": results, "settings": asdict(settings), "seed": seed, "with_tg": with_tg,
               "precision": precision, "cpu": cpu_model(), "jobs": int(jobs)}  # jobs of one torch thread
    clock.run("report", write_report, out, ann_path, summary, models, clock.timings)
    return summary


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


def _check_settings(out: Path, settings: DemoSettings, seed: int, precision: str) -> None:
    """A demo folder holds one configuration: refuse to mix outputs of different settings.
    (`--with-tg` only adds stages: it may extend a folder made without it.)"""
    import json

    path = out / "demo.json"
    current = json.loads(json.dumps({"settings": asdict(settings), "seed": seed, "precision": precision}))
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != current:
            raise RgbtadError(f"{out}: holds a demo made with other settings ({path}); "
                              "use another --out or the same --quick/--seed/--precision")
        return
    write_json(path, current)


def _generate(out: Path, settings: DemoSettings, seed: int) -> Path:
    from rgbtad.synthetic.generate import generate_benchmark

    return generate_benchmark(out / "data", num_train=settings.num_train, num_test=settings.num_test,
                              seed=seed, size=settings.size, fps=settings.fps,
                              min_duration=settings.min_duration, max_duration=settings.max_duration,
                              classes=settings.classes, workers=2)


def _motion(videos: list[Path], out: Path, settings: DemoSettings) -> None:
    from rgbtad.motion.storage import compute_motion

    report = compute_motion(videos, out / "flow", method=settings.flow_method, fps=settings.fps,
                            size=settings.size, workers=2)
    if not report.ok:
        raise RgbtadError(f"optical flow failed for some videos:\n{report.summary()}")


def backbone_dir(out: Path, name: str) -> Path:
    """The run directory of the demo's backbone `name` (`rgbtad.training.backbone_run`)."""
    return out / "backbones" / name


def backbone_config(spec: BackboneSpec, ann_path: Path, out: Path, settings: DemoSettings, seed: int,
                    precision: str):
    """The `rgbtad train-backbone` config of one demo backbone (for ``demo_out`` with the
    default settings: ``configs/backbone_synthetic_*.yaml``)."""
    import dataclasses

    from rgbtad.training.backbone_config import build_backbone_config

    if spec.modality != "rgb":
        epochs = settings.clip_epochs
    else:
        epochs = settings.rgb_clip_epochs if spec.init_from is None else settings.kd_clip_epochs
    snippets = settings.snippets(spec.modality).with_(stride=settings.val_stride)
    values = {
        "annotations": str(ann_path), "videos": str(out / "data" / "videos"), "backbone": BACKBONE,
        "snippets": dataclasses.asdict(snippets), "flow_dir": str(out / "flow") if spec.modality == "flow" else None,
        "subset": "train", "val_subset": "test", "epochs": epochs, "per_class": settings.clip_per_class,
        "batch_size": settings.clip_batch_size, "seed": seed, "precision": precision,
        "init_from": None if spec.init_from is None else str(backbone_dir(out, spec.init_from)),
        "distill": {"teacher": None if spec.teacher is None else str(backbone_dir(out, spec.teacher)),
                    "mode": spec.distill},
    }
    return build_backbone_config(values)


def _train_backbone(ann_path: Path, out: Path, settings: DemoSettings, spec: BackboneSpec, seed: int,
                    device: str | None, precision: str) -> None:
    """Train (or find, or finish) one backbone run, as `rgbtad train-backbone` does."""
    from rgbtad.training.backbone_run import CHECKPOINT, is_finished
    from rgbtad.training.backbones import train_backbone

    run_dir = backbone_dir(out, spec.name)
    if is_finished(run_dir):
        return
    resume = (run_dir / CHECKPOINT).is_file()
    train_backbone(backbone_config(spec, ann_path, out, settings, seed, precision), run_dir, resume=resume,
                   overwrite=not resume, device=device, progress=False)


def _extract(videos: list[Path], out: Path, settings: DemoSettings, spec: BackboneSpec,
             device: str | None, precision: str) -> None:
    from rgbtad.features.extract import extract_features
    from rgbtad.training.backbone_run import WEIGHTS_FILE

    report = extract_features(
        videos, out / "features" / spec.name, backbone=BACKBONE,
        weights=str(backbone_dir(out, spec.name) / WEIGHTS_FILE),
        snippets=settings.snippets(spec.modality), device=device, batch_size=32,
        precision=precision, flow_dir=out / "flow" if spec.modality == "flow" else None, progress=False,
    )
    if not report.ok:
        raise RgbtadError(f"feature extraction ({spec.name}) failed for some videos:\n{report.summary()}")


def _concat_features(out: Path, parts: tuple[str, ...], name: str) -> None:
    """Two-stream features: the modalities' snippet features side by side (RGB first)."""
    target = out / "features" / name
    for path in sorted((out / "features" / parts[0]).glob("*.npy")):
        dest = target / path.name
        if dest.is_file():
            continue
        arrays = [np.load(out / "features" / part / path.name) for part in parts]
        length = min(a.shape[0] for a in arrays)
        write_npy(dest, np.concatenate([a[:length] for a in arrays], axis=1))


def detector_config(spec: ModelSpec, ann_path: Path, out: Path, settings: DemoSettings, seed: int):
    """The detector config of one demo model: configs' synthetic defaults + this model's data."""
    from rgbtad.config import build_config

    dims = {folder.name: _feature_dim(folder) for folder in (out / "features").iterdir() if folder.is_dir()}
    values = synthetic_detector_defaults()
    values["data"].update({"annotations": str(ann_path), "features": str(out / "features" / spec.features),
                           "input_dim": dims[spec.features], "feat_stride": settings.stride,
                           "num_frames": settings.snippet_frames})
    values["train"].update({"epochs": settings.detector_epochs, "warmup_epochs": settings.detector_warmup,
                            "ema_decay": settings.detector_ema_decay, "seed": seed,
                            # a resumable checkpoint every 5 epochs: saving one took 0.2 s, 10 % of
                            # a decomposed student's epoch in the quick demo
                            "checkpoint_every": 5})
    values["model"].update({key: settings.detector_dim for key in ("embd_dim", "fpn_dim", "head_dim")})
    cfg = build_config(values, [o.format(out=out, dim=dims) for o in spec.overrides])
    cfg.data.max_seq_len = _max_seq_len(cfg, settings)
    return cfg


def _max_seq_len(cfg, settings: DemoSettings) -> int:
    """The shortest sequence that holds the longest benchmark video whole (the quick demo's
    20 s videos at stride 4: 128 instead of 256 steps, half the detector's work)."""
    import math

    from rgbtad.detection import seq_len_holding

    frames = math.ceil(settings.max_duration * settings.fps)
    return seq_len_holding(cfg, max(frames - settings.snippet_frames, 0) // settings.stride + 1)


def _feature_dim(folder: Path) -> int:
    first = next(iter(sorted(folder.glob("*.npy"))), None)
    if first is None:
        raise RgbtadError(f"{folder}: no feature files")
    return int(np.load(first, mmap_mode="r").shape[1])


def synthetic_detector_defaults() -> dict:
    """`configs/synthetic.yaml` as a dict (the file ships inside the package)."""
    from importlib import resources

    import yaml

    text = resources.files("rgbtad.apps").joinpath("synthetic.yaml").read_text()
    return yaml.safe_load(text)


@dataclass(frozen=True)
class Stage:
    """One job of the demo after the optical flow: ``func(*args)`` in a worker process, once
    the stages named in `needs` are done; `describe` logs its start, `report(result, seconds)`
    its end."""

    name: str
    func: Callable
    args: tuple
    needs: tuple[str, ...] = ()
    describe: str = ""
    report: Callable | None = None
    # convolutional backbones run about 1.6x faster on two threads; the small detectors do not
    # (1 thread: 42 s, 2 threads: 52 s for the quick demo's decomposed student)
    threaded: bool = False


def demo_stages(backbones: list[BackboneSpec], models: list[ModelSpec], videos: list[Path], ann_path: Path,
                out: Path, settings: DemoSettings, seed: int, device: str | None, precision: str) -> list[Stage]:
    """Backbones, features and detectors as stages, in the order a free worker takes the ready
    ones: backbones (teachers first: the distilled ones wait for them and lie on the longest
    path), features, then detectors (`_schedule_rank`)."""
    stages = [Stage(f"backbone_{b.name}", _train_backbone, (ann_path, out, settings, b, seed, device, precision),
                    tuple(f"backbone_{n}" for n in (b.teacher, b.init_from) if n is not None),
                    f"backbone {b.name}: training ({BACKBONE}, {b.modality}"
                    + (f", distilled from {b.teacher} ({b.distill})" if b.teacher else "") + ")",
                    lambda result, seconds, b=b: f"backbone {b.name}: done ({seconds:.0f} s)", threaded=True)
              for b in backbones]
    stages += [Stage(f"features_{b.name}", _extract, (videos, out, settings, b, device, precision),
                     (f"backbone_{b.name}",), threaded=True) for b in backbones]
    if any(m.features == "two_stream" for m in models):
        stages.append(Stage("features_two_stream", _concat_features, (out, ("rgb", "flow"), "two_stream"),
                            ("features_rgb", "features_flow")))
    for m in sorted(models, key=_schedule_rank(models)):
        needs = (f"features_{m.features}",) + ((f"detector_{m.teacher}",) if m.teacher else ())
        stages.append(Stage(f"detector_{m.name}", _train_and_evaluate, (m, ann_path, out, settings, seed, device),
                            needs, f"detector {m.name}: {m.description}",
                            lambda result, seconds, m=m: f"detector {m.name}: average mAP "
                                                         f"{100 * result['average_mAP']:.1f} ({seconds:.0f} s)"))
    return stages


def run_stages(stages: list[Stage], clock: StageClock, jobs: int, pool) -> dict:
    """Run `stages` in the workers of `pool` (`worker_pool`), `jobs` at a time, one torch
    thread each (`jobs` threads for a threaded stage that runs alone); a stage starts once its
    `needs` are done, the first ready one in list order first. Returns the results by stage
    name. On 2 cores a backbone training runs only 1.6x faster on two threads than on one and
    a detector training not faster at all, so two single-thread stages side by side (the RGB
    and flow backbones; a distilled backbone and the detectors of finished features) do more
    work than one after the other."""
    from concurrent.futures import FIRST_COMPLETED, wait

    done: dict = {}
    pending = list(stages)
    running: dict = {}
    # at most `jobs` stages are ever submitted, so none waits in the pool's queue
    while pending or running:
        ready = [s for s in pending if all(n in done for n in s.needs)]
        for stage in ready[:jobs - len(running)]:
            if stage.describe:
                log.info("%s", stage.describe)
            # a threaded stage alone (nothing else runs or is ready: nothing can start
            # before it ends) gets every thread
            threads = jobs if stage.threaded and not running and len(ready) == 1 else 1
            running[pool.submit(_timed, stage.func, stage.args, threads)] = stage
            pending.remove(stage)
        if not running:
            raise RuntimeError(f"stages wait on stages that are not there: {[s.name for s in pending]}")
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            stage = running.pop(future)
            done[stage.name], seconds = future.result()
            clock.record(stage.name, seconds)
            if stage.report is not None:
                log.info("%s", stage.report(done[stage.name], seconds))
    return done


def worker_pool(jobs: int):
    """`jobs` spawned worker processes (never fork a process that already ran torch), started
    at once: their imports overlap the data and flow stages."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init)
    for _ in range(jobs):  # each submission to a busy pool starts one more worker
        pool.submit(int)
    return pool


def _worker_init() -> None:
    import torch._dynamo  # noqa: F401 - what the first optimizer imports (2.5 s)

    import rgbtad.training.backbones  # noqa: F401
    import rgbtad.training.trainer  # noqa: F401

    # spawned workers start without the parent's logging set-up: keep their warnings
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")


def _timed(func: Callable, args: tuple, threads: int):
    import torch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    result = func(*args)
    return result, time.perf_counter() - start


def _schedule_rank(models: list[ModelSpec]):
    """Teachers first (their students wait for them), then the students, decomposed ones first
    (a decomposed student takes 2-3x as long as a plain detector: started last, it would
    finish alone), then the demo's order."""
    teachers = {m.teacher for m in models}
    order = {m.name: i for i, m in enumerate(models)}
    return lambda m: (m.name not in teachers, m.teacher is None, "distill.method=decomposed" not in m.overrides,
                      order[m.name])


def _train_and_evaluate(spec: ModelSpec, ann_path: Path, out: Path, settings: DemoSettings, seed: int,
                        device: str | None) -> dict:
    """A worker's job: train (or find) the model's run, detect on the test split, evaluate;
    returns the metrics. No progress bars: those of parallel workers would interleave (the
    parent logs each stage's start and result)."""
    from rgbtad.evaluation.detection import evaluate_detection_files
    from rgbtad.inference.predict import infer_features
    from rgbtad.training.trainer import train

    run_dir = out / "runs" / spec.name
    cfg = detector_config(spec, ann_path, out, settings, seed)
    if not (run_dir / "model.pt").is_file():
        resume = (run_dir / "checkpoints" / "last.pt").is_file()
        train(cfg, run_dir, resume=resume, device=device, progress=False)
    pred = out / "predictions" / f"{spec.name}.json"
    if not pred.is_file():
        infer_features(run_dir, features_dir=cfg.data.features, annotations=ann_path, split="test",
                       out_path=pred, device=device, progress=False)
    metrics = evaluate_detection_files(ann_path, pred, split="test", tiou_thresholds=cfg.test.tiou_thresholds)
    return metrics.to_json()
