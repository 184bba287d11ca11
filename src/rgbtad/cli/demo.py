"""rgbtad demo: the whole pipeline on the built-in synthetic benchmark."""

from __future__ import annotations

import argparse

from rgbtad.cli.arguments import COUNT, POSITIVE_INT, add_device, add_precision
from rgbtad.core.paths import check_writable_output


def _cmd_demo(args: argparse.Namespace) -> None:
    from rgbtad.apps.demo import run_demo
    from rgbtad.apps.demo_report import demo_verdict

    check_writable_output(args.out, "--out", folder=True)
    summary = run_demo(args.out, quick=args.quick, seed=args.seed, device=args.device, with_tg=args.with_tg,
                       jobs=args.jobs, precision=args.precision)
    models = summary["models"]
    tious = next(iter(models.values()))["tiou"]
    print(f"mAP (%) on the test split, {summary['precision']} backbones on {summary['cpu']}")
    print(f"{'model':<16}" + "".join(f"{t:>8g}" for t in tious) + f"{'avg':>8}")
    for name, m in models.items():
        print(f"{name:<16}" + "".join(f"{100 * v:8.1f}" for v in m["mAP"]) + f"{100 * m['average_mAP']:8.1f}")
    print(demo_verdict(models))
    print(f"report: {args.out}/report.md")


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole pipeline on the built-in synthetic benchmark")
    p.add_argument("--out", default="demo_out", help="output folder (a second run reuses finished stages)")
    p.add_argument("--quick", action="store_true",
                   help="6 classes, 24 short videos, short trainings, 4 detectors: about 3 minutes on 2 cores")
    p.add_argument("--with-tg", action="store_true",
                   help="also a temporal-gradient teacher and its decomposed student (longer)")
    p.add_argument("--seed", type=COUNT, default=0)
    add_device(p)
    p.add_argument("--jobs", type=POSITIVE_INT, default=2,
                   help="stages (backbones, features, detectors) run at once, one CPU thread each (default 2)")
    add_precision(p)
    p.set_defaults(func=_cmd_demo)
