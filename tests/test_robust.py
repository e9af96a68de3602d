"""adamref.lab.robust: printing results that do not depend on the last bit."""

import math

import numpy as np
import pytest

from adamref.lab.robust import choose, describe_best, fmt_loss, near_best


def test_fmt_loss_prints_significant_digits():
    assert fmt_loss(0.0123) == "0.012"
    assert fmt_loss(0.0123, 3) == "0.0123"
    assert fmt_loss(123456.0, 1) == "1e+05"


@pytest.mark.parametrize("x", [math.inf, -math.inf, math.nan, np.float64("nan"), 2e6])
def test_fmt_loss_says_diverged_above_the_threshold_or_when_not_finite(x):
    assert fmt_loss(x, diverged_above=1e6) == "diverged"


def test_fmt_loss_threshold_is_exclusive_and_default_is_finite_only():
    assert fmt_loss(1e6, 1, diverged_above=1e6) == "1e+06"
    assert fmt_loss(3e89, 1) == "3e+89"
    assert fmt_loss(math.inf) == "diverged"


def test_fmt_loss_floor():
    assert fmt_loss(6e-105, floor=1e-12) == "< 1e-12"
    assert fmt_loss(0.0, floor=1e-20) == "< 1e-20"
    assert fmt_loss(1e-12, floor=1e-12) == "1e-12"
    assert fmt_loss(-1e-30, floor=1e-12) == "-1e-30"     # only 0 <= x < floor


def test_near_best_keeps_every_key_within_the_tolerance_in_order():
    scores = {"SGD": 0.0224, "RMSProp": 0.0233, "Adam": 0.0231}
    assert near_best(scores, 0.10) == ["SGD", "RMSProp", "Adam"]
    assert near_best(scores, 0.035) == ["SGD", "Adam"]
    assert near_best(scores, 0.0) == ["SGD"]


def test_near_best_largest():
    acc = {"SGD": 0.964, "RMSProp": 0.972, "Adam": 0.969}
    assert near_best(acc, 0.01, largest=True) == ["SGD", "RMSProp", "Adam"]
    assert near_best(acc, 0.005, largest=True) == ["RMSProp", "Adam"]
    assert near_best(acc, 0.0, largest=True) == ["RMSProp"]


def test_near_best_skips_non_finite_values():
    scores = {0.1: math.inf, 0.3: math.nan, 1.0: 2.0, 3.0: 2.1}
    assert near_best(scores, 0.1) == [1.0, 3.0]
    assert near_best({"a": math.inf, "b": math.nan}, 0.1) == []
    assert near_best({}, 0.1) == []


def test_near_best_is_insensitive_to_last_bit_changes_of_a_tie():
    # the argmin of two values one ulp apart flips; the tied set does not
    a = 0.0061
    b = np.nextafter(a, 1.0)
    for x, y in [(a, b), (b, a)]:
        assert near_best({"RMSProp": x, "Adam": y}, 0.05) == ["RMSProp", "Adam"]
        assert choose({"RMSProp": x, "Adam": y}, 0.05) == "RMSProp"


def test_near_best_rejects_a_negative_tolerance():
    with pytest.raises(ValueError):
        near_best({"a": 1.0}, -0.1)


def test_describe_best():
    assert describe_best(["Adam"], 0.1) == "Adam"
    assert describe_best(["RMSProp", "Adam"], 0.1) == "RMSProp ≈ Adam (within 10%)"
    assert describe_best(["a", "b", "c"], 0.05) == "a ≈ b ≈ c (within 5%)"
    assert describe_best([], 0.1) == "none (all diverged)"


def test_choose_takes_the_first_key_within_the_tolerance():
    grid = {0.01: 0.0087, 0.03: 0.0070, 0.1: 0.0120}
    assert choose(grid, 0.10) == 0.03
    assert choose(grid, 0.30) == 0.01
    assert choose({0.1: 0.9, 0.3: 0.95}, 0.1, largest=True) == 0.1
    with pytest.raises(ValueError):
        choose({0.1: math.inf}, 0.1)


def test_doctests():
    import doctest

    import adamref.lab.robust

    assert doctest.testmod(adamref.lab.robust).failed == 0
