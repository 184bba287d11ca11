"""rgbtad ablate: a grid of configs trained and evaluated over several seeds."""

from __future__ import annotations

import argparse

from rgbtad.cli.arguments import POSITIVE_INT, add_device
from rgbtad.core.paths import check_writable_output


def _cmd_ablate(args: argparse.Namespace) -> None:
    from rgbtad.apps.ablate import run_ablation
    from rgbtad.apps.ablate_results import format_table

    check_writable_output(args.out, "--out", folder=True)
    results = run_ablation(args.grid, args.out, seeds=args.seeds, device=args.device)
    print(format_table(results))
    print(f"wrote {args.out}/results.md and {args.out}/results.json")


def add_ablate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablate", help="train and evaluate a grid of configs over several seeds; "
                                      "a Markdown table of mAP, spread and gain")
    p.add_argument("grid", help="grid YAML: a base config, then cells and/or axes of overrides "
                                "(format: rgbtad.apps.ablate, example: configs/ablate_synthetic.yaml)")
    p.add_argument("--out", required=True,
                   help="output folder: cells/<name>/seed<k>/ run dirs (finished ones are reused), "
                        "results.json, results.md")
    p.add_argument("--seeds", type=POSITIVE_INT, default=None,
                   help="train with seeds 0..N-1 (default: the grid's 'seeds', else 3)")
    add_device(p)
    p.set_defaults(func=_cmd_ablate)
