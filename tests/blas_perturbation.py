"""A stand-in for another BLAS: torch's matrix products, moved by at most 1 ulp.

On ARM (an Apple laptop, say) torch's matrix products run on other BLAS
kernels than MKL's here (OpenBLAS, Accelerate), which sum in another order: a
product's last bit differs on some elements, and a network trained for a
thousand steps drifts to other last digits.  We cannot run those kernels here,
but we can imitate what they do to a stored output.  :func:`install` wraps
torch's BLAS-backed functions so that each result moves up by one ulp
(``torch.nextafter`` towards +inf) on every element whose lowest mantissa bit
is set, about half of them.  The change is a function of the result's bits
alone, so two identical computations still agree bit for bit (a batched
training still equals the separate ones, two torch paths that agree still
agree), while every trajectory that runs through a matrix product differs from
the unperturbed one.  Autograd still works: the wrapper returns
``y + (perturbed(y) - y)`` with the difference detached, which equals the
perturbed value exactly (the difference of neighbouring floats is exact) and
passes the gradient through unchanged.  The backward pass's own products
(inside ATen's autograd formulas) are not perturbed; the forward ones suffice
to move every trajectory.

Not covered: NumPy's matmul (``@`` on arrays) cannot be patched from Python,
since ``ndarray.__matmul__`` is a C slot.  NumPy's wheels ship OpenBLAS on
both x86 and ARM, but its kernels (and so its summation order) differ per
CPU; the one-thread rerun in ``tests/test_portability.py`` changes that order
too, which covers it in part.  Neither does it reach Numba's kernels or
reductions (``sum``, ``mean``), whose order the one-thread rerun changes.

Use: :func:`sitecustomize_dir` writes a ``sitecustomize.py`` that imports this
file and calls :func:`install`; put its folder first on ``PYTHONPATH`` and
every Python started with that environment (pytest, nbval's kernels) runs
perturbed.  ``ADAMREF_PERTURB_BLAS=0`` in that environment turns it off.  For
probing by hand, ``ADAMREF_PERTURB_BIT=k`` picks the elements by mantissa bit
``k`` instead of bit 0, and ``ADAMREF_PERTURB_DOWN=1`` moves them towards -inf:
each choice is another imitation BLAS, as good as the default one.

One setting is one draw.  A printed number that sits close to a rounding edge
or a tolerance may survive the default and move under another setting (chapter
18's ties did, under bit 2), so a chapter fixed for this should be rerun under
a few settings by hand; the test suite runs the default only.  The
``sitecustomize.py`` imports torch when each child Python starts (about a
second each), and it would shadow another ``sitecustomize`` on the path (this
environment has none).
"""

import functools
import os
import tempfile
import threading
from pathlib import Path

#: (module path, attribute) of every function wrapped.
TARGETS = [
    ("torch", "matmul"), ("torch", "mm"), ("torch", "bmm"), ("torch", "mv"),
    ("torch", "addmm"), ("torch", "baddbmm"), ("torch", "addbmm"), ("torch", "addmv"),
    ("torch", "einsum"), ("torch", "tensordot"), ("torch", "inner"),
    ("torch.nn.functional", "linear"), ("torch.nn.functional", "bilinear"),
    ("torch.nn.functional", "conv1d"), ("torch.nn.functional", "conv2d"),
    ("torch.nn.functional", "conv3d"),
    ("torch.nn.functional", "conv_transpose1d"), ("torch.nn.functional", "conv_transpose2d"),
    ("torch.Tensor", "__matmul__"), ("torch.Tensor", "__rmatmul__"),
    ("torch.Tensor", "matmul"), ("torch.Tensor", "mm"), ("torch.Tensor", "bmm"),
    ("torch.Tensor", "mv"), ("torch.Tensor", "addmm"), ("torch.Tensor", "baddbmm"),
]

_inside = threading.local()
#: Which mantissa bit selects the elements moved, and where they move.
BIT = int(os.environ.get("ADAMREF_PERTURB_BIT", "0"))
TOWARDS = float("-inf") if os.environ.get("ADAMREF_PERTURB_DOWN", "0") == "1" else float("inf")


def perturbed(y):
    """``y`` moved by one ulp where mantissa bit :data:`BIT` is set (float32/64 only)."""
    import torch

    if not isinstance(y, torch.Tensor) or y.dtype not in (torch.float32, torch.float64):
        return y
    x = y.detach()
    ints = torch.int32 if x.dtype == torch.float32 else torch.int64
    chosen = ((x.contiguous().view(ints) >> BIT) & 1).bool().view(x.shape)
    moved = torch.where(chosen, torch.nextafter(x, torch.full_like(x, TOWARDS)), x)
    if not y.requires_grad:
        return moved
    return y + (moved - x)


def _wrap(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        # A wrapped function that calls another (Tensor.__rmatmul__ calls
        # torch.matmul) is moved once, not twice; out= results are left alone.
        if getattr(_inside, "depth", 0) or "out" in kwargs:
            return function(*args, **kwargs)
        _inside.depth = 1
        try:
            result = function(*args, **kwargs)
        finally:
            _inside.depth = 0
        return perturbed(result)
    wrapper.__wrapped_by_blas_perturbation__ = True
    return wrapper


def install():
    """Wrap every function in :data:`TARGETS` (once); return the names wrapped."""
    import importlib

    import torch

    done = []
    for module_name, name in TARGETS:
        if module_name == "torch.Tensor":
            owner = torch.Tensor
        else:
            owner = importlib.import_module(module_name)
        function = getattr(owner, name, None)
        if function is None or getattr(function, "__wrapped_by_blas_perturbation__", False):
            continue
        setattr(owner, name, _wrap(function))
        done.append(f"{module_name}.{name}")
    return done


SITECUSTOMIZE = '''\
# Written by tests/blas_perturbation.py: every Python started with this folder
# first on PYTHONPATH runs torch's matrix products moved by at most 1 ulp.
import os
if os.environ.get("ADAMREF_PERTURB_BLAS", "1") != "0":
    import importlib.util
    _spec = importlib.util.spec_from_file_location("_adamref_blas_perturbation", {path!r})
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    _module.install()
'''


def sitecustomize_dir(folder=None):
    """Write ``sitecustomize.py`` into ``folder`` (a new temp dir if None); return it."""
    folder = Path(folder or tempfile.mkdtemp(prefix="adamref-perturb-"))
    (folder / "sitecustomize.py").write_text(
        SITECUSTOMIZE.format(path=str(Path(__file__).resolve())))
    return folder


def environment(folder=None):
    """The environment changes that run a child Python perturbed."""
    folder = sitecustomize_dir(folder)
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}
