"""Bad input raises a clear error naming the argument, and changes nothing.

Every NumPy backend is checked with the same cases; the CUDA backend runs
the same cases on device arrays in tests/test_cuda.py.
"""

import importlib

import numpy as np
import pytest

BACKENDS = ["reference", "cpu"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return importlib.import_module(f"adamref.{request.param}")


def fresh(n=16, dtype=np.float32):
    rng = np.random.default_rng(0)
    a = {k: rng.standard_normal(n).astype(dtype) for k in ("p", "g", "m", "v", "v_max")}
    a["v"], a["v_max"] = np.abs(a["v"]), np.abs(a["v_max"])
    return a


def call(backend, a, t=1, **kw):
    backend.adam_step(a["p"], a["g"], a["m"], a["v"], t, **kw)


def readonly(x):
    x = x.copy()
    x.flags.writeable = False
    return x


# (name, how to spoil the arrays or arguments, expected error, word the message must contain)
ARRAY_CASES = [
    ("int-dtype", lambda a: a.update(p=a["p"].astype(np.int32)), TypeError, "p"),
    ("float16", lambda a: a.update(**{k: a[k].astype(np.float16) for k in a}), TypeError, "float16"),
    ("mixed-dtype", lambda a: a.update(m=a["m"].astype(np.float64)), TypeError, "m"),
    ("shape", lambda a: a.update(v=a["v"][:15].copy()), ValueError, "v"),
    ("2d-vs-1d", lambda a: a.update(g=a["g"].reshape(4, 4)), ValueError, "g"),
    ("strided", lambda a: a.update(g=np.repeat(a["g"], 2)[::2]), ValueError, "contiguous"),
    ("fortran", lambda a: a.update(**{k: np.asfortranarray(a[k].reshape(4, 4)) for k in a}),
     ValueError, "contiguous"),
    ("read-only-p", lambda a: a.update(p=readonly(a["p"])), ValueError, "p is read-only"),
    ("read-only-m", lambda a: a.update(m=readonly(a["m"])), ValueError, "m is read-only"),
    ("read-only-v", lambda a: a.update(v=readonly(a["v"])), ValueError, "v is read-only"),
    ("list", lambda a: a.update(g=list(a["g"])), TypeError, "g must be a numpy.ndarray"),
    ("p-is-m", lambda a: a.update(m=a["p"]), ValueError, "share memory"),
    ("g-overlaps-v", lambda a: a.update(g=a["v"].view()), ValueError, "share memory"),
]


@pytest.mark.parametrize("case", ARRAY_CASES, ids=[c[0] for c in ARRAY_CASES])
def test_bad_arrays(backend, case):
    _, spoil, error, words = case
    a = fresh()
    spoil(a)
    before = {k: np.array(x, copy=True) for k, x in a.items()}
    with pytest.raises(error, match=words):
        call(backend, a)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), before[k], err_msg=k)


HYPER_CASES = [
    ("t=0", dict(t=0), ValueError, "t must be >= 1"),
    ("t=-3", dict(t=-3), ValueError, "t must be >= 1"),
    ("t-float", dict(t=1.0), TypeError, "t must be an integer"),
    ("t-bool", dict(t=True), TypeError, "t must be an integer"),
    ("lr<0", dict(lr=-1e-3), ValueError, "lr"),
    ("lr-nan", dict(lr=float("nan")), ValueError, "lr"),
    ("lr-inf", dict(lr=float("inf")), ValueError, "lr"),
    ("lr-str", dict(lr="0.001"), TypeError, "lr"),
    ("beta1=1", dict(beta1=1.0), ValueError, "beta1"),
    ("beta1<0", dict(beta1=-0.1), ValueError, "beta1"),
    ("beta2=1", dict(beta2=1.0), ValueError, "beta2"),
    ("beta2-nan", dict(beta2=float("nan")), ValueError, "beta2"),
    ("eps<0", dict(eps=-1e-8), ValueError, "eps"),
    ("wd<0", dict(weight_decay=-0.1), ValueError, "weight_decay"),
    ("amsgrad-no-v_max", dict(amsgrad=True), ValueError, "v_max"),
    ("v_max-no-amsgrad", dict(use_v_max=True), ValueError, "amsgrad"),
    ("flag-not-bool", dict(maximize="yes"), TypeError, "maximize"),
    ("decoupled-not-bool", dict(decoupled=1), TypeError, "decoupled"),
]


@pytest.mark.parametrize("case", HYPER_CASES, ids=[c[0] for c in HYPER_CASES])
def test_bad_hyperparameters(backend, case):
    _, kw, error, words = case
    kw = dict(kw)
    t = kw.pop("t", 1)
    a = fresh()
    if kw.pop("use_v_max", False):
        kw["v_max"] = a["v_max"]
    before = {k: x.copy() for k, x in a.items()}
    with pytest.raises(error, match=words):
        call(backend, a, t=t, **kw)
    for k in a:
        np.testing.assert_array_equal(a[k], before[k], err_msg=k)


def test_bad_v_max_shape(backend):
    a = fresh()
    before = {k: x.copy() for k, x in a.items()}
    with pytest.raises(ValueError, match="v_max"):
        call(backend, a, amsgrad=True, v_max=np.zeros(3, np.float32))
    for k in a:
        np.testing.assert_array_equal(a[k], before[k], err_msg=k)


@pytest.mark.parametrize("kw, words", [(dict(t=0), "t must"), (dict(beta2=1.5), "beta2"),
                                       (dict(eps=-1.0), "eps")])
def test_adamax_bad_input(backend, kw, words):
    a = fresh()
    before = {k: x.copy() for k, x in a.items()}
    kw = dict(kw)
    t = kw.pop("t", 1)
    with pytest.raises(ValueError, match=words):
        backend.adamax_step(a["p"], a["g"], a["m"], a["v"], t, **kw)
    with pytest.raises(ValueError, match="u is read-only"):
        backend.adamax_step(a["p"], a["g"], a["m"], readonly(a["v"]), 1)
    for k in a:
        np.testing.assert_array_equal(a[k], before[k], err_msg=k)


def test_good_input_really_steps(backend):
    """The control: the same arrays, unspoiled, are updated."""
    a = fresh()
    before = {k: x.copy() for k, x in a.items()}
    call(backend, a, amsgrad=True, v_max=a["v_max"])
    for k in ("p", "m", "v"):
        assert not np.array_equal(a[k], before[k]), k
