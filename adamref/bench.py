"""Throughput of :mod:`adamref.cpu` against PyTorch, NumPy and the memory roofline.

Run ``python -m adamref.bench`` (``--help`` for the options).  For each size
``n`` it times one optimizer step of

==================  ===========================================================
``adamref``         :func:`adamref.cpu.adam_step`
``torch_fused``     ``torch.optim.Adam(fused=True).step()``, the peer to beat
``torch_forloop``   ``torch.optim.Adam(foreach=False).step()``, torch's default on CPU
``roofline``        a Numba ``prange`` kernel that moves the same bytes as a step
                    (reads ``p, g, m, v``, writes ``p, m, v``; ``v_max`` too with
                    ``--amsgrad``) with trivial arithmetic: the memory-bound limit
``reference``       :func:`adamref.reference.adam_step` (NumPy), skipped above
                    ``--reference-max`` parameters
==================  ===========================================================

and reports ``adamref``'s median time per step, parameters per second,
effective bandwidth (28 bytes per parameter in float32: ``p, g, m, v`` read,
``p, m, v`` written; 36 with ``--amsgrad``; twice that in float64), and
``vs_X = time(X) / time(adamref)`` (the median over repetitions of that
ratio within each repetition): above 1 means ``adamref`` is faster than
``X``; ``vs_roofline`` is the fraction of the roofline's speed it reaches.
``ceiling_vs_torch_fused`` (the median of ``time(torch_fused) /
time(roofline)``) is the ``vs_torch_fused`` a step at the roofline's speed
would have: the most any implementation moving these bytes can gain over
torch's fused step on this machine, in this run.

The ``200-tensors`` cases step 200 tensors of mixed sizes: PyTorch gets them
as a parameter list; ``adamref`` steps one flat buffer of which the
parameters are views (``flat``), or calls ``adam_step`` once per view
(``per-tensor``).

``--models`` times real models' parameter lists instead of the sizes (the
shapes of torchvision's ``mobilenet_v2`` and ``resnet50`` and of Hugging
Face's ``GPT2Model``, listed in code here by :func:`model_shapes`):
``adamref`` is then ``adamref.optim.Adam(...).step()`` over the list, against
``torch.optim.Adam(fused=True).step()`` over the same list and the roofline
kernel over one flat buffer of the same size (the same bytes).

Timing: every implementation gets its own arrays (``g`` is shared, read
only).  Repetitions are interleaved round-robin, the starting implementation
rotating, and each sample is one untimed call followed by enough timed calls
to last ``--min-time`` seconds; the table gives the median sample and its min
and max.  ``--device cuda`` hands the sizes to ``adamref._bench_cuda``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np
from numba import njit, prange

DEFAULT_SIZES = (10_000, 100_000, 1_000_000, 10_000_000, 50_000_000)
QUICK_SIZES = (10_000, 100_000)
REFERENCE_MAX = 10_000_000
MANY_TENSORS = 200
MODELS = ("mobilenet_v2", "resnet50", "gpt2")


# ---------------------------------------------------------------- roofline kernels
@njit(parallel=True, cache=True)
def _roofline(p, g, m, v):
    """Same memory traffic as an Adam step (read p, g, m, v; write p, m, v), no math."""
    for i in prange(p.size):
        g_i = g[i]
        m[i] = m[i] + g_i
        v[i] = v[i] + g_i
        p[i] = p[i] + g_i


@njit(parallel=True, cache=True)
def _roofline_amsgrad(p, g, m, v, v_max):
    """Same memory traffic as an AMSGrad step (``v_max`` read and written too)."""
    for i in prange(p.size):
        g_i = g[i]
        m[i] = m[i] + g_i
        v[i] = v[i] + g_i
        v_max[i] = v_max[i] + g_i
        p[i] = p[i] + g_i


# ---------------------------------------------------------------- implementations
class _Counter:
    """The step number ``t`` an implementation is at."""

    def __init__(self):
        self.t = 0

    def __call__(self) -> int:
        self.t += 1
        return self.t


def _state(p0, amsgrad):
    """Own copies of ``p``, zero ``m``, ``v`` (and ``v_max``)."""
    arrays = [p0.copy(), np.zeros_like(p0), np.zeros_like(p0)]
    return arrays + ([np.zeros_like(p0)] if amsgrad else [])


def _numpy_impl(step, p0, g, amsgrad):
    """A callable doing one step of ``adam_step``-style ``step`` on its own arrays."""
    p, m, v, *rest = _state(p0, amsgrad)
    kw = dict(amsgrad=True, v_max=rest[0]) if amsgrad else {}
    t = _Counter()
    return lambda: step(p, g, m, v, t(), **kw)


def _pieces(a, sizes):
    """Consecutive views of ``a`` with lengths ``sizes`` (per-parameter views of a flat buffer)."""
    bounds = np.cumsum([0, *sizes])
    return [a[i:j] for i, j in zip(bounds[:-1], bounds[1:])]


def _per_tensor_impl(step, p0, g, sizes, amsgrad):
    """``adam_step`` called once per parameter view of one flat buffer."""
    flat = _state(p0, amsgrad)
    views = list(zip(*(_pieces(a, sizes) for a in flat + [g])))
    t = _Counter()

    def run():
        s = t()
        for p, m, v, *rest in views:
            if amsgrad:
                step(p, rest[1], m, v, s, amsgrad=True, v_max=rest[0])
            else:
                step(p, rest[0], m, v, s)
    return run


def _roofline_impl(p0, g, amsgrad):
    """The same-traffic roofline kernel on its own arrays."""
    p, m, v, *rest = _state(p0, amsgrad)
    if amsgrad:
        return lambda: _roofline_amsgrad(p, g, m, v, rest[0])
    return lambda: _roofline(p, g, m, v)


def _torch_impl(torch, p0s, gs, amsgrad, optimizer=None, **kind):
    """``optimizer(...).step()`` over a list of parameters (own copies); by default
    ``torch.optim.Adam``."""
    params = [torch.tensor(p0).requires_grad_() for p0 in p0s]
    for p, g in zip(params, gs):
        p.grad = torch.from_numpy(g)
    opt = (optimizer or torch.optim.Adam)(params, amsgrad=amsgrad, **kind)
    return opt.step


def _implementations(torch, p0, g, amsgrad, sizes=None, with_reference=True):
    """The callables to time for one case; ``sizes`` splits it into many tensors."""
    from adamref import cpu, reference

    impls = {"adamref": _numpy_impl(cpu.adam_step, p0, g, amsgrad)}
    if sizes is not None:
        impls["adamref_per_tensor"] = _per_tensor_impl(cpu.adam_step, p0, g, sizes, amsgrad)
        p0s, gs = _pieces(p0, sizes), _pieces(g, sizes)
    else:
        p0s, gs = [p0], [g]
    impls["torch_fused"] = _torch_impl(torch, p0s, gs, amsgrad, fused=True)
    impls["torch_forloop"] = _torch_impl(torch, p0s, gs, amsgrad, foreach=False)
    impls["roofline"] = _roofline_impl(p0, g, amsgrad)
    if with_reference:
        impls["reference"] = _numpy_impl(reference.adam_step, p0, g, amsgrad)
    return impls


def _model_implementations(torch, p0, g, amsgrad, sizes):
    """``adamref.optim.Adam`` and torch fused over one model's list; the flat roofline."""
    from adamref import optim

    p0s, gs = _pieces(p0, sizes), _pieces(g, sizes)
    return {"adamref": _torch_impl(torch, p0s, gs, amsgrad, optimizer=optim.Adam),
            "torch_fused": _torch_impl(torch, p0s, gs, amsgrad, fused=True),
            "roofline": _roofline_impl(p0, g, amsgrad)}


# ---------------------------------------------------------------- model shapes
def _mobilenet_v2() -> list[tuple]:
    """torchvision ``mobilenet_v2()``: stem, 17 inverted residual blocks, head."""
    shapes = [(32, 3, 3, 3), (32,), (32,)]                 # conv, batch-norm weight and bias
    c_in = 32
    for t, c, n in ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3),
                    (6, 320, 1)):
        for _ in range(n):
            hidden = c_in * t
            if t != 1:
                shapes += [(hidden, c_in, 1, 1), (hidden,), (hidden,)]      # expand
            shapes += [(hidden, 1, 3, 3), (hidden,), (hidden,),             # depthwise
                       (c, hidden, 1, 1), (c,), (c,)]                       # project
            c_in = c
    return shapes + [(1280, 320, 1, 1), (1280,), (1280,), (1000, 1280), (1000,)]


def _resnet50() -> list[tuple]:
    """torchvision ``resnet50()``: stem, 16 bottleneck blocks (4 with a downsample), fc."""
    shapes = [(64, 3, 7, 7), (64,), (64,)]
    c_in = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            shapes += [(width, c_in, 1, 1), (width,), (width,),
                       (width, width, 3, 3), (width,), (width,),
                       (4 * width, width, 1, 1), (4 * width,), (4 * width,)]
            if b == 0:
                shapes += [(4 * width, c_in, 1, 1), (4 * width,), (4 * width,)]
            c_in = 4 * width
    return shapes + [(1000, 2048), (1000,)]


def _gpt2() -> list[tuple]:
    """Hugging Face ``GPT2Model`` (GPT-2 small): embeddings, 12 blocks, final layer norm."""
    d = 768
    block = [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,),          # ln_1, attention
             (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]      # ln_2, MLP
    return [(50257, d), (1024, d)] + block * 12 + [(d,), (d,)]


_MODEL_SHAPES = {"mobilenet_v2": _mobilenet_v2, "resnet50": _resnet50, "gpt2": _gpt2}


def model_shapes(name: str) -> list[tuple]:
    """The parameter shapes of ``name`` (one of :data:`MODELS`), in the model's order.

    MobileNetV2: 158 tensors, 3,504,872 parameters; ResNet-50: 161,
    25,557,032; GPT-2 small: 148, 124,439,808 (the output layer shares the
    token embedding).
    """
    return _MODEL_SHAPES[name]()


# ---------------------------------------------------------------- timing
def _inner_count(f, min_time: float) -> int:
    """How many consecutive calls of ``f`` last about ``min_time`` seconds."""
    t0 = time.perf_counter()
    f()
    once = time.perf_counter() - t0
    return max(1, min(100_000, math.ceil(min_time / max(once, 1e-7))))


def _measure(impls: dict, repeats: int, min_time: float) -> dict:
    """Interleaved samples (ms per step) for each implementation."""
    for f in impls.values():                   # compile, allocate torch state
        f()
    inner = {name: _inner_count(f, min_time) for name, f in impls.items()}
    samples = {name: [] for name in impls}
    names = list(impls)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            f, k = impls[name], inner[name]
            f()                                # untimed: other runtimes' threads settle
            t0 = time.perf_counter()
            for _ in range(k):
                f()
            samples[name].append((time.perf_counter() - t0) / k * 1e3)
    return samples


def _row(case, n, dtype, amsgrad, samples) -> dict:
    """One table row: ``adamref``'s figures and its ratio to every other implementation."""
    ours = samples["adamref"]
    ms = statistics.median(ours)
    bytes_per_param = (9 if amsgrad else 7) * dtype.itemsize
    row = {"case": case, "n": n, "dtype": dtype.name, "ms": ms, "ms_min": min(ours),
           "ms_max": max(ours), "params_per_s": n / (ms * 1e-3),
           "gb_s": n * bytes_per_param / (ms * 1e-3) / 1e9}
    for name, s in samples.items():
        if name != "adamref":
            # paired: each repetition's X over the same repetition's adamref, then the median,
            # so that load that comes and goes on a shared machine hits both sides alike
            row[f"vs_{name}"] = statistics.median(x / y for x, y in zip(s, ours)) if s else None
    if samples.get("torch_fused") and samples.get("roofline"):
        # what vs_torch_fused would be for a step at the roofline's speed: the ceiling
        row["ceiling_vs_torch_fused"] = statistics.median(
            x / y for x, y in zip(samples["torch_fused"], samples["roofline"]))
    row["timings_ms"] = {name: {"median": statistics.median(s), "min": min(s), "max": max(s)}
                         for name, s in samples.items() if s}
    return row


def _many_sizes(quick: bool) -> list[int]:
    """200 tensor sizes spread log-uniformly (fixed seed): 100..100k, or 10..3k when quick."""
    rng = np.random.default_rng(0)
    lo, hi = (1, 3.5) if quick else (2, 5)
    return [int(10 ** x) for x in rng.uniform(lo, hi, MANY_TENSORS)]


def run_models(models, dtype, repeats, min_time, amsgrad) -> list[dict]:
    """One row per model: ``adamref.optim.Adam`` vs torch fused over its parameter list."""
    import torch

    rows = []
    rng = np.random.default_rng(0)
    for name in models:
        sizes = [math.prod(s) for s in model_shapes(name)]
        n = sum(sizes)
        p0 = rng.standard_normal(n, dtype=np.float32).astype(dtype)
        g = rng.standard_normal(n, dtype=np.float32).astype(dtype)
        samples = _measure(_model_implementations(torch, p0, g, amsgrad, sizes), repeats,
                           min_time)
        rows.append(_row(f"{name} ({len(sizes)} tensors)", n, dtype, amsgrad, samples))
        del samples
    return rows


def run_cpu(sizes, dtype, repeats, min_time, amsgrad, reference_max, quick) -> list[dict]:
    """Rows for the single-tensor sizes and the 200-tensors case."""
    import torch

    rows = []
    rng = np.random.default_rng(0)
    cases = [("1 tensor", n, None) for n in sizes]
    many = _many_sizes(quick)
    cases.append((f"{MANY_TENSORS}-tensors", sum(many), many))
    for case, n, split in cases:
        p0 = rng.standard_normal(n, dtype=np.float32).astype(dtype)
        g = rng.standard_normal(n, dtype=np.float32).astype(dtype)
        impls = _implementations(torch, p0, g, amsgrad, split, n <= reference_max)
        samples = _measure(impls, repeats, min_time)
        samples.setdefault("reference", [])
        if split is None:
            rows.append(_row(case, n, dtype, amsgrad, samples))
            continue
        per_tensor = samples.pop("adamref_per_tensor")
        rows.append(_row(f"{case} flat", n, dtype, amsgrad, samples))
        rows.append(_row(f"{case} per-tensor", n, dtype, amsgrad,
                         dict(samples, adamref=per_tensor)))
    return rows


# ---------------------------------------------------------------- report
def machine_info() -> dict:
    import numba
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpu": _cpu_model(), "cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "numba": numba.__version__, "numba_threads": numba.get_num_threads(),
            "numpy": np.__version__,
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    try:
        import torch
        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                    torch_cpu_capability=torch.backends.cpu.get_cpu_capability())
    except ImportError:
        info["torch"] = None
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _fmt(key, x) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if key.startswith("vs_") or "_vs_" in key:
        return f"{x:.2f}"
    if isinstance(x, int):
        return f"{x:_}"
    if key == "params_per_s":
        return f"{x:.3g}"
    return f"{x:.4g}"


def format_table(rows: list[dict]) -> str:
    """Rows as an aligned text table; columns are the scalar keys present, in first-seen order."""
    keys = []
    for row in rows:
        keys += [k for k, x in row.items() if k not in keys and not isinstance(x, (dict, list))]
    cells = [keys] + [[_fmt(k, row.get(k)) for k in keys] for row in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(keys))]
    lines = ["  ".join(c.rjust(w) if j else c.ljust(w)
                       for j, (c, w) in enumerate(zip(line, widths)))
             for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _header(info: dict, args) -> str:
    return "\n".join([
        f"adamref.bench  device={args.device}  dtype={args.dtype}  amsgrad={args.amsgrad}  "
        f"repeats={args.repeats}  min_time={args.min_time}s",
        f"cpu: {info['cpu']}  cores={info['cores']} (usable {info['usable_cores']})  "
        f"load average={tuple(round(x, 2) for x in info['load_average'] or ())}",
        f"threads: numba={info['numba_threads']}  torch={info.get('torch_threads')}  "
        f"torch {info.get('torch')} ({info.get('torch_cpu_capability')})  "
        f"numba {info['numba']}  numpy {info['numpy']}",
        "vs_X = time(X) / time(adamref): > 1 means adamref is faster; vs_roofline is the "
        "fraction of the roofline reached;",
        "ceiling_vs_torch_fused = time(torch_fused) / time(roofline): the vs_torch_fused "
        "of a step at the roofline",
    ])


# ---------------------------------------------------------------- command line
def _models(text: str) -> list[str]:
    names = list(MODELS) if text == "all" else [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"models are 'all' or some of {','.join(MODELS)}: "
                                         f"{text!r}")
    return names


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(float(s)) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must be numbers like 1e5,1e6: {text!r}")
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m adamref.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=_sizes, help="comma-separated parameter counts "
                    f"(default {','.join(f'{n:.0e}' for n in DEFAULT_SIZES)})")
    ap.add_argument("--models", type=_models, metavar="all|" + ",".join(MODELS),
                    help="time adamref.optim.Adam against torch fused on these models' "
                    "parameter lists (real shapes) instead of the sizes")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--threads", type=int, help="threads for numba and torch (default: theirs)")
    ap.add_argument("--repeats", type=int, help="interleaved samples per implementation "
                    "(default 7, --quick 3)")
    ap.add_argument("--min-time", type=float,
                    help="seconds per sample (default 0.02, --quick 0.002)")
    ap.add_argument("--amsgrad", action="store_true", help="time AMSGrad steps (36 bytes/param)")
    ap.add_argument("--reference-max", type=int, default=REFERENCE_MAX,
                    help=f"skip the NumPy reference above this size (default {REFERENCE_MAX:.0e})")
    ap.add_argument("--quick", action="store_true", help="small sizes, few repeats: seconds")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cuda: time adamref.cuda on the GPU (adamref._bench_cuda)")
    args = ap.parse_args(argv)
    import numba
    if args.threads is not None and not 1 <= args.threads <= numba.config.NUMBA_NUM_THREADS:
        ap.error(f"--threads must be between 1 and {numba.config.NUMBA_NUM_THREADS} "
                 f"(NUMBA_NUM_THREADS)")
    if args.repeats is not None and args.repeats < 1:
        ap.error("--repeats must be >= 1")
    if args.min_time is not None and args.min_time < 0:
        ap.error("--min-time must be >= 0")
    args.sizes = args.sizes or list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.min_time = args.min_time if args.min_time is not None else (0.002 if args.quick else 0.02)
    return args


def _set_threads(n: int | None) -> None:
    if n is None:
        return
    import numba
    numba.set_num_threads(n)
    try:
        import torch
        torch.set_num_threads(n)
    except ImportError:
        pass


def _cuda_rows(args) -> list[dict]:
    """Rows from ``adamref._bench_cuda.measure``; ``SystemExit`` when it cannot run."""
    try:
        from adamref import _bench_cuda
    except ImportError as e:
        raise SystemExit(f"adamref.bench: --device cuda needs adamref._bench_cuda, "
                         f"which could not be imported ({e})")
    try:
        from numba import cuda
        available = cuda.is_available()
    except ImportError:
        available = False
    if not available:
        raise SystemExit("adamref.bench: --device cuda, but no CUDA GPU is available "
                         "(numba.cuda.is_available() is False)")
    try:
        return _bench_cuda.measure(args.sizes, args.repeats, np.dtype(args.dtype))
    except RuntimeError as e:                   # e.g. numba's CUDA simulator, no driver
        raise SystemExit(f"adamref.bench: --device cuda cannot run here: {e}")


def main(argv=None) -> int:
    args = parse_args(argv)
    _set_threads(args.threads)
    info = machine_info()
    if args.device == "cuda":
        rows = _cuda_rows(args)
    elif args.models:
        rows = run_models(args.models, np.dtype(args.dtype), args.repeats, args.min_time,
                          args.amsgrad)
    else:
        rows = run_cpu(args.sizes, np.dtype(args.dtype), args.repeats, args.min_time,
                       args.amsgrad, args.reference_max, args.quick)
    if args.json:
        config = {k: getattr(args, k) for k in ("device", "dtype", "sizes", "models", "repeats",
                                                "min_time", "amsgrad", "reference_max", "quick",
                                                "threads")}
        json.dump({"machine": info, "config": config, "rows": rows}, sys.stdout, indent=1)
        print()
    else:
        print(_header(info, args))
        print()
        print(format_table(rows))
        if any(r.get("vs_reference", 0) is None for r in rows):
            print(f"\nvs_reference '-': the NumPy reference was skipped above "
                  f"{args.reference_max:.0e} parameters (--reference-max)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
