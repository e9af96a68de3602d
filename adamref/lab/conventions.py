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

Chapter 19 (``ch-disagree``) adds the other conventions a practitioner meets,
each written from its framework's source: :func:`optax_adam_step` (``eps`` and
``eps_root``), :func:`fused_adam_step` (apex and DeepSpeed ``FusedAdam``, AdamW
by default), :func:`adamw_paper_step` (decay not multiplied by the learning
rate) with :func:`paper_weight_decay`, and :func:`ulp_distance` to measure how
far two float trajectories have drifted apart.

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
           "eps_hat_equivalent", "effective_eps", "KerasAdam", "optax_adam_step",
           "fused_adam_step", "adamw_paper_step", "paper_weight_decay", "ulp_distance"]


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


# ---------------------------------------------------------------------------
# More frameworks (chapter ch-disagree, book/19_implementations_disagree.ipynb)
# ---------------------------------------------------------------------------

def optax_adam_step(p, g, m, v, t, *, learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8,
                    eps_root=0.0, weight_decay=0.0) -> None:
    """One step of ``optax.adam`` (``optax.adamw`` when ``weight_decay > 0``), in place.

    optax chains ``scale_by_adam`` (``optax/_src/transform.py``), for AdamW
    ``add_decayed_weights`` and then ``scale_by_learning_rate``
    (``optax/_src/alias.py``)::

        m     <- (1 - b1) g + b1 m
        v     <- (1 - b2) g^2 + b2 v
        u      = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t) + eps_root) + eps)
        u     <- u + weight_decay p                     (adamw only)
        p     <- p - learning_rate u

    ``eps`` is Algorithm 1's (added to the bias-corrected ``sqrt(v_hat)``, as in
    PyTorch); ``eps_root`` (default 0) is added under the square root.  The
    decay is multiplied by ``learning_rate``, as in ``torch.optim.AdamW``.  The
    bias corrections ``1 - b^t`` are rounded to the arrays' dtype, as optax
    casts them; XLA's ``pow`` and fusion may round the last bit differently.

    References: optax, https://github.com/google-deepmind/optax (``scale_by_adam``,
    ``adamw``).
    """
    check_adam(numpy_spec, p, g, m, v, t, learning_rate, b1, b2, eps, weight_decay,
               True, False, None, False)
    if eps_root < 0:
        raise ValueError(f"eps_root must be >= 0, got {eps_root!r}")
    one = p.dtype.type
    m[...] = (1 - b1) * g + b1 * m                        # update_moment, order 1
    v[...] = (1 - b2) * (g * g) + b2 * v                  # update_moment_per_elem_norm, 2
    m_hat = m / one(1 - b1 ** t)                          # bias_correction
    v_hat = v / one(1 - b2 ** t)
    u = m_hat / (np.sqrt(v_hat + eps_root) + eps)
    if weight_decay != 0:
        u = u + weight_decay * p                          # add_decayed_weights
    p -= learning_rate * u                                # scale_by_learning_rate


def fused_adam_step(p, g, m, v, t, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                    weight_decay=0.0, adam_w_mode=True, bias_correction=True) -> None:
    """One step of apex's and DeepSpeed's ``FusedAdam``, in place.

    Both share one CUDA kernel (apex ``csrc/multi_tensor_adam.cu``, ``AdamFunctor``;
    DeepSpeed ``deepspeed/ops/adam/fused_adam.py`` says it is adapted from it).
    Their constructor defaults to ``adam_w_mode=True``: ``weight_decay`` is then
    *decoupled* (AdamW), although the docstring calls it an "L2 penalty"::

        g     <- g + weight_decay p                     (adam_w_mode=False only)
        m     <- beta1 m + (1 - beta1) g
        v     <- beta2 v + (1 - beta2) g^2
        u      = (m / bc1) / (sqrt(v / bc2) + eps)
        u     <- u + weight_decay p                     (adam_w_mode=True only)
        p     <- p - lr u

    with ``bc1 = 1 - beta1^t``, ``bc2 = 1 - beta2^t`` (both 1 when
    ``bias_correction=False``), computed on the host in double and passed to
    the kernel as floats.  The kernel computes in float32 in this order; the
    CUDA compiler may contract ``a * b + c`` into fused multiply-adds, which this
    NumPy version does not.
    """
    check_adam(numpy_spec, p, g, m, v, t, lr, beta1, beta2, eps, weight_decay,
               bool(adam_w_mode), False, None, False)
    f = np.float32 if p.dtype == np.float32 else np.float64
    b1, b2 = f(beta1), f(beta2)
    bc1 = f(1 - float(b1) ** t) if bias_correction else f(1)
    bc2 = f(1 - float(b2) ** t) if bias_correction else f(1)
    decay = f(weight_decay)
    if not adam_w_mode and weight_decay != 0:
        g = g + decay * p
    m[...] = b1 * m + (f(1) - b1) * g
    v[...] = b2 * v + (f(1) - b2) * g * g
    u = (m / bc1) / (np.sqrt(v / bc2) + f(eps))
    if adam_w_mode and weight_decay != 0:
        u = u + decay * p
    p -= f(lr) * u


def adamw_paper_step(p, g, m, v, t, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                     weight_decay=0.0, schedule=1.0) -> None:
    """AdamW as Loshchilov & Hutter (2019), Algorithm 2, write it, in place.

    ``theta <- theta - eta_t (lr m_hat / (sqrt(v_hat) + eps) + weight_decay theta)``:
    the decay is multiplied by the schedule multiplier ``eta_t`` (``schedule``)
    only, not by the learning rate.  ``torch.optim.AdamW`` multiplies it by
    ``lr`` as well, so the paper's ``weight_decay`` equals torch's
    ``lr * weight_decay`` (:func:`paper_weight_decay`).
    """
    check_adam(numpy_spec, p, g, m, v, t, lr, beta1, beta2, eps, weight_decay,
               True, False, None, False)
    _moving_average(m, g, beta1)
    v *= beta2
    v += (1 - beta2) * g * g
    denom = np.sqrt(v) / (1 - beta2 ** t) ** 0.5 + eps
    p -= schedule * ((lr / (1 - beta1 ** t)) * (m / denom) + weight_decay * p)


def paper_weight_decay(lr: float, torch_weight_decay: float) -> float:
    """The paper's (Loshchilov & Hutter) ``weight_decay`` that equals torch's AdamW one.

    ``torch.optim.AdamW`` shrinks by ``1 - lr * weight_decay`` per step; the
    paper by ``1 - eta_t * weight_decay``; with ``eta_t = 1`` they match when
    the paper's value is ``lr * weight_decay``.
    """
    return lr * torch_weight_decay


def ulp_distance(a, b) -> np.ndarray:
    """How many representable float32 (or float64) numbers lie between ``a`` and ``b``.

    Elementwise ``|a - b|`` measured in steps of the floating-point grid: 0 when
    equal (``+0.0`` and ``-0.0`` count as equal), 1 for neighbours, counted
    across zero.  ``a`` and ``b`` must have the same dtype.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.dtype not in (np.float32, np.float64):
        raise TypeError(f"need two float32 or two float64 arrays, got {a.dtype}, {b.dtype}")
    itype = np.int32 if a.dtype == np.float32 else np.int64

    def ordered(x):
        i = x.view(itype).astype(np.int64)
        # negative floats: map so that the integer order is the float order
        return np.where(i < 0, np.iinfo(itype).min - i, i)

    return np.abs(ordered(a) - ordered(b))
