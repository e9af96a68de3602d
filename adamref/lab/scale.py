"""Adam at scale: the memory model and the two-process experiments (chapter "Adam at scale").

The memory model.  Training with Adam keeps, per parameter (bytes):

==============================  =====  =====  ============================  =====
precision                       param  grad   optimizer state               total
==============================  =====  =====  ============================  =====
``"float32"``                   4      4      8 (m, v)                      16
``"mixed"`` (bf16, fp32 master) 2      2      12 (fp32 master, m, v)        16
==============================  =====  =====  ============================  =====

ZeRO (Rajbhandari et al. 2020, https://arxiv.org/abs/1910.02054) shards these
over the ``N`` data-parallel ranks: stage 1 the optimizer state, stage 2 the
state and the gradients, stage 3 (FSDP) the parameters as well, so a rank
holds ``P + G + K / N`` (stage 1), ``P + (G + K) / N`` (stage 2) and
``(P + G + K) / N`` (stage 3) bytes per parameter: :func:`memory_per_rank`.
Activations, buffers and communication buffers are not counted.

How FSDP2 (``fully_shard``) cuts one tensor: dimension 0 in ``N`` chunks of
``ceil(d0 / N)`` rows, the last ones shorter or empty (``torch.chunk``'s
rule): :func:`fsdp_rows`.  The chapter checks that rule and the model against
the storage the optimizer state really occupies on two processes.

The experiments.  :func:`run_two_processes` spawns two processes
(``torch.multiprocessing``, gloo on the CPU, rendezvous on a free local
port) running :func:`_worker`, which trains the same small model
(:func:`make_model`, data from :func:`batch`) three ways and writes what it saw:

* ZeRO-1: ``DistributedDataParallel`` and ``ZeroRedundancyOptimizer`` with
  ``optimizer_class=adamref.optim.Adam``;
* FSDP2: ``fully_shard`` with ``adamref.optim.Adam`` over the DTensor shards
  (the collectives of ``step()`` counted with ``CommDebugMode``);
* DCP: sharded checkpoints written by ``torch.optim.Adam(fused=True)`` and
  loaded into ours, and the reverse (``torch.distributed.checkpoint`` with
  ``get_optimizer_state_dict`` / ``set_optimizer_state_dict``).

:func:`one_process` replays the same steps in one process, from the averaged
gradients the workers recorded, for comparison.  The workers must live in an
importable module (spawned processes import them), hence here.
"""

from __future__ import annotations

import math
import os
import socket
import tempfile

import numpy as np
import torch

__all__ = ["BYTES", "memory_per_rank", "fsdp_rows", "make_model", "batch", "loss_fn",
           "run_two_processes", "one_process", "state_bytes", "LR", "STEPS"]

#: bytes per parameter: (parameters, gradients, optimizer state)
BYTES = {"float32": (4, 4, 8), "mixed": (2, 2, 12)}
LR = 1e-2
STEPS = 4          # training steps in each experiment
RESUME = 2         # DCP: the step after which the checkpoint is written


# ---------------------------------------------------------------- the memory model
def memory_per_rank(n_params, world, stage, precision="mixed"):
    """Bytes per rank of parameters, gradients and optimizer state, as a dict.

    ``stage``: 0 (plain data parallelism, everything replicated), 1, 2 or 3
    (ZeRO's stages; 3 is FSDP).  Shards are taken as exactly ``n_params /
    world`` (real sharding rounds each tensor up: :func:`fsdp_rows`).
    """
    p, g, k = BYTES[precision]
    n = float(n_params)
    return {"params": p * n / (world if stage >= 3 else 1),
            "grads": g * n / (world if stage >= 2 else 1),
            "state": k * n / (world if stage >= 1 else 1)}


def fsdp_rows(d0, world, rank):
    """Rows of a dimension-0 size ``d0`` that FSDP2 gives ``rank`` of ``world``:
    chunks of ``ceil(d0 / world)`` rows, the last ones shorter or empty."""
    chunk = -(-d0 // world)
    return max(0, min(chunk, d0 - rank * chunk))


def state_bytes(optimizer, keys=("exp_avg", "exp_avg_sq")):
    """Bytes of storage held by ``keys`` of ``optimizer.state`` on this rank (a
    DTensor's local shard), each storage counted once; and of the ``step`` counters."""
    from adamref._distributed import local

    seen, moments, steps = set(), 0, 0
    for state in optimizer.state.values():
        for key, t in state.items():
            if not isinstance(t, torch.Tensor):
                continue
            storage = local(t).untyped_storage()
            if storage.data_ptr() in seen and storage.nbytes():
                continue
            seen.add(storage.data_ptr())
            if key in keys:
                moments += storage.nbytes()
            elif key == "step":
                steps += storage.nbytes()
    return moments, steps


# ---------------------------------------------------------------- the small problem
def make_model(seed=0):
    """The experiments' model: 16 -> 32 -> 5 with tanh (709 parameters; the output
    layer's 5 rows do not split evenly over 2 ranks)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(),
                                   torch.nn.Linear(32, 5))


def batch(step, rank, size=8):
    """Rank ``rank``'s minibatch at ``step`` (inputs, targets), the same in every process."""
    gen = torch.Generator().manual_seed(1000 * step + rank)
    x = torch.randn(size, 16, generator=gen)
    return x, torch.randn(size, 5, generator=gen)


def loss_fn(model, step, rank):
    x, y = batch(step, rank)
    return torch.nn.functional.mse_loss(model(x), y)


# ---------------------------------------------------------------- the workers
def _full(t):
    from adamref._distributed import is_sharded

    return (t.full_tensor() if is_sharded(t) else t).detach().clone()


def _fsdp_model(world):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world,))
    model = make_model()
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def _optimizer(kind, params):
    from adamref import optim

    if kind == "torch":
        return torch.optim.Adam(params, lr=LR, fused=True)
    return optim.Adam(params, lr=LR)


def _train(model, opt, rank, start, stop, record=None):
    """Steps ``start .. stop - 1``; ``record`` (a dict of lists) gets the averaged
    gradients and the parameters after each step, gathered."""
    for t in range(start, stop):
        loss_fn(model, t, rank).backward()
        if record is not None:
            record["grads"].append([_full(p.grad) for p in model.parameters()])
        opt.step()
        opt.zero_grad()
        if record is not None:
            record["params"].append([_full(p) for p in model.parameters()])


def _zero1(rank, world):
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel

    from adamref import optim

    model = make_model()
    ddp = DistributedDataParallel(model)
    opt = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=optim.Adam, lr=LR)
    record = {"grads": [], "params": []}
    _train(ddp, opt, rank, 0, STEPS, record)
    moments, steps = state_bytes(opt.optim)
    owned = [p for group in opt.optim.param_groups for p in group["params"]]
    return dict(record, state_bytes=moments, step_bytes=steps,
                owned=[p.numel() for p in owned], local_class=type(opt.optim).__module__
                + "." + type(opt.optim).__name__)


def _fsdp(rank, world):
    from torch.distributed.tensor.debug import CommDebugMode

    from adamref._distributed import local

    model = _fsdp_model(world)
    opt = _optimizer("ours", model.parameters())
    record = {"grads": [], "params": [], "collectives": []}
    for t in range(STEPS):
        loss_fn(model, t, rank).backward()
        record["grads"].append([_full(p.grad) for p in model.parameters()])
        if t == 0:
            record["local_grads"] = [local(p.grad).clone() for p in model.parameters()]
            total = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
            record["total_norm"] = _full(total)
        with CommDebugMode() as comm:
            opt.step()
        record["collectives"].append(comm.get_total_counts())
        opt.zero_grad()
        record["params"].append([_full(p) for p in model.parameters()])
    moments, steps = state_bytes(opt)
    record.update(state_bytes=moments, step_bytes=steps,
                  local_shapes=[tuple(local(p).shape) for p in model.parameters()],
                  param_storage=sum(local(p).untyped_storage().nbytes()
                                    for p in model.parameters()),
                  state_is_dtensor=all(type(s["exp_avg"]).__name__ == "DTensor"
                                       for s in opt.state.values()),
                  misplaced=_misplaced(world))
    return record


def _misplaced(world):
    """The error ``adamref.optim.Adam.step`` raises for a gradient laid out unlike its
    parameter (replicated, the parameter sharded), or None if it raises none."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (world,))
    p = torch.nn.Parameter(distribute_tensor(torch.zeros(4, 3), mesh, [Shard(0)]))
    p.grad = distribute_tensor(torch.ones(4, 3), mesh, [Replicate()])
    before = p.to_local().clone()
    try:
        _optimizer("ours", [p]).step()
    except ValueError as e:
        return str(e) if torch.equal(p.to_local(), before) else "changed " + str(e)
    return None


def _checkpoint(model, opt, path, save):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict, get_optimizer_state_dict, set_model_state_dict,
        set_optimizer_state_dict)

    state = {"model": get_model_state_dict(model),
             "optim": get_optimizer_state_dict(model, opt)}
    if save:
        dcp.save(state, checkpoint_id=path)
        return
    dcp.load(state, checkpoint_id=path)
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, opt, optim_state_dict=state["optim"])


def _dcp(rank, world, folder):
    """Write at step RESUME with one optimizer, load into the other, run to STEPS."""
    out = {}
    for writer in ("torch", "ours"):
        model = _fsdp_model(world)
        opt = _optimizer(writer, model.parameters())
        _train(model, opt, rank, 0, RESUME)
        path = os.path.join(folder, writer)
        _checkpoint(model, opt, path, save=True)
        out[f"files_{writer}"] = sorted(os.listdir(path))
        for reader in ("torch", "ours"):
            model = _fsdp_model(world)
            opt = _optimizer(reader, model.parameters())
            _checkpoint(model, opt, path, save=False)
            _train(model, opt, rank, RESUME, STEPS)
            out[f"{writer}->{reader}"] = [_full(p) for p in model.parameters()]
    model = _fsdp_model(world)
    opt = _optimizer("torch", model.parameters())
    _train(model, opt, rank, 0, STEPS)
    out["torch"] = [_full(p) for p in model.parameters()]
    return out


def _worker(rank, world, port, folder):
    """One rank: gloo on the CPU, one thread, the three experiments; writes
    ``folder/rank<rank>.pt``."""
    import numba
    import torch.distributed as dist

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out = {"zero1": _zero1(rank, world), "fsdp": _fsdp(rank, world),
               "dcp": _dcp(rank, world, folder)}
        torch.save(out, os.path.join(folder, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(world=2):
    """Spawn ``world`` ranks of :func:`_worker`; return each rank's results (a list)."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_worker, args=(world, _free_port(), folder), nprocs=world, join=True)
        return [torch.load(os.path.join(folder, f"rank{r}.pt"), weights_only=True)
                for r in range(world)]


# ---------------------------------------------------------------- one process
def one_process(grads, kind):
    """The parameters after each step of one process applying ``grads`` (a list per
    step of the averaged gradients) with ``kind`` ("ours" or "torch", fused)."""
    model = make_model()
    params = list(model.parameters())
    opt = _optimizer(kind, params)
    out = []
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()
        out.append([p.detach().clone() for p in params])
    return out


def averaged_gradients(world=2, steps=STEPS, params_per_step=None):
    """The gradient one process computes as the mean over ranks' minibatches,
    ``(g_0 + ... + g_{N-1}) / N`` summed in rank order, at the parameters
    ``params_per_step[t]`` (those before step ``t``; default: the initial model)."""
    model, threads = make_model(), torch.get_num_threads()
    torch.set_num_threads(1)                   # as the workers
    try:
        return _averaged(model, world, steps, params_per_step)
    finally:
        torch.set_num_threads(threads)


def _averaged(model, world, steps, params_per_step):
    out = []
    for t in range(steps):
        if params_per_step is not None:
            with torch.no_grad():
                for p, q in zip(model.parameters(), params_per_step[t]):
                    p.copy_(q)
        total = None
        for r in range(world):
            model.zero_grad()
            loss_fn(model, t, r).backward()
            gs = [p.grad.clone() for p in model.parameters()]
            total = gs if total is None else [a + b for a, b in zip(total, gs)]
        out.append([g / world for g in total])
    return out


def bits_equal(a, b):
    """Whether two lists of tensors are equal bit for bit (same shapes)."""
    return all(x.shape == y.shape and torch.equal(x.view(torch.int32) if x.dtype ==
               torch.float32 else x, y.view(torch.int32) if y.dtype == torch.float32
               else y) for x, y in zip(a, b)) and len(a) == len(b)


def n_params(model=None):
    model = model or make_model()
    return sum(p.numel() for p in model.parameters())


def clip_factors(local_grads, max_norm):
    """Per rank: the clipping factor ``min(1, max_norm / ||g_r||)`` from that rank's
    shards alone (wrong), and from the global norm ``sqrt(sum_r ||g_r||^2)`` (the
    all-reduce of squared norms that global clipping needs); float64."""
    sq = [sum(float(np.sum(np.square(g.double().numpy()))) for g in grads)
          for grads in local_grads]
    per_rank = [min(1.0, max_norm / math.sqrt(s)) for s in sq]
    global_norm = math.sqrt(sum(sq))
    return per_rank, min(1.0, max_norm / global_norm), global_norm
