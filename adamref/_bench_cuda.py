"""GPU timings of :mod:`adamref.cuda`: the rows behind ``python -m adamref.bench --device cuda``.

:func:`measure` times, for each size ``n``:

==================  =========================================================
case                what runs (ours / the torch peers)
==================  =========================================================
adam                ``adam_step`` / ``torch.optim.Adam(fused=True)``, foreach
adamw               ``decoupled=True, weight_decay=0.01`` / ``AdamW``
adam_amsgrad        ``amsgrad=True`` (36 bytes per float32 parameter)
adamax              ``adamax_step`` / ``torch.optim.Adamax`` (foreach; torch
                    has no fused Adamax, so ``vs_torch_fused`` is None)
adam_multi_tensor   the same ``n`` parameters cut into up to 64 tensors of
                    uneven sizes, one ``adam_step_multi_tensor`` call /
                    torch fused and foreach over the same list
==================  =========================================================

How: CUDA events on the stream the work runs on (torch's current stream when
torch has CUDA, else Numba's default stream); each timed sample is a batch of
back-to-back calls long enough to dwarf the event resolution (about 2 ms, at
most 200 calls), so per-call host overhead counts as users see it; warm-up
first (compilation included there); the implementations and the copy are
interleaved within every repetition, so clock and thermal drift hit them
alike; the reported numbers are medians over ``repeats``.

Roofline: a device-to-device copy (``torch.Tensor.copy_``, i.e.
``cudaMemcpyAsync``; or Numba's ``copy_to_device``) of half the step's
traffic, so that it moves the same bytes (read + write), timed in the same
run.  ``vs_copy_roofline`` is our GB/s over that copy's GB/s: 1.0 means the
step runs as fast as the GPU can merely copy its bytes.

Row keys: ``case, n, dtype, ms`` (ours, per call), ``params_per_s``,
``gb_s`` (bytes the step must move per call / time), ``vs_torch_fused`` and
``vs_torch_foreach`` (torch's time / ours: above 1 means we are faster;
None where torch lacks the path or has no CUDA), ``vs_copy_roofline``.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

__all__ = ["measure", "CASES"]

CASES = ("adam", "adamw", "adam_amsgrad", "adamax", "adam_multi_tensor")

_BATCH_MS = 2.0          # aim for timed batches at least this long
_MAX_BATCH = 200
_WARMUP = 3
_STEP = 10               # our step number (only the bias corrections depend on it)


def measure(sizes, repeats=20, dtype="float32") -> list[dict]:
    """Time every case in :data:`CASES` for each ``n`` in ``sizes``; one dict per (case, n).

    Raises ``RuntimeError`` without a CUDA GPU (or under Numba's simulator,
    whose timings mean nothing), ``ValueError`` for a dtype other than
    float32/float64 or a size < 1.
    """
    from adamref import cuda as acuda

    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    sizes = [int(n) for n in sizes]
    if any(n < 1 for n in sizes):
        raise ValueError(f"sizes must be >= 1, got {sizes}")
    repeats = max(1, int(repeats))
    acuda._require_device()
    if acuda._SIMULATOR:
        raise RuntimeError("numba.cuda is the CUDA simulator (NUMBA_ENABLE_CUDASIM=1): "
                           "its timings mean nothing; run without it on a GPU")
    torch = _torch_with_cuda()
    rows = []
    for n in sizes:
        rows.extend(_measure_size(acuda, torch, n, repeats, dtype))
    return rows


def _torch_with_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


# ---------------------------------------------------------------------------
# timing

class _Clock:
    """CUDA events on the stream the timed work runs on."""

    def __init__(self, acuda, torch):
        self.torch = torch
        self.cuda = acuda.cuda

    def _event(self):
        if self.torch is not None:
            return self.torch.cuda.Event(enable_timing=True)
        return self.cuda.event(timing=True)

    def _record(self, ev):
        if self.torch is not None:
            ev.record()                       # torch's current stream
        else:
            ev.record(stream=0)               # Numba's default stream

    def _elapsed(self, a, b):
        if self.torch is not None:
            return a.elapsed_time(b)
        return self.cuda.event_elapsed_time(a, b)

    def time(self, fn, calls):
        """Milliseconds per call of ``fn`` over a batch of ``calls`` back-to-back calls."""
        start, end = self._event(), self._event()
        self._record(start)
        for _ in range(calls):
            fn()
        self._record(end)
        end.synchronize()
        return self._elapsed(start, end) / calls

    def calibrate(self, fn):
        """Warm ``fn`` up, then choose its batch length."""
        for _ in range(_WARMUP):
            fn()
        one = min(self.time(fn, 1) for _ in range(3))
        return int(min(_MAX_BATCH, max(1, math.ceil(_BATCH_MS / max(one, 1e-4)))))


# ---------------------------------------------------------------------------
# the cases of one size

def _split(n, max_parts=64):
    """Uneven sizes summing to n, like the layers of a model (at most max_parts)."""
    parts = max(1, min(max_parts, n // 4096))
    weights = [(i % 7) + 1 for i in range(parts)]
    total = sum(weights)
    sizes = [n * w // total for w in weights]
    sizes[-1] += n - sum(sizes)
    return [s for s in sizes if s > 0]


def _measure_size(acuda, torch, n, repeats, dtype):
    itemsize = dtype.itemsize
    rng = np.random.default_rng(n)
    p0 = rng.standard_normal(n).astype(dtype)
    g0 = (0.1 * rng.standard_normal(n)).astype(dtype)
    lr = 1e-3

    # ours: one set of buffers serves every case (only the timing matters)
    if torch is not None:
        tdt = getattr(torch, dtype.name)
        p, g = torch.from_numpy(p0).cuda(), torch.from_numpy(g0).cuda()
        m, v, vm = (torch.zeros(n, device="cuda", dtype=tdt) for _ in range(3))
    else:
        cuda = acuda.cuda
        p, g = cuda.to_device(p0), cuda.to_device(g0)
        m, v, vm = (cuda.to_device(np.zeros(n, dtype)) for _ in range(3))
    bounds = [int(b) for b in np.cumsum([0] + _split(n))]
    pieces = [[x[a:b] for a, b in zip(bounds[:-1], bounds[1:])] for x in (p, g, m, v)]

    ours = {
        "adam": lambda: acuda.adam_step(p, g, m, v, _STEP, lr=lr),
        "adamw": lambda: acuda.adam_step(p, g, m, v, _STEP, lr=lr, weight_decay=0.01,
                                         decoupled=True),
        "adam_amsgrad": lambda: acuda.adam_step(p, g, m, v, _STEP, lr=lr, amsgrad=True,
                                                v_max=vm),
        "adamax": lambda: acuda.adamax_step(p, g, m, v, _STEP, lr=lr),
        "adam_multi_tensor": lambda: acuda.adam_step_multi_tensor(*pieces, _STEP, lr=lr),
    }
    traffic = {case: (9 if case == "adam_amsgrad" else 7) * itemsize * n for case in CASES}

    fused, foreach = {}, {}
    if torch is not None:
        fused, foreach = _torch_steps(torch, p0, g0, bounds, lr)

    copies = {}
    for nbytes in sorted(set(traffic.values())):
        copies[nbytes] = _copy(acuda, torch, nbytes // 2)

    clock = _Clock(acuda, torch)
    runs = {}                                     # (kind, key) -> (fn, batch)
    for case in CASES:
        runs[("ours", case)] = ours[case]
        if case in fused:
            runs[("fused", case)] = fused[case]
        if case in foreach:
            runs[("foreach", case)] = foreach[case]
    for nbytes, fn in copies.items():
        runs[("copy", nbytes)] = fn
    batches = {key: clock.calibrate(fn) for key, fn in runs.items()}
    samples = {key: [] for key in runs}
    for _ in range(repeats):                      # interleaved repetitions
        for key, fn in runs.items():
            samples[key].append(clock.time(fn, batches[key]))
    ms = {key: statistics.median(s) for key, s in samples.items()}

    rows = []
    for case in CASES:
        ours_ms = ms[("ours", case)]
        nbytes = traffic[case]
        copy_ms = ms[("copy", nbytes)]            # the copy moves nbytes too (read + write)
        gb_s = nbytes / (ours_ms * 1e-3) / 1e9
        rows.append({
            "case": case,
            "n": n,
            "dtype": dtype.name,
            "ms": ours_ms,
            "params_per_s": n / (ours_ms * 1e-3),
            "gb_s": gb_s,
            "vs_torch_fused": (ms[("fused", case)] / ours_ms) if ("fused", case) in ms
            else None,
            "vs_copy_roofline": gb_s / (nbytes / (copy_ms * 1e-3) / 1e9),
            "vs_torch_foreach": (ms[("foreach", case)] / ours_ms) if ("foreach", case) in ms
            else None,
        })
    return rows


def _torch_steps(torch, p0, g0, bounds, lr):
    """``optimizer.step`` callables for torch's fused and foreach paths, per case."""
    def one_param():
        q = torch.nn.Parameter(torch.from_numpy(p0).cuda())
        q.grad = torch.from_numpy(g0).cuda()
        return [q]

    def many_params():
        flat_p = torch.from_numpy(p0).cuda()
        flat_g = torch.from_numpy(g0).cuda()
        qs = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            q = torch.nn.Parameter(flat_p[a:b].clone())
            q.grad = flat_g[a:b].clone()
            qs.append(q)
        return qs

    single, listed = one_param(), many_params()
    kinds = {
        "adam": (torch.optim.Adam, single, {}),
        "adamw": (torch.optim.AdamW, single, {"weight_decay": 0.01}),
        "adam_amsgrad": (torch.optim.Adam, single, {"amsgrad": True}),
        "adam_multi_tensor": (torch.optim.Adam, listed, {}),
    }
    fused, foreach = {}, {}
    for case, (cls, params, kw) in kinds.items():
        fused[case] = cls(params, lr=lr, fused=True, **kw).step
        foreach[case] = cls(params, lr=lr, foreach=True, **kw).step
    foreach["adamax"] = torch.optim.Adamax(single, lr=lr, foreach=True).step
    return fused, foreach


def _copy(acuda, torch, nbytes):
    """A device-to-device copy of ``nbytes`` (it reads and writes them: 2*nbytes moved)."""
    count = max(1, nbytes // 4)
    if torch is not None:
        src = torch.ones(count, device="cuda", dtype=torch.float32)
        dst = torch.empty_like(src)
        return lambda: dst.copy_(src)
    cuda = acuda.cuda
    src = cuda.to_device(np.ones(count, np.float32))
    dst = cuda.device_array_like(src)
    return lambda: dst.copy_to_device(src)


if __name__ == "__main__":     # python -m adamref._bench_cuda [n ...]
    import sys

    for row in measure([int(float(a)) for a in sys.argv[1:]] or [10**6, 10**7], 10):
        print({k: (f"{x:.4g}" if isinstance(x, float) else x) for k, x in row.items()})
