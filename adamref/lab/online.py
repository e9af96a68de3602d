"""Online convex optimisation: Reddi, Kale & Kumar's counterexamples and regret.

Used by the chapter on convergence (``ch-convergence``).  In the online
framework of Zinkevich (2003) an optimizer plays a point ``theta_{t-1}``, is
shown a convex loss ``f_t`` and pays ``f_t(theta_{t-1})``; its regret after
``T`` rounds is::

    R(T) = sum_{t=1}^T f_t(theta_{t-1}) - min_{theta in K} sum_{t=1}^T f_t(theta)

(Kingma & Ba write ``f_t(theta_t)`` with ``theta_t`` the point played at
round ``t``; with the book's convention ``theta_t`` is the point *after*
step ``t``, so the point played at round ``t`` is ``theta_{t-1}``.)

The counterexamples of Reddi, Kale & Kumar (2018, sections 3 and 4) are
linear losses ``f_t(x) = g_t x`` on ``K = [-1, 1]``:

- online (:func:`reddi_online`): ``g_t = C`` when ``t mod 3 = 1``, else
  ``-1``, with ``C > 2``; the sum over a period is ``C - 2 > 0``, so the best
  fixed point is ``x = -1``;
- stochastic (:func:`reddi_stochastic`): ``g_t = C`` with probability
  ``(1 + delta) / (C + 1)``, else ``-1``; the mean gradient is ``delta > 0``,
  and the expected loss ``delta x`` is again smallest at ``x = -1``.

:func:`projected_adam` runs :func:`adamref.reference.adam_step` (so Adam,
or AMSGrad with ``amsgrad=True``, exactly as ``torch.optim.Adam`` computes
them) with the theorem's step size ``alpha_t = alpha / sqrt(t)`` and
projects onto ``[lo, hi]`` after every step, on many independent coordinates
at once.  :func:`linear_regret` and :func:`expected_regret` compute ``R(t)``
for every ``t``; :func:`kingma_regret_bound` is the bound of the paper's
Theorem 4.1 and :func:`gamma` the quantity whose sign the proof gets wrong.

References: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR
2015, section 4 (https://arxiv.org/abs/1412.6980); Reddi, Kale & Kumar, "On
the Convergence of Adam and Beyond", ICLR 2018
(https://openreview.net/forum?id=ryQu7f-RZ); Zinkevich, ICML 2003.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from adamref.reference import adam_step

__all__ = ["reddi_online", "reddi_stochastic", "Trajectory", "projected_adam",
           "linear_regret", "expected_regret", "gamma", "kingma_regret_bound",
           "period_drift"]


def reddi_online(T: int, C) -> np.ndarray:
    """Gradients ``g_t`` of Reddi's online example for ``t = 1..T``: ``C`` if ``t mod 3 = 1``, else ``-1``.

    ``C`` may be an array (one column per value): the result has shape
    ``(T,) + shape(C)``.
    """
    C = np.asarray(C, dtype=float)
    t = np.arange(1, T + 1).reshape((T,) + (1,) * C.ndim)
    return np.where(t % 3 == 1, C, -1.0)


def reddi_stochastic(T: int, C: float, delta: float, runs: int = 1,
                     seed: int = 0) -> np.ndarray:
    """Gradients of Reddi's stochastic example, shape ``(T, runs)``: ``C`` with probability
    ``(1 + delta) / (C + 1)``, else ``-1``; each column an independent run.
    """
    prob = (1 + delta) / (C + 1)
    if not 0 < prob < 1:
        raise ValueError(f"(1 + delta) / (C + 1) must be in (0, 1), got {prob!r}")
    rng = np.random.default_rng(seed)
    return np.where(rng.random((T, runs)) < prob, float(C), -1.0)


class Trajectory(NamedTuple):
    """What :func:`projected_adam` records, each of shape ``(T,) + grads.shape[1:]``.

    ``x[t-1]`` is the point played at round ``t`` (before step ``t``);
    ``v_hat[t-1]`` the second moment Adam divides by at step ``t``
    (``v_t`` or, for AMSGrad, ``max_{s<=t} v_s``, over ``1 - beta2^t``);
    ``lr[t-1]`` the step size ``alpha_t`` used at step ``t``.
    """
    x: np.ndarray
    v_hat: np.ndarray
    lr: np.ndarray


def projected_adam(grads, *, alpha: float, beta1: float, beta2: float,
                   amsgrad: bool = False, eps: float = 1e-8, x0: float = 1.0,
                   lo: float = -1.0, hi: float = 1.0, decay: bool = True) -> Trajectory:
    """Projected Adam (or AMSGrad) on linear losses ``f_t(x) = grads[t-1] x``.

    Every column of ``grads`` (shape ``(T, ...)``) is an independent run
    from ``x0``.  Step ``t`` is :func:`adamref.reference.adam_step` with
    ``lr = alpha / sqrt(t)`` (``alpha`` if ``decay=False``), followed by
    the projection ``x <- clip(x, lo, hi)``, which for an interval is the
    Euclidean projection the theorems assume.
    """
    grads = np.asarray(grads, dtype=float)
    if grads.ndim == 1:                     # one run: a column of its own
        traj = projected_adam(grads[:, None], alpha=alpha, beta1=beta1, beta2=beta2,
                              amsgrad=amsgrad, eps=eps, x0=x0, lo=lo, hi=hi, decay=decay)
        return Trajectory(traj.x[:, 0], traj.v_hat[:, 0], traj.lr)
    grads = np.ascontiguousarray(grads)
    T, shape = grads.shape[0], grads.shape[1:]
    p = np.full(shape, float(x0))
    m, v = np.zeros(shape), np.zeros(shape)
    v_max = np.zeros(shape) if amsgrad else None
    xs, v_hat = np.empty(grads.shape), np.empty(grads.shape)
    lrs = alpha / np.sqrt(np.arange(1, T + 1)) if decay else np.full(T, float(alpha))
    for t in range(1, T + 1):
        xs[t - 1] = p
        adam_step(p, grads[t - 1], m, v, t, lr=float(lrs[t - 1]),
                  beta1=beta1, beta2=beta2, eps=eps, amsgrad=amsgrad, v_max=v_max)
        np.clip(p, lo, hi, out=p)
        v_hat[t - 1] = (v_max if amsgrad else v) / (1 - beta2 ** t)
    return Trajectory(xs, v_hat, lrs)


def linear_regret(x, grads, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    """``R(t)`` for ``t = 1..T`` for linear losses ``f_t(x) = grads[t-1] x`` on ``[lo, hi]``.

    ``x[t-1]`` is the point played at round ``t``.  The best fixed point of
    a linear loss ``x S_t`` (``S_t`` the sum of the gradients so far) is an
    end of the interval, so ``min_x x S_t = min(lo S_t, hi S_t)``.
    """
    x, grads = np.asarray(x, dtype=float), np.asarray(grads, dtype=float)
    S = np.cumsum(grads, axis=0)
    return np.cumsum(grads * x, axis=0) - np.minimum(lo * S, hi * S)


def expected_regret(x, mean_grad: float, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    """``sum_{s<=t} F(x_s) - min_x F(x)`` for the expected loss ``F(x) = mean_grad x`` on ``[lo, hi]``."""
    x = np.asarray(x, dtype=float)
    best = min(lo * mean_grad, hi * mean_grad)
    return np.cumsum(mean_grad * x - best, axis=0)


def gamma(traj: Trajectory) -> np.ndarray:
    """``Gamma_{t+1} = sqrt(v_hat_{t+1}) / alpha_{t+1} - sqrt(v_hat_t) / alpha_t`` for ``t = 1..T-1``.

    Kingma & Ba's proof needs it to be non-negative (Reddi et al., section 3):
    the effective step size ``alpha_t / sqrt(v_hat_t)`` must never grow.
    """
    lr = traj.lr.reshape((-1,) + (1,) * (traj.v_hat.ndim - 1))
    inverse_step = np.sqrt(traj.v_hat) / lr
    return np.diff(inverse_step, axis=0)


def kingma_regret_bound(grads, v_hat_T, *, alpha: float, beta1: float, beta2: float,
                        lam: float, D: float, D_inf: float, G_inf: float) -> float:
    """The right-hand side of Kingma & Ba's Theorem 4.1 for ``T = len(grads)``.

    For ``d`` coordinates, ``gamma = beta1^2 / sqrt(beta2) < 1`` and
    ``beta1_t = beta1 lam^(t-1)``::

        R(T) <= D^2 / (2 alpha (1 - beta1)) sum_i sqrt(T v_hat_{T,i})
              + alpha (1 + beta1) G_inf / ((1 - beta1) sqrt(1 - beta2) (1 - gamma)^2)
                * sum_i ||g_{1:T,i}||_2
              + sum_i D_inf^2 G_inf sqrt(1 - beta2) / (2 alpha (1 - beta1) (1 - lam)^2)

    ``grads`` has shape ``(T, d)`` (or ``(T,)`` for one coordinate) and
    ``v_hat_T`` shape ``(d,)``.
    """
    grads = np.asarray(grads, dtype=float)
    if grads.ndim == 1:
        grads = grads[:, None]
    T, d = grads.shape
    g = beta1 ** 2 / np.sqrt(beta2)
    if not g < 1:
        raise ValueError(f"the theorem needs beta1^2 / sqrt(beta2) < 1, got {g!r}")
    first = D ** 2 / (2 * alpha * (1 - beta1)) * np.sum(np.sqrt(T * np.asarray(v_hat_T)))
    second = (alpha * (1 + beta1) * G_inf / ((1 - beta1) * np.sqrt(1 - beta2) * (1 - g) ** 2)
              * np.sum(np.sqrt(np.sum(grads ** 2, axis=0))))
    third = d * D_inf ** 2 * G_inf * np.sqrt(1 - beta2) / (2 * alpha * (1 - beta1) * (1 - lam) ** 2)
    return float(first + second + third)


def period_drift(C, beta2):
    """Adam's net motion per period on the online example, ``beta1 = 0``, in units of ``alpha_t``.

    Late in a run ``alpha_t`` barely changes over one period and ``1 - beta2^t``
    is 1, so ``v`` settles into a cycle of three values: ``v_a`` after the
    gradient ``C``, then ``v_b`` and ``v_c`` after the two ``-1``.  Solving
    ``v_a = beta2 v_c + (1 - beta2) C^2``, ``v_b = beta2 v_a + 1 - beta2``,
    ``v_c = beta2 v_b + 1 - beta2``::

        v_a = (C^2 + beta2 + beta2^2) / (1 + beta2 + beta2^2)

    and a period moves ``x`` by ``-alpha_t D`` with::

        D = C / sqrt(v_a) - 1 / sqrt(v_b) - 1 / sqrt(v_c)

    ``D > 0``: Adam drifts to ``x = -1``, the optimum; ``D < 0``: to ``x = +1``.
    """
    C, beta2 = np.asarray(C, dtype=float), np.asarray(beta2, dtype=float)
    v_a = (C ** 2 + beta2 + beta2 ** 2) / (1 + beta2 + beta2 ** 2)
    v_b = beta2 * v_a + 1 - beta2
    v_c = beta2 * v_b + 1 - beta2
    return C / np.sqrt(v_a) - 1 / np.sqrt(v_b) - 1 / np.sqrt(v_c)
