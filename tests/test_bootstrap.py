"""The seeded percentile bootstrap, checked against intervals worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.bootstrap import (
    BootstrapError,
    bootstrap_mean,
    bootstrap_paired_difference,
)

MANY = 20_000  # enough resamples that the empirical percentiles land on the exact ones


def exact_interval(ones: int, n: int) -> tuple[float, float]:
    """The percentile-bootstrap 95% interval of the mean of `ones` ones and n − ones zeros,
    worked out exactly: a resample's sum is Binomial(n, ones / n), so its 2.5th and 97.5th
    percentiles are the smallest k whose cumulative probability reaches 0.025 and 0.975."""
    p = ones / n
    cdf, acc = [], 0.0
    for k in range(n + 1):
        acc += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        cdf.append(acc)
    for q in (0.025, 0.975):  # the hand value is only unambiguous away from a step
        assert all(abs(c - q) > 0.01 for c in cdf), (ones, n, cdf)
    low = next(k for k in range(n + 1) if cdf[k] >= 0.025)
    high = next(k for k in range(n + 1) if cdf[k] >= 0.975)
    return low / n, high / n


@pytest.mark.parametrize(("ones", "n"), [(1, 4), (3, 4), (7, 8), (5, 10), (18, 20)])
def test_the_mean_interval_matches_the_exact_one(ones: int, n: int) -> None:
    values = [1.0] * ones + [0.0] * (n - ones)
    found = bootstrap_mean(values, resamples=MANY, seed=7)
    assert found.estimate == pytest.approx(ones / n)
    assert (found.low, found.high) == pytest.approx(exact_interval(ones, n))


def test_one_of_four_by_hand() -> None:
    # sums of 4 draws from {0,0,0,1}: P(0..4) = .316 .422 .211 .047 .004, cumulative
    # .316 .738 .949 .996 1 → the 2.5th percentile is 0, the 97.5th is 3 of 4.
    found = bootstrap_mean([0, 0, 0, 1], resamples=MANY, seed=0)
    assert (found.estimate, found.low, found.high) == pytest.approx((0.25, 0.0, 0.75))
    assert not found.excludes_zero


def test_a_paired_difference_resamples_rows_jointly() -> None:
    # The per-row differences are [0, 0, 0, 1]: the same interval as above. Two independent
    # intervals (before: 3 of 4, after: 4 of 4) would say nothing this precise.
    before, after = [1, 1, 1, 0], [1, 1, 1, 1]
    found = bootstrap_paired_difference(before, after, resamples=MANY, seed=0)
    assert (found.estimate, found.low, found.high) == pytest.approx((0.25, 0.0, 0.75))


def test_a_clear_difference_excludes_zero() -> None:
    before, after = [0.0] * 8, [1.0] * 7 + [0.0]
    found = bootstrap_paired_difference(before, after, resamples=MANY, seed=3)
    assert (found.low, found.high) == pytest.approx(exact_interval(7, 8))
    assert found.low > 0 and found.excludes_zero
    worse = bootstrap_paired_difference(after, before, resamples=MANY, seed=3)
    assert worse.high < 0 and worse.excludes_zero


def test_constant_scores_have_no_width() -> None:
    found = bootstrap_mean([0.5] * 6, resamples=200, seed=1)
    assert (found.estimate, found.low, found.high) == (0.5, 0.5, 0.5)
    same = bootstrap_paired_difference([1, 0, 1], [1, 0, 1], resamples=200, seed=1)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    assert not same.excludes_zero


def test_the_same_seed_gives_the_same_interval() -> None:
    values = list(np.random.default_rng(11).random(25))
    first = bootstrap_mean(values, resamples=500, seed=42)
    assert bootstrap_mean(values, resamples=500, seed=42) == first
    assert bootstrap_mean(values, resamples=500, seed=43) != first
    assert first.low <= first.estimate <= first.high


def test_a_long_dataset_is_resampled_in_blocks() -> None:
    values = [float(i % 2) for i in range(5000)]
    found = bootstrap_mean(values, resamples=1000, seed=0)
    assert found.estimate == 0.5
    assert 0.47 < found.low < 0.5 < found.high < 0.53


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bootstrap_mean([], resamples=200), "at least one row"),
        (lambda: bootstrap_mean([1.0, float("nan")], resamples=200), "not a finite number"),
        (lambda: bootstrap_mean([1.0], resamples=10), "between 100 and 100000"),
        (lambda: bootstrap_mean([1.0], resamples=10**6), "between 100 and 100000"),
        (
            lambda: bootstrap_paired_difference([1, 0], [1], resamples=200),
            "same rows on both sides",
        ),
    ],
)
def test_unusable_input_is_refused_in_one_line(call: object, message: str) -> None:
    with pytest.raises(BootstrapError, match=message):
        call()  # type: ignore[operator]
