"""adamref.lab.experiments: data, the batched grid trainer against one-model training,
tuning's bracketing rule, Keras's Adam against adamref.lab.conventions."""

import math

import numpy as np
import pytest
import torch

from adamref.lab import experiments as ex
from adamref.lab.conventions import keras_adam_step
from adamref.optim import Adam


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is fastest, and immune to a loaded machine."""
    import numba
    n, m = torch.get_num_threads(), numba.get_num_threads()
    ex.single_threaded()
    yield
    torch.set_num_threads(n)
    numba.set_num_threads(m)


def test_digits_split_is_fixed_stratified_and_disjoint():
    d = ex.digits()
    assert (len(d.X_train), len(d.X_test), d.features, d.classes) == (1438, 359, 64, 10)
    assert 0.0 == float(d.X_train.min()) and float(d.X_train.max()) == 1.0
    # every class is 20% +- one image of the test set
    counts = np.bincount(d.y_test.numpy(), minlength=10)
    assert np.all(np.abs(counts - 36) <= 2)
    # disjoint: no test image equals a training image row-for-row with its label
    again = ex.digits()
    assert torch.equal(d.X_test, again.X_test) and torch.equal(d.y_train, again.y_train)
    from sklearn.datasets import load_digits
    full = np.sort(load_digits().data.sum(1))
    both = np.sort(np.concatenate([d.X_train.sum(1).numpy(), d.X_test.sum(1).numpy()]) * 16)
    assert np.allclose(full, both, atol=1e-3)          # a partition of the 1,797 images


def test_bag_of_words_has_zipf_frequencies_and_the_planted_rule():
    data, (w_star, p) = ex.bag_of_words(docs=3000, vocabulary=1000, length=50, zipf=1.1,
                                        informative=100, label_noise=0.1, seed=3,
                                        return_rule=True)
    X = torch.cat([data.X_train, data.X_test]).numpy()
    y = torch.cat([data.y_train, data.y_test]).numpy()
    # document frequency of word k is 1 - (1 - p_k)^length: compare with the counts
    expected = 1 - (1 - p) ** 50
    observed = X.mean(0)
    se = np.sqrt(expected * (1 - expected) / len(X))
    assert np.all(np.abs(observed - expected) < 5 * se + 1e-12)
    # the rule, before noise, splits at the median; noise flips ~10% (5 s.e.)
    clean = (X @ w_star > np.median(X @ w_star)).astype(int)
    flipped = np.mean(clean != y)
    assert abs(flipped - 0.1) < 5 * math.sqrt(0.1 * 0.9 / len(y))
    assert np.count_nonzero(w_star) == 100


@pytest.mark.parametrize("hidden, schedule, opt, kw, l2", [
    ((), ex.inv_sqrt, torch.optim.Adagrad, {}, 1e-2),
    ((16,), None, torch.optim.SGD, {"momentum": 0.9, "nesterov": True}, 0.0),
    ((16, 8), ex.inv_sqrt, Adam, {}, 1e-3)])
def test_grid_runs_equal_one_model_runs(hidden, schedule, opt, kw, l2):
    """Each (lr, seed) run of the batched grid = nn.Sequential trained alone (float64)."""
    d = ex.digits(dtype=torch.float64)
    d = ex.Data(d.X_train[:200], d.y_train[:200], d.X_test, d.y_test, 10)
    lrs, seeds = [0.003, 0.03], [0, 5]
    grid = ex.train_grid(d, opt, lrs, seeds, hidden=hidden, epochs=2, batch_size=64,
                         lr_factor=schedule, optimizer_kwargs=kw, l2=l2)
    sizes = [64, *hidden, 10]
    for i, lr in enumerate(lrs):
        for j, seed in enumerate(seeds):
            def model_fn(seed=seed):
                layers = []
                for k, (W, b) in enumerate(ex.mlp_init(sizes, seed, dtype=torch.float64)):
                    lin = torch.nn.Linear(*W.shape, dtype=torch.float64)
                    with torch.no_grad():
                        lin.weight.copy_(W.T)
                        lin.bias.copy_(b)
                    layers += [lin, torch.nn.ReLU()]
                return torch.nn.Sequential(*layers[:-1])
            def loss_fn(model, X, y):
                ce = torch.nn.functional.cross_entropy(model(X), y)
                return ce + 0.5 * l2 * sum(p.square().sum() for p in model.parameters())
            c = ex.train(model_fn, lambda p, lr=lr: opt(p, lr=lr, **kw), d, epochs=2,
                         batch_size=64, seed=seed, lr_factor=schedule, loss_fn=loss_fn)
            assert np.allclose(grid.train_loss[i, j], c.train_loss, rtol=1e-9)
            with torch.no_grad():
                test_ce = [float(torch.nn.functional.cross_entropy(model_fn()(d.X_test),
                                                                   d.y_test))]
            if not l2:
                assert np.allclose(grid.test_loss[i, j], c.test_loss, rtol=1e-9)
            assert np.isclose(grid.test_loss[i, j, 0], test_ce[0], rtol=1e-12)
            assert np.array_equal(grid.test_acc[i, j], c.test_acc)
    assert np.all(grid.train_loss[:, :, -1] < grid.train_loss[:, :, 0])   # it learns


def test_grid_dropout_keeps_the_expected_activation():
    """With dropout, a run still learns; its masks depend on the seed only, not on the lr grid."""
    d = ex.digits()
    a = ex.train_grid(d, torch.optim.SGD, [0.1], [1], hidden=(32,), dropout=0.5,
                      input_dropout=0.2, epochs=1, batch_size=64)
    b = ex.train_grid(d, torch.optim.SGD, [0.01, 0.1], [1], hidden=(32,), dropout=0.5,
                      input_dropout=0.2, epochs=1, batch_size=64)
    assert np.allclose(a.train_loss[0], b.train_loss[1], rtol=1e-5)
    assert a.train_loss[0, 0, -1] < a.train_loss[0, 0, 0]


def test_grid_marks_a_diverged_run_and_keeps_the_others():
    d = ex.digits()
    g = ex.train_grid(d, torch.optim.SGD, [0.1, 1e6], [0], hidden=(32,), epochs=2,
                      batch_size=64)
    assert g.diverged.tolist() == [[False], [True]]
    assert np.isnan(g.test_acc[1, 0, -1]) and g.test_acc[0, 0, -1] > 0.5


def _fake(scores):
    L = len(scores)
    tl = np.array(scores, dtype=float)[:, None, None] * np.ones((1, 2, 3))
    return ex.GridResult("opt", np.logspace(-3, 0, L), (0, 1), tl, tl, 1 - tl)


def test_tune_brackets_interior_optima_and_refuses_edges():
    t = ex.tune(_fake([3.0, 1.0, 0.5, 0.51, 2.0]))
    assert t.bracketed and t.index == 2
    assert t.near_best == [t.lr, list(t.scores)[3]]
    with pytest.raises(ValueError, match="largest"):
        ex.tune(_fake([3.0, 2.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="smallest"):
        ex.tune(_fake([0.5, 0.51, 1.0, 2.0]))
    assert not ex.tune(_fake([0.5, 1.0, 2.0]), strict=False).bracketed
    # accuracy: larger is better
    r = _fake([3.0, 1.0, 0.5, 2.0])
    r.test_acc[:] = np.array([0.1, 0.9, 0.5, 0.2])[:, None, None]
    assert ex.tune(r, "test_acc").index == 1 and ex.tune(r).index == 2
    # a diverged seed disqualifies its lr
    r = _fake([3.0, 1.0, 0.5, 2.0])
    r.train_loss[2, 1, -1] = np.inf
    assert ex.tune(r).index == 1


def test_fmt_mean_spread():
    assert ex.fmt_mean_spread([0.961, 0.967, 0.958], 1, scale=100, unit="%") == "96.2 ± 0.5%"
    assert ex.fmt_mean_spread([1.0, np.inf]) == "diverged (1 of 2)"
    assert ex.fmt_mean_spread([np.nan]) == "diverged"
    m, s = ex.mean_spread([1.0, 2.0, 3.0])
    assert (m, s) == (2.0, 1.0)


def test_keras_style_adam_is_kerass_eps_hat_step():
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(50)
    p = torch.tensor(p0, requires_grad=True)
    opt = ex.KerasStyleAdam([p], lr=1e-2, eps=1e-3)     # a large eps_hat shows the placement
    q, m, v = p0.copy(), np.zeros(50), np.zeros(50)
    for t in range(1, 30):
        g = rng.standard_normal(50) * 1e-3
        p.grad = torch.tensor(g)
        opt.step()
        keras_adam_step(q, g, m, v, t, learning_rate=1e-2, epsilon=1e-3)
    assert np.allclose(p.detach().numpy(), q, rtol=1e-12, atol=1e-14)
    plain = torch.tensor(p0, requires_grad=True)        # not torch's Adam with that eps
    o2 = Adam([plain], lr=1e-2, eps=1e-3)
    rng = np.random.default_rng(0)
    rng.standard_normal(50)
    for t in range(1, 30):
        plain.grad = torch.tensor(rng.standard_normal(50) * 1e-3)
        o2.step()
    assert not np.allclose(plain.detach().numpy(), q, rtol=1e-6)


def test_softmax_minimum_is_the_minimum_of_train_grids_objective():
    d = ex.digits(dtype=torch.float64)
    f_star, theta = ex.softmax_minimum(d, 1e-2)
    # torch's autograd on the objective as train_grid writes it: zero gradient there
    W = torch.tensor(theta[:-1], requires_grad=True)
    b = torch.tensor(theta[-1], requires_grad=True)
    F = (torch.nn.functional.cross_entropy(d.X_train @ W + b, d.y_train)
         + 0.005 * (W.square().sum() + b.square().sum()))
    F.backward()
    assert abs(float(F.detach()) - f_star) < 1e-12
    assert torch.cat([W.grad.ravel(), b.grad]).abs().max() < 1e-6
    # and no run of train_grid gets below it
    g = ex.train_grid(d, torch.optim.SGD, [0.3, 1.0], [0], epochs=3, batch_size=64, l2=1e-2)
    assert g.train_loss.min() >= f_star - 1e-12
