"""AdaMax's derivation: the L^p moving average and its p -> infinity limit.

Used by the chapter on AdaMax (``ch-adamax``), after Kingma & Ba (2015),
section 7.1.  Adam's second moment generalises from squares to p-th powers,
with the decay rate raised to the p-th power as well::

    v_t = beta2^p v_{t-1} + (1 - beta2^p) |g_t|^p
        = (1 - beta2^p) sum_{i<=t} beta2^(p (t-i)) |g_i|^p
    u_t^(p) = v_t^(1/p) = (1 - beta2^p)^(1/p) || (beta2^(t-i) |g_i|)_{i<=t} ||_p

For ``p = 2`` this is ``sqrt(v_t)`` of Adam run with ``beta2**2``.  As
``p -> infinity``, ``(1 - beta2^p)^(1/p) -> 1`` and the p-norm tends to the
maximum norm::

    u_t = max_{i<=t} beta2^(t-i) |g_i| = max(beta2 u_{t-1}, |g_t|)

:func:`lp_average` computes ``u^(p)`` by the recurrence in the log domain (so
that ``|g|^p`` neither overflows nor underflows for large ``p``);
:func:`max_average` computes the limit from the unrolled maximum, not from
the recurrence that :func:`adamref.reference.adamax_step` uses, so the two
check each other.  :func:`adamax_step_bound` is the largest ``|Delta_t| /
alpha`` AdaMax can take at step ``t`` (``eps = 0``), and
:func:`shrinking_stream` the gradients that reach it.

Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR
2015, section 7.1 (https://arxiv.org/abs/1412.6980).
"""

from __future__ import annotations

import numpy as np

__all__ = ["lp_average", "max_average", "adamax_step_bound", "shrinking_stream"]


def lp_average(grads, beta2: float, p: float) -> np.ndarray:
    """``u_t^(p) = v_t^(1/p)`` for ``t = 1..T`` (rows of ``grads``), ``v_0 = 0``.

    ``v_t = beta2^p v_{t-1} + (1 - beta2^p) |g_t|^p``, computed as
    ``log v_t = logaddexp(p log beta2 + log v_{t-1}, log(1 - beta2^p) + p log |g_t|)``.
    """
    grads = np.asarray(grads, dtype=float)
    if not p > 0:
        raise ValueError(f"p must be > 0, got {p!r}")
    if not 0 < beta2 < 1:
        raise ValueError(f"beta2 must be in (0, 1), got {beta2!r}")
    decay = p * np.log(beta2)
    fresh = np.log(-np.expm1(decay))                  # log(1 - beta2^p)
    with np.errstate(divide="ignore"):
        log_abs = np.log(np.abs(grads))               # -inf where g = 0
    log_v = np.full(grads.shape[1:], -np.inf)
    out = np.empty(grads.shape)
    for t in range(grads.shape[0]):
        log_v = np.logaddexp(decay + log_v, fresh + p * log_abs[t])
        out[t] = np.exp(log_v / p)
    return out


def max_average(grads, beta2: float) -> np.ndarray:
    """``u_t = max_{i<=t} beta2^(t-i) |g_i|`` for ``t = 1..T``, from the unrolled maximum.

    ``beta2^(t-i) |g_i| = beta2^t (|g_i| / beta2^i)``: a running maximum of
    ``log |g_i| - i log beta2``, shifted back by ``t log beta2``.
    """
    grads = np.asarray(grads, dtype=float)
    if not 0 < beta2 < 1:
        raise ValueError(f"beta2 must be in (0, 1), got {beta2!r}")
    i = np.arange(1, grads.shape[0] + 1).reshape((-1,) + (1,) * (grads.ndim - 1))
    with np.errstate(divide="ignore"):
        scaled = np.log(np.abs(grads)) - i * np.log(beta2)
    return np.exp(np.maximum.accumulate(scaled, axis=0) + i * np.log(beta2))


def adamax_step_bound(t, beta1: float, beta2: float):
    """The largest ``|Delta_t| / alpha`` of AdaMax at step ``t`` (``eps = 0``)::

        B_t = (1 - beta1) / (1 - beta1^t) * sum_{k=0}^{t-1} (beta1 / beta2)^k

    Since ``u_t >= beta2^(t-i) |g_i|``, each ``|g_i| <= u_t / beta2^(t-i)``,
    and ``|m_t| <= (1 - beta1) sum_i beta1^(t-i) |g_i|``.  Equality when
    ``|g_i| = c beta2^(i-t)`` with one sign (:func:`shrinking_stream`).
    For ``beta1 < beta2``, ``B_t`` tends to ``(1 - beta1) / (1 - beta1 / beta2)``.
    """
    t = np.asarray(t)
    r = beta1 / beta2
    if r == 1:
        total = t.astype(float)
    else:
        total = (1 - r ** t) / (1 - r)
    return (1 - beta1) / (1 - beta1 ** t) * total


def shrinking_stream(T: int, beta2: float, scale: float = 1.0) -> np.ndarray:
    """``g_i = scale * beta2^(i - T)`` for ``i = 1..T``: gradients that shrink by ``beta2``
    per step, so that every ``beta2^(T-i) |g_i|`` equals ``scale`` and AdaMax's step
    at ``T`` reaches :func:`adamax_step_bound`.
    """
    i = np.arange(1, T + 1)
    return scale * beta2 ** (i - T).astype(float)
