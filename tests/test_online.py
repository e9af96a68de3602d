"""adamref.lab.online: the counterexamples, projected Adam against torch, regret by brute force."""

import numpy as np
import pytest
import torch

from adamref.lab import online


def test_online_gradients_have_period_three_and_sum_c_minus_2():
    g = online.reddi_online(30, 3.5)
    assert g.shape == (30,)
    assert list(g[:6]) == [3.5, -1, -1, 3.5, -1, -1]
    assert np.allclose(g.reshape(10, 3).sum(axis=1), 1.5)
    assert online.reddi_online(6, [3.0, 10.0]).shape == (6, 2)


def test_stochastic_gradients_have_mean_delta():
    C, delta, n = 10.0, 0.1, 400_000
    g = online.reddi_stochastic(n, C, delta, runs=1, seed=1)[:, 0]
    assert set(np.unique(g)) == {-1.0, C}
    se = g.std() / np.sqrt(n)
    assert abs(g.mean() - delta) < 4 * se


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("beta1,beta2", [(0.0, 0.1), (0.9, 0.999)])
def test_projected_adam_is_torch_adam_with_a_schedule_and_clamp(amsgrad, beta1, beta2):
    T, alpha = 200, 0.5
    grads = online.reddi_stochastic(T, 10.0, 0.1, runs=3, seed=2)
    traj = online.projected_adam(grads, alpha=alpha, beta1=beta1, beta2=beta2,
                                 amsgrad=amsgrad)
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = torch.optim.Adam([p], lr=alpha, betas=(beta1, beta2), amsgrad=amsgrad,
                           foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 / np.sqrt(k + 1))
    played = []
    for t in range(T):
        played.append(p.detach().numpy().copy())
        p.grad = torch.from_numpy(grads[t].copy())
        opt.step()
        sched.step()
        with torch.no_grad():
            p.clamp_(-1, 1)
    played = np.array(played)
    assert np.allclose(traj.x, played, rtol=1e-12, atol=1e-14)
    assert np.all(np.abs(traj.x) <= 1)
    state = opt.state[p]
    raw = state["max_exp_avg_sq"] if amsgrad else state["exp_avg_sq"]
    assert np.allclose(traj.v_hat[-1], raw.numpy() / (1 - beta2 ** T), rtol=1e-12)


def test_one_run_is_a_column():
    g = online.reddi_online(50, 3.0)
    one = online.projected_adam(g, alpha=0.5, beta1=0.0, beta2=0.1)
    two = online.projected_adam(np.stack([g, g], axis=1), alpha=0.5, beta1=0.0, beta2=0.1)
    assert one.x.shape == (50,)
    assert np.array_equal(one.x, two.x[:, 1])


def test_linear_regret_against_a_grid_search():
    rng = np.random.default_rng(3)
    T = 40
    grads = rng.standard_normal((T, 2)) + [0.3, -0.2]
    x = rng.uniform(-1, 1, (T, 2))
    grid = np.linspace(-1, 1, 2001)
    for t in [1, 7, T]:
        losses = grads[:t, :, None] * grid                  # (t, 2, grid)
        best = losses.sum(axis=0).min(axis=1)
        brute = (grads[:t] * x[:t]).sum(axis=0) - best
        assert np.allclose(online.linear_regret(x, grads)[t - 1], brute, rtol=1e-12)


def test_expected_regret_of_playing_the_optimum_is_zero():
    x = np.full(10, -1.0)
    assert np.allclose(online.expected_regret(x, 0.1), 0)
    assert np.allclose(online.expected_regret(np.ones(10), 0.1), 0.2 * np.arange(1, 11))


def test_gamma_is_never_negative_for_amsgrad_and_sometimes_for_adam():
    g = online.reddi_online(300, 3.0)
    ams = online.projected_adam(g, alpha=0.5, beta1=0.0, beta2=0.1, amsgrad=True)
    adam = online.projected_adam(g, alpha=0.5, beta1=0.0, beta2=0.1)
    assert np.all(online.gamma(ams) >= -1e-12)
    assert np.sum(online.gamma(adam) < 0) > 50
    # Gamma at step 2, by hand: v_1 = 0.9 * 9, v_2 = 0.1 v_1 + 0.9
    v1, v2 = 0.9 * 9, 0.1 * 0.9 * 9 + 0.9
    by_hand = np.sqrt(v2 / (1 - 0.01)) / (0.5 / np.sqrt(2)) - np.sqrt(v1 / 0.9) / 0.5
    assert np.isclose(online.gamma(adam)[0], by_hand, rtol=1e-12)


def test_kingma_bound_by_hand():
    # one coordinate, g = 1 for T = 4, beta1 = 0: ||g_{1:T}|| = 2, v_hat_T = 1
    b = online.kingma_regret_bound(np.ones(4), [1.0], alpha=0.5, beta1=0.0, beta2=0.75,
                                   lam=0.5, D=2.0, D_inf=2.0, G_inf=1.0)
    first = 4 / (2 * 0.5) * np.sqrt(4)                       # 8
    second = 0.5 * 1 / np.sqrt(0.25) * 2                      # 2
    third = 4 * 1 * np.sqrt(0.25) / (2 * 0.5 * 0.25)          # 8
    assert np.isclose(b, first + second + third)
    with pytest.raises(ValueError):
        online.kingma_regret_bound(np.ones(4), [1.0], alpha=0.5, beta1=0.9, beta2=0.5,
                                   lam=0.5, D=2, D_inf=2, G_inf=1)
