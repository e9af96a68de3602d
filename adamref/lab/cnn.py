"""A small convolutional network on the 8x8 digits, many runs trained at once.

Chapter {ref}`ch-cnn` (``book/17_convolutional_networks.ipynb``) repeats
Kingma & Ba (2015, section 6.3): a CNN trained by Adam, AdaGrad, RMSProp and
SGD with Nesterov momentum, and the second-moment estimate ``v_hat`` of Adam
measured against ``eps``.  One run, for an image ``x`` of 1x8x8 pixels::

    conv 3x3, 1 -> c1 channels (padding 1), ReLU, max-pool 2x2     -> c1 x 4 x 4
    conv 3x3, c1 -> c2 channels (padding 1), ReLU, max-pool 2x2    -> c2 x 2 x 2
    dropout (rate ``dropout``, training only), linear 4 c2 -> 10 class scores

trained on the mean cross-entropy of minibatches.  :func:`train_cnn_grid`
trains every (optimizer, learning rate, seed) run side by side: the
convolutions of all runs are one grouped convolution (``groups = runs``),
the last layer one batched product, and the loss that is differentiated is
the sum of the runs' losses, so each run gets the gradient of its own loss
(``tests/test_cnn.py`` checks a run against the same network built from
``torch.nn`` layers and trained alone).  Every optimizer gets one parameter
group per learning rate holding that rate's runs for every seed, stacked
along a first axis; the book's optimizers are elementwise, so stacking
changes nothing.  A seed fixes its run's initial weights (``torch.nn``'s
default initialisation: uniform in ``±1/sqrt(fan_in)``), minibatch order
and dropout masks, whatever the optimizer: the optimizers are compared on
the same noise.

The results are :class:`adamref.lab.experiments.GridResult` objects (one
per optimizer), so :func:`adamref.lab.experiments.tune` picks and checks
their learning rates.  Their ``train_loss`` after epoch ``e`` is the mean
minibatch loss during that epoch (dropout on), the paper's "training
cost"; index 0 is the loss of the initial weights on the whole training set.
``test_loss`` and ``test_acc`` are measured once, after the last epoch
(earlier entries are ``nan``).

References:
    Kingma, D. P. and Ba, J. (2015). Adam: A Method for Stochastic
    Optimization. ICLR. https://arxiv.org/abs/1412.6980 (section 6.3).
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from adamref.lab.experiments import Data, GridResult

__all__ = ["init_cnn", "cnn_forward", "train_cnn_grid", "layer_names"]

#: Parameter names of one run, in the order of :func:`init_cnn`.
layer_names = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
               "fc.weight", "fc.bias")


def _generator(seed: int, stream: int) -> torch.Generator:
    state = np.random.SeedSequence([int(seed), 17, stream]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def init_cnn(seed: int, c1: int = 8, c2: int = 16, dtype=torch.float32) -> list:
    """One run's initial parameters (``layer_names`` order), ``torch.nn``'s default
    initialisation: weights and biases uniform in ``±1/sqrt(fan_in)``."""
    gen = _generator(seed, 0)
    shapes = [((c1, 1, 3, 3), 9), ((c1,), 9), ((c2, c1, 3, 3), 9 * c1), ((c2,), 9 * c1),
              ((4 * c2, 10), 4 * c2), ((10,), 4 * c2)]
    return [(2 * torch.rand(shape, generator=gen, dtype=dtype) - 1) / math.sqrt(fan_in)
            for shape, fan_in in shapes]


def cnn_forward(params: Sequence[torch.Tensor], x: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
    """Class scores of ``R`` runs side by side.

    ``params``: the six tensors of :func:`init_cnn`, each with a leading
    dimension ``R``; ``x``: images ``(R, B, 64)`` (one batch per run) or
    ``(B, 64)`` (shared); ``mask``: dropout multipliers ``(R, B, 4 c2)``
    or None.  Returns ``(R, B, 10)``.
    """
    W1, b1, W2, b2, W3, b3 = params
    R, c1, c2 = W1.shape[0], W1.shape[1], W2.shape[1]
    if x.dim() == 2:
        x = x.expand(R, *x.shape)
    B = x.shape[1]
    h = x.reshape(R, B, 8, 8).transpose(0, 1)                        # (B, R, 8, 8)
    h = F.conv2d(h, W1.reshape(R * c1, 1, 3, 3), b1.reshape(-1), padding=1, groups=R)
    h = F.max_pool2d(F.relu(h), 2)                                   # (B, R c1, 4, 4)
    h = F.conv2d(h, W2.reshape(R * c2, c1, 3, 3), b2.reshape(-1), padding=1, groups=R)
    h = F.max_pool2d(F.relu(h), 2)                                   # (B, R c2, 2, 2)
    h = h.reshape(B, R, 4 * c2).transpose(0, 1)                      # (R, B, 4 c2)
    if mask is not None:
        h = h * mask
    return torch.baddbmm(b3[:, None, :], h, W3)


def _losses(logits, y):
    """Per-run mean cross-entropy; logits (R, B, 10), y (R, B)."""
    R, B, C = logits.shape
    ce = F.cross_entropy(logits.reshape(-1, C), y.reshape(-1), reduction="none")
    return ce.view(R, B).mean(-1)


def train_cnn_grid(data: Data, optimizers: Mapping[str, tuple], seeds: Sequence[int], *,
                   epochs: int, batch_size: int, dropout: float = 0.25, c1: int = 8,
                   c2: int = 16, on_epoch: Callable | None = None) -> dict:
    """Train every (optimizer, learning rate, seed) run of the CNN at once.

    ``optimizers`` maps a name to ``(cls, lrs, kwargs)``: ``cls(param_groups,
    **kwargs)`` builds the optimizer (``torch.optim.SGD``, ``Adagrad``,
    ``RMSprop``, :class:`adamref.optim.Adam`, ...), with one parameter group
    per entry of ``lrs``.  ``on_epoch(epoch, opts, groups)``, if given, is
    called after each epoch with the optimizers and, per name, the list of
    parameter lists (one per lr, each in :data:`layer_names` order, every
    tensor ``(seeds, ...)``).  Returns ``{name: GridResult}``.

    Runs on one thread, torch's and Numba's (``adamref.optim``'s kernels),
    restored afterwards: the tensors are too small to gain from more, a
    loaded machine then does not slow it down by thread contention, and the
    result does not depend on the thread count.
    """
    import numba

    threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    try:
        return _train(data, optimizers, seeds, epochs, batch_size, dropout, c1, c2,
                      on_epoch)
    finally:
        torch.set_num_threads(threads)
        numba.set_num_threads(numba_threads)


def _train(data, optimizers, seeds, epochs, batch_size, dropout, c1, c2, on_epoch):
    seeds = tuple(int(s) for s in seeds)
    S = len(seeds)
    dtype = data.X_train.dtype
    inits = [init_cnn(s, c1, c2, dtype) for s in seeds]
    groups, opts, order = {}, {}, []        # order: (name, lr index) per block of S runs
    for name, (cls, lrs, kwargs) in optimizers.items():
        groups[name] = []
        for i, lr in enumerate(lrs):
            params = [torch.stack([inits[j][k] for j in range(S)]).requires_grad_()
                      for k in range(len(layer_names))]
            groups[name].append(params)
            order.append((name, i))
        opts[name] = cls([{"params": p, "lr": float(lr)}
                          for p, lr in zip(groups[name], lrs)], **dict(kwargs or {}))
    blocks = [groups[name][i] for name, i in order]
    R = S * len(blocks)

    def stacked():
        return [torch.cat([b[k] for b in blocks]) for k in range(len(layer_names))]

    order_gens = [_generator(s, 1) for s in seeds]
    drop_gens = [_generator(s, 2) for s in seeds]
    n = len(data.X_train)
    per_run = lambda a: a.repeat(len(blocks), *([1] * (a.dim() - 1)))  # noqa: E731

    def full_loss(X, y):
        with torch.no_grad():
            logits = cnn_forward(stacked(), X)
            return _losses(logits, y.expand(R, -1)), logits

    start, _ = full_loss(data.X_train, data.y_train)
    train = [start.double().numpy()]
    for epoch in range(1, epochs + 1):
        perms = [torch.randperm(n, generator=g) for g in order_gens]
        total, count = torch.zeros(R, dtype=torch.float64), 0
        for i in range(0, n, batch_size):
            idx = torch.stack([p[i:i + batch_size] for p in perms])   # (S, B)
            B = idx.shape[1]
            mask = None
            if dropout > 0:
                keep = torch.stack([torch.rand((B, 4 * c2), generator=g, dtype=dtype)
                                    for g in drop_gens]) >= dropout
                mask = per_run(keep.to(dtype) / (1 - dropout))
            for opt in opts.values():
                opt.zero_grad()
            loss = _losses(cnn_forward(stacked(), per_run(data.X_train[idx]), mask),
                           per_run(data.y_train[idx]))
            loss.sum().backward()        # each run's gradient is that of its own loss
            for opt in opts.values():
                opt.step()
            total += loss.detach().double() * B
            count += B
        train.append((total / count).numpy())
        if on_epoch is not None:
            on_epoch(epoch, opts, groups)
    test_loss, logits = full_loss(data.X_test, data.y_test)
    acc = (logits.argmax(-1) == data.y_test).double().mean(-1).numpy()
    train = np.array(train)                                          # (E + 1, R)
    results = {}
    for name, (cls, lrs, kwargs) in optimizers.items():
        rows = [b for b, (nm, _) in enumerate(order) if nm == name]
        take = lambda a: np.stack([a[..., b * S:(b + 1) * S] for b in rows])  # noqa
        tl = np.moveaxis(take(train), 1, -1)                         # (L, S, E + 1)
        tl = np.where(np.isfinite(tl), tl, np.inf)
        nan = np.full(tl.shape, np.nan)
        vl, va = nan.copy(), nan.copy()
        vl[..., -1] = take(test_loss.double().numpy())
        va[..., -1] = take(acc)
        bad = ~np.isfinite(tl[..., -1])
        va[..., -1][bad] = np.nan
        results[name] = GridResult(name, np.asarray(lrs, float), seeds, tl, vl, va)
    return results
