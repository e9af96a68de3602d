"""adamref.lab.lpnorm: the L^p average against Adam's v, its limit against adamax_step."""

import numpy as np
import pytest

from adamref import reference
from adamref.lab import lpnorm


def _stream(T=300, n=20, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.standard_t(1.5, size=(T, n))
    g[rng.random((T, n)) < 0.1] = 0.0                    # some exact zeros
    return g


def test_p2_is_the_root_of_adams_v_with_beta2_squared():
    g, beta2 = _stream(), 0.95
    p, m, v = np.zeros(g.shape[1]), np.zeros(g.shape[1]), np.zeros(g.shape[1])
    roots = []
    for t, gt in enumerate(g, 1):
        reference.adam_step(p, gt, m, v, t, beta2=beta2**2)
        roots.append(np.sqrt(v))
    assert np.allclose(lpnorm.lp_average(g, beta2, 2.0), roots, rtol=1e-12, atol=0)


def test_p1_is_a_moving_average_of_abs_g():
    g, beta2 = _stream(50, 3, 1), 0.8
    u, expected = lpnorm.lp_average(g, beta2, 1.0), np.zeros(3)
    for t in range(50):
        expected = beta2 * expected + (1 - beta2) * np.abs(g[t])
        assert np.allclose(u[t], expected, rtol=1e-12)


def test_max_average_is_adamax_steps_u_with_eps_zero():
    g, beta2 = _stream(seed=2), 0.999
    n = g.shape[1]
    p, m, u = np.zeros(n), np.zeros(n), np.zeros(n)
    seen = []
    for t, gt in enumerate(g, 1):
        reference.adamax_step(p, gt, m, u, t, beta2=beta2, eps=0.0)
        seen.append(u.copy())
    assert np.allclose(lpnorm.max_average(g, beta2), seen, rtol=1e-12, atol=0)
    # and the max form by brute force at the last step
    T = g.shape[0]
    brute = np.max(beta2 ** (T - np.arange(1, T + 1))[:, None] * np.abs(g), axis=0)
    assert np.allclose(lpnorm.max_average(g, beta2)[-1], brute, rtol=1e-12)


def test_lp_tends_to_the_max_within_its_bounds():
    g, beta2 = _stream(100, 5, 3), 0.99
    t = np.arange(1, 101)[:, None]
    inf = lpnorm.max_average(g, beta2)
    gaps = []
    for p in [4.0, 32.0, 256.0, 2048.0]:
        up = lpnorm.lp_average(g, beta2, p)
        c = (1 - beta2**p) ** (1 / p)
        ok = inf > 0
        assert np.all(up[ok] >= c * inf[ok] * (1 - 1e-12))
        assert np.all(up[ok] <= c * t.repeat(5, 1)[ok] ** (1 / p) * inf[ok] * (1 + 1e-12))
        gaps.append(np.max(np.abs(up[ok] / inf[ok] - 1)))
    assert all(a > b for a, b in zip(gaps, gaps[1:])) and gaps[-1] < 3e-3


def test_the_bound_is_reached_by_the_shrinking_stream_and_not_exceeded():
    beta1, beta2, T = 0.9, 0.999, 400
    g = lpnorm.shrinking_stream(T, beta2, 3.0)
    p, m, u = np.zeros(1), np.zeros(1), np.zeros(1)
    for t, gt in enumerate(g, 1):
        before = p[0]
        reference.adamax_step(p, np.array([gt]), m, u, t, lr=1.0, beta1=beta1,
                              beta2=beta2, eps=0.0)
    assert np.isclose(before - p[0], lpnorm.adamax_step_bound(T, beta1, beta2), rtol=1e-12)
    # random streams stay below it at every step
    rng = np.random.default_rng(4)
    G = rng.standard_t(1.0, size=(T, 200))
    p, m, u = np.zeros(200), np.zeros(200), np.zeros(200)
    for t, gt in enumerate(G, 1):
        before = p.copy()
        reference.adamax_step(p, gt, m, u, t, lr=1.0, beta1=beta1, beta2=beta2, eps=0.0)
        assert np.all(np.abs(p - before) <= lpnorm.adamax_step_bound(t, beta1, beta2) + 1e-12)


def test_bound_limits():
    assert np.isclose(lpnorm.adamax_step_bound(1, 0.9, 0.999), 1.0)
    assert np.isclose(lpnorm.adamax_step_bound(10**6, 0.9, 0.999), 0.1 / (1 - 0.9 / 0.999))
    assert np.allclose(lpnorm.adamax_step_bound(np.arange(1, 50), 0.0, 0.9), 1.0)


def test_bad_arguments():
    with pytest.raises(ValueError):
        lpnorm.lp_average(np.ones(3), 1.0, 2.0)
    with pytest.raises(ValueError):
        lpnorm.lp_average(np.ones(3), 0.9, 0.0)
