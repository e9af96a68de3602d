"""``python -m adamref.check``: is this Adam right, and if not, what is wrong with it?

Runs an Adam (a ``torch.optim.Optimizer`` class with ``torch.optim.Adam``'s
constructor, or a function with :func:`adamref.reference.adam_step`'s API)
through a matrix of configurations (:data:`CASES`) and gives each one a
verdict:

``bitwise``
    bit for bit what ``torch.optim.Adam(fused=True)`` computes on this build
    of torch (Adamax: ``torch.optim.Adamax(foreach=False)``; NaNs matched by
    position, not payload);
``within k ulps``
    every checked element within the error a correct implementation may make
    (below), ``k`` the worst difference in units of roundoff of the element's scale;
``wrong``
    some element outside it.  The deviations are then compared with those of
    known faults (:data:`FAULTS`), each a variant of the reference, and the
    fault that explains them is named.

Expected values and the allowed error
-------------------------------------
The expected trajectory is a *shadow* run of the reference formulas
(Kingma & Ba 2015, Algorithm 1, in PyTorch's order, :mod:`adamref.reference`)
in a wider precision: float64 for a float32 target, ``numpy.longdouble``
(64-bit significand on x86) for float64.  Its state ``p, m, v, v_max`` is
rounded to the target's precision after every step, as the target stores it,
so overflow to inf and underflow happen where they happen in the target.

Beside every value the shadow carries a first-order *running error bound*
``e`` for the distance between any two implementations that round each
operation to within ``u`` of its result (``u = eps(target) + eps(shadow)``:
one ulp, so a faithfully rounded sqrt is allowed, plus the shadow's own
rounding), with every hyperparameter computed in double and rounded once, as
PyTorch does.  With ``w = 1 - beta1``, ``d = sqrt(v)/sqrt(bc2) + eps`` and the
step ``s = (lr/bc1) m/d``::

    e_g <- wd e_p + u (2 wd |p| + |g|)                          L2 decay
    e_m <- beta1 e_m + w e_g + 4u (max(beta1, w) |m| + w |g|)
    e_v <- beta2 e_v + (1 - beta2)(2 |g| e_g + e_g^2) + 4u v
    e_d <- (sqrt(v + e_v) - sqrt(v - e_v))/sqrt(bc2) + u (3 sqrt(v)/sqrt(bc2) + d + eps)
    e_p <- e_p + (lr/bc1)(e_m/(d - e_d) + |m| e_d/(d (d - e_d))) + 3u |s| + u |p|

(each term: the propagated error of the inputs, then a few roundings of the
sizes of the terms added; ``max(beta1, w)`` allows ``m + w (g - m)`` as well
as torch's lerp), plus one smallest subnormal per operation (underflow), and
the relative error of ``1 - beta^t`` computed in double (``eps64 beta^t / (1 -
beta^t)``).  The constants are generous: PyTorch's for-loop, foreach and fused
paths use at most ~0.4 of the bound on this matrix; each fault in
``tests/wrong_adams.py`` exceeds it by 10^11 to 10^16 in its most revealing
configuration (by as little as 1.0 in its least).  Where ``d - e_d <= 0`` no
precision-``u`` implementation can be held to anything and the element is not
checked (counted as unchecked).
Where the shadow is NaN or infinite the target must be too (after a NaN or
inf gradient ``v_max`` is not checked: ``max(v_max, NaN)`` is NaN or
``v_max`` depending on the instruction, even inside PyTorch's fused kernel).
Where the stored ``v`` overflows, a correct target may divide by the inf
(PyTorch: step 0) or by the value before it was rounded (a target computing in
float64 inside): any step between is accepted.  Long runs start from a
prepared state at step ``t0`` (``state["step"]`` for torch optimizers, ``t``
for step functions), so ``t = 1e6`` costs a few steps.
Usage::

    python -m adamref.check torch.optim:Adam --kwargs '{"fused": true}'
    python -m adamref.check torch.optim:AdamW
    python -m adamref.check --step adamref.cpu:adam_step --json
    python -m adamref.check mypkg.opt:FusedAdam --quick

or from Python, ``adamref.check.check("torch.optim:Adam").ok``.

References:
    Kingma, D. P., Ba, J. (2015). Adam: A Method for Stochastic Optimization.
    https://arxiv.org/abs/1412.6980
    Loshchilov, I., Hutter, F. (2019). Decoupled Weight Decay Regularization.
    https://arxiv.org/abs/1711.05101
    Reddi, S. J., Kale, S., Kumar, S. (2018). On the Convergence of Adam and
    Beyond (AMSGrad). https://openreview.net/forum?id=ryQu7f-RZ
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import math
import sys
import time
import zlib
from typing import NamedTuple

import numpy as np

__all__ = ["check", "main", "Report", "CaseResult", "FAULTS", "CASES", "CheckError"]

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
KINDS = ("adam", "adamw", "adamax")
DEFAULT = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
               decoupled=False, amsgrad=False, maximize=False)
ADAMAX_DEFAULT = dict(lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                      maximize=False)


class CheckError(ValueError):
    """The target cannot be checked (not importable, not constructible, bad options)."""


# ---------------------------------------------------------------- the matrix
class Case(NamedTuple):
    """One configuration: hyperparameters, inputs, and which kinds run it.

    ``grads`` is how gradients are drawn (:func:`_gradients`), ``p0`` how the
    start parameters are (:func:`_parameters`), ``t0`` the step count the
    run starts from (state prepared as after ``t0`` steps; 0: fresh state).
    """

    name: str
    hyper: dict
    grads: str = "mixed"
    p0: str = "mixed"
    t0: int = 0
    kinds: tuple = KINDS
    sizes: tuple | None = None     # tensor sizes; None: a pair that varies mod 16 over cases


_ADAM = ("adam", "adamw")
_L2 = ("adam", "adamax")
#: The configuration matrix. ``hyper`` overrides PyTorch's defaults; ``decoupled``
#: cases run for ``adamw`` (and for ``adam`` as ``decoupled_weight_decay=True``).
CASES = (
    Case("defaults", {}),
    Case("p=0", {}, p0="zero"),
    Case("small gradients", {}, grads="small"),
    Case("lr=0", dict(lr=0.0, weight_decay=0.1)),
    Case("lr=3", dict(lr=3.0)),
    Case("beta1=0", dict(beta1=0.0)),
    Case("beta1=0.3", dict(beta1=0.3)),            # torch.lerp's other branch
    Case("beta2=0", dict(beta2=0.0)),
    Case("beta2=1-1e-7", dict(beta2=1 - 1e-7)),
    Case("beta1=beta2=0.999", dict(beta1=0.999, beta2=0.999)),
    Case("eps=0", dict(eps=0.0)),
    Case("eps=1e-30", dict(eps=1e-30)),
    Case("eps=1", dict(eps=1.0)),
    Case("L2 wd=0.1", dict(weight_decay=0.1), kinds=_L2),
    Case("L2 wd=0.5 p=1e3", dict(weight_decay=0.5), p0="large", kinds=_L2),
    Case("decoupled wd=0.1", dict(weight_decay=0.1, decoupled=True), kinds=_ADAM),
    Case("decoupled wd=0.01 lr=1", dict(weight_decay=0.01, decoupled=True, lr=1.0),
         kinds=_ADAM),
    Case("amsgrad", dict(amsgrad=True), grads="decaying", kinds=_ADAM),
    Case("amsgrad L2", dict(amsgrad=True, weight_decay=0.01), kinds=("adam",)),
    Case("maximize", dict(maximize=True)),
    Case("maximize decoupled amsgrad", dict(maximize=True, weight_decay=0.1, decoupled=True,
                                            amsgrad=True), kinds=_ADAM),
    Case("gradients 1e-30..1e30", dict(amsgrad=True), grads="range"),
    Case("zero gradients", dict(weight_decay=0.01), grads="zero"),
    Case("NaN and inf gradients", dict(amsgrad=True, weight_decay=0.01), grads="nonfinite"),
    Case("t=1e3", {}, t0=1000),
    Case("t=1e4 beta2=0.9999", dict(beta2=0.9999), t0=10_000),
    Case("t=1e6 beta2=1-1e-7", dict(beta2=1 - 1e-7, amsgrad=True), t0=1_000_000),
    Case("vector tails", {}, sizes=tuple(range(1, 17)) + (1024 + 5, 4096 + 11)),
)
_HIDDEN_FLAGS = {"amsgrad", "decoupled"}           # not Adamax hyperparameters


def _hyper(case: Case, kind: str) -> dict:
    """The case's full hyperparameters for ``kind`` (Adamax: no amsgrad/decoupled)."""
    if kind == "adamax":
        h = dict(ADAMAX_DEFAULT, **{k: v for k, v in case.hyper.items()
                                    if k not in _HIDDEN_FLAGS})
        if case.hyper.get("decoupled") or case.hyper.get("amsgrad"):
            return None
        return h
    h = dict(DEFAULT, **case.hyper)
    if kind == "adamw" and h["weight_decay"] and not h["decoupled"]:
        return None                                # AdamW's decay is decoupled
    return h


def _cases(kind: str, quick: bool, dtypes) -> list:
    """(case, dtype, hyper, steps, sizes) for every case that applies to ``kind``."""
    out = []
    for i, case in enumerate(CASES):
        h = _hyper(case, kind)
        if h is None or kind not in case.kinds:
            continue
        sizes = case.sizes or (16 + i % 16, 64 + (5 * i + 3) % 16)
        if quick and len(sizes) > 3:
            sizes = tuple(range(1, 17)) + (64 + 5,)
        for dtype in dtypes:
            out.append((case, np.dtype(dtype), h, 5 if quick else 20, sizes))
    return out


def _rng(*keys) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(keys).encode()))


def _magnitudes(rng, shape, low, high):
    return rng.choice([-1.0, 1.0], size=shape) * 10.0 ** rng.uniform(low, high, size=shape)


def _gradients(kind: str, rng, steps: int, n: int) -> np.ndarray:
    """``steps`` x ``n`` gradients (float64; exact in float32).

    ``mixed``: magnitudes 1e-6..10 of both signs, so every case sees gradients
    below and above ``eps``; ``small``: 1e-9..1e-5; ``decaying``: shrinking
    by 10x a step (``v`` falls, so AMSGrad's maximum matters); ``range``:
    1e-30..1e30 and some exact zeros; ``zero``: every other element always
    zero, the rest zero at random steps; ``nonfinite``: NaN, +inf and -inf
    in a few elements at one step each.
    """
    shape = (steps, n)
    if kind == "small":
        return _magnitudes(rng, shape, -9, -5)
    g = _magnitudes(rng, shape, -6, 1)
    if kind == "decaying":
        g *= 10.0 ** -np.arange(steps)[:, None]
    elif kind == "range":
        # powers 1e-30..1e30, avoiding 1e17..1e24 in float32, where whether
        # g*g overflows before it is scaled by 1 - beta2 depends on the order
        exps = rng.choice([-30, -20, -10, -5, 0, 5, 10, 15, 30], size=shape)
        g = np.sign(g) * rng.uniform(1, 9.9, size=shape) * 10.0 ** exps
        g[rng.random(shape) < 0.05] = 0.0
    elif kind == "zero":
        g[:, ::2] = 0.0
        g[rng.random(shape) < 0.3] = 0.0
    elif kind == "nonfinite":
        for j, bad in zip((1, 2, 3, 4), (np.nan, np.inf, -np.inf, np.nan)):
            if j < n:
                g[min(j, steps - 1), j * (n // 5 or 1) % n] = bad
    return g


def _parameters(kind: str, rng, n: int) -> np.ndarray:
    """Start parameters: ``mixed`` 1e-7..10 of both signs (so that near zero a
    step-size error is not hidden by the ulp of ``p``), ``zero``, ``large`` (1e3)."""
    if kind == "zero":
        return np.zeros(n)
    if kind == "large":
        return _magnitudes(rng, n, 2.5, 3.5)
    return _magnitudes(rng, n, -7, 1)


class Inputs(NamedTuple):
    """A case's arrays, in the target's dtype: all sizes concatenated."""

    sizes: tuple
    p0: np.ndarray
    grads: np.ndarray
    t0: int
    state0: dict        # m, v, v_max (Adam) or m, u (Adamax); zeros when t0 == 0


def _inputs(case: Case, dtype, steps: int, sizes: tuple, kind: str) -> Inputs:
    rng = _rng(case.name, str(dtype), kind)
    n = sum(sizes)
    p0 = _parameters(case.p0, rng, n).astype(dtype)
    grads = _gradients(case.grads, rng, steps, n).astype(dtype)
    zeros = np.zeros(n, dtype)
    if case.t0 == 0:
        state = {"m": zeros, "v": zeros.copy(), "v_max": zeros.copy()}
    else:                                # as after t0 steps of gradients ~ 1e-3..1e-1
        m = _magnitudes(rng, n, -3, -1)
        v = m * m * 10.0 ** rng.uniform(0, 1, n)
        state = {"m": m.astype(dtype), "v": v.astype(dtype),
                 "v_max": (v * 10.0 ** rng.uniform(0, 0.5, n)).astype(dtype)}
    if kind == "adamax":
        state = {"m": state["m"], "u": np.sqrt(state["v"]).astype(dtype)}
    return Inputs(tuple(sizes), p0, grads, case.t0, state)


# ---------------------------------------------------------------- known faults
class Fault(NamedTuple):
    name: str
    description: str
    kinds: tuple


#: The known ways an Adam goes wrong; each is a switch in :class:`_Shadow`.
FAULTS = (
    Fault("eps-inside-sqrt", "eps inside the square root: sqrt(v_hat + eps)", _ADAM),
    Fault("eps-hat", "eps-hat (TensorFlow/Keras) form: lr sqrt(bc2)/bc1 m/(sqrt(v) + eps)",
          _ADAM),
    Fault("no-bias-correction", "bias correction missing (neither m nor v corrected)", KINDS),
    Fault("only-m-corrected", "bias correction of v missing (only m corrected)", _ADAM),
    Fault("only-v-corrected", "bias correction of m missing (only v corrected)", _ADAM),
    Fault("decay-swapped", "L2 and decoupled weight decay swapped", KINDS),
    Fault("decay-not-scaled-by-lr", "decoupled decay not scaled by lr: p <- (1 - wd) p",
          _ADAM),
    Fault("amsgrad-max-of-vhat", "AMSGrad maximum taken over bias-corrected v_hat", _ADAM),
    Fault("amsgrad-ignored", "amsgrad=True ignored (plain Adam)", _ADAM),
    Fault("maximize-ignored", "maximize=True ignored (descends)", KINDS),
    Fault("bias-correction-float32", "bias corrections 1 - beta^t computed in float32",
          KINDS),
    Fault("coefficients-float32", "1 - beta1, 1 - beta2 computed in float32", KINDS),
    Fault("eps-outside-max", "Adamax: eps added after the maximum, max(beta2 u, |g|) + eps",
          ("adamax",)),
    Fault("decay-after-update", "decoupled decay applied after the Adam update, not before",
          _ADAM),
    Fault("step-count-off-by-one", "bias corrections at step t + 1 (the step counted twice)",
          KINDS),
)
_FAULT = {f.name: f for f in FAULTS}


# ---------------------------------------------------------------- the shadow
def _shadow_dtype(dtype):
    """A precision wider than ``dtype``: float64 for float32, long double for float64
    (float64 itself where long double is no wider, e.g. on ARM macOS)."""
    if dtype == np.float32:
        return np.dtype(np.float64)
    wide = np.dtype(np.longdouble)
    return wide if np.finfo(wide).eps < np.finfo(np.float64).eps else np.dtype(np.float64)


def _bias_corrections(beta1, beta2, t, faults):
    """``(1 - beta1^t, 1 - beta2^t)`` in double (PyTorch), or as the faults compute them."""
    if "bias-correction-float32" in faults:
        f = np.float32
        return float(f(1) - f(beta1) ** f(t)), float(f(1) - f(beta2) ** f(t))
    bc1, bc2 = 1 - beta1 ** t, 1 - beta2 ** t
    if faults & {"no-bias-correction", "only-v-corrected"}:
        bc1 = 1.0
    if faults & {"no-bias-correction", "only-m-corrected"}:
        bc2 = 1.0
    return bc1, bc2


def _one_minus(beta, faults):
    """``1 - beta`` in double, or in float32 for the ``coefficients-float32`` fault."""
    if "coefficients-float32" in faults:
        return float(np.float32(1) - np.float32(beta))
    return 1.0 - beta


def _rel_bc(beta, t, bc):
    """Relative error of ``1 - beta^t`` computed in double: ``eps64 (beta^t + |bc|) / |bc|``."""
    return 2 * np.finfo(np.float64).eps * (beta ** t + abs(bc)) / abs(bc) if bc else 0.0


class _Shadow:
    """One shadow run: the reference in a wider precision, with running error bounds.

    ``x`` holds the values (``p``, ``m``, ``v``/``u``, ``v_max``) in the shadow
    dtype, ``e`` their bounds and ``scale`` their magnitudes (what ``k ulps``
    is measured in); ``wide`` marks elements whose ``v`` overflowed when
    stored (their bounds cover both readings; left out of the ulp statistics).
    ``faults`` (names from :data:`FAULTS`) make it one of the known wrong variants.
    """

    def __init__(self, inp: Inputs, h: dict, kind: str, dtype, faults=()):
        self.h, self.kind, self.dtype = h, kind, np.dtype(dtype)
        self.faults = frozenset([faults] if isinstance(faults, str) else faults)
        self.S = _shadow_dtype(self.dtype)
        self.u = np.finfo(self.dtype).eps + np.finfo(self.S).eps
        self.tiny = float(np.finfo(self.dtype).smallest_subnormal)
        self.x = {k: a.astype(self.S) for k, a in inp.state0.items()}
        self.x["p"] = inp.p0.astype(self.S)
        self.e = {k: np.zeros_like(a) for k, a in self.x.items()}
        self.scale = {k: np.abs(a) for k, a in self.x.items()}
        self.wide = np.zeros(inp.p0.shape, bool)
        self.amsgrad = (kind != "adamax" and h.get("amsgrad")
                        and "amsgrad-ignored" not in self.faults)
        with np.errstate(all="ignore"):
            for j, g in enumerate(inp.grads.astype(self.S)):
                self.step(g, inp.t0 + j + 1)
        if not self.amsgrad:
            for d in (self.x, self.e, self.scale):
                d.pop("v_max", None)

    def store(self, name, value, bound):
        """Round a new state value to the target's dtype, as the target stores it.

        Where ``value`` is within ``bound`` of the overflow threshold, a correct
        target may or may not overflow: the bound becomes infinite (unchecked).
        """
        big = np.finfo(self.dtype).max
        self.x[name] = value.astype(self.dtype).astype(self.S)
        edge = (np.abs(value) - bound <= big) & (np.abs(value) + bound >= big)
        self.e[name] = np.where(edge, np.inf, bound)

    def step(self, g, t):
        """One step: ``g`` the gradient (exact), ``t`` the step number.

        ``m <- beta1 m + w g`` with bound ``beta1 e_m + w e_g + 4u (max(beta1, w) |m| + w |g|)``.
        """
        h, u, x, e = self.h, self.u, self.x, self.e
        sign = -1.0 if h["maximize"] and "maximize-ignored" not in self.faults else 1.0
        g, e_g, a = self.decay(sign * g)
        beta1 = h["beta1"]
        w1 = _one_minus(beta1, self.faults)
        m = x["m"]
        self.store("m", beta1 * m + w1 * g, beta1 * e["m"] + w1 * e_g + self.tiny
                   + 4 * u * (max(beta1, w1) * np.abs(m) + w1 * np.abs(g)))
        self.scale["m"] = beta1 * self.scale["m"] + w1 * a
        bc1, bc2 = _bias_corrections(beta1, h["beta2"], t + ("step-count-off-by-one"
                                                             in self.faults), self.faults)
        if self.kind == "adamax":
            d, e_d, over = self.adamax_norm(g, e_g, a)
        else:
            d, e_d, over = self.adam_denominator(g, e_g, a, bc2, t)
        self.move(bc1, t, d, e_d, over)
        if "decay-after-update" in self.faults:
            self.decay(g, after=True)

    def decay(self, g, after=False):
        """Weight decay: L2 ``g <- g + wd p``, or decoupled ``p <- (1 - lr wd) p``.

        Returns ``g``, its bound ``e_g = wd e_p + u (2 wd |p| + |g|)`` and its
        scale ``|g| + wd |p|``.
        """
        h, u, x, e = self.h, self.u, self.x, self.e
        wd, p = h["weight_decay"], x["p"]
        decoupled = h.get("decoupled", False) != ("decay-swapped" in self.faults)
        zero = np.zeros_like(p)
        late = "decay-after-update" in self.faults and decoupled
        if not wd or late != after:
            return g, zero, np.abs(g)
        if decoupled:
            lr = 1.0 if "decay-not-scaled-by-lr" in self.faults else h["lr"]
            f = 1 - lr * wd
            self.scale["p"] = self.scale["p"] + abs(1 - f) * np.abs(p)
            e["p"] = abs(f) * e["p"] + 2 * u * abs(f) * np.abs(p) + self.tiny
            x["p"] = p * f
            return g, zero, np.abs(g)
        a = np.abs(g) + wd * np.abs(p)
        g = g + wd * p
        return g, wd * e["p"] + u * (2 * wd * np.abs(p) + np.abs(g)) + self.tiny, a

    def adam_denominator(self, g, e_g, a, bc2, t):
        """Update ``v`` (and ``v_max``); return ``d = sqrt(v)/sqrt(bc2) + eps``, its bound
        ``(sqrt(v + e_v) - sqrt(v - e_v))/sqrt(bc2) + u (...)``, and where ``v`` overflowed.

        Where the stored ``v`` overflowed, a correct target may divide by the
        stored inf (step 0, as PyTorch) or by the value before it was rounded
        (a target working in a wider precision): ``d`` is then the latter, and
        :meth:`move` allows any step between.
        """
        h, u, tiny, x, e, faults = self.h, self.u, self.tiny, self.x, self.e, self.faults
        beta2, eps = h["beta2"], h["eps"]
        w2 = _one_minus(beta2, faults)
        v_wide = beta2 * x["v"] + w2 * g * g                # v <- beta2 v + w2 g^2
        self.store("v", v_wide, beta2 * e["v"] + w2 * (2 * np.abs(g) * e_g + e_g * e_g)
                   + 4 * u * v_wide + tiny)
        self.scale["v"] = beta2 * self.scale["v"] + w2 * a * a
        vv, e_vv, c2 = x["v"], e["v"], math.sqrt(bc2)
        rel_c2 = _rel_bc(beta2, t, bc2) / 2 + 2 * u
        if self.amsgrad:                                    # v_max <- max(v_max, v)
            new, e_new = vv, e_vv
            if "amsgrad-max-of-vhat" in faults:
                new, e_new, c2, rel_c2 = vv / bc2, e_vv / bc2 + u * vv / bc2, 1.0, 0.0
                v_wide = v_wide / bc2
            grow = new > x["v_max"]
            v_wide = np.maximum(x["v_max"], v_wide)
            self.store("v_max", np.maximum(x["v_max"], new), np.maximum(e["v_max"], e_new))
            x["v_max"] = np.where(np.isnan(new), new, x["v_max"])
            self.scale["v_max"] = np.where(grow, self.scale["v"], self.scale["v_max"])
            vv, e_vv = x["v_max"], e["v_max"]
        over = np.isinf(vv) & np.isfinite(v_wide)
        vv, e_vv = np.where(over, v_wide, vv), np.where(over, u * v_wide, e_vv)
        r = np.sqrt(vv)
        e_r = np.maximum(np.sqrt(vv + e_vv) - r, r - np.sqrt(np.maximum(vv - e_vv, 0))) + u * r
        if "eps-inside-sqrt" in faults:
            d = np.sqrt(vv / bc2 + eps)
            return d, e_r / c2 + u * 3 * d + tiny, over
        if "eps-hat" in faults:
            d = (r + eps) / c2
            return d, e_r / c2 + d * (rel_c2 + 2 * u) + tiny, over
        s = r / c2
        d = s + eps
        return d, e_r / c2 + s * (rel_c2 + u) + u * (d + eps) + tiny, over

    def adamax_norm(self, g, e_g, a):
        """Update Adamax's ``u <- max(beta2 u, |g| + eps)``; return it as the denominator."""
        h, u, tiny, x, e = self.h, self.u, self.tiny, self.x, self.e
        beta2, eps, un = h["beta2"], h["eps"], x["u"]
        inside = 0.0 if "eps-outside-max" in self.faults else eps
        self.store("u", np.maximum(beta2 * un, np.abs(g) + inside),
                   np.maximum(beta2 * e["u"] + 2 * u * beta2 * un,
                              e_g + 2 * u * (np.abs(g) + eps)) + tiny)
        self.scale["u"] = np.maximum(beta2 * self.scale["u"], a + inside)
        if inside:
            return x["u"], e["u"], False
        return x["u"] + eps, e["u"] + u * (x["u"] + 2 * eps), False

    def move(self, bc1, t, d, e_d, over):
        """``p <- p - (lr/bc1) m/d``, bound ``(lr/bc1)(e_m/(d - e_d) + |m| e_d/(d (d - e_d)))``.

        Unchecked (infinite bound) where ``d - e_d <= 0``; exact where ``d`` is
        inf and ``m`` finite (the step is 0); where ``v`` overflowed (``over``)
        anything from 0 to the step.
        """
        u, tiny, x, e = self.u, self.tiny, self.x, self.e
        m, e_m, sigma = x["m"], e["m"], self.h["lr"] / bc1
        step = sigma * m / d
        d_lo = d - e_d
        e_step = sigma * (e_m / d_lo + np.abs(m) * e_d / (d * d_lo)) \
            + (_rel_bc(self.h["beta1"], t, bc1) + 3 * u) * np.abs(step)
        e_step = np.where(d_lo > 0, e_step, np.inf)
        e_step = np.where(np.isinf(d) & np.isfinite(m), 0.0, e_step) + tiny
        step = np.where(over, step / 2, step)
        e_step = np.where(over, np.abs(step) + e_step, e_step)
        self.wide |= over
        p = x["p"] - step
        self.scale["p"] = self.scale["p"] + np.abs(sigma * self.scale["m"] / d)
        self.store("p", p, e["p"] + e_step + u * np.abs(p) + tiny)


# ---------------------------------------------------------------- running a target
class Unsupported(Exception):
    """The target does not take this configuration (e.g. no ``maximize`` argument)."""


def _slices(sizes):
    start = 0
    for n in sizes:
        yield slice(start, start + n)
        start += n


_TORCH_KEYS = {"m": "exp_avg", "v": "exp_avg_sq", "v_max": "max_exp_avg_sq", "u": "exp_inf"}


def _constructor_args(h: dict, kind: str) -> dict:
    """Keyword arguments for torch's Adam constructor for hyperparameters ``h``; flags
    that are off are left out, so a class without them still runs the other cases."""
    args = dict(lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"],
                weight_decay=h["weight_decay"])
    if h.get("amsgrad"):
        args["amsgrad"] = True
    if h.get("maximize"):
        args["maximize"] = True
    if kind == "adam" and h.get("decoupled") and h["weight_decay"]:
        args["decoupled_weight_decay"] = True
    return args


def _state_names(kind: str, h: dict) -> tuple:
    if kind == "adamax":
        return ("m", "u")
    return ("m", "v", "v_max") if h.get("amsgrad") else ("m", "v")


def _prepare_state(opt, params, inp: Inputs, names: tuple) -> None:
    """Put the state after ``t0`` steps where torch keeps it (``step`` a float32 tensor)."""
    import torch

    for s, q in zip(_slices(inp.sizes), params):
        opt.state[q] = {"step": torch.tensor(float(inp.t0), dtype=torch.float32)}
        opt.state[q].update({_TORCH_KEYS[n]: torch.tensor(inp.state0[n][s]) for n in names})


def _read_state(opt, params, inp: Inputs, names: tuple) -> dict:
    """``p`` and every state array the optimizer keeps under torch's keys, concatenated."""
    out = {"p": np.concatenate([q.detach().numpy() for q in params])}
    for name in names:
        key = _TORCH_KEYS[name]
        if all(key in opt.state[q] for q in params):
            out[name] = np.concatenate([opt.state[q][key].detach().numpy() for q in params])
    if inp.t0:
        steps = [opt.state[q].get("step") for q in params]
        if any(s is None or float(s) != inp.t0 + len(inp.grads) for s in steps):
            raise Unsupported("does not continue from torch's state layout "
                              "(state['step'], 'exp_avg', ...)")
    return out


def _run_optimizer(cls, kwargs: dict, inp: Inputs, h: dict, kind: str) -> dict:
    """Run ``cls`` over the case, one tensor per size; return ``p`` and its state arrays.

    A constructor that refuses the configuration (``TypeError``, ``ValueError``,
    ``RuntimeError``) or a step that raises ``NotImplementedError`` makes it
    :class:`Unsupported`; anything else a step raises is the target's failure.
    """
    import torch

    params = [torch.tensor(inp.p0[s]).requires_grad_() for s in _slices(inp.sizes)]
    try:
        opt = cls(params, **_constructor_args(h, kind), **kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise Unsupported(f"constructor: {exc}") from None
    names = _state_names(kind, h)
    if inp.t0:
        _prepare_state(opt, params, inp, names)
    try:
        for g in inp.grads:
            for s, q in zip(_slices(inp.sizes), params):
                q.grad = torch.tensor(g[s])
            opt.step()
    except NotImplementedError as exc:
        raise Unsupported(f"step: NotImplementedError: {exc}") from None
    return _read_state(opt, params, inp, names)


def _run_step_function(fn, inp: Inputs, h: dict, kind: str) -> dict:
    """Run a step function with adamref's API over the case (one call per tensor and step)."""
    arrays = {k: a.copy() for k, a in inp.state0.items()}
    p = inp.p0.copy()
    h = dict(h)
    if kind == "adamw":
        h["decoupled"] = bool(h["weight_decay"])
    amsgrad = kind != "adamax" and h.get("amsgrad")
    for j, g in enumerate(inp.grads):
        for s in _slices(inp.sizes):
            extra = {"v_max": arrays["v_max"][s]} if amsgrad else {}
            if kind == "adamax":
                fn(p[s], g[s].copy(), arrays["m"][s], arrays["u"][s], inp.t0 + j + 1, **h)
            else:
                fn(p[s], g[s].copy(), arrays["m"][s], arrays["v"][s], inp.t0 + j + 1, **h,
                   **extra)
    if not amsgrad:
        arrays.pop("v_max", None)
    return dict(arrays, p=p)


class Target(NamedTuple):
    """What is checked: a torch optimizer class (``step=False``) or a step function."""

    obj: object
    name: str
    kind: str
    step: bool
    kwargs: dict

    def run(self, inp: Inputs, h: dict) -> dict:
        if self.step:
            return _run_step_function(self.obj, inp, h, self.kind)
        return _run_optimizer(self.obj, self.kwargs, inp, h, self.kind)


def _torch_fused(inp: Inputs, h: dict, kind: str):
    """torch's own result (fused Adam; Adamax's for-loop), or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    if kind == "adamax":
        return _run_optimizer(torch.optim.Adamax, {"foreach": False}, inp, h, kind)
    return _run_optimizer(torch.optim.Adam, {"fused": True}, inp, h, "adam")


# ---------------------------------------------------------------- judging
class _Judgement(NamedTuple):
    ok: dict                  # per array: element within bound (or unchecked)
    checked: dict             # per array: element checked
    ulps: float               # worst |diff| / (eps scale) over checked finite elements
    used: float               # worst |diff| / bound
    worst: dict | None        # the worst element (array, index, got, expected, allowed)


def _judge_array(a, x, e, scale, dtype, skip):
    """One array against the shadow: ``(ok, checked, ulps, bound used, badness)``.

    A finite expected value ``x`` needs ``|a - x| <= e`` (or ``a`` = inf of
    ``x``'s sign when ``|x| + e`` reaches the overflow threshold); a non-finite
    one needs ``a`` non-finite.  Elements with an infinite bound, and ``skip``,
    are not checked.  ``badness`` ranks the failures (inf for a wrong class).
    """
    with np.errstate(all="ignore"):
        diff = np.abs(a - x)
        fin = np.isfinite(x)
        overflowed = np.isinf(a) & (np.abs(x) + e >= np.finfo(dtype).max) \
            & (np.sign(a) == np.sign(x))
        ok = np.where(fin, (diff <= e) | overflowed, ~np.isfinite(a))
        checked = ~(fin & ~np.isfinite(e)) & ~skip
        ok |= ~checked
        measured = checked & fin & np.isfinite(a)
        ulps = np.where(measured, diff / (np.finfo(dtype).eps * np.maximum(scale, 1e-300)), 0)
        used = np.where(measured & (e > 0), diff / e, 0)
        badness = np.where(ok, -1.0, np.where(measured, used, np.inf))
    return ok, checked, ulps, used, badness


def _judge(out: dict, sh: _Shadow, inp: Inputs, dtype) -> _Judgement:
    """Every array the target returned against the shadow (see :func:`_judge_array`).

    After a NaN or inf gradient ``v_max`` is not checked; elements whose ``v``
    overflowed (``sh.wide``) are checked but left out of the ulp statistics.
    """
    bad_input = ~np.isfinite(inp.grads).all(axis=0)
    oks, checked, ulps, used, worst, worst_badness = {}, {}, 0.0, 0.0, None, -1.0
    for name, x in sh.x.items():
        if name not in out:
            continue
        a = np.asarray(out[name])
        if a.shape != x.shape:
            raise Unsupported(f"{name} has shape {a.shape}, expected {x.shape}")
        a = a.astype(x.dtype)
        skip = bad_input if name == "v_max" else np.zeros(x.shape, bool)
        ok, chk, k, r, badness = _judge_array(a, x, sh.e[name], sh.scale[name], dtype, skip)
        oks[name], checked[name] = ok, chk
        ulps = max(ulps, float(k[~sh.wide].max(initial=0)))
        used = max(used, float(r[~sh.wide].max(initial=0)))
        i = int(np.argmax(badness)) if badness.size else 0
        if badness.size and badness[i] > worst_badness:
            worst_badness = badness[i]
            worst = dict(array=name, index=i, got=float(a[i]), expected=float(x[i]),
                         allowed=float(sh.e[name][i]))
    return _Judgement(oks, checked, ulps, used, worst)


def _same_bits(a: dict, b: dict) -> bool:
    """Equal bit for bit in every array both have (NaNs by position)."""
    common = set(a) & set(b)
    return bool(common) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        and ((a[k].view(np.uint8).reshape(a[k].size, -1) == b[k].view(np.uint8)
              .reshape(b[k].size, -1)).all(axis=1) | (np.isnan(a[k]) & np.isnan(b[k]))).all()
        for k in common)


def _explains(out, inp, h, kind, dtype, fault) -> tuple:
    """How many of the checked elements ``fault``'s shadow explains: (within, checked)."""
    j = _judge(out, _Shadow(inp, h, kind, dtype, fault), inp, dtype)
    n = sum(int(c.sum()) for c in j.checked.values())
    bad = sum(int((~ok).sum()) for ok in j.ok.values())
    return n - bad, n


@dataclasses.dataclass
class CaseResult:
    """The verdict for one configuration."""

    case: str
    dtype: str
    verdict: str                 # "bitwise", "ulps", "wrong" or "skipped"
    ulps: float = 0.0            # worst difference in ulps of the element's scale
    bound_used: float = 0.0      # worst difference as a fraction of the allowed error
    checked: int = 0
    unchecked: int = 0
    worst: dict | None = None
    diagnosis: list = dataclasses.field(default_factory=list)   # faults that explain it
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.case} / {self.dtype}"

    def verdict_text(self) -> str:
        if self.verdict == "ulps":
            return f"within {math.ceil(self.ulps)} ulps"
        return self.verdict


def _run_case(target: Target, case: Case, dtype, h: dict, steps: int, sizes: tuple,
              compare_torch: bool) -> tuple:
    inp = _inputs(case, dtype, steps, sizes, target.kind)
    kind = target.kind
    res = CaseResult(case.name, dtype.name, "skipped")
    try:
        with np.errstate(all="ignore"):
            out = target.run(inp, h)
    except Unsupported as exc:
        res.note = str(exc)
        return res, None
    except Exception as exc:                 # the target's own code failed on this case
        res.verdict, res.note = "wrong", f"raised {type(exc).__name__}: {exc}"
        return res, None
    sh = _Shadow(inp, h, kind, dtype)
    try:
        j = _judge(out, sh, inp, dtype)
    except Unsupported as exc:
        res.verdict, res.note = "wrong", str(exc)
        return res, None
    res.checked = sum(int(c.sum()) for c in j.checked.values())
    res.unchecked = sum(int((~c).sum()) for c in j.checked.values())
    res.ulps, res.bound_used, res.worst = j.ulps, j.used, j.worst
    missing = sorted(set(sh.x) - set(out))
    if missing:
        res.note = "not compared (not in the optimizer's state): " + ", ".join(missing)
    if not all(ok.all() for ok in j.ok.values()):
        res.verdict = "wrong"
        return res, (out, inp, h)
    ref = _torch_fused(inp, h, kind) if compare_torch else None
    res.verdict = "bitwise" if ref is not None and _same_bits(out, ref) else "ulps"
    return res, None


# ---------------------------------------------------------------- the report
@dataclasses.dataclass
class Report:
    """Everything :func:`check` found; ``ok`` is True when nothing is wrong."""

    target: str
    kind: str
    build: dict
    results: list
    diagnosis: dict | None = None      # {"fault", "description", "explained", "runner_up"}
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(r.verdict == "wrong" for r in self.results)

    def counts(self) -> dict:
        out = {}
        for r in self.results:
            out[r.verdict] = out.get(r.verdict, 0) + 1
        return out

    def worst(self) -> list:
        """Results, worst first: wrong, then by ulps, then bitwise, then skipped."""
        rank = {"wrong": 0, "ulps": 1, "bitwise": 2, "skipped": 3}
        return sorted(self.results, key=lambda r: (rank[r.verdict], -r.bound_used, -r.ulps))

    def __str__(self) -> str:
        return self.format()

    def to_json(self) -> dict:
        """Everything, as JSON-ready types (``python -m adamref.check --json`` prints it
        with non-finite floats as the strings "inf" and "nan")."""
        return dict(target=self.target, kind=self.kind, ok=self.ok, build=self.build,
                    counts=self.counts(), diagnosis=self.diagnosis, seconds=self.seconds,
                    results=[dataclasses.asdict(r) for r in self.results])

    def format(self, rows: int = 12, timing: bool = True) -> str:
        """A summary a person can read: the ``rows`` worst configurations (all if
        ``rows <= 0``), the counts, the worst element, the diagnosis, the verdict.
        ``timing=False`` leaves the run time out (for stored outputs)."""
        b = self.build
        lines = [f"adamref.check {self.target} (kind {self.kind})",
                 f"build: torch {b.get('torch')} CPU capability {b.get('cpu_capability')}, "
                 f"numpy {b.get('numpy')}; bitwise = identical to {b.get('bitwise_against')}",
                 ""]
        shown = self.worst() if rows <= 0 else self.worst()[:rows]
        lines += _table(shown)
        if len(self.results) > len(shown):
            lines.append(f"... {len(self.results) - len(shown)} more "
                         "(--all shows every configuration)")
        lines += ["", self._counts_line(timing)] + self._diagnosis_lines()
        lines.append("verdict: OK" if self.ok else "verdict: WRONG")
        return "\n".join(lines)

    def _counts_line(self, timing: bool = True) -> str:
        counts = self.counts()
        names = {"ulps": "within the bound"}
        right = max((r.ulps for r in self.results if r.verdict in ("ulps", "bitwise")),
                    default=0)
        return (f"{len(self.results)} configurations: "
                + ", ".join(f"{counts[k]} {names.get(k, k)}"
                            for k in ("bitwise", "ulps", "wrong", "skipped") if k in counts)
                + f"; worst {right:.3g} ulps among the right ones"
                + (f" ({self.seconds:.1f} s)" if timing else ""))

    def _diagnosis_lines(self) -> list:
        lines = []
        wrong = [r for r in self.worst() if r.verdict == "wrong" and r.worst]
        if wrong:
            r, w = wrong[0], wrong[0].worst
            lines.append(f"worst: {r.label}: {w['array']}[{w['index']}] = {w['got']!r}, "
                         f"expected {w['expected']!r} +- {w['allowed']:.3g}")
        d = self.diagnosis
        if not d:
            return lines
        if not d["fault"]:
            return lines + ["diagnosis: unrecognised deviation (no known fault explains it; "
                            f"closest: {d.get('closest')})"]
        lines.append(f"diagnosis: {d['description']} [{d['fault']}] (explains "
                     f"{d['explained']:.1%} of the checked elements of the wrong configurations)")
        if d.get("runner_up"):
            lines.append(f"  or: {d['runner_up']}")
        if "decay-swapped" in d["fault"] and self.kind != "adamax":
            other = "adamw" if self.kind == "adam" else "adam"
            lines.append(f"  (if TARGET is meant to be {other}, pass --kind {other})")
        return lines


def _table(results: list) -> list:
    """The summary table's lines: configuration, verdict, ulps, error/allowed, diagnosis."""
    rows = [("configuration", "verdict", "ulps", "error/allowed", "diagnosis")]
    for r in results:
        skipped = r.verdict == "skipped"
        used = "-" if skipped else "inf" if math.isinf(r.bound_used) else f"{r.bound_used:.2g}"
        diag = ", ".join(r.diagnosis) if r.diagnosis else (
            "unrecognised" if r.verdict == "wrong" and not r.note else r.note[:60])
        rows.append((r.label, r.verdict_text(), "-" if skipped else f"{r.ulps:.3g}", used, diag))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]


def _build_info() -> dict:
    info = dict(numpy=np.__version__, torch=None, cpu_capability=None,
                bitwise_against="nothing (torch not installed)")
    try:
        import torch
    except ImportError:
        return info
    info.update(torch=torch.__version__, cpu_capability=torch.backends.cpu.get_cpu_capability())
    return info


def _scores(wrong: list, kind: str, combos: list, results: list) -> dict:
    """For each combination of faults, the fraction of the wrong configurations'
    checked elements its shadow explains; a configuration it explains entirely
    gets its name in ``diagnosis``."""
    scores = {}
    for combo in combos:
        good = total = 0
        for (out, inp, h, dtype), res in zip(wrong, results):
            g, n = _explains(out, inp, h, kind, dtype, combo)
            good, total = good + g, total + n
            if n and g == n:
                res.diagnosis.append(" + ".join(combo))
        scores[combo] = good / total if total else 0.0
    return scores


def _diagnose(wrong: list, kind: str, results: list, top: int = 5) -> dict:
    """Name the fault, or failing that the pair of faults (among the ``top`` single
    ones), whose shadow explains every checked element of the wrong configurations."""
    singles = [(f.name,) for f in FAULTS if kind in f.kinds]
    scores = _scores(wrong, kind, singles, results)
    if max(scores.values()) < 0.999:
        best = sorted(singles, key=lambda c: -scores[c])[:top]
        pairs = [tuple(n for n in _FAULT if n in a + b)
                 for i, a in enumerate(best) for b in best[i + 1:]]
        scores.update(_scores(wrong, kind, pairs, results))
    ranked = sorted(scores, key=lambda c: (-scores[c], len(c)))
    best, frac = ranked[0], scores[ranked[0]]
    if frac < 0.999:
        return dict(fault=None, description=None, explained=frac,
                    closest=f"{' + '.join(best)} ({frac:.1%} of elements)")
    runner = [" + ".join(c) for c in ranked[1:] if scores[c] >= 0.999 and len(c) == len(best)]
    return dict(fault=" + ".join(best), explained=frac, runner_up=", ".join(runner) or None,
                description="; and ".join(_FAULT[n].description for n in best))


# ---------------------------------------------------------------- the entry points
def _resolve(target, step: bool, kind, kwargs) -> Target:
    """Import ``module:attr`` (or take the object); check it can be built; pick the kind."""
    name = target if isinstance(target, str) else (
        f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', target)}")
    if isinstance(target, str):
        module, sep, attr = target.partition(":")
        if not sep or not module or not attr:
            raise CheckError(f"TARGET must be module:Class or module:function, got {target!r}")
        try:
            obj = importlib.import_module(module)
        except ImportError as exc:
            raise CheckError(f"TARGET {target!r}: cannot import module {module!r}: "
                             f"{exc}") from None
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise CheckError(f"TARGET {target!r}: module {module!r} has no "
                                 f"attribute {attr!r}") from None
    else:
        obj = target
    if not callable(obj):
        raise CheckError(f"TARGET {name!r} is not callable")
    step = step or not isinstance(obj, type)
    if kind is None:
        low = name.lower()
        kind = "adamax" if "adamax" in low else "adamw" if "adamw" in low else "adam"
    if kind not in KINDS:
        raise CheckError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    kwargs = dict(kwargs or {})
    if step and kwargs:
        raise CheckError("--kwargs applies to optimizer classes, not to --step functions")
    clash = sorted(set(kwargs) & {"lr", "betas", "eps", "weight_decay", "amsgrad", "maximize",
                                  "decoupled_weight_decay", "params"})
    if clash:
        raise CheckError(f"--kwargs may not set {', '.join(clash)}: the matrix sets them")
    tgt = Target(obj, name, kind, step, kwargs)
    _smoke(tgt)
    return tgt


def _smoke(tgt: Target) -> None:
    """Build and step the target once with default hyperparameters, or raise CheckError."""
    h = dict(ADAMAX_DEFAULT if tgt.kind == "adamax" else DEFAULT)
    inp = _inputs(CASES[0], np.dtype(np.float32), 1, (3,), tgt.kind)
    what = "call" if tgt.step else "construct or step"
    try:
        tgt.run(inp, h)
    except Unsupported as exc:
        raise CheckError(f"TARGET {tgt.name!r}: cannot {what} it with default "
                         f"hyperparameters: {exc}") from None
    except Exception as exc:      # a user's code: say what failed, whatever it raised
        raise CheckError(f"TARGET {tgt.name!r}: cannot {what} it with default "
                         f"hyperparameters: {type(exc).__name__}: {exc}") from None


@contextlib.contextmanager
def _one_thread():
    """Run torch (intra-op) and Numba with one thread meanwhile, if they are loaded:
    the tensors are small, and on a busy machine waking a thread pool for each
    costs ~10 ms a step.  Elementwise kernels round the same on any number of
    threads.  The settings are restored afterwards."""
    torch, numba = sys.modules.get("torch"), sys.modules.get("numba")
    before = (torch.get_num_threads() if torch else None,
              numba.get_num_threads() if numba else None)
    if torch:
        torch.set_num_threads(1)
    if numba:
        numba.set_num_threads(1)
    try:
        yield
    finally:
        if torch:
            torch.set_num_threads(before[0])
        if numba:
            numba.set_num_threads(before[1])


def check(target, *, kind: str | None = None, step: bool = False, kwargs: dict | None = None,
          quick: bool = False, dtypes=DTYPES) -> Report:
    """Run ``target`` through the configuration matrix; return a :class:`Report`.

    Args:
        target: ``"module:Class"``/``"module:function"``, or the class or function.
        kind: ``"adam"``, ``"adamw"`` or ``"adamax"``; default from the name.
        step: the target is a step function (``adam_step``'s API); implied for functions.
        kwargs: extra constructor arguments (``{"fused": True}``).
        quick: fewer steps and sizes (a few seconds).
        dtypes: the parameter dtypes to run.

    Raises:
        CheckError: the target cannot be imported, built or stepped at all.

    Example:
        >>> from adamref.check import check
        >>> check("adamref.reference:adam_step", quick=True).ok
        True
    """
    t_start = time.perf_counter()
    tgt = _resolve(target, step, kind, kwargs)
    build = _build_info()
    compare = build["torch"] is not None
    if compare:
        build["bitwise_against"] = ("torch.optim.Adamax(foreach=False)" if tgt.kind == "adamax"
                                    else "torch.optim.Adam(fused=True)") + " on this build"
    results, wrong, wrong_results = [], [], []
    with _one_thread():
        for case, dtype, h, steps, sizes in _cases(tgt.kind, quick, dtypes):
            res, evidence = _run_case(tgt, case, dtype, h, steps, sizes, compare)
            results.append(res)
            if evidence is not None:
                wrong.append(evidence + (dtype,))
                wrong_results.append(res)
    report = Report(tgt.name, tgt.kind, build, results)
    if wrong:
        report.diagnosis = _diagnose(wrong, tgt.kind, wrong_results)
    report.seconds = time.perf_counter() - t_start
    return report


def main(argv=None) -> int:
    """``python -m adamref.check``: 0 if nothing is wrong, 1 if something is, 2 on bad usage."""
    ap = argparse.ArgumentParser(
        prog="python -m adamref.check",
        description="Is this Adam right, and if not, what is wrong with it? Runs TARGET "
                    "through a matrix of configurations; each gets a verdict: bitwise "
                    "(identical to torch's fused Adam on this build), within k ulps (inside "
                    "the error a correct implementation may make), or wrong (with the known "
                    "fault that explains it).",
        epilog="exit status: 0 nothing wrong, 1 something wrong, 2 TARGET or an option "
               "unusable. Example: python -m adamref.check torch.optim:Adam "
               "--kwargs '{\"fused\": true}'")
    ap.add_argument("target", metavar="TARGET",
                    help="module:Class (torch.optim.Adam's constructor) or, with --step, "
                         "module:function (adamref's adam_step API)")
    ap.add_argument("--kwargs", default="{}", help="JSON object of extra constructor arguments")
    ap.add_argument("--kind", choices=KINDS, help="semantics to check (default: from the name)")
    ap.add_argument("--step", action="store_true", help="TARGET is a step function")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--quick", action="store_true", help="fewer steps and sizes")
    ap.add_argument("--dtype", choices=("float32", "float64"), action="append",
                    help="run only this dtype (repeatable)")
    ap.add_argument("--all", action="store_true", help="list every configuration")
    args = ap.parse_args(argv)
    try:
        kwargs = json.loads(args.kwargs)
    except json.JSONDecodeError as exc:
        print(f"error: --kwargs is not valid JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(kwargs, dict):
        print("error: --kwargs must be a JSON object, e.g. '{\"fused\": true}'", file=sys.stderr)
        return 2
    try:
        report = check(args.target, kind=args.kind, step=args.step, kwargs=kwargs,
                       quick=args.quick, dtypes=args.dtype or DTYPES)
    except CheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(_finite(report.to_json()), indent=1, allow_nan=False))
    else:
        print(report.format(rows=0 if args.all else 12))
    return 0 if report.ok else 1


def _finite(x):
    """``x`` with non-finite floats as the strings "inf", "-inf", "nan" (strict JSON)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else str(float(x))
    if isinstance(x, np.integer):
        return int(x)
    return x


if __name__ == "__main__":
    sys.exit(main())
