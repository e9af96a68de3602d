"""adamref.lab.ema: the moving average of chapter 2."""

import numpy as np
import pytest

from adamref.lab.ema import ema, ema_update, ema_weights


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.999])
def test_weights_reproduce_the_recursion_and_sum_to_one_minus_beta_t(beta):
    xs = np.random.default_rng(0).standard_normal(50)
    ms = ema(xs, beta)
    for t in (1, 7, 50):
        w = ema_weights(beta, t)
        assert w @ xs[:t] == pytest.approx(ms[t - 1], rel=1e-12, abs=1e-15)
        assert w.sum() == pytest.approx(1 - beta ** t, rel=1e-12)


def test_bias_corrected_average_of_a_constant_is_exact():
    out = ema(np.full(30, 2.5), 0.9, bias_correct=True)
    np.testing.assert_allclose(out, 2.5, rtol=1e-14)
    assert ema(np.full(30, 2.5), 0.9)[0] == pytest.approx(0.25)


def test_independent_streams_along_an_axis():
    G = np.random.default_rng(1).standard_normal((4, 20))
    both = ema(G, 0.8, axis=1)
    for r in range(4):
        np.testing.assert_array_equal(both[r], ema(G[r], 0.8))


def test_update_is_in_place_and_beta_is_checked():
    m = np.zeros(3)
    assert ema_update(m, np.ones(3), 0.75) is m
    np.testing.assert_allclose(m, 0.25)
    for beta in (1.0, -0.1):
        with pytest.raises(ValueError, match="beta"):
            ema(np.ones(3), beta)
