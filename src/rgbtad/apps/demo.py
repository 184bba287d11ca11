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
   trained; an interrupted training resumes from its last epoch (`rgbtad.apps.demo_backbone_stages`);
4. ``features``: snippet features of every video per backbone (`rgbtad.features.extract`,
   same precision), and the two-stream features (RGB and flow side by side);
5. ``detectors``: one ActionFormer per model (`rgbtad.training.trainer`), then detections on
   the test split and their mAP (`rgbtad.apps.demo_detector_stages`);
6. ``report``: ``summary.json``, ``report.md``, timelines and training curves
   (`rgbtad.apps.demo_report`).

What is trained is `rgbtad.apps.demo_plan`'s, stages 3-5 run as one graph
(`rgbtad.apps.demo_stages`), and the folder ``OUT`` is laid out as `rgbtad.apps.demo_layout` says.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from rgbtad.apps.demo_layout import SETTINGS_FILE, TIMINGS_FILE, data_dir, flow_dir, videos_dir
from rgbtad.apps.demo_plan import DemoSettings, chosen_models, demo_backbones, needed_backbones
from rgbtad.apps.demo_report import write_report
from rgbtad.apps.demo_stages import StageClock, demo_stages, run_stages, worker_pool
from rgbtad.core.atomic import write_json
from rgbtad.core.errors import RgbtadError
from rgbtad.core.precision import cpu_model


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
    clock = StageClock(out / TIMINGS_FILE)

    with worker_pool(int(jobs)) as pool:
        ann_path = clock.run("data", _generate, out, settings, seed)
        videos = sorted(videos_dir(out).glob("*.mp4"))
        clock.run("motion", _motion, videos, out, settings)
        models = chosen_models(settings, with_tg)
        backbones = needed_backbones(demo_backbones(with_tg), models)
        stages = demo_stages(backbones, models, videos, ann_path, out, settings, seed, device, precision)
        done = run_stages(stages, clock, int(jobs), pool)
    results = {m.name: done[f"detector_{m.name}"] for m in models}
    summary = {"models": results, "settings": asdict(settings), "seed": seed, "with_tg": with_tg,
               "precision": precision, "cpu": cpu_model(), "jobs": int(jobs)}  # jobs of one torch thread
    clock.run("report", write_report, out, ann_path, summary, models, clock.timings)
    return summary


def _check_settings(out: Path, settings: DemoSettings, seed: int, precision: str) -> None:
    """A demo folder holds one configuration: refuse to mix outputs of different settings.
    (`--with-tg` only adds stages: it may extend a folder made without it.)"""
    import json

    path = out / SETTINGS_FILE
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

    return generate_benchmark(data_dir(out), num_train=settings.num_train, num_test=settings.num_test,
                              seed=seed, size=settings.size, fps=settings.fps,
                              min_duration=settings.min_duration, max_duration=settings.max_duration,
                              classes=settings.classes, workers=2)


def _motion(videos: list[Path], out: Path, settings: DemoSettings) -> None:
    from rgbtad.motion.storage import compute_motion

    report = compute_motion(videos, flow_dir(out), method=settings.flow_method, fps=settings.fps,
                            size=settings.size, workers=2)
    if not report.ok:
        raise RgbtadError(f"optical flow failed for some videos:\n{report.summary()}")
