"""rgbtad toy-features and rgbtad synth: generated data, a small feature set or the synthetic video benchmark."""

from __future__ import annotations

import argparse

from rgbtad.cli.arguments import COUNT, POSITIVE, POSITIVE_INT
from rgbtad.core.paths import check_writable_output


def _cmd_toy_features(args: argparse.Namespace) -> None:
    from rgbtad.synthetic.toy_features import make_toy_features

    check_writable_output(args.out_dir, "output folder", folder=True)
    ann = make_toy_features(args.out_dir, num_train=args.train, num_test=args.test, seed=args.seed)
    print(f"wrote features to {ann.parent / 'features'} and annotations to {ann}")


def add_toy_features(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("toy-features",
                       help="generate a small feature set with detectable actions (examples, tests)")
    p.add_argument("out_dir", help="folder to write features/ and annotations.json into")
    p.add_argument("--train", type=POSITIVE_INT, default=40, help="number of training videos")
    p.add_argument("--test", type=COUNT, default=20, help="number of test videos")
    p.add_argument("--seed", type=COUNT, default=0)
    p.set_defaults(func=_cmd_toy_features)


def _cmd_synth(args: argparse.Namespace) -> None:
    from rgbtad.synthetic.generate import generate_benchmark

    check_writable_output(args.out_dir, "output folder", folder=True)
    ann = generate_benchmark(args.out_dir, num_train=args.train, num_test=args.test, seed=args.seed,
                             size=args.size, fps=args.fps, min_duration=args.min_duration,
                             max_duration=args.max_duration, workers=args.workers,
                             classes=args.classes.split(",") if args.classes else None)
    print(f"wrote videos to {ann.parent / 'videos'} and annotations to {ann}")


def add_synth(sub: argparse._SubParsersAction) -> None:
    from rgbtad.synthetic.generate import DEFAULTS

    p = sub.add_parser("synth", help="generate the built-in synthetic motion-action benchmark (mp4 videos + "
                                     "ActionFormer annotations)")
    p.add_argument("out_dir", help="folder to write videos/, annotations.json and benchmark.json into")
    p.add_argument("--train", type=POSITIVE_INT, default=DEFAULTS["num_train"],
                   help=f"number of training videos (default {DEFAULTS['num_train']})")
    p.add_argument("--test", type=COUNT, default=DEFAULTS["num_test"],
                   help=f"number of test videos (default {DEFAULTS['num_test']})")
    p.add_argument("--seed", type=COUNT, default=DEFAULTS["seed"], help="random seed (default 0)")
    p.add_argument("--size", type=POSITIVE_INT, default=DEFAULTS["size"],
                   help=f"frame width and height in pixels, even (default {DEFAULTS['size']})")
    p.add_argument("--fps", type=POSITIVE, default=DEFAULTS["fps"], help=f"frame rate (default {DEFAULTS['fps']:g})")
    p.add_argument("--min-duration", type=POSITIVE, default=DEFAULTS["min_duration"],
                   help=f"shortest video in seconds (default {DEFAULTS['min_duration']:g})")
    p.add_argument("--max-duration", type=POSITIVE, default=DEFAULTS["max_duration"],
                   help=f"longest video in seconds (default {DEFAULTS['max_duration']:g})")
    p.add_argument("--workers", type=POSITIVE_INT, default=1, help="rendering processes (default 1; same output)")
    p.add_argument("--classes", default=None, metavar="A,B,...",
                   help="use only these classes, e.g. belt_left,belt_right,ball_bounce (default: all twelve)")
    p.set_defaults(func=_cmd_synth)
