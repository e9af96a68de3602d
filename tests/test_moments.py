"""adamref.lab.moments: the expectation helpers and the bias-correction ablation."""

import numpy as np
import pytest

from adamref import reference
from adamref.lab import moments
from adamref.lab.optimizers import Adam


def test_expected_ema_is_the_unrolled_sum():
    rng = np.random.default_rng(0)
    x, beta = rng.standard_normal(50), 0.9
    t = np.arange(1, 51)
    unrolled = [(1 - beta) * np.sum(beta ** (k - t[:k]) * x[:k]) for k in t]
    assert np.allclose(moments.expected_ema(x, beta), unrolled, rtol=1e-12)


def test_zeta_vanishes_for_constant_moments_and_is_the_lag_for_linear_drift():
    t = np.arange(1, 201)
    for beta in [0.5, 0.9, 0.999]:
        assert np.allclose(moments.zeta(np.full(200, 3.0), beta), 0, atol=1e-12)
        lag = beta * (1 - beta**t) / (1 - beta) - t * beta**t
        assert np.allclose(moments.zeta(0.01 * t, beta), -0.01 * lag, rtol=1e-9, atol=1e-14)


def test_monte_carlo_matches_the_expectation():
    T = 300
    mean = 1 + 0.01 * np.arange(1, T + 1)
    mc = moments.monte_carlo_moments(mean, 0.5, 0.9, 0.99, runs=4000, seed=3)
    assert mc.runs == 4000 and mc.m.shape == (T,)
    assert np.all(np.abs(mc.m - moments.expected_ema(mean, 0.9)) <= 5 * mc.m_se)
    assert np.all(np.abs(mc.v - moments.expected_ema(mean**2 + 0.25, 0.99)) <= 5 * mc.v_se)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ablation_with_both_corrections_is_the_reference_bitwise(dtype):
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal(64).astype(dtype)
    p1, m1, v1 = p0.copy(), np.zeros(64, dtype), np.zeros(64, dtype)
    p2, m2, v2 = p0.copy(), np.zeros(64, dtype), np.zeros(64, dtype)
    for t in range(1, 30):
        g = rng.standard_normal(64).astype(dtype)
        reference.adam_step(p1, g, m1, v1, t, lr=0.01, beta1=0.8, beta2=0.99)
        moments.adam_step_ablation(p2, g, m2, v2, t, lr=0.01, beta1=0.8, beta2=0.99)
    for x, y in [(p1, p2), (m1, m2), (v1, v2)]:
        assert np.array_equal(x, y)


def test_uncorrected_steps_follow_the_closed_form():
    t = np.arange(1, 101)
    p, m, v = np.zeros(1), np.zeros(1), np.zeros(1)
    steps = []
    for k in t:
        before = p[0]
        moments.adam_step_ablation(p, np.full(1, -2.0), m, v, int(k), lr=1.0, eps=0.0,
                                   correct_first=False, correct_second=False)
        steps.append(p[0] - before)
    assert np.allclose(steps, moments.uncorrected_factor(t), rtol=1e-12)


def test_ablation_backend_drives_the_optimizer_class():
    opt = Adam(backend=moments.ABLATION, lr=0.1, correct_first=False, correct_second=False)
    p = np.zeros(3)
    opt.step(p, np.array([1.0, -1.0, 2.0]))
    assert np.allclose(p, -0.1 * 0.1 / np.sqrt(0.001) * np.array([1, -1, 1]), rtol=1e-6)


def test_ablation_validates_its_input():
    p, m, v = np.zeros(3), np.zeros(3), np.zeros(3)
    with pytest.raises(TypeError, match="correct_first"):
        moments.adam_step_ablation(p, p.copy(), m, v, 1, correct_first=1)
    with pytest.raises(ValueError, match="t must be"):
        moments.adam_step_ablation(p, p.copy(), m, v, 0)
    with pytest.raises(ValueError, match="v_max"):
        moments.adam_step_ablation(p, p.copy(), m, v, 1, v_max=np.zeros(3))
