"""rgbtad plot: the timeline of one video, ground truth above each model's detections."""

from __future__ import annotations

import argparse

from rgbtad.cli.arguments import POSITIVE_INT, SCORE
from rgbtad.core.paths import check_writable_output


def _cmd_plot(args: argparse.Namespace) -> None:
    from rgbtad.viz.timeline import parse_named_paths, plot_video_timeline

    check_writable_output(args.out, "--out")
    out = plot_video_timeline(args.gt, parse_named_paths(args.pred), args.video, args.out,
                              min_score=args.min_score, top_k=args.top_k, title=args.title)
    print(f"wrote {out}")


def add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="timeline of one video: ground truth above each model's detections")
    p.add_argument("--gt", required=True, help="ground truth annotation file")
    p.add_argument("--pred", required=True, action="append", metavar="[NAME=]PRED",
                   help="detections (results JSON or CSV); repeat for several models, "
                        "optionally named NAME=PATH (default name: the file's stem)")
    p.add_argument("--video", required=True, help="video id to plot")
    p.add_argument("--out", required=True, help="output image (.png, .pdf, .svg)")
    p.add_argument("--min-score", type=SCORE, default=0.0, help="hide detections scoring below this")
    p.add_argument("--top-k", type=POSITIVE_INT, default=None,
                   help="detections drawn per class and model, best first (default 10)")
    p.add_argument("--title", default=None, help="figure title (default: video id, duration, subset)")
    p.set_defaults(func=_cmd_plot)
