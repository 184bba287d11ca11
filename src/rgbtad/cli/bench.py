"""rgbtad bench: the RGB-only pipeline timed against two-stream TV-L1 and DIS pipelines."""

from __future__ import annotations

import argparse

from rgbtad.cli.arguments import COUNT, POSITIVE, POSITIVE_INT, add_device, add_precision
from rgbtad.core.paths import check_writable_output


def _cmd_bench(args: argparse.Namespace) -> None:
    from rgbtad.apps.bench import BenchSettings, run_bench
    from rgbtad.apps.bench_report import format_report
    from rgbtad.core.atomic import write_json
    from rgbtad.video.decode import parse_size

    if args.json:
        check_writable_output(args.json, "--json")
    settings = BenchSettings(backbone=args.backbone, snippet_frames=args.snippet_frames, stride=args.stride,
                             size=parse_size(args.size), fps=args.fps, batch_size=args.batch_size,
                             repeats=args.repeats, tvl1_pairs=args.tvl1_pairs,
                             device=args.device, precision=args.precision, runtime=args.runtime,
                             detector_width=args.detector_width)
    report = run_bench(args.video, settings, progress=not args.quiet)
    print(format_report(report))
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time the RGB-only pipeline against two-stream TV-L1 and DIS pipelines")
    p.add_argument("video", help="video to time the pipelines on (decoded into memory: a few minutes at most)")
    p.add_argument("--json", default=None, help="write the stage times here")
    p.add_argument("--backbone", default="tsm_r18", help="RGB and flow backbone, random weights (default tsm_r18)")
    p.add_argument("--snippet-frames", type=POSITIVE_INT, default=8, help="frames per snippet (default 8)")
    p.add_argument("--stride", type=POSITIVE_INT, default=16,
                   help="frames between snippets (default 16: about 0.5 s at 30 fps)")
    p.add_argument("--size", default="224", help="P (short side) or WxH (default 224)")
    p.add_argument("--fps", type=POSITIVE, default=None, help="resample to this frame rate (default: native)")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=8, help="snippets per backbone forward pass (default 8)")
    p.add_argument("--repeats", type=POSITIVE_INT, default=3,
                   help="runs of a short stage (under 2 s), median reported (default 3)")
    p.add_argument("--tvl1-pairs", type=COUNT, default=24,
                   help="TV-L1 frame pairs computed, then extrapolated to the video (default 24; 0: all)")
    add_device(p)
    add_precision(p)
    p.add_argument("--runtime", default="onnxruntime-int8", choices=["torch", "onnxruntime", "onnxruntime-int8"],
                   help="every pipeline's backbones: ONNX Runtime in int8 (default; as `rgbtad detect --onnx` after "
                        "`rgbtad export --with-backbone --int8-calibration`, here calibrated on the video's own "
                        "snippets), ONNX Runtime in float32, or PyTorch (as plain `rgbtad detect`)")
    p.add_argument("--detector-width", type=POSITIVE_INT, default=512,
                   help="channels of the ActionFormer's embedding, neck and heads (default 512, as THUMOS)")
    p.add_argument("--quiet", action="store_true", help="no stage messages")
    p.set_defaults(func=_cmd_bench)
