"""adamref.optim under torch.distributed: ZeRO-1, FSDP2 and DCP on two CPU processes (gloo).

One spawn of two processes (:func:`adamref.lab.scale.run_ranks`,
shared by every test here through a module fixture) trains a small model
three ways and records what each rank saw; the tests compare that with one
process replaying the same steps:

* the averaged gradients the engines produced equal ``(g_0 + g_1) / 2`` summed
  in one process, bit for bit (two ranks: the sum of two floats does not
  depend on the order, and halving is exact);
* ZeRO-1 with ``optimizer_class=adamref.optim.Adam`` and FSDP2 with
  ``adamref.optim.Adam`` over the DTensor shards give, after every step, the
  parameters of one process running ``adamref.optim.Adam`` on those gradients,
  bit for bit on every build; and those of ``torch.optim.Adam(fused=True)``
  bit for bit on ``adamref.cpu.TORCH_BITWISE_BUILDS`` (elsewhere within a
  stated ulp bound);
* ``step()`` under FSDP2 issues no collective (``CommDebugMode``), and keeps
  the state as sharded DTensors whose per-rank bytes follow FSDP2's chunking;
* DCP checkpoints written by torch's Adam load into ours and the reverse, and
  the runs continue as if uninterrupted.

The memory model and the helpers are checked against independent numbers
(ZeRO's paper, ``torch.chunk``, ``clip_grad_norm_``) without processes.
"""

import math

import numpy as np
import pytest
import torch

from adamref import cpu
from adamref.lab import scale

dist = torch.distributed
AVAILABLE = dist.is_available() and dist.is_gloo_available()
BITWISE_BUILD = torch.backends.cpu.get_cpu_capability() in cpu.TORCH_BITWISE_BUILDS
needs_gloo = pytest.mark.skipif(not AVAILABLE, reason="torch.distributed with the gloo "
                                "backend is not available in this torch build")


@pytest.fixture(scope="module")
def ranks():
    return scale.run_ranks()


def initial():
    return [p.detach().clone() for p in scale.make_model().parameters()]


def assert_bits(a, b, what):
    assert scale.bits_equal(a, b), f"{what}: not bit for bit equal"


def assert_against_torch(ours, theirs, what, steps=scale.STEPS):
    """Bit for bit on the builds where our kernels match torch fused; elsewhere each
    element within 4 * steps + 8 ulps of max(|p|, lr) (float32)."""
    if BITWISE_BUILD:
        assert_bits(ours, theirs, what)
        return
    for x, y in zip(ours, theirs):
        ulp = np.spacing(np.maximum(np.abs(y.numpy()), np.float32(scale.LR)))
        assert np.all(np.abs(x.numpy() - y.numpy()) <= (4 * steps + 8) * ulp), what


# ---------------------------------------------------------------- ZeRO-1
def assert_steps_equal_one_process(run0, run1, engine, gradient):
    """Both ranks hold the same parameters after every step; the gradient each step
    used is the mean of the two ranks' (summed in one process), bit for bit; and the
    parameters equal one process stepping those gradients (ours bit for bit, torch
    fused as :func:`assert_against_torch` allows)."""
    for t in range(scale.STEPS):
        assert_bits(run0["params"][t], run1["params"][t], f"{engine}: ranks, step {t + 1}")
    averaged = scale.averaged_gradients(params_per_step=[initial()] + run0["params"][:-1])
    for t in range(scale.STEPS):
        assert_bits(run0["grads"][t], averaged[t], f"{gradient}, step {t + 1}")
    ours = scale.one_process(run0["grads"], "ours")
    theirs = scale.one_process(run0["grads"], "torch")
    for t in range(scale.STEPS):
        assert_bits(run0["params"][t], ours[t], f"{engine} vs one process, step {t + 1}")
        assert_against_torch(run0["params"][t], theirs[t], f"vs torch fused, step {t + 1}")


@needs_gloo
def test_zero1_steps_equal_one_process(ranks):
    z0, z1 = ranks[0]["zero1"], ranks[1]["zero1"]
    assert z0["local_class"] == z1["local_class"] == "adamref.optim.Adam"
    assert_steps_equal_one_process(z0, z1, "ZeRO-1", "DDP's mean gradient")


@needs_gloo
def test_zero1_shards_the_state_by_whole_tensors(ranks):
    n = scale.n_params()
    owned = [r["zero1"]["owned"] for r in ranks]
    assert sorted(sum(owned, [])) == sorted(p.numel() for p in scale.make_model().parameters())
    for r, own in zip(ranks, owned):
        assert r["zero1"]["state_bytes"] == 8 * sum(own)        # m and v, float32
        assert r["zero1"]["step_bytes"] == 4 * len(own)         # one float32 step each
    assert sum(r["zero1"]["state_bytes"] for r in ranks) == 8 * n
    largest = max(p.numel() for p in scale.make_model().parameters())
    assert max(r["zero1"]["state_bytes"] for r in ranks) <= 8 * (n / 2 + largest)


# ---------------------------------------------------------------- FSDP2
@needs_gloo
def test_fsdp2_steps_equal_one_process(ranks):
    assert_steps_equal_one_process(ranks[0]["fsdp"], ranks[1]["fsdp"], "FSDP2",
                                   "reduce-scattered gradient")


@needs_gloo
def test_fsdp2_step_is_local_and_state_is_sharded(ranks):
    shapes = [tuple(p.shape) for p in scale.make_model().parameters()]
    total = 0
    for rank, r in enumerate(ranks):
        f = r["fsdp"]
        assert f["collectives"] == [0] * scale.STEPS      # no gather in step()
        assert f["state_is_dtensor"]
        rows = [scale.fsdp_rows(s[0], 2, rank) for s in shapes]
        assert f["local_shapes"] == [(k, *s[1:]) for k, s in zip(rows, shapes)]
        expected = sum(8 * k * math.prod(s[1:]) for k, s in zip(rows, shapes))
        assert f["state_bytes"] == expected
        total += f["state_bytes"]
    assert total == 8 * scale.n_params()


@needs_gloo
def test_fsdp2_gradient_laid_out_unlike_its_parameter_raises(ranks):
    for r in ranks:
        message = r["fsdp"]["misplaced"]
        assert message is not None and not message.startswith("changed")
        assert "local shard" in message


# ---------------------------------------------------------------- DCP
@needs_gloo
def test_dcp_checkpoints_move_between_torch_and_ours(ranks):
    uninterrupted = ranks[0]["fsdp"]["params"][-1]
    for r in ranks:
        d = r["dcp"]
        for writer in ("torch", "ours"):                 # one file per rank, and metadata
            assert d[f"files_{writer}"] == [".metadata", "__0_0.distcp", "__1_0.distcp"]
        assert_bits(d["ours->ours"], uninterrupted, "ours -> ours")
        for key in ("torch->ours", "ours->torch", "torch->torch", "torch"):
            assert_against_torch(d[key], uninterrupted, key)


# ---------------------------------------------------------------- no processes
def test_memory_model_reproduces_zero_paper():
    """Rajbhandari et al. (2020), figure 1: 7.5B parameters, 64 GPUs, K = 12."""
    n, world = 7.5e9, 64
    gb = [sum(scale.memory_per_rank(n, world, stage).values()) / 1e9 for stage in range(4)]
    assert [round(x, 1) for x in gb] == [120.0, 31.4, 16.6, 1.9]
    assert sum(scale.memory_per_rank(n, 1, 0, "float32").values()) == 16 * n


def test_fsdp_rows_is_torch_chunk():
    for d0 in range(0, 40):
        for world in (1, 2, 3, 4, 7, 8):
            chunks = [c.shape[0] for c in torch.chunk(torch.empty(d0), world)] if d0 else []
            chunks += [0] * (world - len(chunks))
            assert [scale.fsdp_rows(d0, world, r) for r in range(world)] == chunks


def test_clip_factors_global_matches_clip_grad_norm():
    rng = np.random.default_rng(0)
    full = [rng.standard_normal((5, 3)), rng.standard_normal(7)]
    shards = [[torch.tensor(g[:3]) for g in full], [torch.tensor(g[3:]) for g in full]]
    params = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in full]
    for p, g in zip(params, full):
        p.grad = torch.tensor(g)
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
    per_rank, coefficient, global_norm = scale.clip_factors(shards, 1.0)
    assert math.isclose(global_norm, float(norm), rel_tol=1e-12)
    # torch clips by max_norm / (norm + 1e-6): the same factor to within 1e-6 / norm
    torch_factor = float(params[1].grad[0] / full[1][0])
    assert math.isclose(coefficient, torch_factor, rel_tol=2e-6 / global_norm)
    assert all(c > coefficient for c in per_rank)        # each shard's norm is smaller


def test_importing_the_optimizers_does_not_import_dtensor():
    """``adamref.optim`` only looks ``DTensor`` up: importing ``torch.distributed.tensor``
    costs about 0.35 s, and a process that has no DTensor should not pay it."""
    import subprocess
    import sys
    code = ("import sys, torch, adamref.optim; "
            "print('torch.distributed.tensor' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
