"""Adam as other people write it: the paper's "efficient" order and TensorFlow/Keras.

:func:`adamref.reference.adam_step` is Algorithm 1 of Kingma & Ba (2015), as
``torch.optim.Adam`` computes it: epsilon is added to the bias-corrected
``sqrt(v_hat)``.  Section 2 of the paper also gives a reordered form that
folds both bias corrections into the step size and adds an "epsilon hat" to
the *uncorrected* ``sqrt(v)``; TensorFlow and Keras implement that form.  The
two agree only when ``eps_hat = eps * sqrt(1 - beta2^t)``, which changes
with ``t`` (chapter 5 derives this and measures the difference).

====================  =====================================================
paper                 here
====================  =====================================================
m_t, v_t              as in :func:`adamref.reference.adam_step`
alpha_t               ``lr * sqrt(1 - beta2^t) / (1 - beta1^t)``
theta_t               ``p <- p - alpha_t m / (sqrt(v) + eps_hat)``
====================  =====================================================

Also here: :func:`adam_step_eps_in_sqrt`, the variant with epsilon under the
square root that some tutorials write (a different algorithm), and
:class:`KerasAdam`, Keras's step with its state, for side-by-side experiments.

Functions take and update NumPy arrays in place, like the reference, and
validate their input with the same checks (errors about ``eps_hat`` or
``epsilon`` name it ``eps``).
"""

from __future__ import annotations

import math

import numpy as np

from adamref._checks import check_adam, numpy_spec
from adamref.reference import _moving_average

__all__ = ["adam_step_efficient", "keras_adam_step", "adam_step_eps_in_sqrt",
           "eps_hat_equivalent", "effective_eps", "KerasAdam"]


def adam_step_efficient(p, g, m, v, t, *, lr=1e-3, beta1=0.9, beta2=0.999,
                        eps_hat=1e-8) -> None:
    """One Adam step in the reordered form of Kingma & Ba, section 2, in place.

    Updates ``p``, ``m``, ``v``::

        m       <- beta1 m + (1 - beta1) g
        v       <- beta2 v + (1 - beta2) g^2
        alpha_t  = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
        p       <- p - alpha_t * m / (sqrt(v) + eps_hat)

    With ``eps_hat = eps * sqrt(1 - beta2^t)`` (see :func:`eps_hat_equivalent`)
    this is Algorithm 1 with ``eps``, up to rounding; with a constant
    ``eps_hat`` it is Algorithm 1 with the larger, step-dependent epsilon
    :func:`effective_eps`.
    """
    check_adam(numpy_spec, p, g, m, v, t, lr, beta1, beta2, eps_hat, 0.0,
               False, False, None, False)
    _moving_average(m, g, beta1)                          # eq. 1: m_t
    v *= beta2                                            # eq. 2: v_t
    v += (1 - beta2) * g * g
    alpha_t = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
    p -= alpha_t * (m / (np.sqrt(v) + eps_hat))           # theta_t, eps_hat form


def keras_adam_step(p, g, m, v, t, *, learning_rate=1e-3, beta_1=0.9,
                    beta_2=0.999, epsilon=1e-7) -> None:
    """One step of ``keras.optimizers.Adam`` (TensorFlow's convention), in place.

    Keras names its arguments ``learning_rate``, ``beta_1``, ``beta_2`` and
    ``epsilon`` (default ``1e-7``, documented as the paper's "epsilon hat"),
    and updates in the order::

        alpha = learning_rate * sqrt(1 - beta_2^t) / (1 - beta_1^t)
        m    <- m + (g - m) (1 - beta_1)
        v    <- v + (g^2 - v) (1 - beta_2)
        p    <- p - m alpha / (sqrt(v) + epsilon)

    Only the default Keras path (no weight decay, no AMSGrad) is written here.
    """
    check_adam(numpy_spec, p, g, m, v, t, learning_rate, beta_1, beta_2, epsilon,
               0.0, False, False, None, False)
    alpha = learning_rate * math.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
    m += (g - m) * (1 - beta_1)
    v += (g * g - v) * (1 - beta_2)
    p -= (m * alpha) / (np.sqrt(v) + epsilon)


def adam_step_eps_in_sqrt(p, g, m, v, t, *, lr=1e-3, beta1=0.9, beta2=0.999,
                          eps=1e-8) -> None:
    """Adam with epsilon *inside* the square root, in place: a variant, not the paper.

    Updates ``p``, ``m``, ``v``::

        p <- p - lr * m_hat / sqrt(v_hat + eps)

    Some write-ups put epsilon here.  It is a different algorithm: for small
    ``v_hat`` it acts like Algorithm 1 with epsilon ``sqrt(eps)`` (``1e-4``
    for ``eps = 1e-8``), ten thousand times larger.
    """
    check_adam(numpy_spec, p, g, m, v, t, lr, beta1, beta2, eps, 0.0,
               False, False, None, False)
    _moving_average(m, g, beta1)                          # eq. 1: m_t
    v *= beta2                                            # eq. 2: v_t
    v += (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** t)                          # eq. 3
    v_hat = v / (1 - beta2 ** t)                          # eq. 4
    p -= lr * m_hat / np.sqrt(v_hat + eps)                # eps under the root


def eps_hat_equivalent(eps: float, beta2: float, t: int) -> float:
    """The ``eps_hat`` that makes the efficient form equal Algorithm 1 at step ``t``.

    ``eps * sqrt(1 - beta2^t)``: Algorithm 1 adds ``eps`` to
    ``sqrt(v) / sqrt(1 - beta2^t)``; multiplying through by
    ``sqrt(1 - beta2^t)`` moves it onto ``sqrt(v)``.
    """
    return eps * math.sqrt(1 - beta2 ** t)


def effective_eps(eps_hat: float, beta2: float, t: int) -> float:
    """The Algorithm-1 epsilon that a constant ``eps_hat`` amounts to at step ``t``.

    ``eps_hat / sqrt(1 - beta2^t)``: about ``31.6 eps_hat`` at ``t = 1`` with
    ``beta2 = 0.999``, falling to ``eps_hat`` as ``t`` grows.
    """
    return eps_hat / math.sqrt(1 - beta2 ** t)


class KerasAdam:
    """:func:`keras_adam_step` with its state, as a stateful optimizer with ``step(p, g)``.

    The counterpart of :class:`adamref.lab.optimizers.Adam` (PyTorch's convention)
    for experiments that compare the two; keyword arguments are Keras's
    (``learning_rate``, ``beta_1``, ``beta_2``, ``epsilon``).
    """

    def __init__(self, **hyper):
        self.hyper = hyper
        self.m = self.v = None
        self.t = 0

    def step(self, p: np.ndarray, g: np.ndarray) -> None:
        if self.m is None:
            self.m, self.v = np.zeros_like(p), np.zeros_like(p)
        self.t += 1
        keras_adam_step(p, g, self.m, self.v, self.t, **self.hyper)
