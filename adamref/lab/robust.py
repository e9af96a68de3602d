"""Printing results so that they survive the last bit of floating point.

A stored notebook output is compared, character for character, on machines
with another NumPy, another BLAS, another thread count or another CPU.  Those
change the last bits of a result.  Most computations keep such a change in
the last bits, but some amplify it: a run that diverges or sits at the edge
of stability, a long chaotic trajectory, and the choice of a winner between
two values that are nearly equal.  The helpers here print such results in a
form that does not depend on those bits:

- :func:`fmt_loss`: a number to a few significant digits, ``"diverged"``
  above a stated threshold (or when not finite), and ``"< floor"`` below a
  floor where only rounding noise is left;
- :func:`near_best`: every key whose value is within a relative tolerance of
  the best one, in order: the set of tied winners instead of one argmin;
- :func:`describe_best`: that set as text, ``"RMSProp"`` or
  ``"RMSProp ≈ Adam (within 5%)"``;
- :func:`choose`: one key from a tie, by a stated rule that does not look at
  the last bits (the first in the given order within the tolerance).
"""

from __future__ import annotations

import math
from typing import Hashable, Iterable, Mapping

__all__ = ["fmt_loss", "near_best", "describe_best", "choose"]


def fmt_loss(x: float, digits: int = 2, *, diverged_above: float = math.inf,
             floor: float = 0.0) -> str:
    """``x`` to ``digits`` significant digits, or a robust word instead.

    - ``"diverged"`` if ``x`` is not finite or ``x > diverged_above``;
    - ``f"< {floor:.0e}"`` if ``0 <= x < floor`` (below the floor only
      rounding noise, or a chaotic tail, is left);
    - otherwise ``format(x, f".{digits}g")``.

    >>> fmt_loss(0.0123), fmt_loss(3e90, diverged_above=1e3), fmt_loss(1e-40, floor=1e-12)
    ('0.012', 'diverged', '< 1e-12')
    """
    x = float(x)
    if not math.isfinite(x) or x > diverged_above:
        return "diverged"
    if 0.0 <= x < floor:
        return f"< {floor:.0e}"
    return format(x, f".{digits}g")


def near_best(values: Mapping[Hashable, float], rtol: float, *,
              largest: bool = False) -> list:
    """The keys whose value is within ``rtol`` of the best one, in the mapping's order.

    With ``largest=False`` (the default) the best value is the smallest
    finite one, ``b``, and a key is kept if its value is at most
    ``b + rtol * |b|``; with ``largest=True`` the best is the largest, and
    a key is kept if its value is at least ``b - rtol * |b|``.  Non-finite
    values (a diverged run scored ``inf`` or ``nan``) are never kept.  The
    result is empty only when no value is finite.

    >>> near_best({"SGD": 0.034, "RMSProp": 0.050, "Adam": 0.028}, 0.05)
    ['Adam']
    >>> near_best({"SGD": 0.964, "RMSProp": 0.972, "Adam": 0.969}, 0.01, largest=True)
    ['SGD', 'RMSProp', 'Adam']
    """
    if rtol < 0:
        raise ValueError(f"rtol must be >= 0, got {rtol!r}")
    finite = {k: float(v) for k, v in values.items() if math.isfinite(float(v))}
    if not finite:
        return []
    if largest:
        best = max(finite.values())
        return [k for k, v in finite.items() if v >= best - rtol * abs(best)]
    best = min(finite.values())
    return [k for k, v in finite.items() if v <= best + rtol * abs(best)]


def describe_best(tied: Iterable, rtol: float) -> str:
    """A set of tied winners as text: ``"A"``, or ``"A ≈ B (within 5%)"``.

    ``rtol`` is the tolerance the set was made with (printed as a per cent).

    >>> describe_best(["Adam"], 0.05), describe_best(["RMSProp", "Adam"], 0.05)
    ('Adam', 'RMSProp ≈ Adam (within 5%)')
    """
    names = [str(k) for k in tied]
    if not names:
        return "none (all diverged)"
    if len(names) == 1:
        return names[0]
    return " ≈ ".join(names) + f" (within {100 * rtol:g}%)"


def choose(values: Mapping[Hashable, float], rtol: float, *,
           largest: bool = False):
    """One key among the near-best: the first, in the mapping's order.

    An argmin (or argmax) that does not flip when two values are within
    ``rtol`` of each other and the last bits change: among the keys that
    :func:`near_best` returns, it takes the first one in the order of
    ``values`` (for a learning-rate grid in increasing order, the smallest
    learning rate within ``rtol`` of the best score).  Raises ``ValueError``
    if no value is finite.

    >>> choose({0.3: 0.041, 1.0: 0.040, 3.0: 0.0402}, 0.05)
    0.3
    """
    tied = near_best(values, rtol, largest=largest)
    if not tied:
        raise ValueError("no finite value to choose from")
    return tied[0]
