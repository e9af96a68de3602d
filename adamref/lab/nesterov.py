"""Nesterov momentum and NAdam's weights, for the chapter on NAdam (``ch-nadam``).

Momentum SGD on a quadratic, in PyTorch's form (``torch.optim.SGD``, no dampening),
with ``b`` the momentum buffer and ``g_t`` the gradient at the current iterate::

    classical (heavy ball, Polyak):   b <- mu b + g_t;   p <- p - lr b
    Nesterov (nesterov=True):         b <- mu b + g_t;   p <- p - lr (g_t + mu b)

The Nesterov form stores the look-ahead point of Sutskever et al. (2013, eq. 3-4),
whose velocity ``u`` (the step theta_t - theta_{t-1}, the book's Delta_t) takes the
gradient *after* the momentum step::

    u <- mu u - lr grad(theta + mu u);   theta <- theta + u

(:func:`lookahead_path`): ``p_t = theta_t + mu u_t``.  On a 1-D quadratic
``f(z) = h z^2 / 2`` both are linear recurrences in ``z``::

    classical:  z_t = (1 + mu - lr h) z_{t-1} - mu z_{t-2}
    Nesterov:   z_t = (1 + mu)(1 - lr h) z_{t-1} - mu (1 - lr h) z_{t-2}

so the error shrinks per step by the largest root in modulus of
``x^2 - a x + c`` (:func:`momentum_rate`): ``sqrt(mu)`` for every oscillating
direction of heavy ball, ``sqrt(mu (1 - lr h))`` for Nesterov, which damps the
stiff directions more.

NAdam as ``torch.optim.NAdam`` writes it (:func:`adamref.reference.nadam_step`)
divides ``a_t g_t + c_t m_t`` by ``sqrt(v_hat_t) + eps``, with

    mu_t = beta1 (1 - 0.96^(t psi) / 2)                          (:func:`mu_schedule`)
    a_t  = (1 - mu_t) / (1 - mu_1 ... mu_t)                      (:func:`nadam_weights`)
    c_t  = mu_{t+1} / (1 - mu_1 ... mu_{t+1})

References:
    Nesterov, Y. (1983). A method for solving the convex programming problem with
    convergence rate O(1/k^2).  Sutskever, I., Martens, J., Dahl, G. and Hinton, G.
    (2013). On the importance of initialization and momentum in deep learning. ICML.
    https://proceedings.mlr.press/v28/sutskever13.html .  Dozat, T. (2016).
    Incorporating Nesterov Momentum into Adam. ICLR workshop.
    https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ
"""

from __future__ import annotations

import numpy as np

from adamref import reference

__all__ = ["NesterovSGD", "lookahead_path", "momentum_rate", "mu_schedule",
           "nadam_weights", "constant_gradient_step", "fresh_gradient_weight", "NAdam"]


class NesterovSGD:
    """SGD with Nesterov momentum, as ``torch.optim.SGD(nesterov=True)``: ``p -= lr (g + mu b)``."""

    def __init__(self, lr: float, mu: float = 0.9):
        self.lr, self.mu, self.b = lr, mu, None

    def step(self, p: np.ndarray, g: np.ndarray) -> None:
        self.b = g.copy() if self.b is None else self.mu * self.b + g
        p -= self.lr * (g + self.mu * self.b)


def lookahead_path(grad, x0, lr: float, mu: float, steps: int):
    """Sutskever et al.'s form of Nesterov momentum from ``x0`` with zero velocity.

    ``u <- mu u - lr grad(theta + mu u)``; ``theta <- theta + u``.  Returns the
    iterates ``theta_t`` and the look-ahead points ``theta_t + mu u_t``, each of
    shape ``(steps + 1, len(x0))``.
    """
    theta = np.array(x0, dtype=float)
    u = np.zeros_like(theta)
    thetas, ahead = [theta.copy()], [theta.copy()]
    for _ in range(steps):
        u = mu * u - lr * grad(theta + mu * u)
        theta = theta + u
        thetas.append(theta.copy())
        ahead.append(theta + mu * u)
    return np.array(thetas), np.array(ahead)


def momentum_rate(h, lr: float, mu: float, nesterov: bool = False):
    """Asymptotic factor per step by which momentum SGD shrinks the error along curvature ``h``.

    The largest modulus of the roots of ``x^2 - a x + c``, with ``a = 1 + mu - lr h``,
    ``c = mu`` (heavy ball) or ``a = (1 + mu)(1 - lr h)``, ``c = mu (1 - lr h)``
    (Nesterov).  Above 1: the iteration diverges along ``h``.  Vectorised over ``h``.
    """
    h = np.asarray(h, dtype=float)
    if nesterov:
        a, c = (1 + mu) * (1 - lr * h), mu * (1 - lr * h)
    else:
        a, c = 1 + mu - lr * h, mu + 0 * h
    root = np.sqrt((a * a - 4 * c).astype(complex))
    return np.maximum(np.abs((a + root) / 2), np.abs((a - root) / 2))


def mu_schedule(t, beta1: float = 0.9, momentum_decay: float = 4e-3):
    """torch's NAdam momentum coefficient ``mu_t = beta1 (1 - 0.5 * 0.96^(t psi))``."""
    t = np.asarray(t, dtype=float)
    return beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))


def nadam_weights(t, beta1: float = 0.9, momentum_decay: float = 4e-3):
    """The weights ``(a_t, c_t)`` of ``g_t`` and ``m_t`` in NAdam's step, for ``t = 1..`` (array).

    ``a_t = (1 - mu_t) / (1 - prod_{i<=t} mu_i)``,
    ``c_t = mu_{t+1} / (1 - prod_{i<=t+1} mu_i)``, in float64.  ``t`` must be
    ``1, 2, ..., T`` (the products run over every earlier step).
    """
    t = np.asarray(t, dtype=float)
    if t.ndim != 1 or not np.array_equal(t, np.arange(1, len(t) + 1)):
        raise ValueError("t must be 1, 2, ..., T")
    mu = mu_schedule(np.arange(1, len(t) + 2), beta1, momentum_decay)
    prod = np.cumprod(mu)
    return (1 - mu[:-1]) / (1 - prod[:-1]), mu[1:] / (1 - prod[1:])


def constant_gradient_step(t, beta1: float = 0.9, momentum_decay: float = 4e-3):
    """NAdam's step in units of ``lr`` when every gradient is the same (``eps = 0``).

    Then ``v_hat_t = g^2`` and ``m_t = (1 - beta1^t) g``, so the step is
    ``a_t + c_t (1 - beta1^t)``; Adam's is exactly 1.
    """
    a, c = nadam_weights(t, beta1, momentum_decay)
    return a + c * (1 - beta1 ** np.asarray(t, dtype=float))


def fresh_gradient_weight(t, beta1: float = 0.9, momentum_decay: float = 4e-3):
    """The weight of the newest gradient ``g_t`` in NAdam's numerator: ``a_t + c_t (1 - beta1)``.

    (In ``m_t = beta1 m_{t-1} + (1 - beta1) g_t`` it has weight ``1 - beta1``.)
    Adam's is ``(1 - beta1) / (1 - beta1^t)``.
    """
    a, c = nadam_weights(t, beta1, momentum_decay)
    return a + c * (1 - beta1)


class NAdam:
    """:func:`adamref.reference.nadam_step` with its state (``m``, ``v``, ``mu_product``, ``t``).

    Keyword arguments go to ``nadam_step``.  ``mu_product`` is kept in
    ``mu_dtype`` (float64 by default; float32 is what ``torch.optim.NAdam``
    keeps under torch's default dtype).
    """

    def __init__(self, mu_dtype=np.float64, **hyper):
        self.hyper, self.mu_dtype = hyper, mu_dtype
        self.m = self.v = None
        self.mu_product = np.ones((), mu_dtype)
        self.t = 0

    def step(self, p: np.ndarray, g: np.ndarray) -> None:
        if self.m is None:
            self.m, self.v = np.zeros_like(p), np.zeros_like(p)
        self.t += 1
        reference.nadam_step(p, g, self.m, self.v, self.t, self.mu_product, **self.hyper)
