"""RAdam's rectification, the variance it corrects, and a small network to warm up.

Chapter ``ch-radam`` ("RAdam and warmup") uses these.  Liu et al. (2020),
*On the Variance of the Adaptive Learning Rate and Beyond*,
https://arxiv.org/abs/1908.03265 , look at Adam's adaptive rate
``psi_t = 1 / sqrt(v_hat_t)`` for gradients ``g ~ N(0, sigma^2)``.  They
replace the exponential average ``v_hat_t`` by a simple average of the last
``rho_t`` squared gradients, ``sigma^2 chi^2_rho / rho``, with ``rho_t`` chosen so
that both averages have the same mean age of their data:

    rho_inf = 2 / (1 - beta2) - 1
    rho_t   = rho_inf - 2 t beta2^t / (1 - beta2^t)                 (rho)

``psi_t^2`` is then a scaled inverse chi-square with ``rho_t`` degrees of
freedom.  Its variance, to first order (``Var psi ~ Var psi^2 / (4 E psi^2)``),

    Var psi_t ~ rho_t / (2 (rho_t - 2)(rho_t - 4) sigma^2)          (psi_variance_sma)

is finite only for ``rho_t > 4``; the exact one, from the moments
``E[1/chi^2_k] = 1/(k - 2)`` and ``E[1/chi_k] = Gamma((k-1)/2) / (sqrt 2 Gamma(k/2))``,
for ``rho_t > 2`` (:func:`psi_variance_exact`).  The rectification multiplies
the step by

    r_t = sqrt(Var psi_inf / Var psi_t)
        = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
                                                                    (rectification)

so that the rectified rate ``r_t psi_t`` has the variance of the settled one.
``adamref.reference.radam_step`` applies it where ``rho_t > 5`` (torch's
threshold; the paper's Algorithm 2 says ``rho_t > 4``) and takes a momentum
SGD step before.

:class:`MLP` is a one-hidden-layer network on data the caller supplies (the
chapter uses the digits), with minibatch gradients, for the warm-up
experiment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import gammaln

__all__ = ["rho_inf", "rho", "rectification", "first_rectified_step",
           "psi_variance_sma", "psi_variance_exact", "adaptive_rate_moments",
           "MLP"]


def rho_inf(beta2: float) -> float:
    """``2 / (1 - beta2) - 1``: the length of the simple average that matches the
    settled exponential average (equal mean age of the data)."""
    return 2.0 / (1.0 - beta2) - 1.0


def rho(t, beta2: float):
    """``rho_t``: the length of the simple average that matches ``v_hat_t``, for ``t >= 1``.

    ``rho_1 = 1``: the first average holds one gradient.

    >>> float(rho(1, 0.999))
    1.0
    """
    t = np.asarray(t, dtype=float)
    return rho_inf(beta2) - 2 * t * beta2**t / (1 - beta2**t)


def rectification(t, beta2: float):
    """``r_t`` of the module docstring; ``nan`` where ``rho_t <= 4`` (undefined)."""
    r, ri = rho(t, beta2), rho_inf(beta2)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.sqrt((r - 4) * (r - 2) * ri / ((ri - 4) * (ri - 2) * r))
    return np.where(r > 4, out, np.nan)


def first_rectified_step(beta2: float, threshold: float = 5.0) -> int:
    """The first ``t`` with ``rho_t > threshold`` (torch: 5; the paper: 4)."""
    t = 1
    while rho(t, beta2) <= threshold:
        t += 1
    return t


def psi_variance_sma(rho_t, sigma: float = 1.0):
    """First-order variance of ``1 / sqrt(v)`` for ``v = sigma^2 chi^2_rho / rho``;
    ``inf`` for ``rho <= 4``."""
    r = np.asarray(rho_t, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = r / (2 * (r - 2) * (r - 4) * sigma**2)
    return np.where(r > 4, out, np.inf)


def psi_variance_exact(rho_t, sigma: float = 1.0):
    """Exact variance of ``1 / sqrt(v)`` for ``v = sigma^2 chi^2_rho / rho``
    (``rho`` may be fractional); ``inf`` for ``rho <= 2``."""
    r = np.asarray(rho_t, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        second = r / (r - 2)                                    # rho E[1/chi^2]
        log_first = (gammaln((r - 1) / 2) - gammaln(r / 2)
                     + 0.5 * np.log(r / 2))                     # sqrt(rho) E[1/chi]
        out = (second - np.exp(2 * log_first)) / sigma**2
    return np.where(r > 2, out, np.inf)


def adaptive_rate_moments(T: int, beta2: float, runs: int, seed: int = 0,
                          sigma: float = 1.0, chunk: int = 50_000):
    """Monte Carlo of Adam's adaptive rate ``psi_t = sqrt(1 - beta2^t) / sqrt(v_t)``
    for ``g ~ N(0, sigma^2)``, ``t = 1 .. T``, over ``runs`` independent streams.

    Returns ``(mean, var, se_var)``, arrays of length ``T``: the sample mean and
    variance of ``psi_t`` and the standard error of that variance,
    ``sqrt((m4 - var^2) / runs)`` with ``m4`` the sample fourth central moment
    (reliable where ``psi_t`` has eight moments, ``rho_t > 8``, so that the
    sample fourth moment is itself a good estimate).
    """
    rng = np.random.default_rng(seed)
    s1, s2, s3, s4 = (np.zeros(T) for _ in range(4))
    t = np.arange(1, T + 1)
    bias = np.sqrt(1 - beta2**t)
    done = 0
    while done < runs:
        n = min(chunk, runs - done)
        v = np.zeros(n)
        for k in range(T):
            g = sigma * rng.standard_normal(n)
            v = beta2 * v + (1 - beta2) * g * g
            psi = bias[k] / np.sqrt(v)
            s1[k] += psi.sum()
            s2[k] += (psi * psi).sum()
            s3[k] += (psi**3).sum()
            s4[k] += (psi**4).sum()
        done += n
    mean = s1 / runs
    raw2, raw3, raw4 = s2 / runs, s3 / runs, s4 / runs
    var = (raw2 - mean**2) * runs / (runs - 1)
    m4 = raw4 - 4 * mean * raw3 + 6 * mean**2 * raw2 - 3 * mean**4
    se_var = np.sqrt(np.maximum(m4 - var**2, 0.0) / runs)
    return mean, var, se_var


@dataclass
class MLP:
    """Mean cross-entropy of a one-hidden-layer ReLU network on ``(X, y)``.

    ``x`` is the flat parameter vector ``[W1 (d, hidden), b1, W2 (hidden, c), b2]``;
    ``grad(x, rng)`` is the gradient on a random minibatch of ``batch_size``
    rows (full batch when ``rng`` is None).  :meth:`init` draws He-scaled
    weights and zero biases.
    """

    X: np.ndarray
    y: np.ndarray
    hidden: int = 64
    classes: int = None
    batch_size: int = 64
    _shapes: list = field(init=False, repr=False)

    def __post_init__(self):
        self.classes = self.classes or int(self.y.max()) + 1
        d = self.X.shape[1]
        self._shapes = [(d, self.hidden), (self.hidden,),
                        (self.hidden, self.classes), (self.classes,)]

    @property
    def size(self) -> int:
        return int(sum(np.prod(s) for s in self._shapes))

    def unpack(self, x: np.ndarray) -> list:
        out, i = [], 0
        for s in self._shapes:
            n = int(np.prod(s))
            out.append(x[i:i + n].reshape(s))
            i += n
        return out

    def init(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        d = self.X.shape[1]
        W1 = rng.standard_normal((d, self.hidden)) * np.sqrt(2.0 / d)
        W2 = rng.standard_normal((self.hidden, self.classes)) * np.sqrt(2.0 / self.hidden)
        return np.concatenate([W1.ravel(), np.zeros(self.hidden), W2.ravel(),
                               np.zeros(self.classes)])

    def _forward(self, x, X):
        W1, b1, W2, b2 = self.unpack(x)
        a = X @ W1 + b1
        h = np.maximum(a, 0.0)
        z = h @ W2 + b2
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return a, h, logp

    def loss(self, x: np.ndarray, X=None, y=None) -> float:
        X = self.X if X is None else X
        y = self.y if y is None else y
        logp = self._forward(x, X)[2]
        return float(-logp[np.arange(len(y)), y].mean())

    def accuracy(self, x: np.ndarray, X=None, y=None) -> float:
        X = self.X if X is None else X
        y = self.y if y is None else y
        return float(np.mean(self._forward(x, X)[2].argmax(axis=1) == y))

    def grad(self, x: np.ndarray, rng: np.random.Generator = None) -> np.ndarray:
        if rng is None:
            X, y = self.X, self.y
        else:
            idx = rng.choice(len(self.y), size=self.batch_size, replace=False)
            X, y = self.X[idx], self.y[idx]
        W1, b1, W2, b2 = self.unpack(x)
        a, h, logp = self._forward(x, X)
        dz = np.exp(logp)
        dz[np.arange(len(y)), y] -= 1.0
        dz /= len(y)
        dW2, db2 = h.T @ dz, dz.sum(axis=0)
        da = (dz @ W2.T) * (a > 0)
        dW1, db1 = X.T @ da, da.sum(axis=0)
        return np.concatenate([dW1.ravel(), db1, dW2.ravel(), db2])
