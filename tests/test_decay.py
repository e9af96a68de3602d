"""adamref.lab.decay: weight decay inside Adam (chapter ch-adamw)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from adamref.lab.decay import effective_decay, softmax_scores, train_softmax_grid
from adamref.lab.optimizers import Adam as LabAdam
from adamref.lab.problems import SoftmaxRegression
from adamref.optim import Adam, AdamW
from adamref.reference import adam_step


@pytest.mark.parametrize("decoupled", [False, True])
def test_effective_decay_matches_a_simulation(decoupled):
    # Pure-noise gradients of scale s: the mean of theta_T, from theta_0 = 1, is
    # (1 - d)^T; the same noise without decay has mean 1 and cancels most of the
    # spread (common random numbers).
    scales = np.array([0.03, 0.3, 3.0])
    runs, T, lr, wd = 300, 1000, 1e-2, 1e-3
    s = np.repeat(scales, runs)

    def run(weight_decay):
        p, m, v = np.ones(s.size), np.zeros(s.size), np.zeros(s.size)
        rng = np.random.default_rng(0)
        for t in range(1, T + 1):
            adam_step(p, s * rng.standard_normal(s.size), m, v, t, lr=lr,
                      weight_decay=weight_decay, decoupled=decoupled)
        return p

    d = (run(wd) - run(0.0)).reshape(len(scales), runs)
    left, se = 1 + d.mean(axis=1), d.std(axis=1, ddof=1) / np.sqrt(runs)
    predicted = (1 - effective_decay(lr, wd, scales**2, decoupled=decoupled)) ** T
    # 4 standard errors, plus 2% of the decay for the approximations
    assert np.all(np.abs(left - predicted) < 4 * se + 0.02 * (1 - predicted))


def test_effective_decay_values():
    assert effective_decay(0.1, 0.01, [4.0, 0.0], eps=0.0 + 1e-8)[0] == pytest.approx(5e-4)
    np.testing.assert_array_equal(effective_decay(0.1, 0.01, [4.0, 1e-6], decoupled=True),
                                  [0.1 * 0.01] * 2)


@pytest.mark.parametrize("optimizer, decoupled", [(Adam, False), (AdamW, True)])
def test_grid_training_equals_one_run_at_a_time(optimizer, decoupled):
    # Against an independent path: SoftmaxRegression's gradient and the NumPy
    # reference step, one run at a time, with the same minibatches.
    X, y = load_digits(return_X_y=True)
    X, y = X[:200] / 16.0, y[:200]
    lrs, wds, steps = [1e-2, 1e-1], [1e-3, 0.3], 25
    W = train_softmax_grid(optimizer, lrs, wds, X, y, seeds=2, steps=steps, batch_size=16)
    problem = SoftmaxRegression(X, y, batch_size=16)
    for i, lr in enumerate(lrs):
        for j, wd in enumerate(wds):
            for seed in range(2):
                x, rng = np.zeros(problem.size), np.random.default_rng(seed)
                opt = LabAdam(lr=lr, weight_decay=wd, decoupled=decoupled)
                for _ in range(steps):
                    opt.step(x, problem.grad(x, rng))
                np.testing.assert_allclose(W[i, j, seed].ravel(), x, rtol=1e-9,
                                           atol=1e-12)
                loss, acc = softmax_scores(W[i, j, seed], X, y)
                assert loss == pytest.approx(problem.loss(x), rel=1e-9)
                assert acc == pytest.approx(problem.accuracy(x))
