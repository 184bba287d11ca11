"""rgbtad motion: optical flow or temporal gradient of videos, stored for extraction."""

from __future__ import annotations

import argparse

from rgbtad.cli.arguments import POSITIVE, POSITIVE_INT
from rgbtad.core.errors import RgbtadError
from rgbtad.core.paths import check_writable_output
from rgbtad.video.snippets import DIS_PRESETS, FLOW_METHODS, SnippetSpec


def _cmd_motion(args: argparse.Namespace) -> None:
    from rgbtad.core.batch import parse_shard
    from rgbtad.motion.storage import compute_motion
    from rgbtad.video.decode import list_videos, parse_size

    check_writable_output(args.out, "--out", folder=True)
    videos = list_videos(args.videos)
    report = compute_motion(
        videos, args.out, method=args.method, fps=args.fps, size=parse_size(args.size), bound=args.bound,
        dis_preset=args.dis_preset, workers=args.workers, shard=parse_shard(args.shard),
    )
    print(report.summary())
    print(f"motion files in {args.out}")
    if report.failed:
        raise RgbtadError(f"{len(report.failed)} of {len(videos)} videos failed (listed above)")


def add_motion(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("motion", help="compute and store optical flow (or temporal gradient) of videos")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or folders of videos")
    p.add_argument("--method", default=SnippetSpec.flow_method, choices=FLOW_METHODS + ("tg",),
                   help="tvl1 (default, slow: ~0.5 s per 224px pair), dis, farneback, or tg (temporal gradient)")
    p.add_argument("--out", required=True, help="output folder: <stem>.flow.npz (or .tg.npz) + JSON sidecar")
    p.add_argument("--fps", type=POSITIVE, default=None, help="resample to this frame rate (default: native)")
    p.add_argument("--size", default=None, help="P (short side, keeps aspect) or WxH (default: native)")
    p.add_argument("--workers", type=POSITIVE_INT, default=1, help="processes, one video each (default 1)")
    p.add_argument("--bound", type=POSITIVE, default=None,
                   help="quantization bound: clip to +-bound then map to 0..255 (default 20 px; 255 for tg)")
    p.add_argument("--dis-preset", default=SnippetSpec.dis_preset, choices=DIS_PRESETS,
                   help="DIS preset (method dis only)")
    p.add_argument("--shard", default=None, metavar="K/N", help="process only shard K of N (1-based)")
    p.set_defaults(func=_cmd_motion)
