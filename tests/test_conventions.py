"""The other ways of writing Adam (adamref.lab.conventions) against the reference."""

import numpy as np
import pytest

from adamref import reference
from adamref.lab import conventions
from parity import gradients


def run(step, grads, p0, per_step_kw=lambda t: {}):
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for t, g in enumerate(grads, start=1):
        step(p, g, m, v, t, **per_step_kw(t))
    return p, m, v


@pytest.fixture
def stream():
    rng = np.random.default_rng(11)
    return rng.standard_normal(200), gradients(rng, 200, 50, np.float64, low=-10, high=2)


def test_efficient_form_is_algorithm_1_when_eps_hat_follows_t(stream):
    p0, grads = stream
    eps, beta2 = 1e-8, 0.999
    ours = run(conventions.adam_step_efficient, grads, p0,
               lambda t: dict(eps_hat=conventions.eps_hat_equivalent(eps, beta2, t)))
    ref = run(reference.adam_step, grads, p0, lambda t: dict(eps=eps))
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_constant_eps_hat_is_algorithm_1_with_the_effective_eps(stream):
    p0, grads = stream
    eps_hat, beta2 = 1e-8, 0.999
    ours = run(conventions.adam_step_efficient, grads, p0, lambda t: dict(eps_hat=eps_hat))
    ref = run(reference.adam_step, grads, p0,
              lambda t: dict(eps=conventions.effective_eps(eps_hat, beta2, t)))
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-12, atol=1e-15)
    plain = run(reference.adam_step, grads, p0, lambda t: dict(eps=eps_hat))
    assert np.abs(plain[0] - ours[0]).max() > 1e-6, "with tiny gradients the conventions must differ"


def test_keras_step_is_the_efficient_form(stream):
    p0, grads = stream
    keras = run(conventions.keras_adam_step, grads, p0)
    eff = run(conventions.adam_step_efficient, grads, p0, lambda t: dict(eps_hat=1e-7))
    for a, b in zip(keras, eff):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-18)


def test_keras_adam_class_matches_the_function(stream):
    p0, grads = stream
    opt, p = conventions.KerasAdam(learning_rate=0.01), p0.copy()
    for g in grads:
        opt.step(p, g)
    ref = run(conventions.keras_adam_step, grads, p0, lambda t: dict(learning_rate=0.01))
    np.testing.assert_array_equal(p, ref[0])


def test_eps_in_sqrt_first_step():
    """From zero state, m_hat = g and v_hat = g^2, so the step is lr g / sqrt(g^2 + eps)."""
    g = np.array([1e-6, 1e-4, 1e-2, 1.0, -3.0])
    p, m, v = np.zeros(5), np.zeros(5), np.zeros(5)
    conventions.adam_step_eps_in_sqrt(p, g, m, v, 1, lr=0.1, eps=1e-8)
    np.testing.assert_allclose(p, -0.1 * g / np.sqrt(g * g + 1e-8), rtol=1e-12)


def test_effective_eps_at_the_first_step():
    assert conventions.effective_eps(1e-8, 0.999, 1) == pytest.approx(1e-8 / np.sqrt(1e-3))
    assert conventions.eps_hat_equivalent(1e-8, 0.999, 1) == pytest.approx(1e-8 * np.sqrt(1e-3))


def test_conventions_validate_like_the_reference():
    p = np.zeros(4)
    with pytest.raises(ValueError, match="eps"):
        conventions.adam_step_efficient(p, p.copy(), p.copy(), p.copy(), 1, eps_hat=-1.0)
    with pytest.raises(ValueError, match="t must be >= 1"):
        conventions.keras_adam_step(p, p.copy(), p.copy(), p.copy(), 0)


# --- the conventions of chapter 19 (ch-disagree), against torch and by hand ---

import torch  # noqa: E402


def torch_run(cls, grads, p0, **kw):
    theta = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = cls([theta], foreach=False, **kw)
    for g in grads:
        theta.grad = torch.from_numpy(g.copy())
        opt.step()
    return theta.detach().numpy()


def test_optax_default_is_algorithm_1(stream):
    p0, grads = stream
    ours = run(conventions.optax_adam_step, grads, p0, lambda t: dict(learning_rate=0.01))
    ref = run(reference.adam_step, grads, p0, lambda t: dict(lr=0.01))
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_optax_eps_root_first_step():
    g = np.array([1e-6, 1e-3, 1.0, -2.0])
    p, m, v = np.zeros(4), np.zeros(4), np.zeros(4)
    conventions.optax_adam_step(p, g, m, v, 1, learning_rate=0.1, eps_root=1e-8)
    np.testing.assert_allclose(p, -0.1 * g / (np.sqrt(g * g + 1e-8) + 1e-8), rtol=1e-12)


def test_optax_adamw_and_fused_adam_default_are_torch_adamw(stream):
    p0, grads = stream
    want = torch_run(torch.optim.AdamW, grads, p0, lr=0.01, weight_decay=0.1)
    optax = run(conventions.optax_adam_step, grads, p0,
                lambda t: dict(learning_rate=0.01, weight_decay=0.1))
    fused = run(conventions.fused_adam_step, grads, p0,
                lambda t: dict(lr=0.01, weight_decay=0.1))
    np.testing.assert_allclose(optax[0], want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fused[0], want, rtol=1e-12, atol=1e-15)


def test_fused_adam_without_w_mode_is_torch_adam_l2(stream):
    p0, grads = stream
    want = torch_run(torch.optim.Adam, grads, p0, lr=0.01, weight_decay=0.1)
    fused = run(conventions.fused_adam_step, grads, p0,
                lambda t: dict(lr=0.01, weight_decay=0.1, adam_w_mode=False))
    np.testing.assert_allclose(fused[0], want, rtol=1e-12, atol=1e-15)
    default = run(conventions.fused_adam_step, grads, p0,
                  lambda t: dict(lr=0.01, weight_decay=0.1))
    assert np.abs(default[0] - want).max() > 1e-3 * np.abs(want - p0).max()


def test_fused_adam_float32_is_close_to_torch_float32(stream):
    p0, grads = stream
    p32 = p0.astype(np.float32)
    g32 = [g.astype(np.float32) for g in grads]
    want = torch_run(torch.optim.AdamW, g32, p32, lr=0.01, weight_decay=0.1)
    got = run(conventions.fused_adam_step, g32, p32,
              lambda t: dict(lr=0.01, weight_decay=0.1))[0]
    assert got.dtype == np.float32
    scale = np.spacing(np.float32(np.abs(want).max()))
    assert np.abs(got - want).max() < 64 * scale


def test_paper_adamw_with_converted_decay_is_torch_adamw(stream):
    p0, grads = stream
    want = torch_run(torch.optim.AdamW, grads, p0, lr=0.01, weight_decay=0.1)
    wd = conventions.paper_weight_decay(0.01, 0.1)
    ours = run(conventions.adamw_paper_step, grads, p0,
               lambda t: dict(lr=0.01, weight_decay=wd))
    np.testing.assert_allclose(ours[0], want, rtol=1e-12, atol=1e-15)
    same_number = run(conventions.adamw_paper_step, grads, p0,
                      lambda t: dict(lr=0.01, weight_decay=0.1))
    assert np.abs(same_number[0] - want).max() > 1e-2 * np.abs(want - p0).max()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ulp_distance_counts_nextafter_steps(dtype):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(50) * 10.0 ** rng.uniform(-30, 30, 50)).astype(dtype)
    k = rng.integers(0, 20, 50)
    y = x.copy()
    for i in range(50):
        for _ in range(k[i]):
            y[i] = np.nextafter(y[i], dtype(np.inf))
    np.testing.assert_array_equal(conventions.ulp_distance(x, y), k)
    tiny = np.array([-np.finfo(dtype).smallest_subnormal], dtype)
    assert conventions.ulp_distance(tiny, -tiny)[0] == 2
    assert conventions.ulp_distance(np.array([-0.0], dtype), np.array([0.0], dtype))[0] == 0
    with pytest.raises(TypeError):
        conventions.ulp_distance(x.astype(np.float32), x.astype(np.float64))
