"""Intervals, paired differences, Holm's correction and margin shares against hand computations."""

import math

import pytest

from encsteal import stats


def test_mean_interval_matches_the_t_formula():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    iv = stats.mean_interval(x)
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t_{0.975, 4} * s / sqrt(n)
    assert (iv.mean, iv.low, iv.high, iv.n) == pytest.approx((3.0, 3.0 - half, 3.0 + half, 5))
    assert iv.excludes(0.0) and not iv.excludes(3.5)
    with pytest.raises(ValueError, match="at least 2 values"):
        stats.mean_interval([1.0])


def test_paired_difference_uses_the_pairing():
    a = [10.0, 20.0, 30.0, 40.0, 50.0]
    b = [9.0, 19.5, 28.5, 39.0, 49.0]  # always a little lower, but with a large spread across seeds
    diff, p = stats.paired_difference(a, b)
    assert diff.mean == pytest.approx(1.0) and diff.excludes(0.0) and p < 0.01
    same, p_same = stats.paired_difference(a, a)
    assert (same.mean, p_same) == (0.0, 1.0) and not same.excludes(0.0)
    with pytest.raises(ValueError, match="same seeds"):
        stats.paired_difference(a, b[:3])


def test_holm_steps_down():
    assert stats.holm([0.01, 0.04, 0.03, 0.2]) == [True, False, False, False]  # 0.03 > 0.05/3
    assert stats.holm([0.001, 0.012, 0.02]) == [True, True, True]  # 0.001<0.05/3, 0.012<0.025, 0.02<0.05
    assert stats.holm([]) == []


def test_margin_share():
    assert stats.margin_share(75.0, 80.0, 60.0) == pytest.approx(0.75)
    assert stats.margin_share(55.0, 80.0, 60.0) < 0
    with pytest.raises(ValueError, match="no margin"):
        stats.margin_share(70.0, 60.0, 60.0)
