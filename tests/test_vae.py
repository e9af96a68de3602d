"""adamref.lab.vae: the batched VAE and the per-copy bias-correction ablation."""

import numpy as np
import pytest
import torch

from adamref.lab import vae
from adamref.lab.moments import adam_step_ablation


def _state(params, lr, beta1, beta2, correct, eps=1e-8):
    return vae.AblationState(np.asarray(lr, float), np.asarray(beta1, float),
                             np.asarray(beta2, float), np.asarray(correct, bool), eps,
                             [torch.zeros_like(p) for p in params],
                             [torch.zeros_like(p) for p in params])


def test_ablation_step_is_moments_ablation_row_by_row_bitwise():
    # float64, so that NumPy's and torch's elementwise operations round alike
    rng = np.random.default_rng(0)
    lr = [1e-3, 3e-2, 1e-2, 0.1]
    beta1, beta2 = [0.9, 0.0, 0.9, 0.0], [0.999, 0.9999, 0.99, 0.999]
    correct = [True, False, False, True]
    p = torch.tensor(rng.standard_normal((4, 3, 5)), requires_grad=True)
    state = _state([p], lr, beta1, beta2, correct)
    rows = [(p[r].detach().numpy().copy(), np.zeros((3, 5)), np.zeros((3, 5)))
            for r in range(4)]
    for t in range(1, 25):
        g = rng.standard_normal((4, 3, 5)) * 10.0 ** rng.integers(-3, 3, size=(4, 1, 1))
        p.grad = torch.tensor(g)
        vae.adam_ablation_step([p], state, t)
        for r, (pr, mr, vr) in enumerate(rows):
            adam_step_ablation(pr, g[r], mr, vr, t, lr=lr[r], beta1=beta1[r],
                               beta2=beta2[r], correct_first=correct[r],
                               correct_second=correct[r])
    for r, (pr, mr, vr) in enumerate(rows):
        assert np.array_equal(p[r].detach().numpy(), pr)
        assert np.array_equal(state.m[0][r].numpy(), mr)
        assert np.array_equal(state.v[0][r].numpy(), vr)


def test_ablation_step_with_correction_is_torch_adam():
    torch.manual_seed(0)
    p = torch.randn(3, 40, dtype=torch.float64, requires_grad=True)
    copies = [p[r].detach().clone().requires_grad_() for r in range(3)]
    lrs, b1s, b2s = [1e-3, 1e-2, 0.1], [0.9, 0.0, 0.5], [0.999, 0.99, 0.9999]
    torch_opts = [torch.optim.Adam([q], lr=lr, betas=(b1, b2), foreach=False)
                  for q, lr, b1, b2 in zip(copies, lrs, b1s, b2s)]
    state = _state([p], lrs, b1s, b2s, [True] * 3)
    for t in range(1, 30):
        g = torch.randn(3, 40, dtype=torch.float64)
        p.grad = g.clone()
        vae.adam_ablation_step([p], state, t)
        for r, (q, opt) in enumerate(zip(copies, torch_opts)):
            q.grad = g[r].clone()
            opt.step()
    for r, q in enumerate(copies):
        torch.testing.assert_close(p[r].detach(), q.detach(), rtol=1e-13, atol=0)


def _single_vae_loss(params, r, x, noise):
    # one copy, written with torch.nn.functional and torch.distributions
    W1, b1, Wm, bm, Ws, bs, W3, b3, W4, b4 = [w[r] for w in params]
    F = torch.nn.functional
    h = torch.tanh(F.linear(x, W1.T, b1[0]))
    mu, log_s2 = F.linear(h, Wm.T, bm[0]), F.linear(h, Ws.T, bs[0])
    q = torch.distributions.Normal(mu, torch.exp(0.5 * log_s2))
    z = mu + q.stddev * noise
    logits = F.linear(torch.tanh(F.linear(z, W3.T, b3[0])), W4.T, b4[0])
    bern = torch.distributions.Bernoulli(logits=logits, validate_args=False)
    nll = -bern.log_prob(x).sum(-1)                 # continuous x: cross-entropy
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    kl = torch.distributions.kl_divergence(q, prior).sum(-1)
    return (nll + kl).mean()


def test_batched_loss_and_gradients_are_each_copys_own():
    model = vae.BatchedVAE([0, 1, 1], [3, 4], hidden=8, latent=2, dtype=torch.float64)
    X = vae.digits_unit().double()
    x = torch.stack([X[:10], X[10:20], X[20:30]])
    noise = torch.randn(3, 10, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    losses = model.loss(x, noise)
    losses.sum().backward()
    for r in range(3):
        params = [p.detach().clone().requires_grad_() for p in model.params]
        single = _single_vae_loss(params, r, x[r], noise[r])
        single.backward()
        torch.testing.assert_close(losses[r], single, rtol=1e-12, atol=0)
        for p, q in zip(model.params, params):
            torch.testing.assert_close(p.grad[r], q.grad[r], rtol=1e-10, atol=1e-14)
    # copies of one seed start from the same weights, other seeds do not
    W1 = model.params[0]
    assert torch.equal(W1[1], W1[2]) and not torch.equal(W1[0], W1[1])


def test_sweep_copies_do_not_interact():
    kwargs = dict(seeds=[5], epochs=(1,), batch_size=300, hidden=8, latent=2)
    both = vae.sweep([1e-2, 3e-2], [0.9, 0.0], [0.999, 0.9999], [True, False], [0, 0],
                     **kwargs)
    alone = vae.sweep([3e-2], [0.0], [0.9999], [False], [0], **kwargs)
    assert both.loss.shape == (2, 1) and both.steps_per_epoch == 5
    np.testing.assert_allclose(both.loss[1], alone.loss[0], rtol=1e-5)
    np.testing.assert_allclose(both.start, alone.start[0], rtol=1e-6)
    # corrected, the step size 1e-2 lowers the loss within an epoch; uncorrected,
    # beta2 = 0.9999 makes 3e-2 ten times too large at first, and the loss rises
    assert both.loss[0, 0] < 0.98 * both.start[0]
    assert both.loss[1, 0] > 1.5 * both.start[1]


def test_fmt_stable_drops_digits_near_a_rounding_boundary():
    assert vae.fmt_stable(25.3961, 3, 1e-4) == "25.4"
    assert vae.fmt_stable(0.0123, 2, 1e-3) == "0.012"
    assert vae.fmt_stable(24.9501, 3, 1e-4) == "25"        # 24.9 or 25.0
    assert vae.fmt_stable(1.2450001, 3, 1e-6) == "1.2"     # 1.25 or 1.24
    with pytest.raises(ValueError):
        vae.fmt_stable(9.5, 3, 0.1)                        # 9 or 1e+01
