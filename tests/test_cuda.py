"""adamref.cuda: the Numba CUDA kernels.

Without a GPU these run on Numba's CUDA simulator (tests/conftest.py turns it
on), which executes the kernels as Python on the CPU: small arrays, few steps.
On a machine with a GPU (``/dev/nvidia0``, or ``ADAMREF_TEST_REAL_GPU=1``) the
same tests run on the device, and the GPU-only ones -- parity with
``torch.optim.Adam(fused=True)`` on CUDA, torch tensors in place, streams --
run too; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import adamref.cuda as acuda
from adamref import reference

cuda = acuda.cuda
SIM = acuda._SIMULATOR
KERNELS = acuda.is_available()
GPU = KERNELS and not SIM

needs_kernels = pytest.mark.skipif(
    not KERNELS, reason="no CUDA device, and numba.cuda is not the simulator "
    "(tests/conftest.py enables it unless ADAMREF_TEST_REAL_GPU=1 or /dev/nvidia0 exists)")
needs_gpu = pytest.mark.skipif(
    not GPU, reason="needs a real CUDA GPU (these tests ran on Numba's CUDA simulator)")

N = 1237                        # not a multiple of any block size: tails are exercised
STEPS = 3
F32_RTOL = 3e-5                 # 1 - f32(0.999) is 1.3e-5 off 1 - 0.999: torch's CUDA opmath
F64_RTOL = 1e-13


def torch_cuda():
    """torch, if it has CUDA; else skip."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device (CPU-only build or no GPU)")
    return torch


# ---------------------------------------------------------------------------
# helpers

def to_device(a):
    return cuda.to_device(np.ascontiguousarray(a))


def host(d):
    return d.copy_to_host()


def cai(d) -> dict:
    """The __cuda_array_interface__ of a device array (simulator arrays included)."""
    if SIM:
        return acuda._SimArrayInterface(d._ary).__cuda_array_interface__
    return d.__cuda_array_interface__


class CAIView:
    """Another object exposing ``d``'s buffer, with some interface fields changed."""

    def __init__(self, d, **fields):
        self._d = d
        self._fields = fields

    @property
    def __cuda_array_interface__(self):
        desc = dict(cai(self._d))
        desc.update(self._fields)
        return desc


def state(rng, n, dtype, nonzero=False):
    """p, m, v, v_max as host arrays; nonzero: as after some steps."""
    p = rng.standard_normal(n).astype(dtype)
    if not nonzero:
        z = np.zeros(n, dtype)
        return p, z, z.copy(), z.copy()
    m = (0.1 * rng.standard_normal(n)).astype(dtype)
    v = (0.01 * rng.random(n)).astype(dtype)
    return p, m, v, (v * rng.uniform(0.5, 1.5, n)).astype(dtype)


def assert_matches_emulation(names, got, emulated):
    """float32 results follow torch's CUDA expression order (the NumPy emulation).

    To the bit under the simulator, whose fma the emulation copies; on a GPU the
    emulation's double rounding may be an ulp off a true fma, very rarely.
    """
    for name, a, e in zip(names, got, emulated):
        if SIM:
            np.testing.assert_array_equal(a, e, err_msg=name)
        else:
            assert np.mean(a == e) > 0.999, name
            assert_close(a, e, np.float32, rtol=1e-6, name=name)


def assert_close(actual, expected, dtype, rtol=None, name=""):
    """|a - e| <= rtol |e| + rtol max|e|: relative, with an absolute floor for values near 0."""
    rtol = rtol or (F32_RTOL if dtype == np.float32 else F64_RTOL)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=name)


def fma32(a, b, c):
    """float32 fma, emulated: the product is exact in double, one rounding to double then float."""
    f8 = np.float64
    return (np.asarray(a, f8) * np.asarray(b, f8) + np.asarray(c, f8)).astype(np.float32)


def torch_cuda_adam32(p, g, m, v, vm, t, *, lr, beta1, beta2, eps, weight_decay,
                      decoupled, amsgrad, maximize):
    """torch 2.13's CUDA fused Adam (fused_adam_utils.cuh) for float32, in NumPy."""
    f = np.float32
    b1, b2, lr_, wd, eps_ = f(beta1), f(beta2), f(lr), f(weight_decay), f(eps)
    bc1 = f(1) - b1 ** f(t)
    bc2_sqrt = np.sqrt(f(1) - b2 ** f(t))
    if maximize:
        g = -g
    if wd != 0:
        if decoupled:
            p = fma32(-(lr_ * wd), p, p)
        else:
            g = fma32(p, wd, g)
    m = fma32(b1, m, fma32(-b1, g, g))
    gg = g * g
    v = fma32(b2, v, fma32(-b2, gg, gg))
    if amsgrad:
        vm = np.where(vm < v, v, vm)
        denom = np.sqrt(vm) / bc2_sqrt + eps_
    else:
        denom = np.sqrt(v) / bc2_sqrt + eps_
    p = p - (lr_ / bc1) * m / denom
    return p, m, v, vm


def torch_cuda_adamax32(p, g, m, u, t, *, lr, beta1, beta2, eps, weight_decay, maximize):
    """torch's for-loop/foreach Adamax on CUDA for float32 (nvcc contractions), in NumPy."""
    f = np.float32
    w = f(1 - beta1)
    if maximize:
        g = -g
    if weight_decay != 0:
        g = fma32(p, f(weight_decay), g)
    d = g - m
    m = fma32(w, d, m) if abs(w) < 0.5 else fma32(-d, f(1) - w, g)
    a = u * f(beta2)
    b = np.abs(g) + f(eps)
    u = np.where((a > b) | (a != a), a, b)
    p = fma32(f(-(lr / (1 - beta1 ** float(t)))), m / u, p)
    return p, m, u


ADAM_FLAGS = [dict(maximize=mx, weight_decay=wd, decoupled=dc, amsgrad=am)
              for mx, (wd, dc), am in itertools.product(
                  (False, True), ((0.0, False), (0.1, False), (0.1, True)), (False, True))]


def flag_id(flags):
    parts = ["maximize"] if flags["maximize"] else []
    if flags["weight_decay"]:
        parts.append("adamw" if flags["decoupled"] else "l2")
    if flags["amsgrad"]:
        parts.append("amsgrad")
    return "-".join(parts) or "plain"


# ---------------------------------------------------------------------------
# the single-array kernels against the reference and torch's CUDA order

@needs_kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("flags", ADAM_FLAGS, ids=flag_id)
def test_adam_matches_reference(dtype, flags):
    rng = np.random.default_rng(1)
    hyper = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, **flags)
    p, m, v, vm = state(rng, N, dtype)
    ref = [a.copy() for a in (p, m, v, vm)]
    emu = [a.copy() for a in (p, m, v, vm)]
    dev = [to_device(a) for a in (p, m, v, vm)]
    for t in range(1, STEPS + 1):
        g = rng.standard_normal(N).astype(dtype)
        extra = {"v_max": ref[3]} if flags["amsgrad"] else {}
        reference.adam_step(ref[0], g, ref[1], ref[2], t, **hyper, **extra)
        extra = {"v_max": dev[3]} if flags["amsgrad"] else {}
        acuda.adam_step(dev[0], to_device(g), dev[1], dev[2], t, **hyper, **extra)
        if dtype == np.float32:
            emu = list(torch_cuda_adam32(*emu[:1], g, *emu[1:], t, **hyper))
    got = [host(d) for d in dev]
    names = ("p", "m", "v", "v_max") if flags["amsgrad"] else ("p", "m", "v")
    for name, a, r in zip(names, got, ref):
        assert a.dtype == dtype, name
        assert_close(a, r, dtype, name=name)
    if dtype == np.float32:
        assert_matches_emulation(names, got, emu)


@needs_kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("maximize", [False, True], ids=["min", "max"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05], ids=["nowd", "l2"])
@pytest.mark.parametrize("beta1", [0.9, 0.3], ids=["b1=0.9", "b1=0.3"])
def test_adamax_matches_reference(dtype, maximize, weight_decay, beta1):
    rng = np.random.default_rng(2)
    hyper = dict(lr=2e-3, beta1=beta1, beta2=0.999, eps=1e-8, weight_decay=weight_decay,
                 maximize=maximize)
    p, m, u, _ = state(rng, N, dtype, nonzero=True)
    ref = [a.copy() for a in (p, m, u)]
    emu = [a.copy() for a in (p, m, u)]
    dev = [to_device(a) for a in (p, m, u)]
    for t in range(1, STEPS + 1):
        g = rng.standard_normal(N).astype(dtype)
        reference.adamax_step(ref[0], g, ref[1], ref[2], t, **hyper)
        acuda.adamax_step(dev[0], to_device(g), dev[1], dev[2], t, **hyper)
        if dtype == np.float32:
            emu = list(torch_cuda_adamax32(emu[0], g, emu[1], emu[2], t, **hyper))
    got = [host(d) for d in dev]
    for name, a, r in zip("pmu", got, ref):
        assert_close(a, r, dtype, rtol=1e-5 if dtype == np.float32 else None, name=name)
    if dtype == np.float32:
        assert_matches_emulation("pmu", got, emu)


@needs_kernels
def test_shapes_and_later_steps():
    """2-D arrays, a state from later in training, large t, odd hyperparameters."""
    rng = np.random.default_rng(3)
    shape = (37, 29)
    p, m, v, vm = (a.reshape(shape) for a in state(rng, 37 * 29, np.float32, nonzero=True))
    g = rng.standard_normal(shape).astype(np.float32)
    hyper = dict(lr=3e-4, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.01,
                 amsgrad=True)
    ref = [a.copy() for a in (p, m, v, vm)]
    reference.adam_step(ref[0], g, ref[1], ref[2], 12345, v_max=ref[3], **hyper)
    dev = [to_device(a) for a in (p, m, v, vm)]
    acuda.adam_step(dev[0], to_device(g), dev[1], dev[2], 12345, v_max=dev[3], **hyper)
    for a, r in zip(dev, ref):
        assert host(a).shape == shape
        assert_close(host(a), r, np.float32)


@needs_kernels
def test_empty_arrays_are_a_no_op():
    e = [to_device(np.zeros(0, np.float32)) for _ in range(5)]
    acuda.adam_step(e[0], e[1], e[2], e[3], 1, amsgrad=True, v_max=e[4])
    acuda.adamax_step(e[0], e[1], e[2], e[3], 1)
    acuda.adam_step_multi_tensor([e[0]], [e[1]], [e[2]], [e[3]], 1)
    acuda.adam_step_multi_tensor([], [], [], [], 1)


@needs_kernels
def test_stream_keyword():
    rng = np.random.default_rng(4)
    p, m, v, _ = state(rng, 100, np.float32)
    g = rng.standard_normal(100).astype(np.float32)
    results = []
    for stream in (None, 0, cuda.stream()):
        dev = [to_device(a) for a in (p, m, v)]
        acuda.adam_step(dev[0], to_device(g), dev[1], dev[2], 1, stream=stream)
        if stream:
            stream.synchronize()
        results.append(host(dev[0]))
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_numba_cpu_kernels_work_alongside_the_simulator():
    """The simulator flag is for numba.cuda only: @njit still compiles (in parallel too)."""
    numba = pytest.importorskip("numba")

    @numba.njit(parallel=True)
    def axpy(a, x, y):
        for i in numba.prange(x.size):
            y[i] += a * x[i]

    x = np.arange(1000.0)
    y = np.ones(1000)
    axpy(2.0, x, y)
    np.testing.assert_array_equal(y, 1 + 2 * x)
    try:
        from adamref import cpu
    except ImportError:
        return
    rng = np.random.default_rng(5)
    p, m, v, _ = state(rng, 64, np.float32)
    g = rng.standard_normal(64).astype(np.float32)
    ref = [a.copy() for a in (p, m, v)]
    reference.adam_step(ref[0], g, ref[1], ref[2], 1)
    cpu.adam_step(p, g, m, v, 1)
    assert_close(p, ref[0], np.float32)


# ---------------------------------------------------------------------------
# multi-tensor

def multi_state(rng, shapes, dtypes):
    return [state(rng, int(np.prod(s)), dt) for s, dt in zip(shapes, dtypes)], \
        [rng.standard_normal(int(np.prod(s))).astype(dt) for s, dt in zip(shapes, dtypes)]


@needs_kernels
@pytest.mark.parametrize("flags", [
    dict(),
    dict(amsgrad=True, weight_decay=0.1),
    dict(weight_decay=0.1, decoupled=True, maximize=True),
], ids=["plain", "l2-amsgrad", "adamw-maximize"])
@pytest.mark.parametrize("dtypes", ["f32", "f64", "mixed"])
def test_multi_tensor_equals_single_steps(flags, dtypes, monkeypatch):
    """One launch for a list == adam_step on each tensor, bit for bit; close to the reference."""
    monkeypatch.setattr(acuda, "_MULTI_CHUNK", 64)      # several chunks per tensor (simulator)
    rng = np.random.default_rng(6)
    shapes = [(1,), (0,), (300,), (7, 11), (130,), (65,), (64,)]
    kinds = {"f32": [np.float32], "f64": [np.float64],
             "mixed": [np.float32, np.float64]}[dtypes]
    dts = [kinds[i % len(kinds)] for i in range(len(shapes))]
    states, _ = multi_state(rng, shapes, dts)
    amsgrad = flags.get("amsgrad", False)
    hyper = dict(lr=1e-2, **flags)
    multi = [[to_device(a.reshape(s)) for a in st] for st, s in zip(states, shapes)]
    single = [[to_device(a.reshape(s)) for a in st] for st, s in zip(states, shapes)]
    ref = [[a.reshape(s).copy() for a in st] for st, s in zip(states, shapes)]
    for t in range(1, 3):
        grads = [rng.standard_normal(s).astype(dt) for s, dt in zip(shapes, dts)]
        dgrads = [to_device(g) for g in grads]
        acuda.adam_step_multi_tensor(
            [x[0] for x in multi], dgrads, [x[1] for x in multi], [x[2] for x in multi], t,
            v_maxs=[x[3] for x in multi] if amsgrad else None, **hyper)
        for x, dg, r, g in zip(single, dgrads, ref, grads):
            extra = {"v_max": x[3]} if amsgrad else {}
            acuda.adam_step(x[0], dg, x[1], x[2], t, **extra, **hyper)
            extra = {"v_max": r[3]} if amsgrad else {}
            reference.adam_step(r[0], g, r[1], r[2], t, **extra, **hyper)
    for i, (x, y, r) in enumerate(zip(multi, single, ref)):
        for k in range(4 if amsgrad else 3):
            np.testing.assert_array_equal(host(x[k]), host(y[k]), err_msg=f"tensor {i}/{k}")
            assert_close(host(x[k]), r[k], r[k].dtype)


# ---------------------------------------------------------------------------
# bad input: raises, names the problem, touches nothing

def _bad_adam_cases():
    def ro(d):
        return CAIView(d["p"], data=(cai(d["p"])["data"][0], True))
    return [
        ("t=0", lambda d: dict(t=0), ValueError, "t must be >= 1"),
        ("t float", lambda d: dict(t=1.0), TypeError, "integer"),
        ("lr<0", lambda d: dict(lr=-1e-3), ValueError, "lr"),
        ("beta1=1", lambda d: dict(beta1=1.0), ValueError, "beta1"),
        ("beta2<0", lambda d: dict(beta2=-0.1), ValueError, "beta2"),
        ("eps<0", lambda d: dict(eps=-1.0), ValueError, "eps"),
        ("wd nan", lambda d: dict(weight_decay=float("nan")), ValueError, "weight_decay"),
        ("amsgrad no v_max", lambda d: dict(amsgrad=True), ValueError, "v_max"),
        ("v_max no amsgrad", lambda d: dict(v_max=d["vm"]), ValueError, "amsgrad"),
        ("amsgrad str", lambda d: dict(amsgrad="yes"), TypeError, "amsgrad"),
        ("g float64", lambda d: dict(g=d["g64"]), TypeError, "dtype"),
        ("m shape", lambda d: dict(m=d["short"]), ValueError, "shape"),
        ("v strided", lambda d: dict(v=d["wide"][::2]), ValueError, "C-contiguous"),
        ("p read-only", lambda d: dict(p=ro(d)), ValueError, "read-only"),
        ("p is m", lambda d: dict(m=d["p"]), ValueError, "share memory"),
        ("g numpy", lambda d: dict(g=np.zeros(50, np.float32)), TypeError, "CUDA array"),
        ("int arrays", lambda d: dict(p=d["i"], g=d["i2"], m=d["i3"], v=d["i4"]),
         TypeError, "float32 or float64"),
        ("stream str", lambda d: dict(stream="fast"), TypeError, "stream"),
    ]


@pytest.fixture
def arrays():
    if not KERNELS:
        pytest.skip("no CUDA device and no simulator")
    rng = np.random.default_rng(7)
    d = {k: to_device(rng.standard_normal(50).astype(np.float32))
         for k in ("p", "g", "m", "v", "vm")}
    d["g64"] = to_device(rng.standard_normal(50))
    d["short"] = to_device(np.zeros(49, np.float32))
    d["wide"] = to_device(np.zeros(100, np.float32))
    for k in ("i", "i2", "i3", "i4"):
        d[k] = to_device(np.zeros(50, np.int32))
    return d


def _snapshot(d):
    return {k: host(a).copy() for k, a in d.items()}


def _unchanged(d, before):
    for k, a in d.items():
        np.testing.assert_array_equal(host(a), before[k], err_msg=k)


@pytest.mark.parametrize("case", _bad_adam_cases(), ids=lambda c: c[0])
def test_adam_bad_input_raises_and_touches_nothing(arrays, case):
    _, change, error, words = case
    before = _snapshot(arrays)
    args = dict(p=arrays["p"], g=arrays["g"], m=arrays["m"], v=arrays["v"], t=1)
    args.update(change(arrays))
    with pytest.raises(error, match=words):
        acuda.adam_step(args.pop("p"), args.pop("g"), args.pop("m"), args.pop("v"),
                        args.pop("t"), **args)
    _unchanged(arrays, before)


@pytest.mark.parametrize("change, error, words", [
    (dict(t=0), ValueError, "t must"),
    (dict(beta2=1.5), ValueError, "beta2"),
    (dict(maximize=1), TypeError, "maximize"),
], ids=["t=0", "beta2", "maximize int"])
def test_adamax_bad_input_raises_and_touches_nothing(arrays, change, error, words):
    before = _snapshot(arrays)
    args = {"t": 1, **change}
    with pytest.raises(error, match=words):
        acuda.adamax_step(arrays["p"], arrays["g"], arrays["m"], arrays["v"], args.pop("t"),
                          **args)
    u_ro = CAIView(arrays["v"], data=(cai(arrays["v"])["data"][0], True))
    with pytest.raises(ValueError, match="u is read-only"):
        acuda.adamax_step(arrays["p"], arrays["g"], arrays["m"], u_ro, 1)
    _unchanged(arrays, before)


def test_multi_tensor_bad_input_raises_and_touches_nothing(arrays):
    rng = np.random.default_rng(8)
    lists = [[to_device(rng.standard_normal(20).astype(np.float32)) for _ in range(3)]
             for _ in range(4)]
    flat = {f"{i}.{j}": a for i, lst in enumerate(lists) for j, a in enumerate(lst)}
    before = _snapshot(flat)
    ps, gs, ms, vs = lists
    with pytest.raises(ValueError, match="grads has 2 arrays"):
        acuda.adam_step_multi_tensor(ps, gs[:2], ms, vs, 1)
    with pytest.raises(TypeError, match="params must be a list"):
        acuda.adam_step_multi_tensor(ps[0], gs, ms, vs, 1)
    with pytest.raises(TypeError, match="tensor 2: .*dtype"):
        acuda.adam_step_multi_tensor(ps, gs[:2] + [arrays["g64"]], ms, vs, 1)
    with pytest.raises(ValueError, match="tensor 1: m is read-only"):
        ro = CAIView(ms[1], data=(cai(ms[1])["data"][0], True))
        acuda.adam_step_multi_tensor(ps, gs, [ms[0], ro, ms[2]], vs, 1)
    with pytest.raises(ValueError, match=r"share memory"):            # across tensors
        acuda.adam_step_multi_tensor(ps, gs, [ms[0], ps[0], ms[2]], vs, 1)
    with pytest.raises(ValueError, match="v_maxs"):
        acuda.adam_step_multi_tensor(ps, gs, ms, vs, 1, amsgrad=True)
    with pytest.raises(ValueError, match="t must"):
        acuda.adam_step_multi_tensor(ps, gs, ms, vs, 0)
    with pytest.raises(TypeError, match="stream"):
        acuda.adam_step_multi_tensor(ps, gs, ms, vs, 1, stream=1.5)
    _unchanged(flat, before)


# ---------------------------------------------------------------------------
# without a GPU: importable, is_available() False, a clear RuntimeError

NO_GPU_SCRIPT = textwrap.dedent("""
    import json, numpy as np
    import adamref.cuda as ac

    class OnGPU:        # claims to be a CUDA array; validation only reads the dict
        def __init__(self, n=8, dtype=np.float32):
            self.a = np.zeros(n, dtype)
        @property
        def __cuda_array_interface__(self):
            return {"shape": self.a.shape, "typestr": self.a.dtype.str,
                    "data": (self.a.ctypes.data, False), "strides": None, "version": 3}

    def outcome(f):
        try:
            f()
        except Exception as e:
            return [type(e).__name__, str(e)]
        return ["ok", ""]

    x = [OnGPU() for _ in range(5)]
    from adamref import _bench_cuda
    print(json.dumps({
        "simulator": ac._SIMULATOR,
        "available": ac.is_available(),
        "adam": outcome(lambda: ac.adam_step(*x[:4], 1)),
        "adam_bad": outcome(lambda: ac.adam_step(*x[:4], 0)),
        "adamax": outcome(lambda: ac.adamax_step(*x[:4], 1)),
        "multi": outcome(lambda: ac.adam_step_multi_tensor([x[0]], [x[1]], [x[2]], [x[3]], 1)),
        "numpy": outcome(lambda: ac.adam_step(*(np.zeros(8, np.float32) for _ in range(4)), 1)),
        "bench": outcome(lambda: _bench_cuda.measure([1000], 1, "float32")),
    }))
""")


def test_without_gpu_clear_runtime_error():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["CUDA_VISIBLE_DEVICES"] = ""               # hide any GPU this machine has
    out = subprocess.run([sys.executable, "-c", NO_GPU_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["simulator"] is False
    assert r["available"] is False
    for key in ("adam", "adamax", "multi", "bench"):
        kind, message = r[key]
        assert kind == "RuntimeError", (key, r[key])
        assert message.startswith("no CUDA device was found"), (key, message)
    assert r["adam_bad"][0] == "ValueError"      # bad input is reported first
    assert r["numpy"][0] == "TypeError" and "CUDA array" in r["numpy"][1]


def test_without_numba_cuda_import_still_works():
    """numba-cuda missing or broken: the import works, the kernels say what to install."""
    script = "import sys; sys.modules['numba.cuda'] = None\n" + NO_GPU_SCRIPT
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["available"] is False
    kind, message = r["adam"]
    assert kind == "RuntimeError" and "numba-cuda" in message, r["adam"]
    assert r["adam_bad"][0] == "ValueError"


PTX_SCRIPT = textwrap.dedent("""
    import json, re
    import adamref.cuda as ac
    out = {}
    try:
        for kind, dt, flags in [("adam", "float32", (False, 0, False)),
                                ("adam", "float32", (True, 1, True)),
                                ("adam", "float32", (False, 2, False)),
                                ("adam", "float64", (False, 0, False)),
                                ("multi", "float32", (False, 0, True)),
                                ("adamax", "float32", (False, 1, False))]:
            ptx = ac._ptx(kind, dt, *flags)
            count = lambda pat: len(re.findall(pat, ptx))
            out[f"{kind}-{dt}-{flags}"] = {
                "fma32": count(r"fma\\.rn\\.f32"), "fma64": count(r"fma\\.rn\\.f64"),
                "sqrt": count(r"sqrt\\.rn\\.f(32|64)"), "div": count(r"div\\.rn\\.f(32|64)"),
                "f64": count(r"\\.f64"), "ld_global": count(r"ld\\.global\\.f32"),
                "local": count(r"\\.local"), "call": count(r"\\bcall"),
                "mul32": count(r"mul(\\.rn)?\\.f32"), "addsub32": count(r"(add|sub)(\\.rn)?\\.f32")}
    except Exception as e:
        out = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out))
""")


def test_ptx_has_exactly_the_fmas_of_torchs_order():
    """The compiled kernels: torch's fmas and no others, float32 only in float32 kernels.

    Needs libNVVM (numba-cuda's compiler), not a GPU; skipped where it is missing.
    The loop is unrolled, so counts are compared per element (per sqrt or div).
    """
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "-c", PTX_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if "error" in r:
        missing = ("NotFound", "libnvvm", "libnvrtc", "NVVM", "NVRTC", "CUDA_HOME")
        if any(word in r["error"] for word in missing):
            pytest.skip(f"cannot compile PTX here (needs libNVVM): {r['error'][:200]}")
        pytest.fail(r["error"])
    for key, c in r.items():
        assert c["local"] == 0 and c["call"] == 0, key     # all inlined, nothing spilled
    for flags, fmas in (("(False, 0, False)", 4), ("(True, 1, True)", 5),
                        ("(False, 2, False)", 5)):
        c = r[f"adam-float32-{flags}"]
        k = c["sqrt"]
        assert k >= 1 and c["f64"] == 0
        assert (c["fma32"], c["div"], c["mul32"], c["addsub32"]) == (fmas * k, 2 * k, 2 * k,
                                                                     2 * k), flags
    c = r["adam-float64-(False, 0, False)"]
    assert c["fma64"] == 4 * c["sqrt"] and c["fma32"] == 0
    c = r["multi-float32-(False, 0, True)"]
    assert c["fma32"] == 4 * c["sqrt"] and c["f64"] == 0 and c["ld_global"] >= 5
    c = r["adamax-float32-(False, 1, False)"]
    assert c["fma32"] == 3 * c["div"] and c["f64"] == 0 and c["mul32"] == c["div"]


# ---------------------------------------------------------------------------
# real GPU only: torch parity, torch tensors in place, streams

@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("flags", [ADAM_FLAGS[0], ADAM_FLAGS[3], ADAM_FLAGS[5], ADAM_FLAGS[10]],
                         ids=flag_id)
def test_matches_torch_fused_cuda(dtype, flags):
    """m, v (and v_max) bitwise equal to torch.optim.Adam(fused=True) on CUDA; p to 1 ulp.

    p could differ only through the bias corrections: torch computes powf(beta, step)
    on the device, this module on the host (correctly rounded).
    """
    torch = torch_cuda()
    tdt = getattr(torch, dtype)
    gen = torch.Generator(device="cuda").manual_seed(0)
    n = 100_003
    p0 = torch.randn(n, device="cuda", dtype=tdt, generator=gen)
    param = torch.nn.Parameter(p0.clone())
    opt = torch.optim.Adam([param], lr=1e-2, betas=(0.9, 0.999), eps=1e-8,
                           weight_decay=flags["weight_decay"], amsgrad=flags["amsgrad"],
                           maximize=flags["maximize"],
                           decoupled_weight_decay=flags["decoupled"], fused=True)
    p, m, v, vm = p0.clone(), *(torch.zeros_like(p0) for _ in range(3))
    for t in range(1, 4):
        g = torch.randn(n, device="cuda", dtype=tdt, generator=gen)
        param.grad = g.clone()
        opt.step()
        acuda.adam_step(p, g, m, v, t, lr=1e-2, v_max=vm if flags["amsgrad"] else None,
                        **flags)
    torch.cuda.synchronize()
    st = opt.state[param]
    np.testing.assert_array_equal(m.cpu().numpy(), st["exp_avg"].cpu().numpy())
    np.testing.assert_array_equal(v.cpu().numpy(), st["exp_avg_sq"].cpu().numpy())
    if flags["amsgrad"]:
        np.testing.assert_array_equal(vm.cpu().numpy(), st["max_exp_avg_sq"].cpu().numpy())
    ours, theirs = p.cpu().numpy(), param.detach().cpu().numpy()
    print(f"p bitwise equal to torch fused CUDA: {np.mean(ours == theirs):.6f}")
    # bitwise unless CUDA's powf(beta, step) is not correctly rounded; then the
    # steps differ by ~1e-7 relative, which near p = 0 is many ulp of p
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6 * 1e-2)


@needs_gpu
def test_multi_tensor_matches_torch_fused_cuda():
    torch = torch_cuda()
    gen = torch.Generator(device="cuda").manual_seed(1)
    shapes = [(1000, 37), (37,), (1,), (70_000,), (3, 5, 7)]
    p0 = [torch.randn(s, device="cuda", generator=gen) for s in shapes]
    params = [torch.nn.Parameter(x.clone()) for x in p0]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, amsgrad=True, fused=True)
    ps = [x.clone() for x in p0]
    ms, vs, vms = ([torch.zeros_like(x) for x in p0] for _ in range(3))
    for t in range(1, 3):
        gs = [torch.randn(s, device="cuda", generator=gen) for s in shapes]
        for q, g in zip(params, gs):
            q.grad = g.clone()
        opt.step()
        acuda.adam_step_multi_tensor(ps, gs, ms, vs, t, lr=1e-3, weight_decay=0.01,
                                     decoupled=True, amsgrad=True, v_maxs=vms)
    torch.cuda.synchronize()
    for q, p, m, v, vm in zip(params, ps, ms, vs, vms):
        st = opt.state[q]
        np.testing.assert_array_equal(m.cpu().numpy(), st["exp_avg"].cpu().numpy())
        np.testing.assert_array_equal(v.cpu().numpy(), st["exp_avg_sq"].cpu().numpy())
        np.testing.assert_array_equal(vm.cpu().numpy(), st["max_exp_avg_sq"].cpu().numpy())
        np.testing.assert_allclose(p.cpu().numpy(), q.detach().cpu().numpy(), rtol=1e-6,
                                   atol=1e-9)


@needs_gpu
@pytest.mark.parametrize("foreach", [False, True])
def test_adamax_matches_torch_cuda(foreach):
    torch = torch_cuda()
    gen = torch.Generator(device="cuda").manual_seed(2)
    n = 50_001
    p0 = torch.randn(n, device="cuda", generator=gen)
    param = torch.nn.Parameter(p0.clone())
    opt = torch.optim.Adamax([param], lr=2e-3, weight_decay=0.01, foreach=foreach)
    p, m, u = p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0)
    for t in range(1, 4):
        g = torch.randn(n, device="cuda", generator=gen)
        param.grad = g.clone()
        opt.step()
        acuda.adamax_step(p, g, m, u, t, lr=2e-3, weight_decay=0.01)
    torch.cuda.synchronize()
    st = opt.state[param]
    for ours, theirs in ((m, st["exp_avg"]), (u, st["exp_inf"]), (p, param.detach())):
        ours, theirs = ours.cpu().numpy(), theirs.cpu().numpy()
        print(f"bitwise equal to torch Adamax (foreach={foreach}): {np.mean(ours == theirs):.6f}")
        assert_close(ours, theirs, np.float32, rtol=1e-6)


@needs_gpu
def test_torch_tensors_are_updated_in_place_without_copies():
    torch = torch_cuda()
    p = torch.nn.Parameter(torch.randn(64, 33, device="cuda"))     # requires grad
    g = torch.randn(64, 33, device="cuda")
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    addresses = [x.data_ptr() for x in (p, m, v)]
    versions = [x._version for x in (p, m, v)]
    expected = [x.detach().cpu().numpy() for x in (p, g, m, v)]
    reference.adam_step(expected[0], expected[1], expected[2], expected[3], 1)
    acuda.adam_step(p, g, m, v, 1)
    torch.cuda.synchronize()
    assert [x.data_ptr() for x in (p, m, v)] == addresses
    assert all(x._version > k for x, k in zip((p, m, v), versions))   # autograd is told
    assert_close(p.detach().cpu().numpy(), expected[0], np.float32)
    assert_close(m.cpu().numpy(), expected[2], np.float32)
    p = p.detach()
    with pytest.raises(ValueError, match="C-contiguous"):
        acuda.adam_step(p.t(), g.t().contiguous(), m.t().contiguous(), v.t().contiguous(), 2)


@needs_gpu
@pytest.mark.parametrize("how", ["current", "torch", "int", "numba"])
def test_runs_on_the_callers_stream(how):
    """The gradient is written by a slow op on a side stream; the step must wait for it."""
    torch = torch_cuda()
    n = 1 << 24
    side = torch.cuda.Stream()
    p, m, v = (torch.zeros(n, device="cuda") for _ in range(3))
    src = torch.full((n,), 2.0, device="cuda")
    g = torch.zeros(n, device="cuda")
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)                  # keep the side stream busy
        g.copy_(src)
        if how == "current":
            acuda.adam_step(p, g, m, v, 1, lr=0.5)
        elif how == "torch":
            acuda.adam_step(p, g, m, v, 1, lr=0.5, stream=side)
        elif how == "int":
            acuda.adam_step(p, g, m, v, 1, lr=0.5, stream=side.cuda_stream)
    if how == "numba":
        s = cuda.external_stream(side.cuda_stream)
        acuda.adam_step(p, g, m, v, 1, lr=0.5, stream=s)
    side.synchronize()
    # a step from zero state with g = 2: p = -lr * sign(g) (up to eps)
    assert torch.allclose(p, torch.full_like(p, -0.5), rtol=1e-6)
