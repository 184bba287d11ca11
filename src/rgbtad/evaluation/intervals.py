"""Figures over seeds: means and paired differences with Student-t confidence intervals, and
the split of seed-to-seed variance into its sources.

A figure from a few seeds is a mean and an interval, not a number. `seed_interval`: the mean
of per-seed values and its two-sided t interval (n - 1 degrees of freedom). `paired_difference`:
the same for the per-seed differences of two cells run on the same seeds (the same benchmark
and the same RGB backbone per seed); what the two runs of a seed share cancels, so the
interval is much tighter than the two cells' own intervals would suggest. With one seed
there is no interval (``low``/``high``/``std`` None).

`variance_components`: when each benchmark seed (a newly rendered benchmark) is trained with
several training seeds (same data, another initialisation and sampling), the one-way
random-effects analysis of variance splits the spread into the part from the benchmark and
the part from training (method of moments, balanced design; a negative estimate is 0).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

from scipy import stats

__all__ = ["Interval", "paired_difference", "seed_interval", "variance_components"]


@dataclass(frozen=True)
class Interval:
    """A mean over `n` seeds, its sample standard deviation and confidence interval."""

    mean: float
    low: float | None
    high: float | None
    std: float | None
    n: int
    confidence: float

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly above or wholly below zero."""
        return self.low is not None and (self.low > 0 or self.high < 0)

    def to_dict(self) -> dict:
        return asdict(self)


def seed_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """The mean of `values` (one per seed) with its two-sided t interval."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return Interval(mean, None, None, None, 1, confidence)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, std, n, confidence)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], confidence: float = 0.95) -> Interval:
    """``a - b`` per seed over the seeds both have, with its t interval."""
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError("the two cells share no seed")
    return seed_interval([a[s] - b[s] for s in common], confidence)


def variance_components(values: Mapping[tuple[int, int], float]) -> dict[str, float]:
    """Variance from the benchmark and from training, from values keyed by (benchmark seed,
    training seed); every benchmark seed needs the same training seeds (two or more)."""
    groups: dict[int, list[float]] = {}
    for (bench, _), value in sorted(values.items()):
        groups.setdefault(bench, []).append(float(value))
    sizes = {len(v) for v in groups.values()}
    if len(groups) < 2 or len(sizes) != 1 or min(sizes) < 2:
        raise ValueError("need two or more benchmark seeds, each with the same two or more training seeds")
    k, r = len(groups), sizes.pop()
    means = [math.fsum(v) / r for v in groups.values()]
    grand = math.fsum(means) / k
    within = math.fsum((x - m) ** 2 for v, m in zip(groups.values(), means) for x in v) / (k * (r - 1))
    between = r * math.fsum((m - grand) ** 2 for m in means) / (k - 1)
    return {"benchmark": max((between - within) / r, 0.0), "training": within,
            "benchmark_seeds": k, "training_seeds": r}
