"""Command-line interface: one subcommand per pipeline stage.

This module only parses arguments, calls the library and prints. Heavy imports (torch,
OpenCV, PyAV) happen inside each command so that `rgbtad evaluate` never loads torch.
"""

from __future__ import annotations

import argparse
import logging
import sys

from rgbtad import __version__
from rgbtad.errors import RgbtadError


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from rgbtad.evaluation.detection import evaluate_detection_files, parse_tiou
    from rgbtad.utils.atomic import write_json

    metrics = evaluate_detection_files(
        args.gt, args.pred, split=args.split, tiou_thresholds=parse_tiou(args.tiou)
    )
    print(metrics.format_table())
    if args.json:
        write_json(args.json, metrics.to_json())
        print(f"wrote {args.json}")


def _cmd_train(args: argparse.Namespace) -> None:
    from rgbtad.config import load_config
    from rgbtad.engine.trainer import train

    cfg = load_config(args.config, args.set)
    summary = train(cfg, args.out, resume=args.resume, device=args.device)
    if summary.get("average_mAP") is not None:
        print(f"average mAP {100 * summary['average_mAP']:.2f} (EMA weights, split '{cfg.data.val_split}')")
    print(f"run directory: {args.out}")


def _cmd_infer(args: argparse.Namespace) -> None:
    from rgbtad.engine.inference import infer_features

    count = infer_features(
        args.run_dir,
        features_dir=args.features,
        annotations=args.ann,
        split=args.split,
        out_path=args.out,
        device=args.device,
    )
    print(f"wrote detections for {count} videos to {args.out}")


def _cmd_import_actionformer(args: argparse.Namespace) -> None:
    from rgbtad.compat.actionformer import import_actionformer

    import_actionformer(args.config, args.checkpoint, args.out, annotations=args.ann)
    print(f"run directory: {args.out}")


def _cmd_toy_features(args: argparse.Namespace) -> None:
    from rgbtad.data.toy_features import make_toy_features

    ann = make_toy_features(args.out_dir, num_train=args.train, num_test=args.test, seed=args.seed)
    print(f"wrote features to {ann.parent / 'features'} and annotations to {ann}")


def _add_toy_features(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("toy-features",
                       help="generate a small feature set with detectable actions (examples, tests)")
    p.add_argument("out_dir", help="folder to write features/ and annotations.json into")
    p.add_argument("--train", type=int, default=40, help="number of training videos")
    p.add_argument("--test", type=int, default=20, help="number of test videos")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_toy_features)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="mAP of detections against ground truth (ActivityNet protocol)")
    p.add_argument("--gt", required=True, help="ground truth, ActionFormer-format JSON")
    p.add_argument("--pred", required=True, help="detections, ActivityNet results JSON")
    p.add_argument("--split", default=None, help="subset of the ground truth to evaluate (default: all)")
    p.add_argument(
        "--tiou", default="thumos",
        help="'thumos' (0.3:0.1:0.7), 'anet' (0.5:0.05:0.95) or a comma list such as 0.3,0.5",
    )
    p.add_argument("--json", default=None, help="write {tiou, mAP, average_mAP} here")
    p.set_defaults(func=_cmd_evaluate)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a detector on pre-extracted features")
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, resolved config)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=10 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.set_defaults(func=_cmd_train)


def _add_infer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infer", help="detect actions from pre-extracted features with a trained run")
    p.add_argument("run_dir", help="run directory written by `rgbtad train` or `rgbtad import-actionformer`")
    p.add_argument("--features", required=True, help="folder of per-video feature files")
    p.add_argument("--ann", required=True, help="annotation file (video list, fps, duration, class names)")
    p.add_argument("--split", default=None, help="subset to run on (default: the run's validation split)")
    p.add_argument("--out", required=True, help="output ActivityNet results JSON")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.set_defaults(func=_cmd_infer)


def _add_import_actionformer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-actionformer",
                       help="turn an official ActionFormer config + checkpoint into a run directory")
    p.add_argument("--config", required=True, help="ActionFormer YAML config (e.g. thumos_i3d.yaml)")
    p.add_argument("--checkpoint", required=True, help="ActionFormer checkpoint (.pth.tar)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--ann", default=None,
                   help="annotation JSON for class names (default: the one named in the config)")
    p.set_defaults(func=_cmd_import_actionformer)


_SUBCOMMANDS = [_add_toy_features, _add_train, _add_infer, _add_evaluate, _add_import_actionformer]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rgbtad",
        description="Temporal action detection from RGB video, with motion distilled at training time.",
    )
    parser.add_argument("--version", action="version", version=f"rgbtad {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
    )
    try:
        args.func(args)
    except RgbtadError as err:
        print(f"rgbtad {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rgbtad {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
