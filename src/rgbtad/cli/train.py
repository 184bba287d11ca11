"""rgbtad train and rgbtad train-backbone: a detector on features, a snippet backbone on videos."""

from __future__ import annotations

import argparse

from rgbtad.cli.arguments import add_device, add_overwrite
from rgbtad.core.paths import check_writable_output


def _add_run_options(p: argparse.ArgumentParser, set_example: str) -> None:
    """The options both trainings take, in the same order: overrides, resume, overwrite, device."""
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config value, e.g. {set_example} (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    add_overwrite(p)
    add_device(p)


def _cmd_train(args: argparse.Namespace) -> None:
    from rgbtad.config import load_config
    from rgbtad.training.trainer import train

    check_writable_output(args.out, "--out", folder=True)
    cfg = load_config(args.config, args.set)
    summary = train(cfg, args.out, resume=args.resume, overwrite=args.overwrite, device=args.device)
    if summary.get("average_mAP") is not None:
        print(f"average mAP {100 * summary['average_mAP']:.2f} (EMA weights, split '{cfg.data.val_split}')")
    print(f"run directory: {args.out}")


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a detector on pre-extracted features")
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, resolved config)")
    _add_run_options(p, "--set train.epochs=10")
    p.set_defaults(func=_cmd_train)


def _cmd_train_backbone(args: argparse.Namespace) -> None:
    from rgbtad.training.backbone_config import load_backbone_config
    from rgbtad.training.backbones import train_backbone

    check_writable_output(args.out, "--out", folder=True)
    overrides = list(args.set) + ([f"precision={args.precision}"] if args.precision else [])
    cfg = load_backbone_config(args.config, overrides)
    result = train_backbone(cfg, args.out, resume=args.resume, overwrite=args.overwrite, device=args.device)
    if result.val is not None:
        val = result.val
        print(f"snippet accuracy {100 * val['accuracy']:.1f} %, balanced {100 * val['balanced_accuracy']:.1f} % "
              f"(split '{cfg.val_subset}')")
    print(f"backbone run directory: {args.out} (weights: {result.weights})")


def add_train_backbone(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-backbone",
                       help="train (or distil) a snippet backbone on trimmed snippets of annotated videos")
    p.add_argument("config", help="YAML backbone config (see configs/backbone_*.yaml)")
    p.add_argument("--out", required=True,
                   help="backbone run directory (backbone.pt, head.pt, summary.json, logs, checkpoints)")
    _add_run_options(p, "--set epochs=10 or --set snippets.frames=16")
    p.add_argument("--precision", default=None, choices=["auto", "fp32", "bf16"],
                   help="backbone arithmetic (default: the config's 'precision', itself auto by default)")
    p.set_defaults(func=_cmd_train_backbone)
