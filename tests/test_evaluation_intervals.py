"""Seed statistics: t intervals (SciPy's one-sample t test is the oracle), paired
differences, and the benchmark / training split of the variance."""

import numpy as np
import pytest
from scipy import stats

from rgbtad.evaluation.intervals import paired_difference, seed_interval, variance_components


def test_seed_interval_equals_the_one_sample_t_interval():
    values = [41.4, 47.2, 43.3, 53.1, 45.0]
    got = seed_interval(values, confidence=0.95)
    want = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    assert got.mean == pytest.approx(np.mean(values)) and got.std == pytest.approx(np.std(values, ddof=1))
    assert (got.low, got.high) == (pytest.approx(want.low), pytest.approx(want.high))
    assert got.n == 5 and not seed_interval([-1.0, 2.0]).excludes_zero and seed_interval([1.0, 1.1, 1.2]).excludes_zero
    one = seed_interval([3.0])
    assert one.mean == 3.0 and one.low is None and not one.excludes_zero


def test_paired_differences_cancel_what_the_seeds_share():
    # seeds spread the two cells widely, but b beats a by about one point on every seed
    a = {0: 40.0, 1: 50.0, 2: 45.0, 3: 55.0, 4: 42.0}
    b = {s: v + 1.0 + 0.1 * s for s, v in a.items()}
    b[9] = 99.0  # a seed only one cell has is left out
    diff = paired_difference(b, a)
    assert diff.n == 5 and diff.mean == pytest.approx(1.2) and diff.excludes_zero
    assert diff.high - diff.low < 0.1 * (seed_interval(list(a.values())).high - seed_interval(list(a.values())).low)
    with pytest.raises(ValueError, match="share no seed"):
        paired_difference({0: 1.0}, {1: 1.0})


def test_variance_components_of_a_balanced_design():
    values = {(0, 0): 1.0, (0, 1): 3.0, (1, 0): 5.0, (1, 1): 7.0}
    # within-benchmark mean square 2; between mean square 2 * ((2-4)^2 + (6-4)^2) = 16
    assert variance_components(values) == {"benchmark": 7.0, "training": 2.0, "benchmark_seeds": 2,
                                           "training_seeds": 2}
    # a benchmark that explains nothing: its estimate is clipped at zero, not negative
    flat = {(0, 0): 1.0, (0, 1): 3.0, (1, 0): 3.0, (1, 1): 1.0}
    assert variance_components(flat)["benchmark"] == 0.0
    with pytest.raises(ValueError, match="same two or more training seeds"):
        variance_components({(0, 0): 1.0, (0, 1): 2.0, (1, 0): 3.0})
