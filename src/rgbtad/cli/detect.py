"""rgbtad detect: actions in videos with a run directory (RGB only)."""

from __future__ import annotations

import argparse

from rgbtad.cli.arguments import POSITIVE_INT, SCORE, add_device, add_precision
from rgbtad.core.errors import RgbtadError
from rgbtad.core.paths import check_writable_output


def _cmd_detect(args: argparse.Namespace) -> None:
    from rgbtad.inference.detect import detect_videos
    from rgbtad.video.decode import list_videos

    check_writable_output(args.out, "--out")
    if args.csv:
        check_writable_output(args.csv, "--csv")
    if args.plot:
        check_writable_output(args.plot, "--plot", folder=True)
    report = detect_videos(args.run_dir, list_videos(args.videos), out=args.out, csv=args.csv,
                           plot_dir=args.plot, min_score=args.min_score, device=args.device, onnx=args.onnx,
                           batch_size=args.batch_size, precision=args.precision, progress=not args.quiet)
    print(report.summary())
    for path in report.outputs:
        print(f"wrote {path}")
    if report.failures:
        raise RgbtadError(f"{len(report.failures)} of {len(report.failures) + len(report.results)} videos "
                          "failed (listed above)")


def add_detect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="detect actions in videos with a run directory (RGB only, no optical flow)")
    p.add_argument("run_dir", help="run directory of `rgbtad train` or `rgbtad demo` (with backbone.json)")
    p.add_argument("videos", nargs="+", metavar="VIDEO_OR_DIR", help="video files or folders of videos")
    p.add_argument("--out", required=True, help="output ActivityNet results JSON")
    p.add_argument("--csv", default=None, help="also write video_id,start,end,label,score rows here")
    p.add_argument("--plot", default=None, metavar="DIR", help="write a timeline DIR/<video>.png per video")
    p.add_argument("--min-score", type=SCORE, default=0.0, help="drop detections scoring below this")
    add_device(p)
    p.add_argument("--onnx", default=None, metavar="MODEL.onnx",
                   help="run the detector (and the backbone, if exported with it) with ONNX Runtime")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=8, help="snippets per backbone forward pass (default 8)")
    add_precision(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_detect)
