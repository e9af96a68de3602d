"""The exponential moving average (EMA), the first-moment estimate inside Adam.

With ``m_0 = 0`` and a stream ``g_1, g_2, ...``::

    m_t = beta m_{t-1} + (1 - beta) g_t
        = (1 - beta) sum_{i=1..t} beta^(t-i) g_i        (weights sum to 1 - beta^t)

- :func:`ema_update`: one step of the recursion, in place (what an optimizer does);
- :func:`ema`: the whole sequence ``m_1 .. m_T`` of a stream, optionally
  divided by ``1 - beta^t`` (Adam's bias correction);
- :func:`ema_weights`: the weight ``(1 - beta) beta^(t-i)`` of each ``g_i`` in ``m_t``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ema_update", "ema", "ema_weights"]


def _check_beta(beta: float) -> None:
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")


def ema_update(m: np.ndarray, g: np.ndarray, beta: float) -> np.ndarray:
    """``m <- beta m + (1 - beta) g`` in place; returns ``m``."""
    _check_beta(beta)
    m *= beta
    m += (1 - beta) * g
    return m


def ema(xs, beta: float, bias_correct: bool = False, axis: int = 0) -> np.ndarray:
    """The moving averages ``m_1, ..., m_T`` of the stream ``xs`` (``m_0 = 0``).

    ``xs`` holds ``g_1 .. g_T`` along ``axis`` (other axes are independent
    streams: ``ema(G, beta, axis=1)`` on a ``(runs, T)`` array averages every
    run at once).  The result has the shape of ``xs``; its entry ``t - 1``
    along ``axis`` is ``m_t``.  With ``bias_correct`` it is
    ``m_t / (1 - beta^t)`` instead.
    """
    _check_beta(beta)
    xs = np.moveaxis(np.asarray(xs, dtype=float), axis, 0)
    out = np.empty_like(xs)
    m = np.zeros_like(xs[0])
    for t in range(len(xs)):
        out[t] = ema_update(m, xs[t], beta)
    if bias_correct:
        t = np.arange(1, len(xs) + 1).reshape((-1,) + (1,) * (xs.ndim - 1))
        out /= 1 - beta ** t
    return np.moveaxis(out, 0, axis)


def ema_weights(beta: float, t: int) -> np.ndarray:
    """The weights ``w_i = (1 - beta) beta^(t-i)``, ``i = 1..t``, with which ``m_t`` sums the ``g_i``.

    ``ema_weights(beta, t) @ xs[:t]`` equals ``ema(xs, beta)[t - 1]``; the
    weights sum to ``1 - beta^t``, not 1.
    """
    _check_beta(beta)
    i = np.arange(1, t + 1)
    return (1 - beta) * beta ** (t - i)
