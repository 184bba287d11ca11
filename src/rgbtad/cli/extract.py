"""rgbtad extract: snippet features of videos with a backbone."""

from __future__ import annotations

import argparse

from rgbtad.cli.arguments import POSITIVE, POSITIVE_INT, add_device, add_precision
from rgbtad.core.errors import RgbtadError
from rgbtad.core.paths import check_writable_output
from rgbtad.video.snippets import DIS_PRESETS, FLOW_METHODS, MODALITIES, SnippetSpec


def _cmd_extract(args: argparse.Namespace) -> None:
    from rgbtad.features.extract import extract_features
    from rgbtad.video.decode import list_videos, parse_size

    check_writable_output(args.out, "--out", folder=True)
    videos = list_videos(args.videos)
    report = extract_features(
        videos, args.out, backbone=args.backbone, weights=args.weights,
        snippets=SnippetSpec(modality=args.modality, frames=args.snippet_frames, stride=args.stride, fps=args.fps,
                             size=parse_size(args.size), flow_method=args.flow_method, dis_preset=args.dis_preset),
        shard=args.shard, device=args.device, batch_size=args.batch_size, precision=args.precision,
        flow_dir=args.flow_dir,
    )
    print(report.summary())
    print(f"features in {args.out}")
    if report.failed:
        raise RgbtadError(f"{len(report.failed)} of {len(videos)} videos failed (listed above)")


def add_extract(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="extract snippet features (one T x C .npy per video) with a backbone")
    p.add_argument("videos", nargs="+", metavar="VIDEO_OR_DIR", help="video files or folders of videos")
    p.add_argument("--backbone", required=True, help="backbone name, e.g. tsm_r18, i3d_inception")
    p.add_argument("--weights", default=None, help="backbone checkpoint (default: random initialisation)")
    p.add_argument("--modality", default=SnippetSpec.modality, choices=MODALITIES, help="input modality")
    p.add_argument("--flow-method", default=SnippetSpec.flow_method, choices=FLOW_METHODS,
                   help=f"optical flow method for --modality flow (default {SnippetSpec.flow_method})")
    p.add_argument("--dis-preset", default=SnippetSpec.dis_preset, choices=DIS_PRESETS,
                   help="DIS preset (flow method dis only)")
    p.add_argument("--flow-dir", default=None,
                   help="read flow stored by `rgbtad motion` (same method, fps, size) instead of computing it")
    p.add_argument("--snippet-frames", type=POSITIVE_INT, required=True, help="frames per snippet (e.g. 16 for I3D)")
    p.add_argument("--stride", type=POSITIVE_INT, required=True, help="frames between snippet starts (feat_stride)")
    p.add_argument("--fps", type=POSITIVE, default=None, help="resample to this frame rate (default: native)")
    p.add_argument("--size", default=None, help="P (short side, keeps aspect) or WxH (default: native)")
    p.add_argument("--out", required=True, help="output folder: <stem>.npy per video + features.json")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="process only shard K of N (1-based; default under torchrun: the rank)")
    add_device(p)
    p.add_argument("--batch-size", type=POSITIVE_INT, default=8, help="snippets per forward pass (default 8)")
    add_precision(p)
    p.set_defaults(func=_cmd_extract)
