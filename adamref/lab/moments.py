"""The moment estimates of Adam and their bias: expectations, Monte Carlo, ablation.

Adam's moving averages start at zero::

    m_t = beta1 m_{t-1} + (1 - beta1) g_t      = (1 - beta1) sum_{i<=t} beta1^(t-i) g_i
    v_t = beta2 v_{t-1} + (1 - beta2) g_t^2    = (1 - beta2) sum_{i<=t} beta2^(t-i) g_i^2

so, by linearity, ``E[m_t]`` is the same moving average applied to the
sequence ``E[g_1], E[g_2], ...`` (and ``E[v_t]`` to ``E[g_i^2]``).  Kingma &
Ba (2015, section 3) split it into the stationary part and a remainder
(the book, chapter 4, names the two remainders ``zeta_1`` and ``zeta_2``;
the paper writes ``zeta`` for both)::

    E[m_t] = E[g_t] (1 - beta1^t) + zeta_1
    E[v_t] = E[g_t^2] (1 - beta2^t) + zeta_2

The functions here compute each piece exactly (:func:`expected_ema`,
:func:`stationary_part`, :func:`zeta`), estimate ``E[m_t]`` and ``E[v_t]``
by simulation with a standard error (:func:`monte_carlo_moments`), and give
an Adam step whose bias corrections can be switched off
(:func:`adam_step_ablation`) for the experiment of the paper's section 6.4.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import NamedTuple

import numpy as np

from adamref._checks import check_adam, check_flags, numpy_spec
from adamref.lab.ema import ema, ema_update
from adamref.reference import _moving_average

__all__ = ["expected_ema", "stationary_part", "zeta", "MonteCarloMoments",
           "monte_carlo_moments", "uncorrected_factor", "adam_step_ablation", "ABLATION"]


def expected_ema(moments, beta: float) -> np.ndarray:
    """``E[x_bar_t]`` for ``t = 1..T`` of the zero-started average of a stream with ``E[x_i] = moments[i-1]``.

    ``x_bar_t = (1 - beta) sum_{i=1}^t beta^(t-i) x_i``; the expectation goes
    inside the sum, so this is the same average (:func:`adamref.lab.ema.ema`)
    run on the expectations.  Pass ``E[g_i]`` to get ``E[m_t]`` and
    ``E[g_i^2]`` to get ``E[v_t]``.
    """
    return ema(np.asarray(moments, dtype=float), beta)


def stationary_part(moments, beta: float) -> np.ndarray:
    """``E[x_t] (1 - beta^t)`` for ``t = 1..T``: what ``E[x_bar_t]`` would be if ``E[x_i]`` never changed."""
    moments = np.asarray(moments, dtype=float)
    t = np.arange(1, len(moments) + 1)
    return moments * (1 - beta ** t)


def zeta(moments, beta: float) -> np.ndarray:
    """The remainder ``E[x_bar_t] - E[x_t] (1 - beta^t)`` for ``t = 1..T``.

    With ``E[g_i]`` and ``beta1`` this is chapter 4's ``zeta_1`` (first
    moment); with ``E[g_i^2]`` and ``beta2`` it is ``zeta_2`` (second moment).

    Equal to ``(1 - beta) sum_{i<=t} beta^(t-i) (E[x_i] - E[x_t])``: zero when
    the expectations are constant, and small when they change little over the
    last few multiples of ``1 / (1 - beta)`` steps.
    """
    return expected_ema(moments, beta) - stationary_part(moments, beta)


class MonteCarloMoments(NamedTuple):
    """Sample means of ``m_t`` and ``v_t`` over independent runs, with their standard errors.

    Each field has shape ``(T,)``; entry ``t - 1`` belongs to step ``t``.
    """

    m: np.ndarray
    m_se: np.ndarray
    v: np.ndarray
    v_se: np.ndarray
    runs: int


def monte_carlo_moments(mean, std, beta1: float, beta2: float, runs: int,
                        seed: int) -> MonteCarloMoments:
    """Estimate ``E[m_t]`` and ``E[v_t]`` from ``runs`` simulated gradient streams.

    Stream ``r`` draws ``g_t ~ Normal(mean[t-1], std[t-1]^2)`` independently
    at each step ``t = 1..T`` (``T = len(mean)``; ``std`` may be a scalar) and
    runs Adam's two averages from zero.  Returns the average over runs of
    ``m_t`` and ``v_t`` for every ``t`` and the standard error of each
    average (sample standard deviation over ``sqrt(runs)``).  Runs are
    independent, so a correct formula for ``E[m_t]`` misses the average by
    more than 4 standard errors with probability about 6e-5.
    """
    mean = np.asarray(mean, dtype=float)
    std = np.broadcast_to(np.asarray(std, dtype=float), mean.shape)
    rng = np.random.default_rng(seed)
    m, v = np.zeros(runs), np.zeros(runs)
    stats = np.empty((4, len(mean)))
    for i, (g_bar, sigma) in enumerate(zip(mean, std)):
        g = g_bar + sigma * rng.standard_normal(runs)
        ema_update(m, g, beta1)                           # m_t
        ema_update(v, g * g, beta2)                       # v_t
        stats[:, i] = m.mean(), m.std(ddof=1), v.mean(), v.std(ddof=1)
    root = np.sqrt(runs)
    return MonteCarloMoments(stats[0], stats[1] / root, stats[2], stats[3] / root, runs)


def uncorrected_factor(t, beta1: float = 0.9, beta2: float = 0.999):
    """``(1 - beta1^t) / sqrt(1 - beta2^t)``: Adam's step without bias correction, in units of ``lr``,
    for a gradient that has been the same at every step so far (and ``eps = 0``)."""
    t = np.asarray(t, dtype=float)
    return (1 - beta1 ** t) / np.sqrt(1 - beta2 ** t)


def adam_step_ablation(p, g, m, v, t, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                       correct_first=True, correct_second=True, v_max=None) -> None:
    """One Adam step with each bias correction optional, in place.

    The same operations, in the same order, as :func:`adamref.reference.adam_step`
    (without weight decay, AMSGrad or ``maximize``); a correction that is
    switched off divides by 1 instead of ``1 - beta^t``, so with both on the
    result is bitwise the reference's::

        m <- beta1 m + (1 - beta1) g
        v <- beta2 v + (1 - beta2) g^2
        p <- p - lr / c1 * m / (sqrt(v) / sqrt(c2) + eps)

    with ``c1 = 1 - beta1^t`` if ``correct_first`` else 1, and ``c2`` alike.
    ``v_max`` exists so that :class:`adamref.lab.optimizers.Adam` can drive this
    function (through :data:`ABLATION`); it must be None.
    """
    check_flags(correct_first=correct_first, correct_second=correct_second)
    check_adam(numpy_spec, p, g, m, v, t, lr, beta1, beta2, eps, 0.0,
               False, False, v_max, False)
    _moving_average(m, g, beta1)                          # eq. 1: m_t
    v *= beta2                                            # eq. 2: v_t
    v += (1 - beta2) * g * g
    bias1 = 1 - beta1 ** t if correct_first else 1.0      # eq. 3, or no correction
    bias2 = 1 - beta2 ** t if correct_second else 1.0     # eq. 4, or no correction
    denom = np.sqrt(v) / bias2 ** 0.5 + eps               # sqrt(v_hat_t) + eps
    p += -(lr / bias1) * (m / denom)                      # eq. 5: theta_t


#: A backend for :class:`adamref.lab.optimizers.Adam`:
#: ``Adam(backend=ABLATION, lr=..., correct_first=False, correct_second=False)``.
ABLATION = SimpleNamespace(adam_step=adam_step_ablation)
