"""adamref.cpu: bit-for-bit torch.optim.Adam(fused=True), the reference, edge cases.

Parity with PyTorch is exact on the torch builds where it was measured
(``cpu.TORCH_BITWISE_BUILDS``: x86-64 with AVX512 or AVX2): float32 and
float64 results (p, m, v, v_max) equal ``torch.optim.Adam(fused=True)``'s bit
for bit, for every flag and every size, and Adamax equals
``torch.optim.Adamax(foreach=False)`` (a NaN is matched by position, not by its
sign and payload bits).  The last ``n mod 8`` (float32) / ``n mod 4``
(float64) elements go through PyTorch's scalar loop, which rounds ``v``
differently; the kernels copy that (``cpu.TORCH_SCALAR_TAIL``).

On any other build (ARM, or torch's non-SIMD kernel, which
``ATEN_CPU_CAPABILITY=default`` selects) torch rounds otherwise, and the same
tests hold both to the documented bound instead: every element within
``ULPS_PER_STEP`` units of roundoff of its scale per step (the scale of the
terms it was computed from, ``parity.shadow_scales``), NaNs in the same places.
"""

import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adamref import cpu, reference
from parity import (DEFAULT, EXTREMES, FLAGS, HYPER, assert_bitwise, assert_close_in_ulps,
                    bits, flag_id, gradients, run_step, shadow_scales, start, torch_adam)

DTYPES = [np.float32, np.float64]
SIMD_SIZES = [16, 1024, 3 * 2**14]                 # multiples of torch's vector width
OTHER_SIZES = [1, 7, 1000, 4096 + 13] + [80 + r for r in range(1, 16)]  # every n mod 16
CAPABILITY = torch.backends.cpu.get_cpu_capability()
BITWISE = CAPABILITY in cpu.TORCH_BITWISE_BUILDS
#: Two correct implementations each round a step's result within about one unit of
#: roundoff of its scale; they may drift apart by twice that per step (plus a constant).
ULPS_PER_STEP = 2


def assert_matches_torch(ours, theirs, p0, grads, hyper, adamax=False):
    """Bit for bit on ``cpu.TORCH_BITWISE_BUILDS``; elsewhere within the documented bound."""
    if BITWISE:
        assert_bitwise(ours, theirs)
    else:
        assert set(ours) == set(theirs)
        assert_close_in_ulps(ours, theirs, shadow_scales(p0, grads, hyper, adamax=adamax),
                             ULPS_PER_STEP * len(grads) + 4, p0.dtype)


def compare_with_torch(n, steps, dtype, hyper, seed=0, low=-6, high=6, adamax=False):
    """Run ``adamref.cpu`` and torch fused (Adamax: for-loop) alike; assert they match."""
    p0, grads = start(seed, n, steps, dtype, low=low, high=high)
    step = cpu.adamax_step if adamax else cpu.adam_step
    ours = run_step(step, p0, grads, hyper, adamax=adamax)
    theirs = torch_adam(p0, grads, hyper, fused=not adamax, adamax=adamax)
    assert_matches_torch(ours, theirs, p0, grads, hyper, adamax=adamax)
    return ours


# ---------------------------------------------------------------- torch parity
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("flags", FLAGS, ids=flag_id)
def test_bitwise_torch_fused_every_flag_simd_sizes(dtype, flags):
    for n in SIMD_SIZES:
        compare_with_torch(n, 25, dtype, dict(DEFAULT, lr=1e-2, **flags), seed=n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("flags", FLAGS, ids=flag_id)
def test_bitwise_torch_fused_every_flag_other_sizes(dtype, flags):
    for n in OTHER_SIZES:
        compare_with_torch(n, 12, dtype, dict(DEFAULT, lr=1e-2, **flags), seed=n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", EXTREMES, ids=str)
def test_bitwise_torch_fused_extreme_hyperparameters(dtype, case):
    for flags in (dict(weight_decay=0.01, amsgrad=True), dict(weight_decay=0.1, decoupled=True,
                                                               maximize=True)):
        compare_with_torch(1024 + 5, 20, dtype, dict(EXTREMES[case], **flags))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_torch_fused_gradients_from_underflow_to_overflow(dtype):
    """|g| from 1e-40 to 1e40: subnormals, g*g overflowing to inf in float32, zeros."""
    hyper = dict(DEFAULT, weight_decay=0.01, amsgrad=True)
    compare_with_torch(2048 + 3, 10, dtype, hyper, low=-40, high=40)


@pytest.mark.parametrize("dtype", DTYPES)
def test_many_steps_stay_bitwise(dtype):
    """300 steps: bias corrections run from t=1 to where they no longer change."""
    compare_with_torch(256 + 7, 300, dtype, dict(DEFAULT, lr=1e-2, amsgrad=True), low=-3,
                            high=1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("flags", [dict(weight_decay=0.0, maximize=False),
                                   dict(weight_decay=0.1, maximize=False),
                                   dict(weight_decay=0.01, maximize=True)], ids=str)
def test_adamax_bitwise_torch(dtype, flags):
    for n, beta1 in ((1, 0.9), (15, 0.9), (1024 + 9, 0.9), (100, 0.0), (33, 0.4)):
        hyper = dict(lr=2e-3, beta1=beta1, beta2=0.999, eps=1e-8, **flags)
        compare_with_torch(n, 15, dtype, hyper, seed=n, adamax=True)


# ---------------------------------------------------------------- the reference
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("flags", FLAGS, ids=flag_id)
def test_matches_reference_within_rounding(dtype, flags):
    n, steps = 517, 30
    p0, grads = start(11, n, steps, dtype)
    hyper = dict(DEFAULT, lr=1e-2, **flags)
    ours = run_step(cpu.adam_step, p0, grads, hyper)
    ref = run_step(reference.adam_step, p0, grads, hyper)
    assert_close_in_ulps(ours, ref, shadow_scales(p0, grads, hyper), 2 * steps, dtype)


def test_adamax_matches_reference_within_rounding():
    p0, grads = start(12, 300, 20, np.float32)
    hyper = dict(lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, maximize=True)
    ours = run_step(cpu.adamax_step, p0, grads, hyper, adamax=True)
    ref = run_step(reference.adamax_step, p0, grads, hyper, adamax=True)
    assert_close_in_ulps(ours, ref, shadow_scales(p0, grads, hyper, adamax=True), 40, np.float32)


@settings(max_examples=40, deadline=None)
@given(hyper=HYPER, n=st.integers(0, 70), steps=st.integers(1, 5),
       seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(DTYPES))
def test_property_random_sizes_and_hyperparameters(hyper, n, steps, seed, dtype):
    """Bitwise torch fused, and the reference within rounding, for anything valid.

    With L2 decay the reference rounds ``wd p`` before adding it to ``g``
    where PyTorch (and so this kernel) uses one fma; ``shadow_scales`` scales
    ``v`` by ``(|g| + wd |p|)^2``, which allows for that where ``g + wd p`` cancels.
    """
    p0, grads = start(seed, n, steps, dtype, low=-4, high=4)
    ours = run_step(cpu.adam_step, p0, grads, hyper)
    ref = run_step(reference.adam_step, p0, grads, hyper)
    assert_close_in_ulps(ours, ref, shadow_scales(p0, grads, hyper), 4 * steps + 8, dtype)
    if n:                                         # torch skips work on empty tensors
        assert_matches_torch(ours, torch_adam(p0, grads, hyper, fused=True), p0, grads, hyper)


# ---------------------------------------------------------------- edge cases
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_gradients_stay_in_their_element(dtype):
    n = 1000
    p0, grads = start(6, n, 5, dtype, low=-2, high=2)
    grads[2, 3], grads[2, 500], grads[3, 998] = np.nan, np.inf, -np.inf
    hyper = dict(DEFAULT, amsgrad=True, weight_decay=0.01)
    ours = run_step(cpu.adam_step, p0, grads, hyper)
    bad = np.zeros(n, bool)
    bad[[3, 500, 998]] = True
    assert not np.isfinite(ours["p"][bad]).any()
    finite = grads.copy()
    finite[:, bad] = 1.0                          # same size: same scalar tail as above
    clean = run_step(cpu.adam_step, p0, finite, hyper)
    for name in ours:
        assert np.isfinite(ours[name][~bad]).all(), name
        np.testing.assert_array_equal(bits(ours[name][~bad]), bits(clean[name][~bad]), err_msg=name)
    assert_matches_torch(ours, torch_adam(p0, grads, hyper, fused=True), p0, grads, hyper)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_gradient_in_torch_scalar_tail_matches_torch(dtype):
    """In PyTorch's scalar tail ``std::max(v_max, NaN)`` keeps ``v_max``; elsewhere NaN wins."""
    n = 35                                        # 35 mod 8 = 35 mod 4 = 3 scalar-tail elements
    p0, grads = start(10, n, 4, dtype, low=-2, high=2)
    grads[1, [3, 20, 33]] = np.nan
    hyper = dict(DEFAULT, amsgrad=True)
    ours = run_step(cpu.adam_step, p0, grads, hyper)
    assert_matches_torch(ours, torch_adam(p0, grads, hyper, fused=True), p0, grads, hyper)
    assert np.isnan(ours["p"][[3, 20, 33]]).all() and np.isnan(ours["v_max"][[3, 20]]).all()
    assert np.isfinite(ours["v_max"][33])
    adamax = run_step(cpu.adamax_step, p0, grads, DEFAULT, adamax=True)
    assert_matches_torch(adamax, torch_adam(p0, grads, DEFAULT, adamax=True), p0, grads, DEFAULT,
                         adamax=True)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_gradients_with_eps_zero_give_nan_everywhere_like_torch(dtype):
    """0/0 is NaN in every element, scalar tail included (no ZeroDivisionError)."""
    n = 37
    p0 = np.ones(n, dtype)
    grads = np.zeros((2, n), dtype)
    hyper = dict(DEFAULT, eps=0.0)
    ours = run_step(cpu.adam_step, p0, grads, hyper)
    assert np.isnan(ours["p"]).all()
    assert_matches_torch(ours, torch_adam(p0, grads, hyper, fused=True), p0, grads, hyper)
    adamax = run_step(cpu.adamax_step, p0, grads, hyper, adamax=True)
    assert np.isnan(adamax["p"]).all()


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 1, 7), (1, 33)], ids=str)
def test_any_c_contiguous_shape_is_stepped_elementwise(shape):
    rng = np.random.default_rng(7)
    size = int(np.prod(shape))
    p0 = rng.standard_normal(shape).astype(np.float32)
    grads = gradients(rng, size, 3, np.float32).reshape((3, *shape))
    hyper = dict(DEFAULT, amsgrad=True, weight_decay=0.1)
    flat = run_step(cpu.adam_step, p0.reshape(-1), grads.reshape(3, -1), hyper)
    shaped = run_step(cpu.adam_step, p0, grads, hyper)
    for name in flat:
        assert shaped[name].shape == shape
        np.testing.assert_array_equal(bits(shaped[name].ravel()), bits(flat[name]), err_msg=name)
    m = np.zeros(shape, np.float32)
    cpu.adamax_step(p0.copy(), grads[0], m, np.zeros(shape, np.float32), 1)
    assert m.shape == shape and np.any(m != 0)


def test_zero_dimensional_arrays_are_one_parameter():
    z = [np.array(x, np.float32) for x in (1.0, 0.5, 0.0, 0.0)]
    flat = [x.reshape(1) for x in z]
    cpu.adam_step(*z, 1, weight_decay=0.1)
    cpu.adam_step(*[x.copy() for x in flat[:2]], *flat[2:], 1, weight_decay=0.1)
    assert z[0].shape == () and z[0] == flat[0][0] and z[2] != 0


@pytest.mark.parametrize("shape", [(0,), (3, 0)], ids=str)
def test_zero_size_arrays_are_a_no_op(shape):
    for dtype in DTYPES:
        z = [np.zeros(shape, dtype) for _ in range(5)]
        cpu.adam_step(*z[:4], 1, amsgrad=True, v_max=z[4], weight_decay=0.1)
        cpu.adamax_step(*z[:4], 1)


def test_numpy_scalar_hyperparameters_mean_their_value():
    p0, grads = start(8, 100, 4, np.float32)
    hyper = dict(lr=np.float32(1e-2), beta1=np.float32(0.9), beta2=np.float64(0.99),
                 eps=np.float32(1e-6), weight_decay=np.float16(0.1), maximize=np.bool_(True))
    as_float = {k: (float(x) if k != "maximize" else True) for k, x in hyper.items()}
    a = run_step(cpu.adam_step, p0, grads, hyper)
    b = run_step(cpu.adam_step, p0, grads, as_float)
    for name in a:
        np.testing.assert_array_equal(bits(a[name]), bits(b[name]), err_msg=name)


def test_read_only_gradient_is_accepted_and_not_written():
    p, m, v = np.ones(40, np.float32), np.zeros(40, np.float32), np.zeros(40, np.float32)
    g = np.full(40, 0.5, np.float32)
    g.flags.writeable = False
    cpu.adam_step(p, g, m, v, 1, maximize=True, weight_decay=0.1)
    assert (g == 0.5).all() and (p > 1).all()


# ---------------------------------------------------------------- bad input
def _arrays(n=32, dtype=np.float32):
    rng = np.random.default_rng(0)
    return {k: np.abs(rng.standard_normal(n)).astype(dtype) for k in ("p", "g", "m", "v", "w")}


def _readonly(x):
    x = x.copy()
    x.flags.writeable = False
    return x


BAD = [  # (id, function, spoil the arrays / keywords, error, words)
    ("adam-v_max-read-only", "adam", lambda a, kw: kw.update(amsgrad=True, v_max=_readonly(a["w"])),
     ValueError, "v_max is read-only"),
    ("adam-v_max-dtype", "adam",
     lambda a, kw: kw.update(amsgrad=True, v_max=a["w"].astype(np.float64)), TypeError,
     "v_max has dtype float64"),
    ("adam-v_max-is-p", "adam", lambda a, kw: kw.update(amsgrad=True, v_max=a["p"]),
     ValueError, "share memory"),
    ("adam-v_max-not-array", "adam", lambda a, kw: kw.update(amsgrad=True, v_max=[0.0] * 32),
     TypeError, "v_max must be a numpy.ndarray"),
    ("adam-2d-fortran", "adam", lambda a, kw: a.update(
        {k: np.asfortranarray(x.reshape(4, 8)) for k, x in a.items()}), ValueError, "contiguous"),
    ("adam-t-numpy-float", "adam", lambda a, kw: kw.update(t=np.float64(2.0)), TypeError, "t must"),
    ("adam-beta2-negative", "adam", lambda a, kw: kw.update(beta2=-0.5), ValueError, "beta2"),
    ("adam-wd-str", "adam", lambda a, kw: kw.update(weight_decay="0"), TypeError, "weight_decay"),
    ("adam-amsgrad-int", "adam", lambda a, kw: kw.update(amsgrad=1, v_max=a["w"]), TypeError,
     "amsgrad"),
    ("adamax-int-dtype", "adamax", lambda a, kw: a.update(p=a["p"].astype(np.int64)), TypeError,
     "p must have dtype float32 or float64"),
    ("adamax-shape", "adamax", lambda a, kw: a.update(v=a["v"][:-1].copy()), ValueError,
     "u has shape"),
    ("adamax-strided", "adamax", lambda a, kw: a.update(g=np.repeat(a["g"], 2)[::2]), ValueError,
     "contiguous"),
    ("adamax-u-is-m", "adamax", lambda a, kw: a.update(v=a["m"]), ValueError, "share memory"),
    ("adamax-m-read-only", "adamax", lambda a, kw: a.update(m=_readonly(a["m"])), ValueError,
     "m is read-only"),
    ("adamax-float16", "adamax",
     lambda a, kw: a.update({k: x.astype(np.float16) for k, x in a.items()}), TypeError, "float16"),
    ("adamax-t=0", "adamax", lambda a, kw: kw.update(t=0), ValueError, "t must be >= 1"),
    ("adamax-lr-nan", "adamax", lambda a, kw: kw.update(lr=float("nan")), ValueError, "lr"),
    ("adamax-beta1=1", "adamax", lambda a, kw: kw.update(beta1=1.0), ValueError, "beta1"),
    ("adamax-eps<0", "adamax", lambda a, kw: kw.update(eps=-1e-8), ValueError, "eps"),
    ("adamax-wd-inf", "adamax", lambda a, kw: kw.update(weight_decay=float("inf")), ValueError,
     "weight_decay"),
    ("adamax-maximize-str", "adamax", lambda a, kw: kw.update(maximize="no"), TypeError,
     "maximize"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_raises_naming_the_argument_and_touches_nothing(case):
    """Beyond tests/test_bad_input.py (which runs its Adam cases on this backend too)."""
    _, which, spoil, error, words = case
    a, kw = _arrays(), {}
    spoil(a, kw)
    t = kw.pop("t", 1)
    before = {k: np.array(x, copy=True) for k, x in {**a, **kw}.items() if hasattr(x, "shape")}
    with pytest.raises(error, match=words):
        if which == "adam":
            cpu.adam_step(a["p"], a["g"], a["m"], a["v"], t, **kw)
        else:
            cpu.adamax_step(a["p"], a["g"], a["m"], a["v"], t, **kw)
    after = {**a, **kw}
    for k, x in before.items():
        np.testing.assert_array_equal(np.asarray(after[k]), x, err_msg=k)


# ---------------------------------------------------------------- threads and cache
def test_thread_count_is_respected_and_does_not_change_results():
    n = 200_003
    p0, grads = start(9, n, 3, np.float32)
    hyper = dict(DEFAULT, amsgrad=True, weight_decay=0.1)
    before = numba.get_num_threads()
    results = []
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            results.append(run_step(cpu.adam_step, p0, grads, hyper))
            assert numba.get_num_threads() == threads
            results.append(run_step(cpu.adamax_step, p0, grads, dict(DEFAULT), adamax=True))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(results[:2], results[2:]):
        for name in a:
            np.testing.assert_array_equal(bits(a[name]), bits(b[name]), err_msg=name)


CACHE_PROBE = textwrap.dedent("""
    import json, time, numpy as np
    from adamref import cpu
    a = [np.ones(100, np.float64) for _ in range(4)]
    t0 = time.perf_counter()
    cpu.adam_step(*a, 1, maximize=True)
    first = time.perf_counter() - t0
    stats = cpu._adam_kernel(np.dtype(np.float64), False, False).stats
    print(json.dumps(dict(first=first, hits=sum(stats.cache_hits.values()),
                          misses=sum(stats.cache_misses.values()))))
""")


def test_kernels_are_cached_on_disk_for_the_next_process(tmp_path):
    import json
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    runs = [json.loads(subprocess.run([sys.executable, "-c", CACHE_PROBE], env=env, check=True,
                                      capture_output=True, text=True).stdout)
            for _ in range(2)]
    assert (runs[0]["misses"], runs[0]["hits"]) == (1, 0)      # compiled, then saved
    assert (runs[1]["misses"], runs[1]["hits"]) == (0, 1)      # loaded, not compiled
    assert list(tmp_path.rglob("*.nbi")) and list(tmp_path.rglob("*.nbc"))
    assert runs[1]["first"] < runs[0]["first"]


# ---------------------------------------------------------------- division by sqrt(1 - beta2^t)
@numba.njit(parallel=True)
def _divide_all(x, c, r, out):
    for i in numba.prange(x.size):
        out[i] = cpu._divide(x[i], c, r)


def _bias_divisors(dtype):
    """sqrt(1 - beta2^t) as the kernels see it, for common beta2 and many t, and random ones."""
    T = np.dtype(dtype).type
    cs = {T(np.sqrt(1 - b ** t)) for b in (0.9, 0.99, 0.999, 0.9999, 1 - 1e-7) for t in
          (1, 2, 3, 5, 10, 100, 1000, 10_000, 100_000)}
    cs |= set(np.random.default_rng(12).uniform(1e-4, 1, 12).astype(dtype))
    return sorted(cs)


def test_divide_by_constant_is_correctly_rounded_for_every_float32_mantissa():
    """``_divide`` equals ``x / c`` for all 2^23 mantissas of x (exponents only scale).

    sqrt(v) is never subnormal and x / c with c in (1e-4, 1] cannot overflow,
    so [1, 2) covers every x the kernel divides, for each divisor tried.
    """
    x = (np.arange(2**23, dtype=np.uint32) | np.uint32(127 << 23)).view(np.float32)
    out = np.empty_like(x)
    for c in _bias_divisors(np.float32):
        _divide_all(x, c, np.float32(1) / c, out)
        exact = x / c
        bad = np.flatnonzero(out != exact)
        assert bad.size == 0, f"c={c!r}: x={x[bad[0]]!r} gives {out[bad[0]]!r}, not {exact[bad[0]]!r}"


def test_divide_by_constant_float64_and_special_values():
    rng = np.random.default_rng(13)
    x = np.concatenate([rng.uniform(1, 2, 2_000_000), 10.0 ** rng.uniform(-150, 150, 1_000_000)])
    out = np.empty_like(x)
    for c in _bias_divisors(np.float64):
        _divide_all(x, c, 1.0 / c, out)
        np.testing.assert_array_equal(out, x / c)
    special = np.array([0.0, np.inf, np.nan], np.float32)
    out = np.empty_like(special)
    _divide_all(special, np.float32(0.03), np.float32(1) / np.float32(0.03), out)
    np.testing.assert_array_equal(out, special / np.float32(0.03))
