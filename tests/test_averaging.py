"""adamref.lab.averaging: the temporal average of the parameters (chapter ch-averaging)."""

import numpy as np
import pytest

from adamref.lab.averaging import (ParameterAverage, adam_floor_variances,
                                   ema_variance_ratio_ar1)
from adamref.lab.ema import ema


def test_parameter_average_is_the_bias_corrected_ema_of_the_iterates():
    path = np.random.default_rng(0).standard_normal((40, 3))
    avg = ParameterAverage(0.9)
    for t, theta in enumerate(path):
        avg.update(theta)
        np.testing.assert_allclose(avg.value, ema(path[:t + 1], 0.9, bias_correct=True)[-1],
                                   rtol=1e-12)
    const = ParameterAverage(0.99)
    for _ in range(5):
        const.update(np.full(2, 3.0))
    np.testing.assert_allclose(const.value, 3.0, rtol=1e-13)


@pytest.mark.parametrize("phi, beta", [(0.0, 0.9), (0.5, 0.9), (0.99, 0.9), (0.9, 0.99)])
def test_ar1_ratio_against_the_weights(phi, beta):
    # sum_{j,k} w_j w_k phi^|j-k| with the EMA's weights w_j = (1 - beta) beta^j,
    # truncated where beta^j is negligible
    n = int(np.ceil(np.log(1e-9) / np.log(beta)))
    w = (1 - beta) * beta ** np.arange(n)
    lag = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    assert ema_variance_ratio_ar1(phi, beta) == pytest.approx(w @ (phi ** lag) @ w,
                                                              rel=1e-6)


def test_floor_without_momentum_is_an_ar1():
    # beta1 = 0: z_t = (1 - lr h / sigma) z_{t-1} - lr xi_t, an AR(1) with
    # variance lr^2 / (1 - phi^2)
    lr, h, sigma, beta = 0.01, 1.0, 2.0, 0.99
    phi = 1 - lr * h / sigma
    var_z, var_bar = adam_floor_variances(lr, h, sigma, beta, beta1=0.0)
    assert var_z == pytest.approx(lr**2 / (1 - phi**2), rel=1e-10)
    assert var_bar / var_z == pytest.approx(ema_variance_ratio_ar1(phi, beta), rel=1e-10)


def test_floor_with_momentum_matches_chapter_2():
    # the heavy-ball floor of chapter 2 (eq-ema-momentum-floor) at lr_eff = lr / sigma
    lr, h, sigma, beta1 = 0.02, 1.5, 3.0, 0.9
    k = lr / sigma
    expected = k * sigma**2 / (2 * h - k * h**2 * (1 - beta1) / (1 + beta1))
    assert adam_floor_variances(lr, h, sigma, 0.9, beta1)[0] == pytest.approx(expected,
                                                                            rel=1e-10)


def test_floor_against_a_simulation_of_the_linear_system():
    lr, h, sigma, beta, beta1 = 0.05, 1.0, 1.0, 0.95, 0.9
    rng = np.random.default_rng(1)
    runs, T, burn = 2000, 2000, 600
    z, m, bar = np.zeros(runs), np.zeros(runs), np.zeros(runs)
    zz, bb = np.zeros(runs), np.zeros(runs)
    for t in range(T):
        m = beta1 * m + (1 - beta1) * (h * z + sigma * rng.standard_normal(runs))
        z = z - lr / sigma * m
        bar = beta * bar + (1 - beta) * z
        if t >= burn:
            zz += z * z
            bb += bar * bar
    var_z, var_bar = adam_floor_variances(lr, h, sigma, beta, beta1)
    for per_run, exact in [(zz / (T - burn), var_z), (bb / (T - burn), var_bar)]:
        se = per_run.std(ddof=1) / np.sqrt(runs)
        assert abs(per_run.mean() - exact) < 4 * se
