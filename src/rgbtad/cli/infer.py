"""rgbtad infer: detections from pre-extracted features with a trained run."""

from __future__ import annotations

import argparse

from rgbtad.cli.arguments import add_device
from rgbtad.core.paths import check_writable_output


def _cmd_infer(args: argparse.Namespace) -> None:
    from rgbtad.inference.predict import infer_features

    check_writable_output(args.out, "--out")
    count = infer_features(
        args.run_dir,
        features_dir=args.features,
        annotations=args.ann,
        split=args.split,
        out_path=args.out,
        device=args.device,
    )
    print(f"wrote detections for {count} videos to {args.out}")


def add_infer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infer", help="detect actions from pre-extracted features with a trained run")
    p.add_argument("run_dir", help="run directory written by `rgbtad train` or `rgbtad import-actionformer`")
    p.add_argument("--features", required=True, help="folder of per-video feature files")
    p.add_argument("--ann", required=True, help="annotation file (video list, fps, duration, class names)")
    p.add_argument("--split", default=None, help="subset to run on (default: the run's validation split)")
    p.add_argument("--out", required=True, help="output ActivityNet results JSON")
    add_device(p)
    p.set_defaults(func=_cmd_infer)
