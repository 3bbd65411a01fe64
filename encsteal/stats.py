"""Small statistics for judged comparisons: means with t intervals over seeds, paired differences,
Holm's correction for several tests, and the share of the victim's margin a copy recovers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided confidence interval (``n`` values)."""

    mean: float
    low: float
    high: float
    n: int

    def excludes(self, value: float = 0.0) -> bool:
        """True when ``value`` lies outside the interval."""
        return value < self.low or value > self.high


def _values(values: Sequence[float], name: str) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"{name} needs at least 2 values (one per seed), got {len(np.atleast_1d(x))}.")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} got a non-finite value: {list(x)}.")
    return x


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and Student-t interval over seeds."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    x = _values(values, "mean_interval")
    mean, sem = float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x)))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1)) * sem
    return Interval(mean, mean - half, mean + half, len(x))


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> tuple[Interval, float]:
    """Interval of the mean of ``a - b`` paired by seed, and the two-sided paired t-test p-value."""
    x, y = _values(a, "paired_difference"), _values(b, "paired_difference")
    if len(x) != len(y):
        raise ValueError(f"Paired values need the same seeds: got {len(x)} and {len(y)} values.")
    diff = x - y
    if np.allclose(diff, diff[0]):  # no spread: the t statistic is undefined
        return Interval(float(diff[0]), float(diff[0]), float(diff[0]), len(diff)), 0.0 if diff[0] else 1.0
    return mean_interval(diff, confidence), float(stats.ttest_rel(x, y).pvalue)


def holm(p_values: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Holm's step-down correction: which of the tests are rejected at family-wise level ``alpha``."""
    p = np.asarray(p_values, dtype=float)
    reject = [False] * len(p)
    for rank, i in enumerate(np.argsort(p)):
        if p[i] > alpha / (len(p) - rank):
            break
        reject[int(i)] = True
    return reject


def margin_share(copy: float, victim: float, random: float) -> float:
    """(copy - random) / (victim - random): the share of the victim's margin over a random-init
    encoder that a copy recovers (1 = as good as the victim, 0 = no better than random)."""
    if victim <= random:
        raise ValueError(
            f"The victim ({victim:.2f}) does not beat the random-init encoder ({random:.2f}): "
            "there is no margin to recover on this task."
        )
    return (copy - random) / (victim - random)
