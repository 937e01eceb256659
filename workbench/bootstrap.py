"""Seeded percentile bootstrap: a 95% interval for a mean score and for a paired difference.

Twenty rows cannot tell a 5-point difference from noise; the interval says so. The percentile
bootstrap (Efron & Tibshirani 1993, ch. 13) resamples the rows with replacement, takes the mean
of each resample, and reads the interval off the 2.5th and 97.5th percentiles of those means.
It assumes nothing about the scores' distribution, which matters for pass/fail scores (0 or 1).

A difference between two variants is *paired*: both were scored on the same rows, and a hard
row is hard for both. Resampling row indices jointly (one draw of indices used for both
variants) is the same as bootstrapping the per-row differences, and is much narrower than two
independent intervals would suggest when the variants agree on most rows.

scipy.stats.bootstrap would do the same (`method="percentile"`, `paired=True`), but scipy is not
a dependency; numpy's seeded `default_rng` makes every interval reproducible from its seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import WorkbenchError

CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 2000
MIN_RESAMPLES = 100  # fewer leaves under 3 resamples in each 2.5% tail
MAX_RESAMPLES = 100_000
BLOCK_VALUES = 1_000_000  # indices drawn at a time (8 MB)


class BootstrapError(WorkbenchError):
    """Values or settings a bootstrap cannot use, said in one line."""


@dataclass(frozen=True)
class Interval:
    """An estimate with its bootstrap interval: `low` ≤ `estimate` ≤ `high` in practice."""

    estimate: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly on one side of 0: a difference unlikely to be noise."""
        return self.low > 0 or self.high < 0


def check_resamples(resamples: int) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, int):
        raise BootstrapError(f"resamples must be a whole number, got {resamples!r}")
    if not MIN_RESAMPLES <= resamples <= MAX_RESAMPLES:
        raise BootstrapError(
            f"resamples must be between {MIN_RESAMPLES} and {MAX_RESAMPLES}, got {resamples}"
        )


def bootstrap_mean(
    values: Sequence[float], *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> Interval:
    """The mean of `values` with its percentile-bootstrap 95% interval."""
    data = _array(values, "values")
    return _interval(data, resamples, seed)


def bootstrap_paired_difference(
    before: Sequence[float],
    after: Sequence[float],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """mean(after) − mean(before) over the same rows, with row indices resampled jointly."""
    a, b = _array(before, "before"), _array(after, "after")
    if a.shape != b.shape:
        raise BootstrapError(
            f"a paired difference needs the same rows on both sides: {a.size} and {b.size} values"
        )
    return _interval(b - a, resamples, seed)


def _array(values: Sequence[float], name: str) -> np.ndarray:
    data = np.asarray(values, dtype=float)
    if data.ndim != 1 or data.size == 0:
        raise BootstrapError(f"no {name} to bootstrap: at least one row is needed")
    if not np.all(np.isfinite(data)):
        raise BootstrapError(f"{name} holds a value that is not a finite number")
    return data


def _interval(data: np.ndarray, resamples: int, seed: int) -> Interval:
    check_resamples(resamples)
    rng = np.random.default_rng(seed)
    # Drawn in blocks so a long dataset never holds all resamples × rows indices at once.
    block = max(1, BLOCK_VALUES // data.size)
    means = np.concatenate(
        [
            data[rng.integers(0, data.size, size=(min(block, resamples - start), data.size))].mean(
                axis=1
            )
            for start in range(0, resamples, block)
        ]
    )
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(data.mean()), float(low), float(high))
