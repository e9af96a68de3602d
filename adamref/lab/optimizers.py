"""Small stateful optimizers for the book's experiments.

Each class keeps its state arrays and step counter and exposes one method,
``step(p, g)``, which updates ``p`` in place from the gradient ``g``.  The
update rules are PyTorch's (``torch.optim.SGD``, ``Adagrad``, ``RMSprop``,
``Adam``) so that a chapter's plots describe the optimizers readers use:

======================  ====================================================
``SGD``                 ``b <- mu b + g``;  ``p <- p - lr b``  (``mu = 0``: plain SGD)
``AdaGrad``             ``s <- s + g^2``;  ``p <- p - lr g / (sqrt(s) + eps)``
``RMSProp``             ``v <- rho v + (1 - rho) g^2``;  ``p <- p - lr g / (sqrt(v) + eps)``
``Adam``                :func:`adamref.reference.adam_step` (or another backend)
======================  ====================================================
"""

from __future__ import annotations

import numpy as np

from adamref import reference


class SGD:
    """Gradient descent, with heavy-ball momentum ``mu`` (Polyak) when ``mu > 0``."""

    def __init__(self, lr: float, mu: float = 0.0):
        self.lr, self.mu, self.b = lr, mu, None

    def step(self, p: np.ndarray, g: np.ndarray) -> None:
        if self.mu:
            self.b = g.copy() if self.b is None else self.mu * self.b + g
            g = self.b
        p -= self.lr * g


class AdaGrad:
    """AdaGrad (Duchi et al.): divide by the root of the *sum* of squared gradients."""

    def __init__(self, lr: float, eps: float = 1e-10):
        self.lr, self.eps, self.s = lr, eps, None

    def step(self, p: np.ndarray, g: np.ndarray) -> None:
        if self.s is None:
            self.s = np.zeros_like(p)
        self.s += g * g
        p -= self.lr * g / (np.sqrt(self.s) + self.eps)


class RMSProp:
    """RMSProp (Tieleman & Hinton): divide by the root of a moving average of ``g^2``."""

    def __init__(self, lr: float, rho: float = 0.99, eps: float = 1e-8):
        self.lr, self.rho, self.eps, self.v = lr, rho, eps, None

    def step(self, p: np.ndarray, g: np.ndarray) -> None:
        if self.v is None:
            self.v = np.zeros_like(p)
        self.v *= self.rho
        self.v += (1 - self.rho) * g * g
        p -= self.lr * g / (np.sqrt(self.v) + self.eps)


class Adam:
    """Adam with its state ``m, v, t``; ``backend`` is any module with ``adam_step``.

    Keyword arguments (``lr``, ``beta1``, ``beta2``, ``eps``, ``weight_decay``,
    ``decoupled``, ``amsgrad``, ``maximize``) are passed to ``adam_step``.
    """

    def __init__(self, backend=reference, **hyper):
        self.backend, self.hyper = backend, hyper
        self.m = self.v = self.v_max = None
        self.t = 0

    def step(self, p: np.ndarray, g: np.ndarray) -> None:
        if self.m is None:
            self.m, self.v = np.zeros_like(p), np.zeros_like(p)
            if self.hyper.get("amsgrad"):
                self.v_max = np.zeros_like(p)
        self.t += 1
        self.backend.adam_step(p, g, self.m, self.v, self.t, v_max=self.v_max, **self.hyper)
