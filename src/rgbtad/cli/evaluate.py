"""rgbtad evaluate: mAP of detections against ground truth (ActivityNet protocol); never loads torch."""

from __future__ import annotations

import argparse

from rgbtad.core.paths import check_writable_output


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from rgbtad.core.atomic import write_json
    from rgbtad.evaluation.detection import evaluate_detection_files, parse_tiou

    for path, option in ((args.json, "--json"), (args.plot, "--plot")):
        if path:
            check_writable_output(path, option)
    metrics = evaluate_detection_files(
        args.gt, args.pred, split=args.split, tiou_thresholds=parse_tiou(args.tiou),
        strict=args.strict, drop_invalid=args.drop_invalid,
    )
    print(metrics.format_table())
    if args.json:
        write_json(args.json, metrics.to_json())
        print(f"wrote {args.json}")
    if args.plot:
        from rgbtad.viz.metrics_plots import plot_per_class_ap

        plot_per_class_ap(metrics, args.plot)
        print(f"wrote {args.plot}")


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="mAP of detections against ground truth (ActivityNet protocol)")
    p.add_argument("--gt", required=True, help="ground truth, ActionFormer-format JSON")
    p.add_argument("--pred", required=True, help="detections, ActivityNet results JSON")
    p.add_argument("--split", default=None, help="subset of the ground truth to evaluate (default: all)")
    p.add_argument(
        "--tiou", default="thumos",
        help="'thumos' (0.3:0.1:0.7), 'anet' (0.5:0.05:0.95) or a comma list such as 0.3,0.5",
    )
    p.add_argument("--json", default=None, help="write {tiou, mAP, average_mAP} here")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="write a bar chart of per-class AP (averaged over the thresholds) here")
    p.add_argument("--strict", action="store_true",
                   help="fail on a detection whose label is not a class of the ground truth. "
                        "Default: such detections are ignored, as ActionFormer's evaluator "
                        "does, with a warning. Either way, detections on videos outside the "
                        "evaluated ground truth count as false positives of their class "
                        "(also as the reference does), with a warning")
    p.add_argument("--drop-invalid", action="store_true",
                   help="leave out detections whose segment is reversed, empty or not finite (end <= start), "
                        "with a warning. Default: such a detection is an error")
    p.set_defaults(func=_cmd_evaluate)
