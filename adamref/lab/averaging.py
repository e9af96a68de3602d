"""Averaging the parameters: the temporal average of Kingma & Ba's section 7.2 (chapter ch-averaging).

An exponential moving average of the iterates, with the paper's bias correction::

    theta_bar_t = beta theta_bar_{t-1} + (1 - beta) theta_t,   theta_bar_0 = 0
    theta_hat_t = theta_bar_t / (1 - beta^t)

(Kingma & Ba 2015, https://arxiv.org/abs/1412.6980, section 7.2; the uniform
average of Polyak & Juditsky 1992 and Ruppert 1988 is the limit of equal weights.)

- :class:`ParameterAverage`: that average, kept beside an optimizer;
- :func:`ema_variance_ratio_ar1`: the variance of the EMA of a stationary AR(1)
  sequence with coefficient ``phi``, as a fraction of the sequence's variance;
- :func:`adam_floor_variances`: ``Var z`` and ``Var z_bar`` of Adam on the noise
  floor of a 1-D quadratic, linearised (``sqrt(v_hat) = sigma``), exactly, from
  the discrete Lyapunov equation of the state ``(z, m, z_bar)``.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_discrete_lyapunov

from adamref.lab.ema import ema_update

__all__ = ["ParameterAverage", "ema_variance_ratio_ar1", "adam_floor_variances"]


class ParameterAverage:
    """The bias-corrected moving average of the iterates, updated after each step.

    ``update(theta)`` folds in the current parameters; ``value`` is
    ``theta_bar_t / (1 - beta^t)`` (a new array).
    """

    def __init__(self, beta: float):
        self.beta, self.t, self.bar = beta, 0, None

    def update(self, theta: np.ndarray) -> None:
        if self.bar is None:
            self.bar = np.zeros_like(theta, dtype=float)
        self.t += 1
        ema_update(self.bar, theta, self.beta)

    @property
    def value(self) -> np.ndarray:
        return self.bar / (1 - self.beta ** self.t)


def ema_variance_ratio_ar1(phi, beta):
    """``Var[EMA_beta(x)] / Var[x]`` for a stationary AR(1) sequence ``x`` with coefficient ``phi``.

    With ``Corr(x_t, x_{t-k}) = phi^|k|`` and the average long started::

        (1 - beta) (1 + beta phi) / ((1 + beta) (1 - beta phi))

    ``phi = 0`` gives the white-noise value ``(1 - beta) / (1 + beta)`` of chapter 2.
    """
    phi, beta = np.asarray(phi, dtype=float), np.asarray(beta, dtype=float)
    return (1 - beta) * (1 + beta * phi) / ((1 + beta) * (1 - beta * phi))


def adam_floor_variances(lr: float, h: float, sigma: float, beta: float,
                         beta1: float = 0.9) -> tuple[float, float]:
    """``(Var z, Var z_bar)`` of linearised Adam on ``1/2 h z^2`` with gradient noise ``sigma``.

    Near its noise floor Adam's ``sqrt(v_hat)`` stays close to ``sigma`` and the
    bias corrections are 1, so with ``xi_t`` standard normal::

        m_t     = beta1 m_{t-1} + (1 - beta1) (h z_{t-1} + sigma xi_t)
        z_t     = z_{t-1} - (lr / sigma) m_t
        z_bar_t = beta z_bar_{t-1} + (1 - beta) z_t

    a linear system ``s_t = A s_{t-1} + b xi_t``.  Its stationary covariance
    solves ``P = A P A^T + b b^T``.
    """
    k = lr / sigma
    m_row, m_b = np.array([(1 - beta1) * h, beta1, 0.0]), (1 - beta1) * sigma
    z_row, z_b = np.array([1.0, 0.0, 0.0]) - k * m_row, -k * m_b
    bar_row, bar_b = (1 - beta) * z_row + np.array([0.0, 0.0, beta]), (1 - beta) * z_b
    A = np.array([z_row, m_row, bar_row])            # state (z, m, z_bar)
    b = np.array([z_b, m_b, bar_b])
    P = solve_discrete_lyapunov(A, np.outer(b, b))
    return float(P[0, 0]), float(P[2, 2])
