"""adamref.lab.schedules: the schedules against torch.optim.lr_scheduler, the floor
recursion against a Monte Carlo of SGD, the Adam runs against chapter 3's floor."""

import numpy as np
import pytest
import torch

from adamref.lab.problems import Quadratic, SoftmaxRegression
from adamref.lab.schedules import (L2Regularised, adam_floor, adam_on_noisy_quadratic,
                                   adam_with_schedule, cosine, floor_tracking,
                                   inverse_sqrt, linear_warmup, step_decay,
                                   warmup_cosine)

T = 60
t = np.arange(1, T + 1)


def torch_sequence(make_scheduler, lr=0.5):
    # the lr each optimizer step uses, with scheduler.step() after every step
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=lr)
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(T):
        lrs.append(opt.param_groups[0]["lr"])
        p.grad = torch.zeros_like(p)
        opt.step()
        sched.step()
    return np.array(lrs)


@pytest.mark.parametrize("ours, theirs", [
    (lambda: step_decay(t, 0.5, every=7, gamma=0.3),
     lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.3)),
    (lambda: cosine(t, 0.5, T=40, alpha_min=0.01),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=40, eta_min=0.01)),
    (lambda: linear_warmup(t, 0.5, warmup=12, start=0.1),
     lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=12)),
    (lambda: warmup_cosine(t, 0.5, warmup=10, T=T, start=0.02),
     lambda o: torch.optim.lr_scheduler.SequentialLR(o, [
         torch.optim.lr_scheduler.LinearLR(o, start_factor=0.02, total_iters=10),
         torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=T - 10)], milestones=[10])),
    (lambda: inverse_sqrt(t, 0.5),
     lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda e: (e + 1) ** -0.5)),
])
def test_schedules_equal_torch_lr_scheduler(ours, theirs):
    np.testing.assert_allclose(ours(), torch_sequence(theirs), rtol=1e-12, atol=1e-15)


def test_steps_start_at_one():
    with pytest.raises(ValueError):
        cosine(0, 1.0, T=10)


def test_floor_tracking_matches_a_monte_carlo_of_sgd():
    # Adam's floor is momentum SGD's at the rate a = alpha / sigma; plain SGD
    # (beta1 = 0) has the same small-a floor, and its second moment is easy to
    # simulate exactly.  A step schedule: relax, drop, relax again.
    rng = np.random.default_rng(0)
    sigma, h, runs, steps = 2.0, 1.0, 20_000, 1500
    alphas = step_decay(np.arange(1, steps + 1), 0.04, every=500, gamma=0.3)
    z = np.zeros(runs)
    sq = np.empty(steps)
    for k, alpha in enumerate(alphas):
        z -= alpha / sigma * (h * z + sigma * rng.standard_normal(runs))
        sq[k] = (z * z).mean()
    pred = floor_tracking(alphas, sigma, h, start=0.0)
    for c in [400, 500, 700, 1000, 1500]:
        se = np.sqrt(2 / runs) * pred[c - 1]          # z is Gaussian here
        # 5 standard errors, plus a relative a h for (1 - a h)^2 ~ 1 - 2 a h
        assert abs(sq[c - 1] - pred[c - 1]) < 5 * se + alphas[c - 1] / sigma * h * pred[c - 1]
    assert np.isclose(pred[499], adam_floor(0.04, sigma, h), rtol=1e-6)


def test_adam_on_noisy_quadratic_settles_at_chapter_3s_floor():
    alpha, steps, burn = 0.03, 3000, 1000
    res = adam_on_noisy_quadratic({"c": np.full(steps, alpha)}, runs=400, z0=0.0,
                                  seed=1, checkpoints=[steps], width=steps - burn)
    per_run = res.window["c"][steps]
    mean, se = per_run.mean(), per_run.std(ddof=1) / np.sqrt(per_run.size)
    # 5 standard errors plus 1% (h^2 Var z inflates v_hat by alpha h / (2 sigma))
    assert abs(mean - adam_floor(alpha, 1.0, 1.0)) < 5 * se + 0.01 * mean
    assert np.isclose(res.mean_sq["c"][-1], 0.0, atol=0.1)


def test_adam_with_schedule_equals_torch_adam_with_a_scheduler():
    H = np.array([[3.0, 1.0], [1.0, 2.0]])
    problem, x0 = Quadratic(H), np.array([1.0, -2.0])
    alphas = cosine(np.arange(1, 31), 0.1, T=30)
    ours = adam_with_schedule(problem, alphas, x0)
    p = torch.nn.Parameter(torch.tensor(x0))
    opt = torch.optim.Adam([p], lr=0.1, foreach=False)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=30)
    for _ in range(30):
        p.grad = torch.tensor(H) @ p.detach()
        opt.step()
        sched.step()
    np.testing.assert_allclose(ours, p.detach().numpy(), rtol=1e-12)


def test_l2_regularised_gradient_is_the_derivative_of_its_loss():
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    problem = L2Regularised(SoftmaxRegression(X, y), lam=0.1)
    x = rng.standard_normal(problem.size)
    d = rng.standard_normal(problem.size)
    eps = 1e-6
    numeric = (problem.loss(x + eps * d) - problem.loss(x - eps * d)) / (2 * eps)
    assert np.isclose(problem.grad(x) @ d, numeric, rtol=1e-6)
