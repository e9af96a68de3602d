"""adamref.lab.warmup: RAdam's rho_t and r_t against the EMA weights and radam_step,
the inverse chi-square variances against Monte Carlo, the MLP's gradient against
finite differences."""

import numpy as np
import pytest

from adamref.lab.ema import ema_weights
from adamref.lab.warmup import (MLP, adaptive_rate_moments, first_rectified_step,
                                psi_variance_exact, psi_variance_sma, rectification,
                                rho, rho_inf)
from adamref.reference import adam_step, radam_step


@pytest.mark.parametrize("beta2", [0.9, 0.99, 0.999])
@pytest.mark.parametrize("t", [1, 2, 7, 50, 400])
def test_rho_is_the_simple_average_with_the_same_mean_age(beta2, t):
    w = ema_weights(beta2, t)                 # weights of g_1 .. g_t in v_t
    age = np.arange(t - 1, -1, -1)            # g_t has age 0
    mean_age = (w * age).sum() / w.sum()
    # a simple average of the last rho gradients has mean age (rho - 1) / 2
    assert np.isclose(rho(t, beta2), 2 * mean_age + 1, rtol=1e-10)


def test_rho_inf_is_the_limit_and_the_settled_effective_sample_size():
    w = ema_weights(0.99, 5000)
    assert np.isclose(rho(5000, 0.99), rho_inf(0.99))
    assert np.isclose(w.sum() ** 2 / (w * w).sum(), rho_inf(0.99), rtol=1e-9)


@pytest.mark.parametrize("k", [3, 6, 12])
def test_exact_variance_matches_a_monte_carlo_of_the_simple_average(k):
    rng = np.random.default_rng(k)
    n = 400_000
    v = (rng.standard_normal((n, k)) ** 2).mean(axis=1) * 4.0     # sigma = 2
    psi = 1 / np.sqrt(v)
    var = psi.var(ddof=1)
    if k > 8:                                   # psi has four moments: a standard error
        se = np.sqrt(np.mean((psi - psi.mean()) ** 4) - var**2) / np.sqrt(n)
        assert abs(var - psi_variance_exact(k, sigma=2.0)) < 5 * se
    else:                                       # heavy tail: a loose relative check
        assert abs(var / psi_variance_exact(k, sigma=2.0) - 1) < 0.1


def test_first_order_and_exact_variances_meet_for_long_averages():
    for r in [1e3, 1e5]:
        assert np.isclose(psi_variance_sma(r), 1 / (2 * r), rtol=10 / r)
        assert np.isclose(psi_variance_exact(r), 1 / (2 * r), rtol=10 / r)
    assert np.isinf(psi_variance_sma(4.0)) and np.isinf(psi_variance_exact(2.0))
    assert psi_variance_sma(6.0) > psi_variance_exact(6.0)


@pytest.mark.parametrize("beta2", [0.99, 0.999])
def test_rectification_is_the_ratio_of_radam_to_adam_steps(beta2):
    rng = np.random.default_rng(1)
    n, lr = 7, 1e-3
    pa, ma, va = np.zeros(n), np.zeros(n), np.zeros(n)
    pr, mr, vr = np.zeros(n), np.zeros(n), np.zeros(n)
    switch = first_rectified_step(beta2)
    for t in range(1, 40):
        g = 0.5 + rng.standard_normal(n)
        before_a, before_r = pa.copy(), pr.copy()
        adam_step(pa, g, ma, va, t, lr=lr, beta2=beta2, eps=0.0)
        radam_step(pr, g, mr, vr, t, lr=lr, beta2=beta2, eps=0.0)
        if t < switch:        # momentum SGD: lr * m_hat
            np.testing.assert_allclose(pr - before_r, -lr * mr / (1 - 0.9**t), rtol=1e-12)
        else:
            ratio = (pr - before_r) / (pa - before_a)
            np.testing.assert_allclose(ratio, rectification(t, beta2), rtol=1e-9)
    assert rho(switch, beta2) > 5 >= rho(switch - 1, beta2)


def test_adaptive_rate_moments_match_the_simple_average_early():
    # for t << 1 / (1 - beta2) the weights are nearly equal and rho_t ~ t
    mean, var, se = adaptive_rate_moments(12, 0.999, runs=100_000, seed=3)
    t = 12
    assert abs(var[t - 1] - psi_variance_exact(rho(t, 0.999))) < 5 * se[t - 1] + 0.01 * var[t - 1]


def test_mlp_gradient_is_the_derivative_of_its_loss():
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((30, 6)), rng.integers(0, 4, 30)
    net = MLP(X, y, hidden=5)
    x = net.init(0) + 0.1 * rng.standard_normal(net.size)
    d = rng.standard_normal(net.size)
    h = 1e-6
    numeric = (net.loss(x + h * d) - net.loss(x - h * d)) / (2 * h)
    assert np.isclose(net.grad(x) @ d, numeric, rtol=1e-5)
    assert len(net.unpack(x)) == 4 and net.size == 6 * 5 + 5 + 5 * 4 + 4
