"""Shared machinery for comparing an Adam implementation with torch.optim.

The tolerance for float32 and float64 comparisons is derived, not guessed:
an error-free computation of the same step on the same inputs is replaced
by a float64 "shadow" run that also tracks, for every element, the size of
the terms that were summed into it (``scale``).  Rounding in a correct
implementation can move a value by at most a few units in the last place of
that scale per step; a wrong formula moves it by far more.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from hypothesis import strategies as st

DEFAULT = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)

#: Hyperparameters at the edges of their ranges, each with PyTorch's defaults otherwise.
EXTREMES = {
    "defaults": dict(DEFAULT),
    "large-lr": dict(DEFAULT, lr=3.0),
    "beta1=0": dict(DEFAULT, beta1=0.0),
    "beta1=0.3": dict(DEFAULT, beta1=0.3),         # lerp weight >= 1/2: torch's other branch
    "beta2-near-1": dict(DEFAULT, beta2=1 - 1e-7),
    "beta2=0": dict(DEFAULT, beta2=0.0),
    "small-betas": dict(DEFAULT, beta1=0.3, beta2=0.4),
    "tiny-eps": dict(DEFAULT, eps=1e-30),
    "large-eps": dict(DEFAULT, eps=10.0),
    "eps=0": dict(DEFAULT, eps=0.0),
}

#: Any valid set of Adam hyperparameters, for property tests.
HYPER = st.fixed_dictionaries({
    "lr": st.floats(0, 2),
    "beta1": st.floats(0, 0.999),
    "beta2": st.floats(0, 0.99999),
    "eps": st.sampled_from([0.0, 1e-12, 1e-8, 1e-3, 1.0]),
    "weight_decay": st.sampled_from([0.0, 1e-4, 0.5]),
    "decoupled": st.booleans(),
    "amsgrad": st.booleans(),
    "maximize": st.booleans(),
})

FLAGS = [dict(weight_decay=wd, decoupled=dec, amsgrad=ams, maximize=mx)
         for wd, dec, ams, mx in itertools.product((0.0, 0.1), (False, True),
                                                   (False, True), (False, True))
         if wd or not dec]                      # decoupled matters only with weight decay


def flag_id(flags: dict) -> str:
    on = [k for k, v in flags.items() if v and k != "weight_decay"]
    wd = f"wd={flags['weight_decay']}" if flags["weight_decay"] else "wd=0"
    return "-".join([wd] + on) or "plain"


def gradients(rng, n, steps, dtype, low=-6, high=6):
    """``steps`` gradients whose magnitudes span 10**low .. 10**high, of both signs."""
    mag = 10.0 ** rng.uniform(low, high, size=(steps, n))
    return (rng.standard_normal((steps, n)) * mag).astype(dtype)


def start(seed, n, steps, dtype, low=-6, high=6):
    """A seeded test case: ``p0`` standard normal, then :func:`gradients` from the same stream."""
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(n).astype(dtype)
    return p0, gradients(rng, n, steps, dtype, low, high)


def torch_adam(p0, grads, hyper, fused=False, adamax=False):
    """Run torch.optim.Adam (or Adamax) from ``p0`` over ``grads``; return p, m, v[, v_max]."""
    p = torch.tensor(p0, requires_grad=True)
    h = dict(hyper)
    lr, beta1, beta2 = h.pop("lr"), h.pop("beta1"), h.pop("beta2")
    if adamax:
        opt = torch.optim.Adamax([p], lr=lr, betas=(beta1, beta2), foreach=False, **h)
    else:
        decoupled = h.pop("decoupled", False)
        kind = dict(fused=True) if fused else dict(foreach=False)
        opt = torch.optim.Adam([p], lr=lr, betas=(beta1, beta2),
                               decoupled_weight_decay=decoupled, **kind, **h)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    state = opt.state[p]
    out = {"p": p.detach().numpy().copy()}
    names = {"exp_avg": "m", "exp_avg_sq": "v", "max_exp_avg_sq": "v_max", "exp_inf": "u"}
    for key, name in names.items():
        if key in state:
            out[name] = state[key].numpy().copy()
    return out


def run_step(step, p0, grads, hyper, amsgrad_key="v_max", adamax=False):
    """Run one of our ``adam_step``/``adamax_step`` from zero state; return the arrays."""
    p = p0.copy()
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    h = dict(hyper)
    if h.get("amsgrad"):
        h["v_max"] = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        step(p, g, m, v, t, **h)
    out = {"p": p, "m": m, ("u" if adamax else "v"): v}
    if "v_max" in h:
        out["v_max"] = h["v_max"]
    return out


def shadow_gradient(g, p, p_scale, lr, hyper):
    """One step's gradient as it enters the moments, in float64, with its scale.

    Returns ``g, a, p, p_scale``: ``g`` negated if maximize; decoupled decay
    first scales ``p`` by ``1 - lr wd`` (its scale grows by ``lr wd |p|``); L2
    decay adds ``wd p`` to ``g`` and ``wd s_p`` to the scale ``a = |g|``, where
    ``s_p`` is the scale of ``p`` (``p`` carries its own rounding, relative to
    ``s_p``).  Shared by every shadow model (Adam here, NAdam and RAdam in
    ``test_nadam_radam.py``).
    """
    wd = hyper.get("weight_decay", 0.0)
    g = g.astype(np.float64) * (-1 if hyper.get("maximize") else 1)
    a = np.abs(g)
    if wd and hyper.get("decoupled", False):
        p_scale = p_scale + lr * wd * np.abs(p)
        p = p * (1 - lr * wd)
    elif wd:
        a = a + wd * p_scale
        g = g + wd * p
    return g, a, p, p_scale


def shadow_scales(p0, grads, hyper, adamax=False):
    """Per-element magnitudes of the terms each result was built from (float64).

    The gradient that enters the moments is ``g`` plus ``wd * p`` for L2
    decay; where the two nearly cancel, their rounding is what counts, so its
    scale is ``a = |g| + wd s_p``, with ``s_p`` the scale of ``p`` (not ``|p|``:
    ``p`` carries the rounding of every earlier step, relative to ``s_p``).  ``m`` averages gradients, so its scale is
    the same average of ``a``; ``v`` averages squares, so its scale is that
    average of ``a^2`` (``v`` itself without L2), and ``v_max``'s the running
    maximum of it; ``p`` moves by ``lr/bc1 * m/denom`` each step, so its scale
    is ``|p0|`` plus the sum of ``lr/bc1 * scale(m)/denom`` (plus weight decay).
    """
    lr, beta1, beta2 = hyper["lr"], hyper["beta1"], hyper["beta2"]
    eps = hyper.get("eps", 1e-8)
    p = p0.astype(np.float64)
    m = np.zeros_like(p); m_abs = np.zeros_like(p)
    v = np.zeros_like(p); v_abs = np.zeros_like(p)
    v_max = np.zeros_like(p); v_max_abs = np.zeros_like(p)
    p_scale = np.abs(p)
    for t, g in enumerate(grads, start=1):
        g, a, p, p_scale = shadow_gradient(g, p, p_scale, lr, hyper)
        m = beta1 * m + (1 - beta1) * g
        m_abs = beta1 * m_abs + (1 - beta1) * a
        if adamax:
            v = np.maximum(beta2 * v, np.abs(g) + eps)
            v_abs = np.maximum(beta2 * v_abs, a + eps)
            denom = v
        else:
            v = beta2 * v + (1 - beta2) * g * g
            v_abs = beta2 * v_abs + (1 - beta2) * a * a
            v_max = np.maximum(v_max, v)
            v_max_abs = np.maximum(v_max_abs, v_abs)
            denom = np.sqrt(v_max if hyper.get("amsgrad") else v) / np.sqrt(1 - beta2 ** t) + eps
        step = lr / (1 - beta1 ** t) / denom
        p = p - step * m
        p_scale += step * m_abs
    scales = {"p": p_scale, "m": m_abs, ("u" if adamax else "v"): v_abs}
    if hyper.get("amsgrad"):
        scales["v_max"] = v_max_abs
    return scales


def assert_close_in_ulps(ours, theirs, scales, ulps, dtype):
    """Each array agrees to ``ulps`` units of roundoff of its element's scale."""
    unit = np.finfo(dtype).eps
    for name, scale in scales.items():
        a, b = ours[name], theirs[name]
        assert a.dtype == b.dtype == np.dtype(dtype), name
        same_nan = np.isnan(a) == np.isnan(b)
        assert same_nan.all(), f"{name}: NaN in different places"
        ok = np.isnan(a) | (a == b) | (np.abs(a.astype(np.float64) - b) <= ulps * unit * scale)
        if not ok.all():
            i = np.flatnonzero(~ok.ravel())[0]
            raise AssertionError(
                f"{name}[{i}]: ours {a.ravel()[i]!r}, torch {b.ravel()[i]!r}, differ by "
                f"{abs(float(a.ravel()[i]) - float(b.ravel()[i])):.3g} > {ulps} ulps of scale "
                f"{scale.ravel()[i]:.3g} ({(~ok).sum()} of {ok.size} elements)")


def bits(a):
    """The bit patterns of a float32/float64 array, as unsigned integers."""
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def assert_bitwise(ours, theirs):
    """Two ``{name: array}`` results equal bit for bit (a NaN matched by position only)."""
    assert set(ours) == set(theirs)
    for name in ours:
        a, b = ours[name].ravel(), theirs[name].ravel()
        assert a.dtype == b.dtype
        same = (bits(a) == bits(b)) | (np.isnan(a) & np.isnan(b))
        bad = np.flatnonzero(~same)
        assert bad.size == 0, (f"{name}: {bad.size} of {a.size} differ, first at {bad[0]}: "
                               f"ours {a[bad[0]]!r}, torch {b[bad[0]]!r}")
