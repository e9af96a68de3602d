"""Weight decay inside Adam: L2 through the normalisation, or decoupled (chapter ch-adamw).

Adam with an L2 penalty adds ``lambda theta`` to the gradient, and that term is
divided by ``sqrt(v_hat) + eps`` like the rest; AdamW (Loshchilov & Hutter
2019, https://arxiv.org/abs/1711.05101) shrinks the parameter outside the
normalisation, ``theta <- (1 - alpha lambda) theta`` in PyTorch.  Per step and
per coordinate the parameter is then multiplied by about ``1 - d_i`` with::

    d_i = alpha lambda / (sqrt(v_hat_i) + eps)      (L2, while lambda |theta_i| << sqrt(v_hat_i))
    d_i = alpha lambda                              (decoupled, PyTorch's AdamW)

- :func:`effective_decay`: that per-step decay ``d_i``;
- :func:`train_softmax_grid`: softmax regression trained by an
  ``adamref.optim`` optimizer at every ``(lr, weight_decay)`` of a grid and for
  several seeds at once (one parameter group per grid point), for the sweep of
  the chapter;
- :func:`softmax_scores`: mean cross-entropy and accuracy of many weight
  matrices at once.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["effective_decay", "train_softmax_grid", "softmax_scores"]


def effective_decay(lr: float, weight_decay: float, v_hat, eps: float = 1e-8, *,
                    decoupled: bool = False) -> np.ndarray:
    """The fraction of ``theta_i`` that one step's weight decay removes.

    ``alpha lambda / (sqrt(v_hat) + eps)`` for L2 (``decoupled=False``; valid while
    the decay term ``lambda theta_i`` is small next to the gradient's root mean
    square), ``alpha lambda`` for PyTorch's AdamW, one value per entry of ``v_hat``.
    """
    v_hat = np.asarray(v_hat, dtype=float)
    if decoupled:
        return np.full_like(v_hat, lr * weight_decay)
    return lr * weight_decay / (np.sqrt(v_hat) + eps)


def _with_bias(X):
    return np.hstack([X, np.ones((len(X), 1))])


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def train_softmax_grid(optimizer, lrs, weight_decays, X, y, *, seeds=3, steps=1000,
                       batch_size=20, classes=None) -> np.ndarray:
    """Train softmax regression at every ``(lr, weight_decay)`` and seed; return the weights.

    ``optimizer`` is a ``torch.optim``-style class (``adamref.optim.Adam`` or
    ``AdamW``).  Every run starts from zero weights (the bias is the last row,
    as in :class:`adamref.lab.problems.SoftmaxRegression`); seed ``s`` draws its
    minibatches of ``batch_size`` rows without replacement from
    ``np.random.default_rng(s)``, the same draws as
    ``SoftmaxRegression.grad(x, rng)``, and every grid point sees the same
    minibatches.  Returns float64 weights of shape
    ``(len(lrs), len(weight_decays), seeds, features + 1, classes)``.
    """
    classes = classes or int(np.max(y)) + 1
    Xb, Y = _with_bias(np.asarray(X, dtype=float)), np.eye(classes)[np.asarray(y)]
    combos = [(lr, wd) for lr in lrs for wd in weight_decays]
    W = np.zeros((len(combos), seeds, Xb.shape[1], classes))
    G = np.zeros_like(W)
    groups = []
    for r, (lr, wd) in enumerate(combos):
        params = [torch.from_numpy(W[r, s]) for s in range(seeds)]
        for s, p in enumerate(params):
            p.grad = torch.from_numpy(G[r, s])       # the optimizer reads G in place
        groups.append({"params": params, "lr": float(lr), "weight_decay": float(wd)})
    opt = optimizer(groups)
    rngs = [np.random.default_rng(s) for s in range(seeds)]
    for _ in range(steps):
        idx = np.stack([rng.choice(len(Y), size=batch_size, replace=False) for rng in rngs])
        xb = Xb[idx]                                  # (seeds, batch, features + 1)
        P = _softmax(np.matmul(xb[None], W))          # (runs, seeds, batch, classes)
        P -= Y[idx][None]
        G[...] = np.matmul(np.swapaxes(xb, 1, 2)[None], P) / batch_size
        opt.step()
    return W.reshape(len(lrs), len(weight_decays), seeds, *W.shape[2:])


def softmax_scores(W, X, y) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy and accuracy on ``(X, y)`` of every weight matrix in ``W``.

    ``W`` has shape ``(..., features + 1, classes)``; both results have shape ``...``.
    """
    Xb, y = _with_bias(np.asarray(X, dtype=float)), np.asarray(y)
    with np.errstate(over="ignore", invalid="ignore"):
        P = _softmax(np.matmul(Xb, W))
        loss = -np.log(P[..., np.arange(len(y)), y] + 1e-300).mean(axis=-1)
    accuracy = (P.argmax(axis=-1) == y).mean(axis=-1)
    return loss, accuracy
