"""Argument types and options that several subcommands share, so that they read the same."""

from __future__ import annotations

import argparse

from rgbtad.core.ranges import describe_range, in_range


def _number(kind: type, interval: str):
    """An argparse type: a `kind` (int or float) in `interval` (`rgbtad.core.ranges`)."""
    def parse(text: str):
        value = kind(text)
        if not in_range(value, interval):
            raise argparse.ArgumentTypeError(f"must be {describe_range(interval)}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse's "invalid int value: 'x'"
    return parse


POSITIVE_INT = _number(int, "(0, inf)")
COUNT = _number(int, "[0, inf)")
POSITIVE = _number(float, "(0, inf)")
SCORE = _number(float, "[0, 1]")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (its files are removed first). Default: refuse")


def add_precision(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="backbone arithmetic: auto (default: bfloat16 autocast only where the CPU or GPU runs "
                        "it natively, else float32), fp32, or bf16 (slow where emulated)")
