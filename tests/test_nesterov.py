"""adamref.lab.nesterov against torch.optim (SGD with nesterov=True, NAdam) and simulation."""

import numpy as np
import pytest
import torch

from adamref import reference
from adamref.lab import nesterov
from adamref.lab.optimizers import SGD
from adamref.lab.problems import Quadratic, minimize


def test_nesterov_sgd_is_torchs():
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((40, 7))
    p = torch.zeros(7, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.05, momentum=0.8, nesterov=True)
    ours, lab = np.zeros(7), nesterov.NesterovSGD(0.05, 0.8)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
        lab.step(ours, g)
    np.testing.assert_allclose(ours, p.detach().numpy(), rtol=1e-13, atol=1e-15)


def test_torch_form_stores_sutskevers_lookahead_point():
    prob = Quadratic.ill_conditioned(20.0, 0.4)
    x0 = np.array([1.0, -0.5])
    path = minimize(prob, nesterov.NesterovSGD(0.02, 0.9), x0, 60)
    thetas, ahead = nesterov.lookahead_path(prob.grad, x0, 0.02, 0.9, 60)
    np.testing.assert_allclose(path, ahead, rtol=1e-12, atol=1e-14)
    assert np.abs(path - thetas).max() > 1e-3          # not the same sequence


@pytest.mark.parametrize("nest", [False, True])
@pytest.mark.parametrize("h", [0.05, 1.0, 15.0, 30.0])
def test_momentum_rate_is_the_measured_rate(nest, h):
    """Error after 400 steps over after 300, to the 1/100: the largest root's modulus."""
    lr, mu = 0.05, 0.9
    prob = Quadratic(np.array([[h]]))
    opt = nesterov.NesterovSGD(lr, mu) if nest else SGD(lr, mu)
    path = np.abs(minimize(prob, opt, np.array([1.0]), 400)[:, 0])
    # an oscillating sequence: compare envelopes (max over a window of 40 steps)
    env = [path[k - 40:k].max() for k in (340, 400)]
    measured = (env[1] / env[0]) ** (1 / 60)
    assert measured == pytest.approx(nesterov.momentum_rate(h, lr, mu, nest), rel=1e-2)


def test_nesterov_damps_stiff_directions_but_diverges_sooner():
    """Heavy ball: every oscillating direction at sqrt(mu), stable for lr h < 2 (1 + mu).
    Nesterov: no slower anywhere up to lr h = 1, stable only for
    lr h < 2 (1 + mu) / (1 + 2 mu) (the roots of the recurrence at x = -1)."""
    lr, mu = 0.05, 0.9
    h = np.linspace(0.2, 100, 2000) / lr / 25          # lr h from 0.008 to 4
    heavy = nesterov.momentum_rate(h, lr, mu)
    nest = nesterov.momentum_rate(h, lr, mu, nesterov=True)
    oscillating = (1 + mu - lr * h) ** 2 < 4 * mu
    np.testing.assert_allclose(heavy[oscillating], np.sqrt(mu), rtol=1e-12)
    assert np.all(nest[lr * h <= 1] <= heavy[lr * h <= 1] + 1e-12)
    edge_heavy, edge_nest = 2 * (1 + mu), 2 * (1 + mu) / (1 + 2 * mu)
    np.testing.assert_array_equal(heavy < 1, lr * h < edge_heavy)
    np.testing.assert_array_equal(nest < 1, lr * h < edge_nest)


def test_mu_schedule_and_products_are_torchs():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        p = torch.zeros(3, requires_grad=True)
        opt = torch.optim.NAdam([p], momentum_decay=0.02)
        prods = []
        for _ in range(30):
            p.grad = torch.ones(3)
            opt.step()
            prods.append(float(opt.state[p]["mu_product"]))
    finally:
        torch.set_default_dtype(old)
    expected = np.cumprod(nesterov.mu_schedule(np.arange(1, 31), 0.9, 0.02))
    np.testing.assert_allclose(prods, expected, rtol=1e-14)


@pytest.mark.parametrize("psi", [0.0, 4e-3, 0.3])
def test_constant_gradient_step_is_what_nadam_step_does(psi):
    T = 200
    p, m, v, mp = np.zeros(1), np.zeros(1), np.zeros(1), np.ones(())
    steps = []
    for t in range(1, T + 1):
        before = p[0]
        reference.nadam_step(p, np.full(1, -3.0), m, v, t, mp, lr=0.5, eps=0.0,
                             momentum_decay=psi)
        steps.append((p[0] - before) / 0.5)
    t = np.arange(1, T + 1)
    np.testing.assert_allclose(steps, nesterov.constant_gradient_step(t, 0.9, psi),
                               rtol=1e-12)
    a, c = nesterov.nadam_weights(t, 0.9, psi)
    np.testing.assert_allclose(nesterov.fresh_gradient_weight(t, 0.9, psi), a + 0.1 * c)


def test_nadam_weights_refuses_a_partial_range():
    with pytest.raises(ValueError):
        nesterov.nadam_weights(np.arange(5, 9))


def test_lab_nadam_follows_torch_on_a_bowl():
    prob = Quadratic.ill_conditioned(50.0, 0.5)
    x0 = np.array([-1.0, 0.8])
    path = minimize(prob, nesterov.NAdam(lr=0.05, mu_dtype=np.float32), x0, 80)
    p = torch.tensor(x0, requires_grad=True)
    opt = torch.optim.NAdam([p], lr=0.05, foreach=False)
    for _ in range(80):
        p.grad = torch.tensor(prob.grad(p.detach().numpy()))
        opt.step()
    np.testing.assert_allclose(path[-1], p.detach().numpy(), rtol=1e-10, atol=1e-12)
