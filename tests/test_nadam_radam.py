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
from parity import assert_close_in_ulps, gradients, shadow_gradient, start

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

    ``hyper["lr"]`` may be a sequence, one learning rate per step (a scheduler).

    Written from the papers' equations (Dozat 2016, eq. for n-bar/m-bar with
    torch's mu_t schedule; Liu et al. 2020, Algorithm 2), not from the code
    under test: ``a = |g| (+ wd scale(p))`` enters m and v as in Adam, and
    ``p`` moves each step by the absolute value of each term of its update.
    """
    b1, b2, eps = hyper["beta1"], hyper["beta2"], hyper["eps"]
    psi = hyper.get("momentum_decay", 4e-3)
    p = p0.astype(np.float64)
    m = np.zeros_like(p); m_abs = np.zeros_like(p)
    v = np.zeros_like(p); v_abs = np.zeros_like(p)
    p_scale = np.abs(p)
    prod = 1.0
    rho_inf = 2 / (1 - b2) - 1
    lrs = np.broadcast_to(hyper["lr"], len(grads))    # a sequence: that step's lr
    for t, g in enumerate(grads, start=1):
        lr = float(lrs[t - 1])
        g, a, p, p_scale = shadow_gradient(g, p, p_scale, lr, hyper)
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


def assert_raises_naming_it_and_changes_nothing(step, names, arrays, case):
    """``step(*arrays[names], **rest)`` with ``case``'s spoiled argument raises the
    expected error naming it, and leaves every array as it was."""
    spoil, error, word = case
    a = dict(arrays, **spoil)
    before = {k: np.array(x, copy=True) for k, x in a.items() if isinstance(x, np.ndarray)}
    args = [a.pop(k) for k in names]
    with pytest.raises(error, match=word):
        step(*args, **a)
    for k, x in zip(names, args):
        if k in before:
            assert np.array_equal(x, before[k]), k


def step_arrays(seed):
    rng = np.random.default_rng(seed)
    return dict(p=rng.standard_normal(8).astype(np.float32), g=np.ones(8, np.float32),
                m=np.ones(8, np.float32), v=np.ones(8, np.float32), t=3)


@pytest.mark.parametrize("case", NADAM_BAD, ids=[str(c[0])[:40] for c in NADAM_BAD])
def test_nadam_bad_input_raises_naming_it_and_changes_nothing(case):
    arrays = dict(step_arrays(19), mu_product=np.full((), 0.5, np.float32))
    assert_raises_naming_it_and_changes_nothing(
        reference.nadam_step, ("p", "g", "m", "v", "t", "mu_product"), arrays, case)


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
    assert_raises_naming_it_and_changes_nothing(
        reference.radam_step, ("p", "g", "m", "v", "t"), step_arrays(20), case)


# ---------------------------------------------------------------- adamref.optim.NAdam, RAdam
import copy        # noqa: E402
import inspect     # noqa: E402
import io          # noqa: E402

from adamref import optim  # noqa: E402

CLASSES = {"nadam": (optim.NAdam, torch.optim.NAdam),
           "radam": (optim.RAdam, torch.optim.RAdam)}
OPTIM_FLAGS = [dict(), dict(weight_decay=0.1),
               dict(weight_decay=0.1, decoupled_weight_decay=True),
               dict(maximize=True, momentum_decay=0.05)]


def _problem(seed, sizes, steps, dtype, none=0.0):
    rng = np.random.default_rng(seed)
    p0 = [rng.standard_normal(n).astype(dtype) for n in sizes]
    grads = [gradients(rng, n, steps, dtype, low=-4, high=2) for n in sizes]
    missing = rng.random((steps, len(sizes))) < none
    return p0, [[None if missing[t, i] else grads[i][t] for i in range(len(sizes))]
                for t in range(steps)]


def _train(make, p0, grads, groups=None, on_step=None, opt=None, params=None):
    params = params or [torch.nn.Parameter(torch.tensor(p)) for p in p0]
    groups = groups or [{}]
    per = -(-len(params) // len(groups))
    opt = opt or make([dict(g, params=params[i * per:(i + 1) * per])
                       for i, g in enumerate(groups)])
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = None if g is None else torch.tensor(g)
        opt.step()
        if on_step is not None:
            on_step()
    return params, opt


def _arrays(params, opt):
    out = []
    for p in params:
        st = opt.state[p]
        a = {"p": p.detach().numpy().copy()}
        if st:
            a.update(m=st["exp_avg"].numpy().copy(), v=st["exp_avg_sq"].numpy().copy(),
                     step=float(st["step"]))
            if "mu_product" in st:
                a["mu_product"] = st["mu_product"].numpy().copy()
        out.append(a)
    return out


def _assert_close(kind, ours, theirs, p0, grads, hyper_of):
    """Per tensor: same step count and mu_product bits; p, m, v within 2 * steps ulps of
    the shadow scale of the gradients that tensor saw, with its group's options."""
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert set(a) == set(b), i
        seen = [gs[i] for gs in grads if gs[i] is not None]
        if not seen:
            np.testing.assert_array_equal(a["p"], p0[i])
            continue
        assert a.pop("step") == b.pop("step") == len(seen)
        if kind == "nadam":
            assert a.pop("mu_product").tobytes() == b.pop("mu_product").tobytes()
        scales = shadow_scales(kind, p0[i], np.stack(seen), hyper_of(i))
        assert_close_in_ulps(a, b, scales, 2 * len(seen), a["p"].dtype)


def _reference_hyper(kind, options):
    h = dict(NADAM if kind == "nadam" else RADAM)
    h.update({k: v for k, v in options.items() if k in h or k in ("weight_decay", "maximize")})
    if "decoupled_weight_decay" in options:
        h["decoupled"] = options["decoupled_weight_decay"]
    if kind == "radam":
        h.pop("momentum_decay", None)
    return h


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("flags", OPTIM_FLAGS, ids=str)
@pytest.mark.parametrize("kind", ["nadam", "radam"])
def test_optim_matches_torch_with_groups_and_none_grads(kind, flags, dtype):
    """Two groups with their own lr, some gradients None (that tensor skips the step)."""
    ours_cls, torch_cls = CLASSES[kind]
    if kind == "radam":
        flags = {k: v for k, v in flags.items() if k != "momentum_decay"}
    p0, grads = _problem(21, [1, 13, 300, 1000 + 7], 30, dtype, none=0.2)
    groups = [dict(lr=3e-2), dict(lr=1e-3, eps=1e-6)]
    ours = _arrays(*_train(lambda g: ours_cls(g, **flags), p0, grads, groups))
    theirs = _arrays(*_train(lambda g: torch_cls(g, foreach=False, **flags), p0, grads,
                             groups))

    def hyper_of(i):
        return _reference_hyper(kind, dict(flags, **groups[i // 2]))
    _assert_close(kind, ours, theirs, p0, grads, hyper_of)


@pytest.mark.parametrize("kind", ["nadam", "radam"])
def test_optim_is_the_reference_per_tensor(kind):
    """Each tensor is stepped by the reference with its own step count, bit for bit."""
    p0, grads = _problem(22, [5, 64], 12, np.float32, none=0.3)
    ours = _arrays(*_train(lambda g: CLASSES[kind][0](g, weight_decay=0.01), p0, grads))
    for i, a in enumerate(ours):
        seen = np.stack([gs[i] for gs in grads if gs[i] is not None])
        ref = ours_run(kind, p0[i], seen, _reference_hyper(kind, dict(weight_decay=0.01)))
        for name in ref:
            assert a[name].tobytes() == ref[name].tobytes(), (i, name)


@pytest.mark.parametrize("kind", ["nadam", "radam"])
def test_optim_follows_a_scheduler_like_torch(kind):
    ours_cls, torch_cls = CLASSES[kind]
    p0, grads = _problem(23, [100, 33], 20, np.float32)
    results = []
    for make in (lambda g: ours_cls(g, lr=1e-2),
                 lambda g: torch_cls(g, lr=1e-2, foreach=False)):
        holder = {}

        def build(groups):
            opt = make(groups)
            holder["s"] = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.8)
            return opt
        params, opt = _train(build, p0, grads, on_step=lambda: holder["s"].step())
        results.append((_arrays(params, opt), opt.param_groups[0]["lr"]))
    (ours, lr_ours), (theirs, lr_theirs) = results
    assert lr_ours == lr_theirs == pytest.approx(1e-2 * 0.8 ** 20)
    lrs = 1e-2 * 0.8 ** np.arange(20)                 # the lr each step ran with
    _assert_close(kind, ours, theirs, p0, grads,
                  lambda i: _reference_hyper(kind, dict(lr=lrs)))


@pytest.mark.parametrize("kind", ["nadam", "radam"])
def test_constructors_are_torchs(kind):
    def described(cls):
        return [(p.name, p.kind, p.default)
                for p in inspect.signature(cls.__init__).parameters.values()]
    ours_cls, torch_cls = CLASSES[kind]
    assert described(ours_cls) == described(torch_cls)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["nadam", "radam"])
def test_state_dict_layout_is_torchs(kind, dtype):
    sds = []
    for cls, kw in ((CLASSES[kind][0], {}), (CLASSES[kind][1], dict(foreach=False))):
        p = torch.nn.Parameter(torch.linspace(-1, 1, 5, dtype=dtype))
        opt = cls([p], weight_decay=0.1, **kw)
        for _ in range(3):
            p.grad = torch.linspace(1, 2, 5, dtype=dtype)
            opt.step()
        sds.append(opt.state_dict())
    ours, theirs = sds
    # foreach: torch keeps what it was given (False here), ours None (never foreach)
    assert [dict(g, foreach=None) for g in ours["param_groups"]] == \
           [dict(g, foreach=None) for g in theirs["param_groups"]]
    assert list(ours["state"][0]) == list(theirs["state"][0])
    for key, t in theirs["state"][0].items():
        o = ours["state"][0][key]
        assert (o.dtype, o.shape, o.device) == (t.dtype, t.shape, t.device), key
    for key in ("step", "mu_product"):
        if key in theirs["state"][0]:
            assert ours["state"][0][key].dtype == torch.float32
            assert torch.equal(ours["state"][0][key], theirs["state"][0][key]), key


def _saved(opt):
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("kind", ["nadam", "radam"])
def test_state_dict_moves_between_ours_and_torch_mid_run_both_ways(kind):
    """Run 5 steps in one, save through torch.save/torch.load(weights_only=True), load into
    the other and run 7 more: the result is within the bound of 12 straight torch steps."""
    ours_cls, torch_cls = CLASSES[kind]
    kw = dict(lr=1e-2, weight_decay=0.1)
    p0, grads = _problem(24, [1000 + 3, 16, 5], 12, np.float32, none=0.1)
    makers = {"ours": lambda g: ours_cls(g, **kw),
              "torch": lambda g: torch_cls(g, foreach=False, **kw)}
    straight = _arrays(*_train(makers["torch"], p0, grads))
    hyper_of = lambda i: _reference_hyper(kind, kw)            # noqa: E731
    for first, second in (("ours", "torch"), ("torch", "ours")):
        params, opt = _train(makers[first], p0, grads[:5])
        loaded = _saved(opt)
        opt2 = makers[second]([{"params": params}])
        opt2.load_state_dict(copy.deepcopy(loaded))
        params, opt2 = _train(None, p0, grads[5:], opt=opt2, params=params)
        _assert_close(kind, _arrays(params, opt2), copy.deepcopy(straight), p0, grads,
                      hyper_of)


def test_torch_checkpoint_with_python_number_step_and_mu_product_loads():
    """Old checkpoints stored step and mu_product as numbers: made tensors, like torch."""
    p = torch.nn.Parameter(torch.ones(4))
    opt = optim.NAdam([p])
    p.grad = torch.ones(4)
    opt.step()
    sd = opt.state_dict()
    state = sd["state"][0]
    state["step"], state["mu_product"] = 1.0, float(state["mu_product"])
    opt2 = optim.NAdam([p])
    opt2.load_state_dict(sd)
    opt2.step()
    assert float(opt2.state[p]["step"]) == 2.0
    assert opt2.state[p]["mu_product"].dtype == torch.float32


@pytest.mark.parametrize("kind", ["nadam", "radam"])
@pytest.mark.parametrize("kwargs,match", [
    (dict(lr=-1.0), "Invalid learning rate"), (dict(eps=-1.0), "Invalid epsilon"),
    (dict(betas=(1.0, 0.9)), "index 0"), (dict(betas=(0.9, -0.1)), "index 1"),
    (dict(weight_decay=-1.0), "weight_decay"), (dict(foreach=True), "foreach"),
    (dict(capturable=True), "capturable"), (dict(differentiable=True), "differentiable")],
    ids=str)
def test_bad_hyperparameters_raise_like_torch(kind, kwargs, match):
    p = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match=match):
        CLASSES[kind][0]([p], **kwargs)
    if kwargs.get("foreach") or kwargs.get("capturable") or kwargs.get("differentiable"):
        return
    with pytest.raises(ValueError, match=match):
        CLASSES[kind][1]([p], **kwargs)


def test_bad_momentum_decay_raises_like_torch():
    p = torch.nn.Parameter(torch.ones(3))
    for cls in CLASSES["nadam"]:
        with pytest.raises(ValueError, match="Invalid momentum_decay value"):
            cls([p], momentum_decay=-0.1)


@pytest.mark.parametrize("kind", ["nadam", "radam"])
def test_a_bad_gradient_raises_before_anything_changes(kind):
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(4))
    opt = CLASSES[kind][0]([{"params": [a]}, {"params": [b]}])
    a.grad = torch.ones(3)
    opt.step()
    before = copy.deepcopy(opt.state_dict()), a.detach().clone(), b.detach().clone()
    a.grad = torch.ones(3)
    b.grad = torch.ones(4).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()
    assert torch.equal(a, before[1]) and torch.equal(b, before[2])
    assert float(opt.state[a]["step"]) == 1.0 and not opt.state[b]


@pytest.mark.parametrize("kind", ["nadam", "radam"])
def test_training_a_small_model_updates_autograd_versions(kind):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = CLASSES[kind][0](model.parameters(), lr=0.05)
    x = torch.randn(16, 3)
    first = None
    for _ in range(40):
        opt.zero_grad()
        loss = model(x).square().mean()
        first = first if first is not None else float(loss.detach())
        version = model.weight._version
        loss.backward()
        opt.step()
        assert model.weight._version > version
    assert float(model(x).square().mean().detach()) < 0.5 * first


@pytest.mark.parametrize("kind", ["nadam", "radam"])
def test_bad_param_group_is_refused_and_the_optimizer_unchanged(kind):
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = CLASSES[kind][0]([a], lr=1e-2)
    before = copy.deepcopy(opt.state_dict())
    for bad, match in ((dict(lr=-1.0), "learning rate"), (dict(foreach=True), "foreach"),
                       (dict(params=[torch.nn.Parameter(torch.ones(2, dtype=torch.int64)
                                                        .float().half())]), "float16")):
        group = dict(dict(params=[b]), **bad)
        with pytest.raises(ValueError, match=match):
            opt.add_param_group(group)
        assert opt.state_dict() == before and len(opt.param_groups) == 1
    opt.add_param_group({"params": [b], "lr": 0.5})
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["foreach"] is None
