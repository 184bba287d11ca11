"""Numeric ranges in interval notation, for config keys and command-line options.

``"[0, 1)"``: "[" and "]" include the bound, "(" and ")" exclude it; ``inf`` and ``-inf``
are the open ends. NaN is in no range.
"""

from __future__ import annotations


def _bounds(interval: str) -> tuple[float, float]:
    low, high = interval[1:-1].split(",")
    return float(low), float(high)


def in_range(number: float, interval: str) -> bool:
    low, high = _bounds(interval)
    above = low <= number if interval[0] == "[" else low < number
    below = number <= high if interval[-1] == "]" else number < high
    return above and below  # both False for NaN


def describe_range(interval: str) -> str:
    """Words for an interval: "positive", ">= 0", "finite" or "in [0, 1)"."""
    low, high = _bounds(interval)
    if high == float("inf"):
        if low == float("-inf"):
            return "finite"
        if low == 0:
            return "positive" if interval[0] == "(" else ">= 0"
    return f"in {interval}"
