"""The synthetic benchmark on disk: plan every video, render the missing ones, write the JSON.

What the benchmark holds and why: `rgbtad.synthetic` (classes, timelines, nuisance).

**Files** (in ``out_dir``):

- ``videos/<video_id>.mp4``: H.264, yuv420p, ``size x size`` pixels, constant ``fps``;
- ``annotations.json``: ActionFormer format, ``{"version", "database": {video_id: {"subset":
  "train" | "test", "duration", "fps", "annotations": [{"label", "label_id", "segment": [s,
  e]}]}}}``; segments lie on frame boundaries (frame ``k`` spans ``[k / fps, (k + 1) / fps)``),
  sorted and non-overlapping;
- ``benchmark.json``: generator settings, the class list with descriptions, and statistics.

Everything is written atomically. ``annotations.json`` is written last, so its presence (with
a ``benchmark.json`` of the same settings) marks a finished benchmark: a second call with the
same settings returns at once, and an interrupted one renders only the missing videos.

**Determinism.** Every video is planned and rendered from its own random stream,
``SeedSequence([seed, subset, index])``, so the same seed gives byte-identical annotations and
identical decoded frames, and adding test videos does not change the training ones. The
videos are encoded by `rgbtad.video.encode.write_h264` in its deterministic mode (x264
single-threaded, ``mbtree=0``) from an RGB to YUV 4:2:0 conversion of its own
(`rgbtad.video.encode.rgb_to_yuv420p`), so the encoder input is fully defined.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from rgbtad.core.atomic import write_json
from rgbtad.core.errors import RgbtadError
from rgbtad.synthetic.classes import CLASSES, class_indices
from rgbtad.synthetic.plan import VideoPlan, plan_video
from rgbtad.synthetic.render import render_job, render_video
from rgbtad.synthetic.statistics import annotation_statistics
from rgbtad.synthetic.timeline import MIN_GAP_S, MIN_INSTANCE_S, deal_labels, plan_timeline

FORMAT = "rgbtad-synth-1"
ANNOTATION_FILE = "annotations.json"
METADATA_FILE = "benchmark.json"
VIDEO_DIR = "videos"
SUBSETS = ("train", "test")

DEFAULTS = {"num_train": 60, "num_test": 30, "seed": 0, "size": 64, "fps": 10.0,
            "min_duration": 20.0, "max_duration": 40.0}


def _check_settings(num_train, num_test, size, fps, min_duration, max_duration) -> None:
    if int(num_train) < 0 or int(num_test) < 0 or int(num_train) + int(num_test) == 0:
        raise RgbtadError(f"invalid video counts --train {num_train} --test {num_test}: need >= 0 each, > 0 in all")
    if int(size) < 32 or int(size) % 2:
        raise RgbtadError(f"invalid --size {size}: must be an even number of pixels >= 32 (H.264 4:2:0)")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 2.0 <= float(fps) <= 60.0):
        raise RgbtadError(f"invalid --fps {fps}: must be between 2 and 60")
    if not (0 < float(min_duration) <= float(max_duration)):
        raise RgbtadError(f"invalid durations {min_duration}-{max_duration} s: need 0 < min <= max")
    if float(min_duration) < 2 * MIN_GAP_S + MIN_INSTANCE_S + 0.5:
        raise RgbtadError(f"invalid minimum duration {min_duration} s: videos need at least "
                          f"{2 * MIN_GAP_S + MIN_INSTANCE_S + 0.5:.1f} s")


def plan_benchmark(*, num_train: int, num_test: int, seed: int, size: int, fps: float,
                   min_duration: float = DEFAULTS["min_duration"],
                   max_duration: float = DEFAULTS["max_duration"],
                   classes: Sequence[str] | None = None) -> list[VideoPlan]:
    """The plans of every video (timelines, objects, nuisance); no rendering. `classes`: the
    action classes to deal (names; default all); nuisance objects are the same either way."""
    _check_settings(num_train, num_test, size, fps, min_duration, max_duration)
    pool = class_indices(classes)
    plans = []
    for subset_index, (subset, count) in enumerate((("train", num_train), ("test", num_test))):
        keys = [[int(seed), subset_index, index] for index in range(int(count))]
        timelines = [plan_timeline(size=int(size), fps=float(fps), min_duration=float(min_duration),
                                   max_duration=float(max_duration), seed_key=key) for key in keys]
        labels = deal_labels(sum(len(t[1]) for t in timelines), [int(seed), subset_index, 2**20], pool)
        used = 0
        for index, (key, timeline) in enumerate(zip(keys, timelines)):
            n = len(timeline[1])
            plans.append(plan_video(f"synth_{subset}_{index:04d}", subset, labels[used:used + n], timeline,
                                    size=int(size), fps=float(fps), seed_key=key))
            used += n
    return plans


def _annotations(plans: list[VideoPlan], classes: tuple[int, ...] | None) -> dict:
    """ActionFormer annotations; label ids number the benchmark's classes in `CLASSES` order."""
    label_ids = {c: i for i, c in enumerate(range(len(CLASSES)) if classes is None else classes)}
    database = {}
    for plan in plans:
        database[plan.video_id] = {
            "subset": plan.subset,
            "duration": round(plan.num_frames / plan.fps, 6),
            "fps": plan.fps,
            "annotations": [
                {"label": CLASSES[label].name, "label_id": label_ids[label],
                 "segment": [round(a0 / plan.fps, 6), round(a1 / plan.fps, 6)]}
                for a0, a1, label in plan.instances
            ],
        }
    return {"version": FORMAT, "database": database}


def _finished(out_dir: Path, settings: dict) -> bool:
    """True when `out_dir` holds a finished benchmark of these settings; an error when it holds
    one of other settings, or annotations without their description."""
    meta_path, ann_path = out_dir / METADATA_FILE, out_dir / ANNOTATION_FILE
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text()).get("settings")
        except (OSError, json.JSONDecodeError, AttributeError):
            raise RgbtadError(f"{meta_path}: not a readable benchmark description; use another folder") from None
        if old != settings:
            diff = ", ".join(f"{k} {old.get(k)!r} (now {v!r})" for k, v in settings.items()
                             if not isinstance(old, dict) or old.get(k) != v)
            raise RgbtadError(f"{meta_path}: this folder holds a benchmark made with other settings: {diff}; "
                              "use another folder")
        return ann_path.is_file()
    if ann_path.exists():
        raise RgbtadError(f"{ann_path}: exists but {METADATA_FILE} is missing; use another folder")
    return False


def _render_missing(plans: list[VideoPlan], video_dir: Path, workers: int, progress: bool) -> None:
    """Render the videos not yet in `video_dir`, in `workers` processes when > 1."""
    video_dir.mkdir(parents=True, exist_ok=True)
    todo = [p for p in plans if not (video_dir / f"{p.video_id}.mp4").is_file()]
    from tqdm import tqdm

    with tqdm(total=len(todo), desc="synth videos", unit="video", disable=not progress or not todo) as bar:
        if int(workers) > 1 and len(todo) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: a forked child of a process that already ran torch / OpenMP
            # threads can deadlock
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=int(workers), mp_context=context) as pool:
                for _ in pool.map(render_job, todo, [str(video_dir / f"{p.video_id}.mp4") for p in todo]):
                    bar.update(1)
        else:
            for plan in todo:
                render_video(plan, video_dir / f"{plan.video_id}.mp4")
                bar.update(1)


def generate_benchmark(out_dir: str | Path, *, num_train: int = DEFAULTS["num_train"],
                       num_test: int = DEFAULTS["num_test"], seed: int = DEFAULTS["seed"],
                       size: int = DEFAULTS["size"], fps: float = DEFAULTS["fps"],
                       min_duration: float = DEFAULTS["min_duration"],
                       max_duration: float = DEFAULTS["max_duration"], workers: int = 1,
                       classes: Sequence[str] | None = None, progress: bool = True) -> Path:
    """Write the benchmark (videos, ``annotations.json``, ``benchmark.json``) into `out_dir`.

    Returns the path of ``annotations.json``. Square ``size x size`` frames at ``fps``;
    video durations uniform in ``[min_duration, max_duration]`` seconds. A finished benchmark
    with the same settings is reused; a folder holding one made with other settings is an
    error. `workers` > 1 renders videos in that many processes (same output). `classes`: a
    subset of the class names to use (default: all twelve).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RgbtadError(f"{out_dir}: exists and is not a folder")
    settings = {"format": FORMAT, "num_train": int(num_train), "num_test": int(num_test), "seed": int(seed),
                "size": int(size), "fps": float(fps), "min_duration": float(min_duration),
                "max_duration": float(max_duration)}
    pool = class_indices(classes)
    if pool is not None:
        settings["classes"] = [CLASSES[i].name for i in pool]
    plans = plan_benchmark(num_train=num_train, num_test=num_test, seed=seed, size=size, fps=fps,
                           min_duration=min_duration, max_duration=max_duration, classes=classes)
    ann_path = out_dir / ANNOTATION_FILE
    if _finished(out_dir, settings):
        return ann_path
    annotations = _annotations(plans, pool)
    meta = {
        "settings": settings,
        "classes": [asdict(c) for i, c in enumerate(CLASSES) if pool is None or i in pool],
        "statistics": {subset: annotation_statistics(annotations["database"], subset) for subset in SUBSETS
                       if any(p.subset == subset for p in plans)},
        "files": {"annotations": ANNOTATION_FILE, "videos": f"{VIDEO_DIR}/<video_id>.mp4"},
    }
    write_json(out_dir / METADATA_FILE, meta)
    _render_missing(plans, out_dir / VIDEO_DIR, workers, progress)
    write_json(ann_path, annotations)
    return ann_path
