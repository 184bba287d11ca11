"""rgbtad import-actionformer: an official ActionFormer config and checkpoint as a run directory."""

from __future__ import annotations

import argparse

from rgbtad.cli.arguments import add_overwrite
from rgbtad.core.paths import check_writable_output


def _cmd_import_actionformer(args: argparse.Namespace) -> None:
    from rgbtad.compat.actionformer import import_actionformer

    check_writable_output(args.out, "--out", folder=True)
    import_actionformer(args.config, args.checkpoint, args.out, annotations=args.ann, overwrite=args.overwrite)
    print(f"run directory: {args.out}")


def add_import_actionformer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-actionformer",
                       help="turn an official ActionFormer config + checkpoint into a run directory")
    p.add_argument("--config", required=True, help="ActionFormer YAML config (e.g. thumos_i3d.yaml)")
    p.add_argument("--checkpoint", required=True, help="ActionFormer checkpoint (.pth.tar)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--ann", default=None,
                   help="annotation JSON for class names (default: the one named in the config)")
    add_overwrite(p)
    p.set_defaults(func=_cmd_import_actionformer)
