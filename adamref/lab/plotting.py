"""Plotting helpers the chapters share: loss contours and optimizer paths in 2-D.

Two functions, for a problem with ``loss(x)`` on 2-D ``x`` (for example
:class:`adamref.lab.problems.Quadratic`)::

    contours(problem, ax, lim)                      # level sets of the loss
    plot_paths(problem, {"SGD": path, ...}, ax=ax)  # contours plus trajectories

A *path* is what :func:`adamref.lab.problems.minimize` returns: an array of shape
``(steps + 1, 2)`` whose row ``t`` is the iterate ``x_t``.  Both functions draw
on a Matplotlib ``Axes`` and return it, so a chapter can add titles or
annotations and finish with ``plt.show()``.

Matplotlib is imported when a function is called, so ``import adamref`` and
the non-plotting modules never need it.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

__all__ = ["contours", "plot_paths"]

Lim = tuple  # ((xmin, xmax), (ymin, ymax)), or a single half-width r for [-r, r]^2 around x*


def _box(problem, lim) -> tuple[tuple[float, float], tuple[float, float]]:
    """Normalise ``lim`` to ``((xmin, xmax), (ymin, ymax))``."""
    if np.isscalar(lim):
        c = np.asarray(getattr(problem, "x_star", np.zeros(2)), dtype=float)
        return (c[0] - lim, c[0] + lim), (c[1] - lim, c[1] + lim)
    (x0, x1), (y0, y1) = lim
    return (float(x0), float(x1)), (float(y0), float(y1))


def contours(problem, ax, lim: float | Lim = 1.0, levels: int | Sequence[float] = 12,
             resolution: int = 200, cmap: str = "Greys", filled: bool = False):
    """Draw level sets of ``problem.loss`` over a 2-D box on ``ax``; return ``ax``.

    ``lim`` is either a half-width ``r`` (the square ``[-r, r]^2`` centred on
    ``problem.x_star``, or on the origin when the problem has none) or the box
    ``((xmin, xmax), (ymin, ymax))``.  ``levels`` is a number of levels,
    spaced geometrically between the smallest positive and the largest loss
    in the box (so both the narrow valley and its walls show), or explicit
    level values.  The axes get equal aspect, limits set to the box and
    labels naming the first and second coordinate of ``theta`` (override them with ``ax.set_xlabel``).
    """
    (x0, x1), (y0, y1) = _box(problem, lim)
    xs, ys = np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution)
    X, Y = np.meshgrid(xs, ys)
    pts = np.stack([X.ravel(), Y.ravel()], axis=1)
    Z = np.array([problem.loss(p) for p in pts]).reshape(X.shape)
    if np.isscalar(levels):
        lo = Z[Z > 0].min() if np.any(Z > 0) else 1e-12
        hi = Z.max()
        lo = max(lo, hi * 1e-4)
        levels = np.geomspace(lo, hi, int(levels) + 1)[:-1]
    import matplotlib.pyplot as plt

    # Colour by level index, not value: geometric levels would otherwise all
    # map to nearly white except the outermost.
    shades = plt.get_cmap(cmap)(np.linspace(0.3, 0.8, len(levels)))
    if filled:
        ax.contourf(X, Y, Z, levels=list(levels) + [np.inf], colors=shades)
    else:
        ax.contour(X, Y, Z, levels=levels, colors=shades, linewidths=0.8)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xlabel(r"first coordinate of $\theta$")
    ax.set_ylabel(r"second coordinate of $\theta$")
    return ax


def plot_paths(problem, paths: Mapping[str, np.ndarray], ax=None, lim: float | Lim | None = None,
               levels: int | Sequence[float] = 12, markers: bool = True, legend: bool = True,
               colors: Sequence[str] | None = None, title: str | None = None):
    """Draw loss contours and one trajectory per entry of ``paths``; return the ``Axes``.

    ``paths`` maps a legend label to an array of iterates of shape
    ``(steps + 1, 2)`` (as returned by :func:`adamref.lab.problems.minimize`).
    Each path is drawn as a line with small dots at the iterates (when
    ``markers``), a square at its start and a star at ``problem.x_star``.

    ``ax``: the Axes to draw on (a new ``figsize=(5, 4)`` figure when None).
    ``lim``: as in :func:`contours`; when None, a box that holds every path
    with a 10% margin.  ``colors``: one Matplotlib colour per path (the
    default colour cycle when None).
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    if lim is None:
        pts = np.concatenate([np.asarray(p, dtype=float)[:, :2] for p in paths.values()]
                             + [np.asarray(problem.x_star, dtype=float)[None, :2]])
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        pad = 0.1 * max(hi - lo) + 1e-12
        lim = ((lo[0] - pad, hi[0] + pad), (lo[1] - pad, hi[1] + pad))
    contours(problem, ax, lim, levels=levels)
    if colors is None:
        colors = [f"C{i}" for i in range(len(paths))]
    for (label, path), color in zip(paths.items(), colors):
        path = np.asarray(path, dtype=float)
        ax.plot(path[:, 0], path[:, 1], "-", color=color, lw=1.3, label=label,
                marker="." if markers else None, ms=4)
        ax.plot(path[0, 0], path[0, 1], "s", color=color, ms=6)
    star = np.asarray(problem.x_star, dtype=float)
    ax.plot(star[0], star[1], "*", color="k", ms=11, label=r"minimum $\theta^*$")
    if legend:
        ax.legend(loc="best", fontsize="small", framealpha=0.9)
    if title:
        ax.set_title(title)
    return ax
