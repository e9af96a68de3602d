"""Sparse gradients: an embedding table, dense Adam's "ghost" steps, and lazy Adam.

Chapter ``ch-sparse`` (``book/14_sparse_gradients.ipynb``) uses these.

An embedding table ``E`` has ``V`` rows; a step touches only the rows of the
tokens in its minibatch, so every other row's gradient is exactly zero.

- :func:`zipf_probabilities`, :class:`EmbeddingProblem`: a table of ``V`` rows
  of width ``d`` whose rows are drawn with Zipf frequencies ``p_i ~ 1/i^s``;
  each sample of row ``i`` observes its target ``W_i`` plus Gaussian noise,
  and the loss is the mean of ``1/2 ||E_i - y||^2`` over the minibatch.
- :func:`ghost_drift`: what dense Adam (``torch.optim.Adam``,
  :func:`adamref.reference.adam_step`) does to a row after its last nonzero
  gradient.  With ``g = 0`` the moments only decay, ``m_{t+k} = beta1^k m_t``
  and ``v_{t+k} = beta2^k v_t``, yet the row keeps moving::

      theta_{t+K} - theta_t = - sum_{k=1}^{K} lr / (1 - beta1^(t+k))
              * beta1^k m_t / (sqrt(beta2^k v_t) / sqrt(1 - beta2^(t+k)) + eps)

  For large ``t`` and ``eps -> 0`` the terms form a geometric series with
  ratio ``q = beta1 / sqrt(beta2)``, so the total is
  ``-lr (m_t / sqrt(v_t)) q / (1 - q)`` (``q / (1 - q) = 9.05`` for the defaults).
- :func:`lazy_adam_step`: ``torch.optim.SparseAdam`` in NumPy (torch 2.13,
  ``torch/optim/_functional.py: sparse_adam``): only the touched rows' ``m``,
  ``v`` and ``theta`` change; the step number ``t`` counts the steps of the
  whole table, not of the row; and ``eps`` is added to the *uncorrected*
  ``sqrt(v)`` (the paper's "efficient" form with ``eps_hat = eps``)::

      m_i <- m_i + (1 - beta1) (g_i - m_i)          for touched rows i
      v_i <- v_i + (1 - beta2) (g_i^2 - v_i)
      theta_i <- theta_i - lr sqrt(1 - beta2^t) / (1 - beta1^t) * m_i / (sqrt(v_i) + eps)
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math

import numpy as np

__all__ = ["zipf_probabilities", "EmbeddingProblem", "ghost_drift", "lazy_adam_step"]


def zipf_probabilities(V: int, s: float) -> np.ndarray:
    """Zipf frequencies ``p_i = i^(-s) / sum_j j^(-s)`` for ranks ``i = 1..V``."""
    if V < 1 or s < 0:
        raise ValueError(f"need V >= 1 and s >= 0, got V={V!r}, s={s!r}")
    w = np.arange(1, V + 1, dtype=float) ** -float(s)
    return w / w.sum()


@dataclass
class EmbeddingProblem:
    """A ``V x d`` table; each step draws ``batch`` rows with Zipf(``s``) frequencies.

    Sample ``j`` of a step picks row ``i_j`` and observes ``y_j = W[i_j] + sigma xi_j``
    (``xi_j`` standard normal).  The minibatch loss is
    ``1/B sum_j 1/2 ||E[i_j] - y_j||^2``; its gradient is nonzero only in the
    rows drawn.  ``W`` is standard normal, drawn from ``seed``.
    """

    V: int = 1000
    d: int = 8
    s: float = 1.1
    batch: int = 32
    sigma: float = 1.0
    seed: int = 0
    W: np.ndarray = field(init=False, repr=False)
    probs: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.W = np.random.default_rng(self.seed).standard_normal((self.V, self.d))
        self.probs = zipf_probabilities(self.V, self.s)

    def sample(self, rng: np.random.Generator):
        """One minibatch: the row of each sample and its noisy observation."""
        rows = rng.choice(self.V, size=self.batch, p=self.probs)
        y = self.W[rows] + self.sigma * rng.standard_normal((self.batch, self.d))
        return rows, y

    def sparse_grad(self, E: np.ndarray, rows: np.ndarray, y: np.ndarray):
        """The minibatch gradient as (unique rows, their gradient rows), summed over repeats."""
        uniq, inverse = np.unique(rows, return_inverse=True)
        G = np.zeros((len(uniq), E.shape[1]), dtype=E.dtype)
        np.add.at(G, inverse, (E[rows] - y).astype(E.dtype) / self.batch)
        return uniq, G

    def dense_grad(self, E: np.ndarray, rows: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The same gradient as a full ``V x d`` array (zero in the rows not drawn)."""
        G = np.zeros_like(E)
        uniq, Gu = self.sparse_grad(E, rows, y)
        G[uniq] = Gu
        return G

    def row_error(self, E: np.ndarray) -> np.ndarray:
        """``||E_i - W_i||^2 / d`` for every row."""
        return np.mean((E - self.W) ** 2, axis=1)


def ghost_drift(m, v, t: int, steps: int, *, lr=1e-3, beta1=0.9, beta2=0.999,
                eps=1e-8) -> np.ndarray:
    """Total displacement dense Adam gives a row in ``steps`` steps of zero gradient.

    ``m``, ``v`` are the row's moments after step ``t`` (its last nonzero
    gradient); the result is ``theta_{t+steps} - theta_t`` by the sum in the
    module docstring, evaluated in float64 (one term per step, added in order).
    """
    m = np.asarray(m, dtype=float)
    v = np.asarray(v, dtype=float)
    k = np.arange(1, steps + 1, dtype=float).reshape((-1,) + (1,) * m.ndim)
    tk = t + k
    terms = (lr / (1 - beta1 ** tk)) * (beta1 ** k * m) / (
        np.sqrt(beta2 ** k * v) / np.sqrt(1 - beta2 ** tk) + eps)
    return -np.cumsum(terms, axis=0)[-1]


def lazy_adam_step(p, rows, g_rows, m, v, t: int, *, lr=1e-3, beta1=0.9, beta2=0.999,
                   eps=1e-8) -> None:
    """One ``torch.optim.SparseAdam`` step on the rows ``rows`` of ``p``, in place.

    ``rows`` are distinct row indices (a coalesced sparse gradient), ``g_rows``
    their gradient rows; ``t`` is the table's step count (every step that had
    a gradient), as in ``SparseAdam``.  Rows not listed are not touched.
    """
    rows = np.asarray(rows)
    if len(np.unique(rows)) != len(rows):
        raise ValueError("rows must be distinct (coalesce the gradient first)")
    if t < 1:
        raise ValueError(f"t must be >= 1, got {t!r}")
    w1, w2 = 1 - beta1, 1 - beta2
    m_r = m[rows]
    v_r = v[rows]
    m_r += (g_rows - m_r) * w1
    v_r += (g_rows * g_rows - v_r) * w2
    m[rows], v[rows] = m_r, v_r
    step_size = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)   # a Python float
    p[rows] += -step_size * (m_r / (np.sqrt(v_r) + eps))
