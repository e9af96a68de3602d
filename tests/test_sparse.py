"""adamref.lab.sparse against independent computations: the reference Adam and torch."""

import numpy as np
import pytest
import torch

from adamref import reference
from adamref.lab import sparse


def ulps(a, b):
    """Distance in float32 units in the last place, elementwise."""
    ia = np.asarray(a, np.float32).view(np.int32).astype(np.int64)
    ib = np.asarray(b, np.float32).view(np.int32).astype(np.int64)
    ia = np.where(ia < 0, -(ia & 0x7FFFFFFF), ia)
    ib = np.where(ib < 0, -(ib & 0x7FFFFFFF), ib)
    return np.abs(ia - ib)


def test_zipf_probabilities_follow_the_power_law():
    p = sparse.zipf_probabilities(100, 1.5)
    assert p.sum() == pytest.approx(1.0)
    assert p[0] / p[9] == pytest.approx(10 ** 1.5)
    assert np.all(np.diff(p) < 0)


def test_ghost_drift_is_what_the_reference_adam_does_with_zero_gradients():
    rng = np.random.default_rng(0)
    n, t0, K = 50, 40, 300
    p, m, v = np.zeros(n), np.zeros(n), np.zeros(n)
    for t in range(1, t0 + 1):
        reference.adam_step(p, rng.standard_normal(n) * 10.0 ** rng.uniform(-9, 0, n),
                            m, v, t, lr=0.01)
    m0, v0, p0 = m.copy(), v.copy(), p.copy()
    for t in range(t0 + 1, t0 + K + 1):
        reference.adam_step(p, np.zeros(n), m, v, t, lr=0.01)
    drift = sparse.ghost_drift(m0, v0, t0, K, lr=0.01)
    np.testing.assert_allclose(drift, p - p0, rtol=1e-10, atol=1e-18)


def test_ghost_drift_geometric_limit():
    # eps = 0, t large: the series sums to q / (1 - q) times lr m / sqrt(v).
    m, v = np.array([0.3, -2.0]), np.array([0.5, 7.0])
    q = 0.9 / np.sqrt(0.999)
    drift = sparse.ghost_drift(m, v, 10**6, 2000, lr=1.0, eps=0.0)
    np.testing.assert_allclose(drift, -m / np.sqrt(v) * q / (1 - q), rtol=1e-9)


def test_lazy_step_matches_torch_sparse_adam():
    prob = sparse.EmbeddingProblem(V=300, d=4, batch=16, seed=3)
    rng = np.random.default_rng(4)
    E0 = (0.1 * rng.standard_normal((prob.V, prob.d))).astype(np.float32)
    emb = torch.nn.Embedding(prob.V, prob.d, sparse=True)
    emb.weight.data = torch.from_numpy(E0.copy())
    opt = torch.optim.SparseAdam(emb.parameters(), lr=0.01)
    E, m, v = E0.copy(), np.zeros_like(E0), np.zeros_like(E0)
    for t in range(1, 61):
        rows, y = prob.sample(rng)
        # torch computes the gradient through nn.Embedding(sparse=True)
        opt.zero_grad()
        loss = 0.5 * ((emb(torch.from_numpy(rows)) - torch.from_numpy(y).float()) ** 2
                      ).sum() / prob.batch
        loss.backward()
        uniq, G = prob.sparse_grad(E, rows, y)
        g_torch = emb.weight.grad.coalesce()
        assert np.array_equal(g_torch.indices()[0].numpy(), uniq)
        np.testing.assert_allclose(g_torch.values().numpy(), G, rtol=1e-5, atol=1e-7)
        opt.step()
        lazy_in = G  # ours uses its own gradient
        sparse.lazy_adam_step(E, uniq, lazy_in, m, v, t, lr=0.01)
    W = emb.weight.detach().numpy()
    moved = np.abs(E - E0).max()
    assert moved > 0.1
    # torch's float32 sqrt is not correctly rounded and its gradient sums in another
    # order: a few ulps of the distance moved, not bitwise
    assert np.abs(W - E).max() < 1e-5 * moved
    untouched = np.setdiff1d(np.arange(prob.V), np.nonzero(np.any(E != E0, axis=1))[0])
    assert len(untouched) > 0 and np.array_equal(W[untouched], E0[untouched])


def test_lazy_step_first_touch_uses_the_table_step_count():
    # A row first touched at table step t moves by lr (1-b1)/(1-b1^t) sqrt(1-b2^t)/sqrt(1-b2)
    p, m, v = np.zeros((3, 1)), np.zeros((3, 1)), np.zeros((3, 1))
    sparse.lazy_adam_step(p, np.array([1]), np.array([[2.0]]), m, v, 500, lr=1.0, eps=0.0)
    expected = 0.1 / (1 - 0.9 ** 500) * np.sqrt(1 - 0.999 ** 500) / np.sqrt(0.001)
    assert p[1, 0] == pytest.approx(-expected)
    assert p[0, 0] == 0 and p[2, 0] == 0


def test_lazy_step_rejects_repeated_rows():
    p = np.zeros((3, 2))
    with pytest.raises(ValueError, match="distinct"):
        sparse.lazy_adam_step(p, np.array([1, 1]), np.ones((2, 2)), p.copy(), p.copy(), 1)


def test_dense_grad_is_the_autograd_gradient():
    prob = sparse.EmbeddingProblem(V=50, d=3, batch=20, seed=1)
    rng = np.random.default_rng(2)
    E = rng.standard_normal((prob.V, prob.d))
    rows, y = prob.sample(rng)
    Et = torch.tensor(E, requires_grad=True)
    (0.5 * ((Et[torch.from_numpy(rows)] - torch.from_numpy(y)) ** 2).sum() / prob.batch
     ).backward()
    np.testing.assert_allclose(prob.dense_grad(E, rows, y), Et.grad.numpy(), rtol=1e-12)
