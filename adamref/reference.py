"""The executable specification: Adam and Adamax in plain NumPy.

Each line follows Algorithm 1 of Kingma & Ba (2015) and its equation is
named beside it.  The semantics are exactly those of ``torch.optim.Adam``
(and ``AdamW``, ``Adamax``) at ``state["step"] == t``, so the operations
are done in PyTorch's order:

====================  =====================================================
paper                 here
====================  =====================================================
g_t                   ``g`` (negated if ``maximize``; plus ``wd * p`` for L2)
m_t                   ``m <- beta1 m + (1 - beta1) g``           (eq. 1)
v_t                   ``v <- beta2 v + (1 - beta2) g^2``         (eq. 2)
m_hat_t, v_hat_t      ``m / (1 - beta1^t)``, ``v / (1 - beta2^t)`` (eq. 3, 4)
theta_t               ``p <- p - lr m_hat / (sqrt(v_hat) + eps)``  (eq. 5)
====================  =====================================================

The Numba kernels in :mod:`adamref.cpu` and :mod:`adamref.cuda` are tested
against these functions.
"""

from __future__ import annotations


import numpy as np

from adamref._checks import check_adam, check_adamax, numpy_spec

__all__ = ["adam_step", "adamax_step"]


def adam_step(p, g, m, v, t, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, decoupled=False, amsgrad=False, v_max=None,
              maximize=False) -> None:
    """One Adam step at step number ``t`` (1 for the first), in place.

    Updates ``p``, ``m``, ``v`` (and ``v_max`` when ``amsgrad``)::

        m     <- beta1 m + (1 - beta1) g
        v     <- beta2 v + (1 - beta2) g^2
        p     <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    ``weight_decay`` adds ``weight_decay * p`` to ``g`` (L2), or with
    ``decoupled=True`` shrinks ``p`` by ``1 - lr * weight_decay`` first
    (AdamW).  ``amsgrad`` keeps ``v_max = max(v_max, v)`` and uses it in
    place of ``v``.  ``maximize`` climbs instead of descends.
    """
    check_adam(numpy_spec, p, g, m, v, t, lr, beta1, beta2, eps, weight_decay,
               decoupled, amsgrad, v_max, maximize)
    if maximize:
        g = -g
    if weight_decay != 0:
        if decoupled:
            p *= 1 - lr * weight_decay                    # AdamW: theta <- (1 - lr wd) theta
        else:
            g = g + weight_decay * p                      # L2: g <- g + wd theta
    _moving_average(m, g, beta1)                          # eq. 1: m_t
    v *= beta2                                            # eq. 2: v_t
    v += (1 - beta2) * g * g
    bias1 = 1 - beta1 ** t                                # eq. 3: 1 - beta1^t
    bias2 = 1 - beta2 ** t                                # eq. 4: 1 - beta2^t
    if amsgrad:
        np.maximum(v_max, v, out=v_max)                   # AMSGrad: v_max <- max(v_max, v_t)
        v = v_max
    denom = np.sqrt(v) / bias2 ** 0.5 + eps               # sqrt(v_hat_t) + eps
    p += -(lr / bias1) * (m / denom)                      # eq. 5: theta_t


def adamax_step(p, g, m, u, t, *, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, maximize=False) -> None:
    """One Adamax step (Kingma & Ba, section 7.1) at step number ``t``, in place.

    Updates ``p``, ``m`` and the infinity norm ``u``::

        m <- beta1 m + (1 - beta1) g
        u <- max(beta2 u, |g| + eps)
        p <- p - lr / (1 - beta1^t) * m / u

    ``eps`` sits inside the maximum, as in ``torch.optim.Adamax``, so ``u``
    is never zero.
    """
    check_adamax(numpy_spec, p, g, m, u, t, lr, beta1, beta2, eps, weight_decay, maximize)
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g + weight_decay * p                          # L2: g <- g + wd theta
    _moving_average(m, g, beta1)                          # m_t
    u *= beta2                                            # u_t = max(beta2 u, |g| + eps)
    np.maximum(u, np.abs(g) + eps, out=u)
    p += -(lr / (1 - beta1 ** t)) * (m / u)               # theta_t


def _moving_average(m, g, beta) -> None:
    """``m <- beta m + (1 - beta) g`` in place, rounded as ``torch.lerp`` rounds it.

    ``torch`` writes the update as ``m.lerp_(g, w)`` with weight ``w = 1 - beta``:
    ``m + w (g - m)`` when ``w < 0.5``, else ``g - (1 - w)(g - m)``; the second
    form returns ``g`` exactly when ``beta = 0``.
    """
    w = m.dtype.type(1 - beta)
    if w < 0.5:
        m += w * (g - m)
    else:
        np.subtract(g, (1 - w) * (g - m), out=m)
