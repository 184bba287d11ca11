"""The demo's stage graph after the optical flow (backbones, features, detectors) and how it
runs: in pre-started worker processes, each stage once the stages it reads are done, with
its wall time kept in timings.json (a stage finished by an earlier run is marked reused)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rgbtad.apps.demo_backbone_stages import concat_features, extract_demo_features, train_demo_backbone
from rgbtad.apps.demo_detector_stages import train_and_evaluate
from rgbtad.apps.demo_plan import BACKBONE, BackboneSpec, DemoSettings, ModelSpec
from rgbtad.core.atomic import write_json

log = logging.getLogger(__name__)


class StageClock:
    """Wall time per stage, kept in timings.json. A stage keeps the timing of the run that
    first finished it; a later run that finds its outputs marks it reused."""

    def __init__(self, path: Path):
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
    # (the quick demo's decomposed student: 56 s wall on 1 thread, 61 s on 2)
    threaded: bool = False


def demo_stages(backbones: list[BackboneSpec], models: list[ModelSpec], videos: list[Path], ann_path: Path,
                out: Path, settings: DemoSettings, seed: int, device: str | None, precision: str) -> list[Stage]:
    """Backbones, features and detectors as stages, in the order a free worker takes the ready
    ones: backbones (teachers first: the distilled ones wait for them and lie on the longest
    path), features, then detectors (`_schedule_rank`)."""
    stages = [Stage(f"backbone_{b.name}", train_demo_backbone, (ann_path, out, settings, b, seed, device, precision),
                    tuple(f"backbone_{n}" for n in (b.teacher, b.init_from) if n is not None),
                    f"backbone {b.name}: training ({BACKBONE}, {b.modality}"
                    + (f", distilled from {b.teacher} ({b.distill})" if b.teacher else "") + ")",
                    lambda result, seconds, b=b: f"backbone {b.name}: done ({seconds:.0f} s)", threaded=True)
              for b in backbones]
    stages += [Stage(f"features_{b.name}", extract_demo_features, (videos, out, settings, b, device, precision),
                     (f"backbone_{b.name}",), threaded=True) for b in backbones]
    if any(m.features == "two_stream" for m in models):
        stages.append(Stage("features_two_stream", concat_features, (out, ("rgb", "flow"), "two_stream"),
                            ("features_rgb", "features_flow")))
    for m in sorted(models, key=_schedule_rank(models)):
        needs = (f"features_{m.features}",) + ((f"detector_{m.teacher}",) if m.teacher else ())
        stages.append(Stage(f"detector_{m.name}", train_and_evaluate, (m, ann_path, out, settings, seed, device),
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

