"""The NumPy reference against torch.optim.Adam, AdamW and Adamax."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adamref import reference
from parity import (DEFAULT, EXTREMES, FLAGS, HYPER, assert_close_in_ulps, flag_id,
                    gradients, run_step, shadow_scales, start, torch_adam)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("flags", FLAGS, ids=flag_id)
def test_adam_matches_torch_for_every_flag(dtype, flags):
    n, steps = 517, 40
    p0, grads = start(1, n, steps, dtype)
    hyper = dict(DEFAULT, lr=1e-2, **flags)
    ours = run_step(reference.adam_step, p0, grads, hyper)
    theirs = torch_adam(p0, grads, hyper)
    assert set(ours) == set(theirs)
    assert_close_in_ulps(ours, theirs, shadow_scales(p0, grads, hyper), 2 * steps, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", EXTREMES, ids=str)
def test_adam_matches_torch_at_extreme_hyperparameters(dtype, case):
    n, steps = 300, 25
    p0, grads = start(2, n, steps, dtype)
    hyper = dict(EXTREMES[case], weight_decay=0.01, amsgrad=True)
    ours = run_step(reference.adam_step, p0, grads, hyper)
    theirs = torch_adam(p0, grads, hyper)
    assert_close_in_ulps(ours, theirs, shadow_scales(p0, grads, hyper), 2 * steps, dtype)


def test_float64_agrees_with_torch_to_1e_11_relative():
    p0, grads = start(3, 1000, 200, np.float64, low=-8, high=8)
    for flags in FLAGS:
        hyper = dict(DEFAULT, **flags)
        ours = run_step(reference.adam_step, p0, grads, hyper)
        theirs = torch_adam(p0, grads, hyper)
        scales = shadow_scales(p0, grads, hyper)
        for name in ours:
            err = np.abs(ours[name] - theirs[name]) / scales[name]
            assert np.nanmax(err) < 1e-11, (flag_id(flags), name, np.nanmax(err))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("flags", [dict(weight_decay=0.0, maximize=False),
                                   dict(weight_decay=0.1, maximize=False),
                                   dict(weight_decay=0.0, maximize=True)], ids=str)
def test_adamax_matches_torch(dtype, flags):
    n, steps = 333, 40
    p0, grads = start(4, n, steps, dtype)
    hyper = dict(lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, **flags)
    ours = run_step(reference.adamax_step, p0, grads, hyper, adamax=True)
    theirs = torch_adam(p0, grads, hyper, adamax=True)
    assert_close_in_ulps(ours, theirs, shadow_scales(p0, grads, hyper, adamax=True),
                         2 * steps, dtype)


def test_a_wrong_formula_is_caught():
    """The tolerance is tight enough to see eps in the wrong place (TensorFlow's form)."""
    p0, grads = start(5, 200, 10, np.float32, low=-9, high=-7)
    hyper = dict(DEFAULT)
    theirs = torch_adam(p0, grads, hyper)
    wrong = run_step(reference.adam_step, p0, grads, dict(hyper, eps=1e-8 * (1 - 0.999) ** 0.5))
    with pytest.raises(AssertionError):
        assert_close_in_ulps(wrong, theirs, shadow_scales(p0, grads, hyper), 20, np.float32)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_gradients_stay_in_their_element(dtype):
    n = 64
    p0, grads = start(6, n, 5, dtype, low=-2, high=2)
    grads[2, 3], grads[2, 10], grads[3, 20] = np.nan, np.inf, -np.inf
    hyper = dict(DEFAULT, amsgrad=True, weight_decay=0.01)
    ours = run_step(reference.adam_step, p0, grads, hyper)
    theirs = torch_adam(p0, grads, hyper)
    bad = np.zeros(n, bool)
    bad[[3, 10, 20]] = True
    for name in ours:
        np.testing.assert_array_equal(np.isfinite(ours[name]), np.isfinite(theirs[name]), err_msg=name)
        assert np.isfinite(ours[name][~bad]).all(), name
    assert not np.isfinite(ours["p"][bad]).any()
    clean = run_step(reference.adam_step, p0[~bad], np.ascontiguousarray(grads[:, ~bad]), hyper)
    for name in ours:
        np.testing.assert_array_equal(ours[name][~bad], clean[name], err_msg=name)


def test_any_shape_works_elementwise():
    rng = np.random.default_rng(7)
    p0 = rng.standard_normal((3, 4, 5))
    grads = gradients(rng, 60, 3, np.float64).reshape(3, 3, 4, 5)
    flat = run_step(reference.adam_step, p0.ravel(), grads.reshape(3, -1), dict(DEFAULT))
    shaped = run_step(reference.adam_step, p0, grads, dict(DEFAULT))
    for name in flat:
        assert shaped[name].shape == (3, 4, 5)
        np.testing.assert_array_equal(shaped[name].ravel(), flat[name])


def test_zero_size_arrays_are_a_no_op():
    z = np.zeros(0, np.float32)
    reference.adam_step(z, z.copy(), z.copy(), z.copy(), 1)
    reference.adamax_step(z, z.copy(), z.copy(), z.copy(), 1)


def test_read_only_gradient_is_accepted_and_not_written():
    p, m, v = np.ones(8), np.zeros(8), np.zeros(8)
    g = np.full(8, 0.5)
    g.flags.writeable = False
    reference.adam_step(p, g, m, v, 1, maximize=True, weight_decay=0.1)
    assert (g == 0.5).all()
    assert (p > 1).all()


@settings(max_examples=60, deadline=None)
@example(hyper=dict(lr=1.125, beta1=0.25, beta2=0.0, eps=0.0, weight_decay=1e-4, decoupled=False,
                    amsgrad=True, maximize=False), n=56, steps=4, seed=1, dtype=np.float32)
@given(hyper=HYPER, n=st.integers(1, 40), steps=st.integers(1, 6), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_property_random_hyperparameters_match_torch(hyper, n, steps, seed, dtype):
    p0, grads = start(seed, n, steps, dtype, low=-4, high=4)
    ours = run_step(reference.adam_step, p0, grads, hyper)
    theirs = torch_adam(p0, grads, hyper)
    assert_close_in_ulps(ours, theirs, shadow_scales(p0, grads, hyper), 4 * steps + 8, dtype)


@settings(max_examples=30, deadline=None)
@given(c=st.floats(1e-3, 1e3), seed=st.integers(0, 2**32 - 1))
def test_property_update_is_invariant_to_gradient_scale_when_eps_is_zero(c, seed):
    """Without eps, m/sqrt(v) does not change when every gradient is multiplied by c > 0."""
    p0, grads = start(seed, 16, 5, np.float64, low=-2, high=2)
    hyper = dict(DEFAULT, eps=0.0)
    a = run_step(reference.adam_step, p0, grads, hyper)
    b = run_step(reference.adam_step, p0, c * grads, hyper)
    np.testing.assert_allclose(b["p"], a["p"], rtol=1e-12, atol=1e-12)
