"""rgbtad import-tridet: an official TriDet config and checkpoint as a run directory."""

from __future__ import annotations

import argparse

from rgbtad.cli.arguments import add_overwrite
from rgbtad.core.paths import check_writable_output


def _cmd_import_tridet(args: argparse.Namespace) -> None:
    from rgbtad.compat.tridet_import import import_tridet

    check_writable_output(args.out, "--out", folder=True)
    import_tridet(args.config, args.checkpoint, args.out, annotations=args.ann, overwrite=args.overwrite)
    print(f"run directory: {args.out}")


def add_import_tridet(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-tridet", help="turn an official TriDet config + checkpoint into a run directory")
    p.add_argument("--config", required=True, help="TriDet YAML config (e.g. thumos_i3d.yaml)")
    p.add_argument("--checkpoint", required=True, help="TriDet checkpoint (.pth.tar)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--ann", default=None,
                   help="annotation JSON for class names (default: the one named in the config)")
    add_overwrite(p)
    p.set_defaults(func=_cmd_import_tridet)
