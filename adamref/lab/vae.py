"""Many small variational autoencoders on the 8x8 digits, trained at once, with and without bias correction.

Chapter {ref}`ch-vae` (``book/18_vae_bias_correction.ipynb``) repeats the
experiment of Kingma & Ba (2015, section 6.4, figure 4): a variational
autoencoder (Kingma & Welling, 2014) trained by Adam with and without bias
correction, over a grid of ``beta1``, ``beta2`` and step sizes, on several
seeds.  A sweep is a few hundred training runs; run one after the other they
would take minutes, so this module trains them *side by side*: every tensor
has a leading dimension of ``R`` copies, copy ``r`` has its own weights, its
own optimizer state and its own hyperparameters, and one batched matrix
product (``torch.baddbmm``) runs the same layer of every copy.  The copies do
not interact: the loss that is differentiated is the sum of the copies'
losses, so copy ``r``'s gradient is the gradient of its own loss.

The model, for one copy and one image ``x`` in ``[0, 1]^64``::

    h      = tanh(x W1 + b1)                       encoder
    mu     = h Wm + bm,   log s2 = h Ws + bs       q(z | x) = Normal(mu, diag(s2))
    z      = mu + exp(log s2 / 2) * n,  n ~ Normal(0, I)     (reparameterisation)
    logits = tanh(z W3 + b3) W4 + b4               decoder: Bernoulli(sigmoid(logits))
    loss   = sum_pixels BCE(logits, x) + 1/2 sum_j (mu_j^2 + s2_j - log s2_j - 1)

the negative evidence lower bound in nats per image (Kingma & Welling 2014,
eq. 10, with one sample of ``z``).  The pixels are grey levels, not bits; the
Bernoulli cross-entropy is used for them as it is for MNIST.

The optimizer, :func:`adam_ablation_step`, is
:func:`adamref.lab.moments.adam_step_ablation` with a hyperparameter per copy
(``tests/test_vae.py`` checks it against that function row by row, and,
corrections on, against ``torch.optim.Adam``).

References:
    Kingma, D. P. and Ba, J. (2015). Adam: A Method for Stochastic
    Optimization. ICLR. https://arxiv.org/abs/1412.6980 (section 6.4).

    Kingma, D. P. and Welling, M. (2014). Auto-Encoding Variational Bayes.
    ICLR. https://arxiv.org/abs/1312.6114
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch

__all__ = ["digits_unit", "BatchedVAE", "AblationState", "adam_ablation_step",
           "Sweep", "sweep", "fmt_stable"]


def digits_unit() -> torch.Tensor:
    """The 1,797 digits of scikit-learn as a float32 tensor ``(1797, 64)`` with values in ``[0, 1]``."""
    from sklearn.datasets import load_digits

    X = load_digits().data / 16.0
    return torch.as_tensor(X, dtype=torch.float32)


class BatchedVAE:
    """``R`` independent VAEs (64 -> ``hidden`` -> ``latent`` -> ``hidden`` -> 64), side by side.

    ``seed_of[r]`` names the seed copy ``r`` belongs to: copies of the same
    seed start from the same weights (drawn with ``torch.Generator`` seeded
    by ``seeds[seed_of[r]]``, each weight ``Normal(0, 1/fan_in)``, biases
    zero), so that within a seed only the optimizer's hyperparameters differ.
    """

    def __init__(self, seed_of: Sequence[int], seeds: Sequence[int], *, hidden: int = 32,
                 latent: int = 4, dtype=torch.float32):
        self.seed_of = torch.as_tensor(np.asarray(seed_of), dtype=torch.long)
        self.hidden, self.latent = hidden, latent
        shapes = [(64, hidden), (hidden, latent), (hidden, latent), (latent, hidden),
                  (hidden, 64)]
        per_seed = []
        for seed in seeds:
            gen = torch.Generator().manual_seed(int(seed))
            weights = [torch.randn(shape, generator=gen, dtype=torch.float64)
                       / np.sqrt(shape[0]) for shape in shapes]
            per_seed.append(weights)
        self.params = []
        for k, shape in enumerate(shapes):
            w = torch.stack([per_seed[s][k] for s in range(len(seeds))])[self.seed_of]
            self.params.append(w.to(dtype).contiguous().requires_grad_())
            self.params.append(torch.zeros(len(self.seed_of), 1, shape[1], dtype=dtype,
                                           requires_grad=True))

    @property
    def copies(self) -> int:
        return len(self.seed_of)

    def loss(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Each copy's mean loss (nats per image) on its images ``x`` ``(R, B, 64)``
        with reparameterisation noise ``noise`` ``(R, B, latent)``; returns ``(R,)``."""
        W1, b1, Wm, bm, Ws, bs, W3, b3, W4, b4 = self.params
        h = torch.tanh(torch.baddbmm(b1, x, W1))
        mu, log_s2 = torch.baddbmm(bm, h, Wm), torch.baddbmm(bs, h, Ws)
        z = mu + torch.exp(0.5 * log_s2) * noise
        logits = torch.baddbmm(b4, torch.tanh(torch.baddbmm(b3, z, W3)), W4)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, x, reduction="none").sum(-1)
        kl = 0.5 * (mu * mu + torch.exp(log_s2) - log_s2 - 1).sum(-1)
        return (bce + kl).mean(-1)


class AblationState(NamedTuple):
    """Per-copy hyperparameters of :func:`adam_ablation_step` and the moment estimates."""

    lr: np.ndarray          # (R,)
    beta1: np.ndarray       # (R,)
    beta2: np.ndarray       # (R,)
    correct: np.ndarray     # (R,) bool: both corrections on, or both off
    eps: float
    m: list                 # one zero-started tensor per parameter
    v: list


def _column(values, like: torch.Tensor) -> torch.Tensor:
    """Per-copy float64 values as a ``(R, 1, 1, ...)`` tensor of ``like``'s dtype."""
    shape = (-1,) + (1,) * (like.dim() - 1)
    return torch.as_tensor(np.asarray(values, dtype=np.float64)).to(like.dtype).reshape(shape)


@torch.no_grad()
def adam_ablation_step(params: Sequence[torch.Tensor], state: AblationState, t: int) -> None:
    """One Adam step for every copy (dimension 0 of every parameter), corrections per copy.

    For copy ``r``, with ``c1 = 1 - beta1[r]^t`` and ``c2 = 1 - beta2[r]^t`` if
    ``correct[r]``, else ``c1 = c2 = 1`` (Kingma & Ba 2015, Algorithm 1)::

        m <- beta1 m + (1 - beta1) g            (rounded as reference._moving_average)
        v <- beta2 v + (1 - beta2) g^2
        p <- p - lr / c1 * m / (sqrt(v) / sqrt(c2) + eps)

    the operations, in order and rounding, of
    :func:`adamref.lab.moments.adam_step_ablation` (scalar factors computed in
    float64 and rounded once to the parameters' dtype, as NumPy does).
    Parameters whose ``grad`` is None are skipped.
    """
    beta1 = np.asarray(state.beta1, dtype=np.float64)
    beta2 = np.asarray(state.beta2, dtype=np.float64)
    # Python floats, as adam_step_ablation computes them (x ** 0.5 is pow, not sqrt)
    c1 = [1 - float(b) ** t if c else 1.0 for b, c in zip(beta1, state.correct)]
    c2 = [1 - float(b) ** t if c else 1.0 for b, c in zip(beta2, state.correct)]
    step = [-(float(lr) / c) for lr, c in zip(state.lr, c1)]
    root_c2 = [c ** 0.5 for c in c2]
    for p, m, v in zip(params, state.m, state.v):
        g = p.grad
        if g is None:
            continue
        w = _column(1 - beta1, p)                   # m + w (g - m), or for w >= 0.5
        d = g - m                                   # g - (1 - w)(g - m): exact g at w = 1
        m.copy_(torch.where(w < 0.5, m + w * d, g - (1 - w) * d))
        v.mul_(_column(beta2, p))
        v.add_(_column(1 - beta2, p) * g * g)
        denom = v.sqrt() / _column(root_c2, p) + state.eps
        p.add_(_column(step, p) * (m / denom))


class Sweep(NamedTuple):
    """What :func:`sweep` returns.  ``loss[r, k]``: copy ``r``'s loss on all images
    after ``epochs[k]`` epochs (``nan`` or ``inf`` if it diverged); ``start[r]``:
    its loss before training."""

    loss: np.ndarray
    start: np.ndarray
    epochs: tuple
    steps_per_epoch: int


def sweep(lr, beta1, beta2, correct, seed_of, seeds, *, epochs=(1, 10),
          batch_size: int = 60, eps: float = 1e-8, hidden: int = 32,
          latent: int = 4) -> Sweep:
    """Train one VAE per entry of ``lr, beta1, beta2, correct, seed_of`` (all length ``R``).

    Copies of the same seed see the same minibatches (a fresh permutation of
    the 1,797 digits every epoch of ``1797 // batch_size`` steps,
    ``numpy.random.default_rng(seed)``) and the same reparameterisation
    noise, and start from the same weights.  The loss after each of
    ``epochs`` is measured on all images with a fixed noise draw per seed.

    Runs on one thread (restored afterwards): the batched products are too
    small to gain from more, and the result then does not depend on the
    thread count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _sweep(lr, beta1, beta2, correct, seed_of, seeds, epochs, batch_size,
                      eps, hidden, latent)
    finally:
        torch.set_num_threads(threads)


def _sweep(lr, beta1, beta2, correct, seed_of, seeds, epochs, batch_size, eps,
           hidden, latent) -> Sweep:
    X = digits_unit()
    n = len(X)
    model = BatchedVAE(seed_of, seeds, hidden=hidden, latent=latent)
    seed_of = model.seed_of
    state = AblationState(np.asarray(lr, float), np.asarray(beta1, float),
                          np.asarray(beta2, float), np.asarray(correct, bool), eps,
                          [torch.zeros_like(p) for p in model.params],
                          [torch.zeros_like(p) for p in model.params])
    rngs = [np.random.default_rng(s) for s in seeds]
    gens = [torch.Generator().manual_seed(10_000 + int(s)) for s in seeds]
    eval_noise = torch.stack([torch.randn(n, latent, generator=g) for g in gens])
    eval_x = X.expand(model.copies, n, 64)

    def evaluate():
        with torch.no_grad():
            return model.loss(eval_x, eval_noise[seed_of]).numpy().astype(np.float64)

    per_epoch = n // batch_size
    checkpoints = [e * per_epoch for e in epochs]
    start = evaluate()
    losses, order, k = [], None, per_epoch
    for t in range(1, max(checkpoints) + 1):
        if k == per_epoch:
            order = np.stack([rng.permutation(n) for rng in rngs])
            k = 0
        idx = torch.as_tensor(order[:, k * batch_size:(k + 1) * batch_size])
        k += 1
        x = X[idx][seed_of]
        noise = torch.stack([torch.randn(batch_size, latent, generator=g)
                             for g in gens])[seed_of]
        for p in model.params:
            p.grad = None
        model.loss(x, noise).sum().backward()
        adam_ablation_step(model.params, state, t)
        if t in checkpoints:
            losses.append(evaluate())
    return Sweep(np.stack(losses, axis=1), start, tuple(epochs), per_epoch)


def fmt_stable(x: float, digits: int, rtol: float) -> str:
    """``x`` to at most ``digits`` significant digits: as many as a relative change of ``rtol`` cannot alter.

    Training a network in float32 is slightly chaotic: another CPU build or
    thread count changes the last bits, and a few hundred steps later the
    loss differs by a measurable relative amount (chapter ``ch-vae``
    measures it).  A printed number is stable only if it is not within that
    amount of a rounding boundary.  This tries ``format(x, f".{digits}g")``
    and, while ``x * (1 - rtol)`` or ``x * (1 + rtol)`` would print
    differently, one digit fewer; it raises ``ValueError`` if even one digit
    is not stable (``x`` within ``rtol`` of zero or of a power of ten).

    >>> fmt_stable(25.3961, 3, 1e-4), fmt_stable(24.950007, 3, 1e-4)
    ('25.4', '25')
    """
    for d in range(digits, 0, -1):
        spec = f".{d}g"
        text = format(x, spec)
        if all(format(y, spec) == text for y in (x * (1 - rtol), x * (1 + rtol))):
            return text
    raise ValueError(f"{x!r}: no number of digits is stable within rtol={rtol:g}")
