"""Command-line interface: one subcommand per pipeline stage, one module per subcommand (or pair).

The modules only parse arguments, call the library and print. Heavy imports (torch, OpenCV,
PyAV) happen inside each command so that `rgbtad evaluate` never loads torch.
"""

from __future__ import annotations

import argparse
import logging
import sys

from rgbtad import __version__
from rgbtad.cli.ablate import add_ablate
from rgbtad.cli.bench import add_bench
from rgbtad.cli.demo import add_demo
from rgbtad.cli.detect import add_detect
from rgbtad.cli.evaluate import add_evaluate
from rgbtad.cli.export import add_export
from rgbtad.cli.extract import add_extract
from rgbtad.cli.import_actionformer import add_import_actionformer
from rgbtad.cli.import_tridet import add_import_tridet
from rgbtad.cli.infer import add_infer
from rgbtad.cli.motion import add_motion
from rgbtad.cli.plot import add_plot
from rgbtad.cli.synthetic import add_synth, add_toy_features
from rgbtad.cli.train import add_train, add_train_backbone
from rgbtad.core.errors import RgbtadError

#: In the order `rgbtad --help` lists them.
_SUBCOMMANDS = [add_demo, add_toy_features, add_train, add_train_backbone, add_infer, add_evaluate,
                add_import_actionformer, add_import_tridet, add_motion, add_extract, add_plot, add_synth, add_detect,
                add_bench, add_export, add_ablate]


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line, exit code 2, like every other user error (`main`)."""

    def error(self, message: str):
        raise RgbtadError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    try:
        args = parser.parse_args(argv)
    except RgbtadError as err:  # a usage error (`_Parser.error`), already prefixed with the command
        print(err, file=sys.stderr)
        return 2
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
