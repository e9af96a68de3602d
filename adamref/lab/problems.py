"""Test problems the chapters share, and a loop that runs an optimizer on them.

A problem has ``loss(x)`` and ``grad(x)``; a stochastic one also takes a
NumPy ``Generator`` in ``grad(x, rng)`` so every experiment is seeded.

- :class:`Quadratic`: ``f(x) = 1/2 (x - x*)^T H (x - x*)``, the model of every
  smooth minimum; its condition number ``kappa`` decides how hard it is
  for gradient descent.
- :class:`NoisyQuadratic`: the same, with Gaussian noise added to the gradient,
  the simplest stand-in for a minibatch gradient.
- :class:`SoftmaxRegression`: multinomial logistic regression with minibatch
  gradients, on data the caller supplies (the book uses scikit-learn's
  bundled 8x8 digits, which need no download).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Quadratic:
    """``f(x) = 1/2 (x - x_star)^T H (x - x_star)``, with gradient ``H (x - x_star)``."""

    H: np.ndarray
    x_star: np.ndarray = None

    def __post_init__(self):
        self.H = np.asarray(self.H, dtype=float)
        if self.x_star is None:
            self.x_star = np.zeros(len(self.H))
        self.x_star = np.asarray(self.x_star, dtype=float)

    @classmethod
    def ill_conditioned(cls, kappa: float = 50.0, angle: float = 0.0) -> "Quadratic":
        """A 2-D bowl with curvatures ``1`` and ``kappa``, its axes turned by ``angle`` radians."""
        c, s = np.cos(angle), np.sin(angle)
        R = np.array([[c, -s], [s, c]])
        return cls(R @ np.diag([1.0, kappa]) @ R.T)

    @property
    def kappa(self) -> float:
        """Condition number: largest over smallest curvature."""
        eig = np.linalg.eigvalsh(self.H)
        return eig[-1] / eig[0]

    def loss(self, x: np.ndarray) -> float:
        d = x - self.x_star
        return 0.5 * d @ self.H @ d

    def grad(self, x: np.ndarray, rng=None) -> np.ndarray:
        return self.H @ (x - self.x_star)


@dataclass
class NoisyQuadratic(Quadratic):
    """A :class:`Quadratic` whose gradient carries Gaussian noise of standard deviation ``sigma``."""

    sigma: float = 1.0

    def grad(self, x: np.ndarray, rng: np.random.Generator = None) -> np.ndarray:
        return super().grad(x) + self.sigma * rng.standard_normal(x.shape)


@dataclass
class SoftmaxRegression:
    """Mean cross-entropy of a linear softmax classifier on ``(X, y)``.

    The parameter vector ``x`` is the flattened weight matrix ``W`` of shape
    ``(features + 1, classes)``; the last row is the bias.  ``grad(x, rng)``
    is the gradient on a random minibatch of ``batch_size`` rows (the full
    gradient when ``rng`` is None).
    """

    X: np.ndarray
    y: np.ndarray
    classes: int = None
    batch_size: int = 64
    _Xb: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.classes = self.classes or int(self.y.max()) + 1
        self._Xb = np.hstack([self.X, np.ones((len(self.X), 1))])

    @property
    def size(self) -> int:
        return self._Xb.shape[1] * self.classes

    def _probabilities(self, W, Xb):
        z = Xb @ W
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def loss(self, x: np.ndarray) -> float:
        W = x.reshape(-1, self.classes)
        P = self._probabilities(W, self._Xb)
        return -np.mean(np.log(P[np.arange(len(self.y)), self.y] + 1e-300))

    def accuracy(self, x: np.ndarray, X=None, y=None) -> float:
        """Fraction classified correctly, on the training data or on ``(X, y)``."""
        X = self.X if X is None else X
        y = self.y if y is None else y
        Xb = np.hstack([X, np.ones((len(X), 1))])
        return float(np.mean(np.argmax(Xb @ x.reshape(-1, self.classes), axis=1) == y))

    def grad(self, x: np.ndarray, rng: np.random.Generator = None) -> np.ndarray:
        if rng is None:
            idx = slice(None)
        else:
            idx = rng.choice(len(self.y), size=self.batch_size, replace=False)
        Xb, y = self._Xb[idx], self.y[idx]
        W = x.reshape(-1, self.classes)
        P = self._probabilities(W, Xb)
        P[np.arange(len(y)), y] -= 1.0
        return (Xb.T @ P / len(y)).ravel()


def minimize(problem, optimizer, x0: np.ndarray, steps: int, seed: int = 0) -> np.ndarray:
    """Run ``optimizer.step`` for ``steps`` steps from ``x0``; return every iterate.

    Returns an array of shape ``(steps + 1, len(x0))`` whose row ``t`` is
    ``x_t`` (row 0 is ``x0``).  Gradient noise comes from ``seed``.
    """
    rng = np.random.default_rng(seed)
    x = np.array(x0, dtype=float)
    path = [x.copy()]
    for _ in range(steps):
        optimizer.step(x, problem.grad(x, rng))
        path.append(x.copy())
    return np.array(path)


@dataclass
class DoubleWell:
    """``f(x) = sum_i (x_i^2 - 1)^2 + tilt * x_i``: in each coordinate, two valleys.

    For a small positive ``tilt`` the valley near ``x = -1`` is the global
    minimum and the one near ``x = +1`` a local minimum, higher by about
    ``2 * tilt``; a barrier near ``x = 0`` separates them.  A one-dimensional
    stand-in for "local optima": which valley an optimizer ends in says
    whether it looks beyond its neighbourhood.
    """

    tilt: float = 0.3

    def loss(self, x: np.ndarray) -> float:
        x = np.asarray(x, dtype=float)
        return float(np.sum((x * x - 1) ** 2 + self.tilt * x))

    def grad(self, x: np.ndarray, rng=None) -> np.ndarray:
        return 4 * x * (x * x - 1) + self.tilt

    @property
    def minima(self) -> tuple[float, float]:
        """The two minimisers of one coordinate, ``(global, local)``."""
        roots = np.sort(np.roots([4.0, 0.0, -4.0, self.tilt]).real)
        return float(roots[0]), float(roots[2])


@dataclass
class Scaled:
    """``problem`` with its loss (and so every gradient) multiplied by ``factor``.

    Adam's update is unchanged when the gradients are multiplied by a positive
    constant, as long as they stay well above ``eps``; scaling a problem down
    shows where that invariance ends.
    """

    problem: object
    factor: float

    def loss(self, x: np.ndarray) -> float:
        return self.factor * self.problem.loss(x)

    def grad(self, x: np.ndarray, rng: np.random.Generator = None) -> np.ndarray:
        return self.factor * self.problem.grad(x, rng)


@dataclass
class DiagonalQuadratic:
    """Independent 1-D quadratics ``f(x) = 1/2 sum_i h_i (x_i - x_star_i)^2``, vectorised.

    The Hessian is ``diag(h)``, so every coordinate is its own problem with
    curvature ``h_i``; with ``sigma > 0`` each gradient coordinate carries
    independent Gaussian noise of standard deviation ``sigma``, as in
    :class:`NoisyQuadratic`.  ``x`` may carry leading batch axes (shape
    ``(..., n)`` with ``h`` of shape ``(n,)``): a batch of ``K`` rows is ``K``
    independent runs, which makes Monte Carlo checks one array operation
    per step.  ``loss`` then returns one value per row.
    """

    h: np.ndarray
    sigma: float = 0.0
    x_star: np.ndarray = None

    def __post_init__(self):
        self.h = np.atleast_1d(np.asarray(self.h, dtype=float))
        self.x_star = np.zeros_like(self.h) if self.x_star is None else np.asarray(self.x_star, dtype=float)

    @property
    def kappa(self) -> float:
        """Condition number: largest over smallest curvature."""
        return float(self.h.max() / self.h.min())

    def loss(self, x: np.ndarray):
        d = x - self.x_star
        return 0.5 * np.sum(self.h * d * d, axis=-1)

    def grad(self, x: np.ndarray, rng: np.random.Generator = None) -> np.ndarray:
        g = self.h * (x - self.x_star)
        if self.sigma:
            g = g + self.sigma * rng.standard_normal(np.shape(x))
        return g
