"""NAdam and RAdam: the NumPy reference against torch.optim.NAdam / RAdam (foreach=False).

The tolerance is derived as in tests/parity.py: a float64 shadow run tracks,
per element, the magnitude of every term summed into each result (``scale``);
a correct implementation of the same operations differs from torch by at most
a few units of roundoff of that scale per step, a wrong formula by far more.
The bound used is ``2 * steps`` ulps of the scale (as for Adam in
tests/test_reference.py); the worst seen over 60 steps and every flag is
about 4 ulps, and a 10% slip in a hyperparameter costs dozens per step.
"""

import math

import numpy as np
import pytest
import torch

from adamref import reference
from parity import assert_close_in_ulps, gradients, start

NADAM = dict(lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, momentum_decay=4e-3)
RADAM = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)

FLAGS = [dict(weight_decay=0.0, decoupled=False, maximize=False),
         dict(weight_decay=0.1, decoupled=False, maximize=False),
         dict(weight_decay=0.1, decoupled=True, maximize=False),
         dict(weight_decay=0.0, decoupled=False, maximize=True),
         dict(weight_decay=0.1, decoupled=True, maximize=True)]


def flag_id(f):
    on = [k for k in ("decoupled", "maximize") if f[k]]
    return "-".join([f"wd={f['weight_decay']}"] + on)


def torch_run(kind, p0, grads, hyper):
    """Run torch.optim.NAdam or RAdam (foreach=False) from ``p0``; return its arrays."""
    h = dict(hyper)
    lr, b1, b2 = h.pop("lr"), h.pop("beta1"), h.pop("beta2")
    dec = h.pop("decoupled", False)
    p = torch.tensor(p0, requires_grad=True)
    cls = torch.optim.NAdam if kind == "nadam" else torch.optim.RAdam
    opt = cls([p], lr=lr, betas=(b1, b2), decoupled_weight_decay=dec, foreach=False, **h)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    st = opt.state[p]
    out = {"p": p.detach().numpy().copy(), "m": st["exp_avg"].numpy().copy(),
           "v": st["exp_avg_sq"].numpy().copy()}
    if kind == "nadam":
        out["mu_product"] = st["mu_product"].numpy().copy()
    return out


def ours_run(kind, p0, grads, hyper, mu_dtype=np.float32):
    p = p0.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    mu_product = np.ones((), mu_dtype)
    for t, g in enumerate(grads, start=1):
        if kind == "nadam":
            reference.nadam_step(p, g, m, v, t, mu_product, **hyper)
        else:
            reference.radam_step(p, g, m, v, t, **hyper)
    out = {"p": p, "m": m, "v": v}
    if kind == "nadam":
        out["mu_product"] = mu_product
    return out


def shadow_scales(kind, p0, grads, hyper):
    """Per-element magnitude of the terms each of p, m, v was summed from (float64).

    Written from the papers' equations (Dozat 2016, eq. for n-bar/m-bar with
    torch's mu_t schedule; Liu et al. 2020, Algorithm 2), not from the code
    under test: ``a = |g| (+ wd scale(p))`` enters m and v as in Adam, and
    ``p`` moves each step by the absolute value of each term of its update.
    """
    lr, b1, b2, eps = hyper["lr"], hyper["beta1"], hyper["beta2"], hyper["eps"]
    wd, dec = hyper.get("weight_decay", 0.0), hyper.get("decoupled", False)
    psi = hyper.get("momentum_decay", 4e-3)
    p = p0.astype(np.float64)
    m = np.zeros_like(p); m_abs = np.zeros_like(p)
    v = np.zeros_like(p); v_abs = np.zeros_like(p)
    p_scale = np.abs(p)
    prod = 1.0
    rho_inf = 2 / (1 - b2) - 1
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64) * (-1 if hyper.get("maximize") else 1)
        a = np.abs(g)
        if wd and dec:
            p_scale += lr * wd * np.abs(p)
            p = p * (1 - lr * wd)
        elif wd:
            a = a + wd * p_scale
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        m_abs = b1 * m_abs + (1 - b1) * a
        v = b2 * v + (1 - b2) * g * g
        v_abs = b2 * v_abs + (1 - b2) * a * a
        if kind == "nadam":
            mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
            mu1 = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
            prod *= mu
            denom = np.sqrt(v / (1 - b2 ** t)) + eps
            c1, c2 = lr * (1 - mu) / (1 - prod), lr * mu1 / (1 - prod * mu1)
            p = p - (c1 * g + c2 * m) / denom
            p_scale += (c1 * a + c2 * m_abs) / denom
        else:
            m_hat, m_hat_abs = m / (1 - b1 ** t), m_abs / (1 - b1 ** t)
            rho = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
            if rho > 5:
                r = math.sqrt((rho - 4) * (rho - 2) * rho_inf
                              / ((rho_inf - 4) * (rho_inf - 2) * rho))
                k = lr * r * math.sqrt(1 - b2 ** t) / (np.sqrt(v) + eps)
            else:
                k = lr
            p = p - k * m_hat
            p_scale += k * m_hat_abs
    return {"p": p_scale, "m": m_abs, "v": v_abs}


def check(kind, p0, grads, hyper, dtype, ulps_per_step=2):
    ours = ours_run(kind, p0, grads, hyper)
    theirs = torch_run(kind, p0, grads, hyper)
    if kind == "nadam":       # torch keeps mu_product as a float32 scalar, rounded each step
        mp = ours.pop("mu_product"), theirs.pop("mu_product")
        assert mp[0].dtype == mp[1].dtype == np.float32 and mp[0].shape == mp[1].shape == ()
        assert mp[0].tobytes() == mp[1].tobytes()
    assert_close_in_ulps(ours, theirs, shadow_scales(kind, p0, grads, hyper),
                         ulps_per_step * len(grads), dtype)
    return ours, theirs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("flags", FLAGS, ids=flag_id)
@pytest.mark.parametrize("kind", ["nadam", "radam"])
def test_reference_matches_torch_for_every_flag(kind, flags, dtype):
    p0, grads = start(11, 400, 60, dtype)
    hyper = dict(NADAM if kind == "nadam" else RADAM, lr=1e-2, **flags)
    check(kind, p0, grads, hyper, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("psi", [0.0, 4e-3, 0.5, 30.0])
def test_nadam_matches_torch_for_momentum_decay(psi, dtype):
    p0, grads = start(12, 200, 40, dtype, low=-3, high=3)
    check("nadam", p0, grads, dict(NADAM, momentum_decay=psi, weight_decay=0.01), dtype)


@pytest.mark.parametrize("kind", ["nadam", "radam"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [dict(beta1=0.0), dict(beta1=0.3, beta2=0.5),
                                  dict(beta2=0.0), dict(eps=0.0), dict(eps=10.0),
                                  dict(lr=3.0), dict(beta2=0.99)], ids=str)
def test_reference_matches_torch_at_edges(kind, dtype, case):
    p0, grads = start(13, 200, 30, dtype, low=-4, high=4)
    hyper = dict(NADAM if kind == "nadam" else RADAM, **case)
    check(kind, p0, grads, hyper, dtype)


def test_many_steps_float64_within_1e_11_relative():
    """Over 600 steps (RAdam's rectification on from step 6), float64 agrees to 1e-11 of scale."""
    p0, grads = start(14, 500, 600, np.float64, low=-5, high=5)
    for kind in ("nadam", "radam"):
        hyper = dict(NADAM if kind == "nadam" else RADAM, weight_decay=0.01)
        ours, theirs = ours_run(kind, p0, grads, hyper), torch_run(kind, p0, grads, hyper)
        scales = shadow_scales(kind, p0, grads, hyper)
        for name in scales:
            err = np.max(np.abs(ours[name] - theirs[name]) / scales[name])
            assert err < 1e-11, (kind, name, err)


def test_many_steps_float32():
    p0, grads = start(15, 300, 300, np.float32, low=-3, high=3)
    for kind in ("nadam", "radam"):
        check(kind, p0, grads, dict(NADAM if kind == "nadam" else RADAM), np.float32)


@pytest.mark.parametrize("kind", ["nadam", "radam"])
def test_a_wrong_formula_is_caught(kind):
    """The bound is tight enough to see plausible slips within 10 float32 steps: NAdam's
    momentum_decay 10% off, RAdam's eps added to sqrt(v_hat) (Adam's place) instead of
    sqrt(v), emulated by scaling eps by sqrt(1 - beta2^t) at the last step's t."""
    if kind == "nadam":
        p0, grads = start(16, 200, 10, np.float32, low=-2, high=2)
        hyper = NADAM
        wrong = ours_run(kind, p0, grads, dict(hyper, momentum_decay=1.1 * 4e-3))
    else:
        p0, grads = start(16, 200, 10, np.float32, low=-9, high=-7)
        hyper = RADAM
        wrong = ours_run(kind, p0, grads, dict(hyper, eps=1e-8 * (1 - 0.999 ** 10) ** 0.5))
    theirs = torch_run(kind, p0, grads, hyper)
    wrong.pop("mu_product", None), theirs.pop("mu_product", None)
    with pytest.raises(AssertionError):
        assert_close_in_ulps(wrong, theirs, shadow_scales(kind, p0, grads, hyper),
                             2 * len(grads), np.float32)


def test_radam_is_momentum_sgd_until_rho_exceeds_5():
    """With beta2 = 0.999, rho_t <= 5 for t <= 5: p moves by exactly lr * m_hat."""
    rng = np.random.default_rng(17)
    p, m, v = rng.standard_normal(50), np.zeros(50), np.zeros(50)
    for t in range(1, 6):
        g = rng.standard_normal(50)
        before, m_next = p.copy(), 0.9 * m + 0.1 * g
        reference.radam_step(p, g, m, v, t, lr=0.1)
        np.testing.assert_allclose(before - p, 0.1 * m_next / (1 - 0.9 ** t), rtol=1e-13)
    g = rng.standard_normal(50)
    before = p.copy()
    reference.radam_step(p, g, m, v, 6, lr=0.1)
    np.testing.assert_array_less(np.abs(before - p), 0.1 * np.abs(m / (1 - 0.9 ** 6)))


def test_nadam_mu_product_float64_matches_torch_default_dtype_float64():
    p0, grads = start(18, 50, 20, np.float64)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        theirs = torch_run("nadam", p0, grads, NADAM)
    finally:
        torch.set_default_dtype(old)
    ours = ours_run("nadam", p0, grads, NADAM, mu_dtype=np.float64)
    assert theirs["mu_product"].dtype == np.float64
    assert ours["mu_product"].tobytes() == theirs["mu_product"].tobytes()


NADAM_BAD = [
    (dict(mu_product=[1.0]), TypeError, "mu_product"),
    (dict(mu_product=np.ones(2, np.float32)), ValueError, "mu_product"),
    (dict(mu_product=np.ones((), np.int64)), TypeError, "mu_product"),
    (dict(mu_product=np.full((), 1.5, np.float32)), ValueError, "mu_product"),
    (dict(momentum_decay=-1.0), ValueError, "momentum_decay"),
    (dict(momentum_decay=math.inf), ValueError, "momentum_decay"),
    (dict(beta1=1.0), ValueError, "beta1"),
    (dict(lr=-1.0), ValueError, "lr"),
    (dict(decoupled="yes"), TypeError, "decoupled"),
    (dict(t=0), ValueError, "t"),
    (dict(m=np.zeros(7, np.float32)), ValueError, "m"),
]


@pytest.mark.parametrize("case", NADAM_BAD, ids=[str(c[0])[:40] for c in NADAM_BAD])
def test_nadam_bad_input_raises_naming_it_and_changes_nothing(case):
    spoil, error, word = case
    rng = np.random.default_rng(19)
    a = dict(p=rng.standard_normal(8).astype(np.float32), g=np.ones(8, np.float32),
             m=np.ones(8, np.float32), v=np.ones(8, np.float32), t=3,
             mu_product=np.full((), 0.5, np.float32))
    a.update(spoil)
    before = {k: np.array(x, copy=True) for k, x in a.items() if isinstance(x, np.ndarray)}
    args = [a.pop(k) for k in ("p", "g", "m", "v", "t", "mu_product")]
    with pytest.raises(error, match=word):
        reference.nadam_step(*args, **a)
    for k, x in zip(("p", "g", "m", "v", "t", "mu_product"), args):
        if k in before:
            assert np.array_equal(x, before[k]), k


RADAM_BAD = [
    (dict(beta2=1.0), ValueError, "beta2"),
    (dict(eps=math.nan), ValueError, "eps"),
    (dict(weight_decay=-0.1), ValueError, "weight_decay"),
    (dict(maximize=1), TypeError, "maximize"),
    (dict(t=1.5), TypeError, "t"),
    (dict(v=np.ones(8, np.float64)), TypeError, "v"),
]


@pytest.mark.parametrize("case", RADAM_BAD, ids=[str(c[0])[:40] for c in RADAM_BAD])
def test_radam_bad_input_raises_naming_it_and_changes_nothing(case):
    spoil, error, word = case
    rng = np.random.default_rng(20)
    a = dict(p=rng.standard_normal(8).astype(np.float32), g=np.ones(8, np.float32),
             m=np.ones(8, np.float32), v=np.ones(8, np.float32), t=3)
    a.update(spoil)
    before = {k: np.array(x, copy=True) for k, x in a.items() if isinstance(x, np.ndarray)}
    args = [a.pop(k) for k in ("p", "g", "m", "v", "t")]
    with pytest.raises(error, match=word):
        reference.radam_step(*args, **a)
    for k, x in zip(("p", "g", "m", "v", "t"), args):
        if k in before:
            assert np.array_equal(x, before[k]), k
