"""The executable specification: Adam, Adamax, NAdam and RAdam in plain NumPy.

Each line follows Algorithm 1 of Kingma & Ba (2015) and its equation is
named beside it.  The semantics are exactly those of ``torch.optim.Adam``
(and ``AdamW``, ``Adamax``, ``NAdam``, ``RAdam``) at ``state["step"] == t``, so the operations
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
against these functions.  :func:`nadam_step` and :func:`radam_step` follow
torch 2.13's ``_single_tensor_nadam`` and ``_single_tensor_radam`` line by line.
"""

from __future__ import annotations


import numpy as np

from adamref._checks import check_adam, check_adamax, check_nadam, check_radam, numpy_spec

__all__ = ["adam_step", "adamax_step", "nadam_step", "radam_step"]


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


def nadam_step(p, g, m, v, t, mu_product, *, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
               weight_decay=0.0, momentum_decay=4e-3, decoupled=False,
               maximize=False) -> None:
    """One NAdam step (Dozat 2016) at step number ``t``, in place, as ``torch.optim.NAdam``.

    Paper: T. Dozat, *Incorporating Nesterov Momentum into Adam*, ICLR 2016
    workshop, https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ .
    How it differs from :func:`adam_step`: the step uses a Nesterov
    look-ahead, a mix of the fresh gradient and the moving average weighted
    by a momentum schedule ``mu_t``, and the first moment's bias correction is
    the running product of the ``mu`` s instead of ``1 - beta1^t``.

    Updates ``p``, ``m``, ``v`` and ``mu_product``::

        mu_t       = beta1 (1 - 0.5 * 0.96^(t * momentum_decay))
        mu_{t+1}   = beta1 (1 - 0.5 * 0.96^((t + 1) * momentum_decay))
        mu_product <- mu_product * mu_t                  (prod_{i<=t} mu_i)
        m          <- beta1 m + (1 - beta1) g            (beta1, not mu_t)
        v          <- beta2 v + (1 - beta2) g^2
        denom      = sqrt(v / (1 - beta2^t)) + eps
        p          <- p - lr (1 - mu_t) / (1 - mu_product) * g / denom
                        - lr mu_{t+1} / (1 - mu_product mu_{t+1}) * m / denom

    ``mu_product`` is the caller's state: a writable one-element NumPy array
    (shape ``()`` like torch's), 1 before the first step.  Start it as
    ``np.ones((), np.float32)`` to match ``torch.optim.NAdam`` under torch's
    default dtype, which keeps it as a float32 tensor whatever the parameter's
    dtype (``np.float64`` matches torch with ``torch.set_default_dtype(
    torch.float64)``); the product is rounded to its dtype each step, and
    ``mu_{t+1}`` multiplies the rounded value in double precision, as torch does.

    ``weight_decay`` adds ``weight_decay * p`` to ``g`` (L2), or with
    ``decoupled=True`` shrinks ``p`` by ``1 - lr * weight_decay`` first.
    ``maximize`` climbs instead of descends.
    """
    check_nadam(numpy_spec, p, g, m, v, t, mu_product, lr, beta1, beta2, eps,
                weight_decay, momentum_decay, decoupled, maximize)
    step = float(t)                                       # torch keeps step as a float
    if maximize:
        g = -g
    bias2 = 1 - beta2 ** step                             # 1 - beta2^t
    if weight_decay != 0:
        if decoupled:
            p *= 1 - lr * weight_decay                    # theta <- (1 - lr wd) theta
        else:
            g = g + weight_decay * p                      # L2: g <- g + wd theta
    mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))           # mu_t
    mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))  # mu_{t+1}
    mu_product *= mu                                      # prod_{i<=t} mu_i, in its dtype
    product = float(mu_product.reshape(()))
    _moving_average(m, g, beta1)                          # m_t
    v *= beta2                                            # v_t
    v += (1 - beta2) * g * g
    denom = np.sqrt(v / bias2) + eps                      # sqrt(v_hat_t) + eps
    product_next = product * mu_next                      # prod_{i<=t+1} mu_i
    p += (-lr * (1.0 - mu) / (1.0 - product)) * g / denom           # fresh gradient
    p += ((-lr * mu_next) / (1.0 - product_next)) * m / denom       # look-ahead momentum


def radam_step(p, g, m, v, t, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
               weight_decay=0.0, decoupled=False, maximize=False) -> None:
    """One RAdam step (Liu et al. 2020) at step number ``t``, in place, as ``torch.optim.RAdam``.

    Paper: L. Liu et al., *On the Variance of the Adaptive Learning Rate and
    Beyond*, ICLR 2020, https://arxiv.org/abs/1908.03265 .
    How it differs from :func:`adam_step`: while the second moment rests on
    too few samples (``rho_t <= 5``) the step is momentum SGD, ``lr * m_hat``,
    with no division by ``sqrt(v)``; afterwards Adam's step is multiplied by
    the rectification ``r_t < 1``, which tends to 1 as ``t`` grows.  ``eps``
    is added to ``sqrt(v)``, not to ``sqrt(v_hat)``.

    Updates ``p``, ``m``, ``v``::

        m       <- beta1 m + (1 - beta1) g
        v       <- beta2 v + (1 - beta2) g^2
        m_hat   = m / (1 - beta1^t)
        rho_inf = 2 / (1 - beta2) - 1
        rho_t   = rho_inf - 2 t beta2^t / (1 - beta2^t)
        if rho_t > 5:
            r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
            p  <- p - lr m_hat sqrt(1 - beta2^t) / (sqrt(v) + eps) r_t
        else:
            p  <- p - lr m_hat

    The threshold is torch's, ``rho_t > 5``; the paper's Algorithm 2 states
    ``rho_t > 4`` and its authors' code uses ``rho_t >= 5``.  Since ``rho_t``
    is just under ``t`` early on (4.996 at ``t = 5`` for ``beta2 = 0.999``),
    torch's first rectified step is ``t = 6``.

    ``weight_decay`` adds ``weight_decay * p`` to ``g`` (L2), or with
    ``decoupled=True`` shrinks ``p`` by ``1 - lr * weight_decay`` first.
    ``maximize`` climbs instead of descends.
    """
    check_radam(numpy_spec, p, g, m, v, t, lr, beta1, beta2, eps, weight_decay,
                decoupled, maximize)
    step = float(t)                                       # torch keeps step as a float
    if maximize:
        g = -g
    if weight_decay != 0:
        if decoupled:
            p *= 1 - lr * weight_decay                    # theta <- (1 - lr wd) theta
        else:
            g = g + weight_decay * p                      # L2: g <- g + wd theta
    _moving_average(m, g, beta1)                          # m_t
    v *= beta2                                            # v_t
    v += (1 - beta2) * g * g
    bias1 = 1 - beta1 ** step                             # 1 - beta1^t
    bias2 = 1 - beta2 ** step                             # 1 - beta2^t
    m_hat = m / bias1                                     # m_hat_t
    rho_inf = 2 / (1 - beta2) - 1                         # rho_inf
    rho_t = rho_inf - 2 * step * (beta2 ** step) / bias2  # rho_t
    if rho_t > 5.0:
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5       # r_t
        adaptive = np.reciprocal(np.sqrt(v) + eps) * bias2 ** 0.5       # 1 / sqrt(v_hat)
        p -= m_hat * lr * adaptive * rect                 # rectified Adam step
    else:
        p -= m_hat * lr                                   # momentum SGD step


def _moving_average(m, g, beta) -> None:
    """``m <- beta m + (1 - beta) g`` in place, in ``torch.lerp``'s two forms.

    ``torch`` writes the update as ``m.lerp_(g, w)`` with weight ``w = 1 - beta``:
    ``m + w (g - m)`` when ``w < 0.5``, else ``g - (1 - w)(g - m)``; the second
    form returns ``g`` exactly when ``beta = 0``.  NumPy rounds the product and
    the sum separately, where torch's CPU kernels fuse them (one fma), so the
    last bit differs on some elements (11% of random float32 pairs at
    ``beta = 0.9``); :mod:`adamref.cpu` rounds as torch does.
    """
    w = m.dtype.type(1 - beta)
    if w < 0.5:
        m += w * (g - m)
    else:
        np.subtract(g, (1 - w) * (g - m), out=m)
