"""Learning-rate schedules as functions of the step, and Adam's noise floor under them.

Chapter ``ch-schedules`` ("Schedules and the noise floor") uses these.  Every
schedule gives the learning rate ``alpha_t`` that the optimizer uses at step
``t = 1, 2, ...`` (the first step has ``t = 1``), for an array or a number
``t``.  Each one equals what ``torch.optim.lr_scheduler`` gives when
``scheduler.step()`` is called once after every ``optimizer.step()`` (step
``t`` then runs with the scheduler's ``last_epoch == t - 1``); the tests check
that against torch.

- :func:`inverse_sqrt`: ``alpha / sqrt(t)``, the decay of the convergence
  theorem of Kingma & Ba (2015), section 4;
- :func:`step_decay`: ``alpha * gamma ** floor((t - 1) / every)``
  (``StepLR``);
- :func:`cosine`: ``alpha_min + (alpha - alpha_min) (1 + cos(pi (t - 1) / T)) / 2``
  (``CosineAnnealingLR``, Loshchilov & Hutter 2017,
  https://arxiv.org/abs/1608.03983);
- :func:`linear_warmup`: a linear ramp from ``start * alpha`` to ``alpha`` over
  ``warmup`` steps, then ``alpha`` (``LinearLR``), Goyal et al. 2017,
  https://arxiv.org/abs/1706.02677;
- :func:`warmup_cosine`: the warm-up, then a cosine (``SequentialLR`` of the two).

The noise floor is that of chapter ``ch-second-moment``
(``eq-sm-adam-floor``): near a minimum of curvature ``h`` with gradient noise
of standard deviation ``sigma``, Adam with a constant ``alpha`` settles at

    Var z = alpha sigma / (2 h)                                  (adam_floor)

because with ``sqrt(v_hat) ~ sigma`` it is momentum SGD with the learning
rate ``a = alpha / sigma``.  When ``alpha_t`` changes, ``E z^2`` relaxes
towards the floor of the *current* ``alpha_t`` at the rate ``2 a_t h`` per
step (the small-``a`` form of SGD's exact variance recursion
``E z_t^2 = (1 - a h)^2 E z_{t-1}^2 + a^2 sigma^2``):

    E z_t^2 = E z_{t-1}^2 + 2 a_t h (alpha_t sigma / (2 h) - E z_{t-1}^2)
                                                                 (floor_tracking)

:func:`adam_on_noisy_quadratic` measures it: independent runs of
:func:`adamref.reference.adam_step` on ``f(z) = h z^2 / 2`` with noisy
gradients, one run per schedule fed the same noise.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np

from adamref.reference import adam_step

__all__ = ["inverse_sqrt", "step_decay", "cosine", "linear_warmup", "warmup_cosine",
           "adam_floor", "floor_tracking", "NoisyQuadraticRuns",
           "adam_on_noisy_quadratic", "L2Regularised", "adam_with_schedule"]


def _steps(t):
    t = np.asarray(t, dtype=float)
    if np.any(t < 1):
        raise ValueError("steps are counted from t = 1")
    return t


def inverse_sqrt(t, alpha: float):
    """``alpha / sqrt(t)``: the decay the paper's regret bound assumes (its section 4).

    >>> float(inverse_sqrt(100, 0.1))
    0.01
    """
    return alpha / np.sqrt(_steps(t))


def step_decay(t, alpha: float, every: int, gamma: float = 0.1):
    """``alpha`` times ``gamma`` after every ``every`` steps (``torch.optim.lr_scheduler.StepLR``).

    >>> [float(a) for a in step_decay([1, 10, 11, 21], 1.0, every=10, gamma=0.5)]
    [1.0, 1.0, 0.5, 0.25]
    """
    return alpha * gamma ** ((_steps(t) - 1) // every)


def cosine(t, alpha: float, T: int, alpha_min: float = 0.0):
    """Half a cosine from ``alpha`` at ``t = 1`` to ``alpha_min`` at ``t = T + 1``
    (``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=T, eta_min=alpha_min)``).

    >>> float(cosine(51, 1.0, T=100))
    0.5
    """
    t = _steps(t)
    return alpha_min + (alpha - alpha_min) * (1 + np.cos(np.pi * (t - 1) / T)) / 2


def linear_warmup(t, alpha: float, warmup: int, start: float = 0.0):
    """A straight line from ``start * alpha`` at ``t = 1`` to ``alpha`` at ``t = warmup + 1``,
    then ``alpha`` (``torch.optim.lr_scheduler.LinearLR(start_factor=start,
    total_iters=warmup)``; torch needs ``start > 0``).

    >>> [float(a) for a in linear_warmup([1, 2, 5, 9], 1.0, warmup=4)]
    [0.0, 0.25, 1.0, 1.0]
    """
    t = _steps(t)
    return alpha * (start + (1 - start) * np.minimum(t - 1, warmup) / warmup)


def warmup_cosine(t, alpha: float, warmup: int, T: int, start: float = 0.0):
    """:func:`linear_warmup` for ``warmup`` steps, then :func:`cosine` over the
    remaining ``T - warmup`` (``SequentialLR([LinearLR, CosineAnnealingLR(T_max=T -
    warmup)], milestones=[warmup])``).

    >>> [round(float(a), 3) for a in warmup_cosine([1, 3, 5, 6, 9], 1.0, 4, 8)]
    [0.0, 0.5, 1.0, 0.854, 0.0]
    """
    t = _steps(t)
    return np.where(t <= warmup, linear_warmup(t, alpha, warmup, start),
                    cosine(np.maximum(t - warmup, 1), alpha, T - warmup))


def adam_floor(alpha, sigma: float, h: float):
    """Adam's stationary ``Var z`` at a constant ``alpha``: ``alpha sigma / (2 h)``
    (chapter ``ch-second-moment``, ``eq-sm-adam-floor``)."""
    return np.asarray(alpha, dtype=float) * sigma / (2 * h)


def floor_tracking(alphas, sigma: float, h: float, start: float):
    """``E z_t^2`` for ``t = 1 .. len(alphas)`` when Adam runs with ``alpha_t = alphas[t - 1]``.

    Each step relaxes ``E z^2`` towards the floor of the current rate,
    ``adam_floor(alpha_t)``, by the fraction ``2 a_t h`` with
    ``a_t = alpha_t / sigma`` (module docstring); ``start`` is ``E z_0^2``.
    Valid where ``a_t h`` is small and the gradient is mostly noise
    (``h^2 E z^2 << sigma^2``).
    """
    alphas = np.asarray(alphas, dtype=float)
    out = np.empty(len(alphas))
    V = float(start)
    for i, alpha in enumerate(alphas):
        a = alpha / sigma
        V += 2 * a * h * (alpha * sigma / (2 * h) - V)
        out[i] = V
    return out


class NoisyQuadraticRuns(NamedTuple):
    """What :func:`adam_on_noisy_quadratic` measured, per schedule name."""

    mean_sq: dict      # name -> (T,) mean of z_t^2 over the runs, t = 1..T
    window: dict       # name -> {t_end: (runs,) each run's mean of z^2 over the window}


def adam_on_noisy_quadratic(schedules: Mapping[str, np.ndarray], *, h: float = 1.0,
                            sigma: float = 1.0, z0: float = 1.0, runs: int = 2000,
                            seed: int = 0, checkpoints=(), width: int = 1
                            ) -> NoisyQuadraticRuns:
    """Adam (:func:`adamref.reference.adam_step`, default betas and eps) on
    ``f(z) = h z^2 / 2`` with gradients ``h z + sigma xi``, ``xi`` standard normal.

    ``schedules`` maps a name to the learning rates ``alpha_t`` for
    ``t = 1 .. T`` (all of length ``T``).  Every schedule runs ``runs``
    independent copies from ``z = z0``, and every schedule sees the same noise
    (common random numbers, so differences between schedules are not noise
    between them).  For each ``t_end`` in ``checkpoints``, ``window[name][t_end]``
    holds every run's mean of ``z_t^2`` over ``t_end - width < t <= t_end``.
    """
    alphas = {name: np.asarray(a, dtype=float) for name, a in schedules.items()}
    T = len(next(iter(alphas.values())))
    if any(len(a) != T for a in alphas.values()):
        raise ValueError("every schedule must have the same length")
    rng = np.random.default_rng(seed)
    state = {name: (np.full(runs, float(z0)), np.zeros(runs), np.zeros(runs))
             for name in alphas}
    mean_sq = {name: np.empty(T) for name in alphas}
    sums = {name: {c: np.zeros(runs) for c in checkpoints} for name in alphas}
    for t in range(1, T + 1):
        xi = rng.standard_normal(runs)
        for name, (z, m, v) in state.items():
            adam_step(z, h * z + sigma * xi, m, v, t, lr=alphas[name][t - 1])
            sq = z * z
            mean_sq[name][t - 1] = sq.mean()
            for c in checkpoints:
                if c - width < t <= c:
                    sums[name][c] += sq
    window = {name: {c: s / width for c, s in per.items()} for name, per in sums.items()}
    return NoisyQuadraticRuns(mean_sq, window)


class L2Regularised:
    """``problem`` plus ``lam / 2 |x|^2``: a strictly convex loss with one minimum.

    Softmax regression on separable data has no minimum (the loss keeps
    falling as the weights grow); the penalty gives it one, so the distance
    to the minimum, ``loss(x) - min loss``, measures how far an optimizer
    settles from it.
    """

    def __init__(self, problem, lam: float):
        self.problem, self.lam = problem, float(lam)

    @property
    def size(self) -> int:
        return self.problem.size

    def loss(self, x: np.ndarray) -> float:
        return self.problem.loss(x) + 0.5 * self.lam * float(x @ x)

    def grad(self, x: np.ndarray, rng: np.random.Generator = None) -> np.ndarray:
        return self.problem.grad(x, rng) + self.lam * x


def adam_with_schedule(problem, alphas, x0: np.ndarray, seed: int = 0,
                       **hyper) -> np.ndarray:
    """Run :func:`adamref.reference.adam_step` on ``problem`` with ``lr = alphas[t - 1]``
    at step ``t``, minibatch noise from ``seed``; return the final ``x``.

    The same as ``adamref.optim.Adam`` with a ``torch.optim.lr_scheduler``
    stepped after every step, when ``alphas`` is that scheduler's sequence.
    """
    rng = np.random.default_rng(seed)
    x = np.array(x0, dtype=float)
    m, v = np.zeros_like(x), np.zeros_like(x)
    for t, alpha in enumerate(np.asarray(alphas, dtype=float), start=1):
        adam_step(x, problem.grad(x, rng), m, v, t, lr=float(alpha), **hyper)
    return x
