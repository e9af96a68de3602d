"""Adam and Adamax as fused Numba CUDA kernels, for arrays that live on the GPU.

Same API and semantics as :mod:`adamref.reference` (``torch.optim.Adam``,
``AdamW`` and ``Adamax`` at ``state["step"] == t``), plus a ``stream=``
keyword, plus :func:`adam_step_multi_tensor`, which updates a whole list of
tensors in one kernel launch::

    adam_step(p, g, m, v, t, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, decoupled=False, amsgrad=False, v_max=None,
              maximize=False, stream=None)
    adamax_step(p, g, m, u, t, *, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, maximize=False, stream=None)
    adam_step_multi_tensor(params, grads, ms, vs, t, *, ..., v_maxs=None,
                           stream=None)

Arrays
    Any object with ``__cuda_array_interface__``: torch CUDA tensors, CuPy
    arrays, Numba device arrays.  They are used in place, never copied: the
    kernel gets a 1-D view of the caller's buffer (``numba.cuda``'s
    ``from_cuda_array_interface`` with ``sync=False``, the zero-copy import
    behind ``as_cuda_array``).  float32 or float64, C-contiguous, one shape
    and one dtype per step, as :mod:`adamref._checks` demands.

Torch tensors
    Parameters (``requires_grad=True``) are accepted and updated in place, as
    ``torch.optim`` does under ``no_grad``; afterwards the version counters
    of the tensors written are bumped (``torch.autograd.graph.increment_version``),
    so autograd still notices the in-place change.

Streams
    ``stream=None`` runs on torch's current stream when any input is a torch
    tensor (``torch.cuda.current_stream(device)``, wrapped with
    ``numba.cuda.external_stream``; torch is imported only then, never by
    this module), otherwise on Numba's default stream.  ``stream=`` also
    takes a Numba stream, a ``cuda.core`` stream, an ``int`` handle, a torch
    stream (``.cuda_stream``), a CuPy stream (``.ptr``) or anything with
    ``__cuda_stream__``.  The call does not synchronise: like any CUDA op it
    is ordered on that stream, so work that produced ``g`` must be on it (or
    waited for) -- the rule torch's own optimizers follow.

Errors, in this order
    1. bad input -- ``TypeError``/``ValueError`` from :mod:`adamref._checks`
       (arrays, dtypes, shapes, hyperparameters, ``t``), and here for the
       ``stream`` type and torch tensors spread over several devices --
       raised before anything is touched;
    2. no usable GPU -- ``RuntimeError("no CUDA device was found ...")``.
    Validation reads only the ``__cuda_array_interface__`` dictionaries, so
    it needs no GPU and runs first: a wrong call is reported as wrong on any
    machine.  ``import adamref.cuda`` itself never fails; :func:`is_available`
    says whether the kernels can run.  Under Numba's CUDA simulator
    (``NUMBA_ENABLE_CUDASIM=1`` before numba is imported) they run on the CPU,
    slowly, and simulator device arrays (``numba.cuda.to_device``) are
    accepted as well.

Expression order: torch's CUDA fused kernel, not its CPU for-loop
    The kernel follows ``aten/src/ATen/native/cuda/fused_adam_utils.cuh`` as
    shipped with torch 2.13 (the header is in the wheel), which differs from
    the CPU path described in the reference:

    * everything is computed in the tensor's own precision ("opmath"; float
      for float32): the hyperparameters are first rounded to that type, and
      so are the bias corrections, ``1 - pow(beta, step)`` with ``step``
      the float32 state step;
    * ``m = fma(beta1, m, fma(-beta1, g, g))`` -- the moving average
      ``beta1 m + (1 - beta1) g`` written with two fused multiply-adds, not
      ``lerp`` (the reference rounds as ``torch.lerp``);
    * ``gg = g*g`` rounded, then ``v = fma(beta2, v, fma(-beta2, gg, gg))``;
    * L2 ``g += p*wd`` and AdamW ``p -= (lr*wd)*p`` are a multiply feeding an
      add, which nvcc contracts (``-fmad=true`` is its default, and PyTorch
      keeps it): ``g = fma(p, wd, g)``, ``p = fma(-(lr*wd), p, p)``;
    * ``denom = sqrt(v)/sqrt(bc2) + eps`` and ``p -= (step_size*m)/denom``
      with ``step_size = lr/bc1``: correctly rounded sqrt and division
      (nvcc's ``-prec-sqrt``/``-prec-div`` defaults), no fma possible;
    * AMSGrad ``v_max = std::max(v_max, v)`` over the raw ``v``.

    Every fma is written out with ``cuda.fma``; NVVM would contract any other
    multiply-add it sees, and the kernels are written so that there is none
    (checked on the PTX by ``tests/test_cuda.py``: per element the plain step
    has exactly 4 ``fma.rn.f32``, 2 ``mul``, 2 ``div.rn``, 1 ``sqrt.rn``, 2
    ``add``, and no float64).  Under the simulator an exactly rounded fma
    stands in for the simulator's ``a*b + c``, so the CPU tests check this
    order too.  What differs from torch is only where the scalar prep runs:
    torch evaluates ``powf(beta, step)`` on the device, we evaluate the bias
    corrections on the host, once per call, in the same precision (double
    ``pow`` rounded to float32, i.e. the correctly rounded ``powf``).
    CUDA's ``powf`` is accurate to a couple of ulp but not documented as
    correctly rounded; where it is not, ``p`` differs from torch by about an
    ulp, while ``m``, ``v`` and ``v_max`` cannot differ.

    Consequence for float32 (torch 2.13): ``beta2 = 0.999`` is rounded to
    float before ``1 - beta2`` and ``1 - beta2**t`` are formed, and
    ``1 - f32(0.999) = 9.99987e-4`` is 1.3e-5 (relative) below ``1 - 0.999``.
    So ``v`` on CUDA runs about 1.3e-5 below the CPU path's ``v``, while
    ``v / (1 - beta2**t)``, and so the step, mostly agree.  That is a real
    difference between torch's CUDA and CPU Adam; this module and
    :mod:`adamref.reference` differ by the same (closeness, not bitwise).

    Adamax has no fused CUDA kernel in torch; ``adamax_step`` follows its
    for-loop/foreach CUDA ops with nvcc's contractions: ``g = fma(p, wd, g)``
    (``add(alpha=wd)``), ``m`` by ``torch.lerp``'s two forms with fma and the
    weight ``f32(1 - beta1)``, ``u = maximum(u*beta2, |g| + eps)`` and
    ``p = fma(-clr, m/u, p)`` (``addcdiv``) with ``clr = lr/(1 - beta1**t)``
    in double, rounded once.

Kernels
    One grid-stride kernel per step (256 threads a block, at most 32 blocks
    per SM) reads ``p, g, m, v`` (and ``v_max``) once and writes ``p, m, v``
    (and ``v_max``) once: 28 bytes per float32 parameter, 36 with AMSGrad.  ``maximize``, the weight-decay mode (none,
    L2, decoupled) and ``amsgrad`` are compile-time constants (closure
    variables of a cached kernel factory), so the default step carries no
    dead branches; float32 and float64 compile separately on first use.

Multi-tensor design (:func:`adam_step_multi_tensor`)
    One launch for a whole list, as torch's ``multi_tensor_apply``: the host
    builds an int64 table with, per tensor, the device addresses of ``p, g,
    m, v, v_max`` and its length, then a chunk list ``(tensor, start)`` that
    cuts every tensor into pieces of at most 65536 elements (fewer when the
    whole list is small, so that the grid still fills every SM -- torch
    always cuts 65536, which leaves a lone 1e6-element tensor 16 blocks);
    block ``b`` of the grid handles chunk ``b`` (blocks past the last chunk exit).  Numba has no typed
    pointers from integers, so two small ``@intrinsic`` functions emit
    ``inttoptr`` + ``addrspacecast`` to the global space + ``load``/``store``
    (``ld.global``/``st.global`` in the PTX).  The per-element update is the
    same device function as the single-array kernel, so a list step equals a
    step of each tensor on its own, bit for bit.  The table is uploaded on
    the launch stream and cached by its contents (addresses and lengths; a
    training loop passes the same tensors every step), so a warm call
    uploads nothing; a first call synchronises the stream once after the
    upload.  Every tensor is validated as in :func:`adam_step`, plus no
    memory shared anywhere in the lists; lists that mix float32 and float64
    get one launch per dtype, as torch groups by dtype.  Under the simulator
    the pointer loads read host memory through ``ctypes``.

    Validation costs a few microseconds per tensor (it reads each
    ``__cuda_array_interface__``); for thousands of tiny tensors, keep them
    as views into one flat buffer and step the buffer with :func:`adam_step`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import operator
import sys
from collections import OrderedDict

import numpy as np

from adamref._checks import (
    check_adam,
    check_adamax,
    check_flags,
    check_hyperparameters,
    check_step_number,
    cuda_spec,
)

__all__ = ["adam_step", "adamax_step", "adam_step_multi_tensor", "is_available"]

try:  # numba-cuda (or its absence, or a broken CUDA install) never breaks the import
    from numba import cuda
    _IMPORT_ERROR = None
except Exception as exc:  # pragma: no cover - depends on the installation
    cuda = None
    _IMPORT_ERROR = exc

#: True when numba.cuda is Numba's CPU simulator (``NUMBA_ENABLE_CUDASIM=1`` when
#: numba.cuda was first imported).  Asked of the module itself, not of numba's
#: config, which is re-read from the environment on every compile.
_SIMULATOR = cuda is not None and getattr(cuda.is_available, "__module__", "").endswith(
    "simulator_init")

#: Elements per chunk in the multi-tensor kernel (torch uses 65536 too).
_MULTI_CHUNK = 65536

_THREADS = 256          # threads per block on a GPU
_WAVES = 32             # at most this many blocks per SM; grid-stride covers the rest
_MIN_GRID = 128         # Numba warns about grids below 128 blocks; spare blocks just exit
_SIM_THREADS = 32       # the simulator runs one Python thread per CUDA thread
_SIM_BLOCKS = 2


# ---------------------------------------------------------------------------
# availability

_available = None


def is_available() -> bool:
    """Whether the kernels can run: a CUDA GPU and driver, or Numba's simulator."""
    global _available
    if _available:
        return True
    if cuda is None:
        return False
    try:
        _available = bool(cuda.is_available())
    except Exception:
        _available = False
    return _available


def _require_device() -> None:
    if is_available():
        return
    if cuda is None:
        raise RuntimeError(
            "no CUDA device was found: numba.cuda could not be imported "
            f"({type(_IMPORT_ERROR).__name__}: {_IMPORT_ERROR}); install numba-cuda "
            "(pip install 'numba-cuda[cu12]' or '[cu13]') on a machine with an NVIDIA GPU, "
            "or use adamref.cpu for NumPy arrays")
    raise RuntimeError(
        "no CUDA device was found (numba.cuda.is_available() is False): adamref.cuda "
        "needs an NVIDIA GPU with a working driver. Use adamref.cpu for NumPy arrays, "
        "or set NUMBA_ENABLE_CUDASIM=1 before numba is imported to run these kernels "
        "on Numba's CUDA simulator")


# ---------------------------------------------------------------------------
# arrays: validation specs and zero-copy device views

class _SimArrayInterface:
    """``__cuda_array_interface__`` for a simulator device array (host memory)."""

    __slots__ = ("_ary",)

    def __init__(self, ary):
        self._ary = ary

    @property
    def __cuda_array_interface__(self):
        a = self._ary
        return {"shape": a.shape, "typestr": a.dtype.str,
                "data": (a.ctypes.data, not a.flags.writeable),
                "strides": None if a.flags.c_contiguous else a.strides, "version": 3}


def _is_sim_array(a) -> bool:
    return _SIMULATOR and type(a).__name__ == "FakeCUDAArray" and hasattr(a, "_ary")


def _spec(name, a):
    """``cuda_spec``, also for simulator device arrays (which have no CAI) and for
    torch tensors that require grad (``nn.Parameter``), whose interface torch
    refuses: the step updates them in place as ``torch.optim`` does, through
    ``detach()`` (same memory), and bumps their version counters afterwards."""
    if _is_sim_array(a):
        a = _SimArrayInterface(a._ary)
    else:
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(a, torch.Tensor) and a.requires_grad:
            a = a.detach()
    return cuda_spec(name, a)


def _bump_versions(arrays) -> None:
    """Tell autograd that the torch tensors among ``arrays`` were written in place."""
    torch = sys.modules["torch"]
    tensors = [a for a in arrays if isinstance(a, torch.Tensor)]
    if tensors:
        torch.autograd.graph.increment_version(tensors)


_VIEWS: OrderedDict = OrderedDict()
_VIEWS_MAX = 64


def _view(a, spec):
    """A 1-D device array over the caller's buffer, without copying it."""
    n = math.prod(spec.shape)
    if _SIMULATOR:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
        if _is_sim_array(a):
            return FakeCUDAArray(a._ary.reshape(n))
        address, nbytes = spec.memory              # cuda_spec: the (address, nbytes) range
        buf = (ctypes.c_char * nbytes).from_address(address)
        return FakeCUDAArray(np.frombuffer(buf, dtype=spec.dtype, count=n))
    # The view does not own the memory (owner=None): it lives only for the
    # launch, while the caller holds ``a``.  Cached by (context, address,
    # length, dtype), which is all a view is, to save the per-call set-up.
    address = spec.memory[0]
    key = (cuda.get_current_device().id, address, n, spec.dtype.str)
    view = _VIEWS.pop(key, None)
    if view is None:
        desc = {"shape": (n,), "typestr": spec.dtype.str, "data": (address, False),
                "strides": None, "version": 3}
        view = cuda.from_cuda_array_interface(desc, owner=None, sync=False)
    _remember(_VIEWS, key, view, _VIEWS_MAX)
    return view


def _remember(cache, key, value, limit):
    """Insert as most recent; drop the oldest beyond ``limit`` (tolerates other threads)."""
    cache[key] = value
    while len(cache) > limit:
        try:
            cache.popitem(last=False)
        except KeyError:
            break


def _torch_device(arrays):
    """The torch device index of the torch tensors among ``arrays``, or None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    devices = {a.device for a in arrays if isinstance(a, torch.Tensor)}
    if not devices:
        return None
    if len(devices) > 1:
        names = ", ".join(sorted(str(d) for d in devices))
        raise ValueError(f"all tensors must be on one CUDA device, got {names}")
    (device,) = devices
    return device.index if device.index is not None else torch.cuda.current_device()


# ---------------------------------------------------------------------------
# streams

def _check_stream(stream):
    """Classify ``stream`` without touching CUDA: ``(kind, value)``; TypeError if unusable."""
    if stream is None:
        return ("default", None)
    if isinstance(stream, bool):
        raise TypeError(f"stream must be a CUDA stream, not {stream!r}")
    if isinstance(stream, (int, np.integer)):
        return ("handle", int(stream))
    if cuda is not None:
        if _SIMULATOR:
            if isinstance(stream, cuda.stream):
                return ("numba", stream)
        else:
            from numba.cuda.cudadrv import driver
            kinds = tuple(k for k in (getattr(driver, "Stream", None),
                                      getattr(driver, "ExperimentalStream", None)) if k)
            if isinstance(stream, kinds):
                return ("numba", stream)
    if hasattr(stream, "__cuda_stream__"):
        return ("protocol", stream)
    for attr in ("cuda_stream", "ptr"):          # torch.cuda.Stream, cupy.cuda.Stream
        handle = getattr(stream, attr, None)
        if isinstance(handle, (int, np.integer)) and not isinstance(handle, bool):
            return ("handle", int(handle))
    raise TypeError(
        "stream must be a Numba stream, a cuda.core stream, an int stream handle, a torch "
        "or CuPy stream, or an object with __cuda_stream__; got " + type(stream).__name__)


def _make_stream(checked, torch_device):
    kind, value = checked
    if _SIMULATOR:
        return 0
    if kind == "numba":
        return value
    if kind == "protocol":
        version, handle = value.__cuda_stream__()
        return cuda.external_stream(int(handle))
    if kind == "handle":
        return 0 if value == 0 else cuda.external_stream(value)
    if torch_device is not None:
        import torch
        return cuda.external_stream(torch.cuda.current_stream(torch_device).cuda_stream)
    return 0


@contextlib.contextmanager
def _on_device(index):
    """Make Numba's current device the torch tensors' device for the launch."""
    if index is None or _SIMULATOR or cuda.get_current_device().id == index:
        yield
    else:
        with cuda.gpus[index]:
            yield


_MAX_BLOCKS: dict = {}


def _grid(n):
    """(blocks, threads) for a grid-stride loop over ``n`` elements."""
    if _SIMULATOR:
        return max(1, min(-(-n // _SIM_THREADS), _SIM_BLOCKS)), _SIM_THREADS
    dev = cuda.get_current_device()
    cap = _MAX_BLOCKS.get(dev.id)
    if cap is None:
        cap = _MAX_BLOCKS[dev.id] = dev.MULTIPROCESSOR_COUNT * _WAVES
    return max(_MIN_GRID, min(-(-n // _THREADS), cap)), _THREADS


# ---------------------------------------------------------------------------
# scalars, prepared on the host once per call in the precision of the arrays

_L2, _DECOUPLED = 1, 2


def _wd_mode(weight_decay, decoupled):
    if weight_decay == 0:
        return 0
    return _DECOUPLED if decoupled else _L2


def _adam_scalars(dtype, t, lr, beta1, beta2, eps, weight_decay):
    """The scalars of torch's CUDA fused Adam, in its opmath type (= dtype here)."""
    f = dtype.type
    step = float(np.float32(t))                 # torch keeps state_steps in float32
    with np.errstate(all="ignore"):
        b1, b2, lr_, wd = f(beta1), f(beta2), f(lr), f(weight_decay)
        bc1 = f(1) - f(float(b1) ** step)        # 1 - pow(beta1, step), rounded once
        bc2_sqrt = np.sqrt(f(1) - f(float(b2) ** step))
        step_size = lr_ / bc1
        neg_lr_wd = -(lr_ * wd)
    return (neg_lr_wd, wd, b1, -b1, b2, -b2, f(eps), step_size, bc2_sqrt)


def _adamax_scalars(dtype, t, lr, beta1, beta2, eps, weight_decay):
    """The scalars of torch's for-loop/foreach Adamax on CUDA."""
    f = dtype.type
    step = float(np.float32(t))
    with np.errstate(all="ignore"):
        w = f(1 - beta1)                         # lerp weight, cast to opmath
        small = bool(abs(w) < f(0.5))
        one_minus_w = f(1) - w
        neg_clr = f(-(lr / (1 - beta1 ** step)))  # Python floats (double), as torch
    return (f(weight_decay), w, one_minus_w, small, f(beta2), f(eps), neg_clr)


# ---------------------------------------------------------------------------
# fused multiply-add

if cuda is not None and not _SIMULATOR:
    @cuda.jit(device=True)
    def _fma(a, b, c):
        return cuda.fma(a, b, c)             # fma.rn; inlined into the kernels
else:
    from fractions import Fraction as _Fraction

    def _fma(a, b, c):
        """Simulator: ``a*b + c`` rounded once, as the GPU's fma (the simulator's
        own ``cuda.fma`` rounds twice, which would hide the order under test)."""
        t = type(a)
        if t is np.float32:        # the float32 product is exact in double
            return np.float32(float(a) * float(b) + float(c))
        return t(float(_Fraction(float(a)) * _Fraction(float(b)) + _Fraction(float(c))))


# ---------------------------------------------------------------------------
# raw pointer access for the multi-tensor kernel

if cuda is not None and not _SIMULATOR:
    from llvmlite import ir as _ir
    from numba.cuda import types as _types
    from numba.cuda.extending import intrinsic as _intrinsic

    def _global_pointer(builder, address, index, lltype):
        generic = builder.inttoptr(address, _ir.PointerType(lltype))
        glob = builder.addrspacecast(generic, _ir.PointerType(lltype, addrspace=1))
        return builder.gep(glob, [index])

    @_intrinsic
    def _load(typingctx, address, index, like):
        """``((like_t*) address)[index]`` from global memory."""
        sig = like(_types.int64, _types.int64, like)

        def codegen(context, builder, signature, args):
            ptr = _global_pointer(builder, args[0], args[1],
                                  context.get_value_type(signature.return_type))
            return builder.load(ptr)
        return sig, codegen

    @_intrinsic
    def _store(typingctx, address, index, value, like):
        """``((like_t*) address)[index] = value``."""
        sig = _types.void(_types.int64, _types.int64, value, like)

        def codegen(context, builder, signature, args):
            lltype = context.get_value_type(signature.args[3])
            val = context.cast(builder, args[2], signature.args[2], signature.args[3])
            builder.store(val, _global_pointer(builder, args[0], args[1], lltype))
            return context.get_dummy_value()
        return sig, codegen

else:
    # Simulator: "device" memory is host memory, so read it with ctypes.
    def _load(address, index, like):
        dt = np.dtype(type(like))
        buf = (ctypes.c_char * dt.itemsize).from_address(int(address) + int(index) * dt.itemsize)
        return np.frombuffer(buf, dtype=dt)[0]

    def _store(address, index, value, like):
        dt = np.dtype(type(like))
        buf = (ctypes.c_char * dt.itemsize).from_address(int(address) + int(index) * dt.itemsize)
        np.frombuffer(buf, dtype=dt)[0] = value


# ---------------------------------------------------------------------------
# kernels (built on first use, one set per combination of flags)

@functools.lru_cache(maxsize=None)
def _adam_kernels(maximize: bool, wd_mode: int, amsgrad: bool):
    """(single-array kernel, multi-tensor kernel) for one combination of flags."""

    @cuda.jit(device=True)
    def update(p, g, m, v, vm, neg_lr_wd, wd, b1, neg_b1, b2, neg_b2, eps, step_size,
               bc2_sqrt):
        if maximize:
            g = -g
        if wd_mode == _L2:
            g = _fma(p, wd, g)                       # g + p*wd, contracted by nvcc
        elif wd_mode == _DECOUPLED:
            p = _fma(neg_lr_wd, p, p)                # p - (lr*wd)*p, contracted
        m = _fma(b1, m, _fma(neg_b1, g, g))      # beta1 m + (1 - beta1) g
        gg = g * g
        v = _fma(b2, v, _fma(neg_b2, gg, gg))    # beta2 v + (1 - beta2) g^2
        if amsgrad:
            if vm < v:                                   # std::max(v_max, v)
                vm = v
            denom = math.sqrt(vm) / bc2_sqrt + eps
        else:
            denom = math.sqrt(v) / bc2_sqrt + eps
        p = p - step_size * m / denom
        return p, m, v, vm

    @cuda.jit
    def single(p, g, m, v, v_max, neg_lr_wd, wd, b1, neg_b1, b2, neg_b2, eps, step_size,
               bc2_sqrt):
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        n = p.size
        while i < n:
            vi = v[i]
            vm = v_max[i] if amsgrad else vi
            pi, mi, vi, vm = update(p[i], g[i], m[i], vi, vm, neg_lr_wd, wd, b1, neg_b1,
                                    b2, neg_b2, eps, step_size, bc2_sqrt)
            m[i] = mi
            v[i] = vi
            if amsgrad:
                v_max[i] = vm
            p[i] = pi
            i += stride

    @cuda.jit
    def multi(table, n_tensors, chunk, n_chunks, neg_lr_wd, wd, b1, neg_b1, b2, neg_b2,
              eps, step_size, bc2_sqrt):
        c = cuda.blockIdx.x
        while c < n_chunks:
            at = 6 * n_tensors + 2 * c
            row = 6 * table[at]
            start = table[at + 1]
            pa = table[row]
            ga = table[row + 1]
            ma = table[row + 2]
            va = table[row + 3]
            vma = table[row + 4]
            end = min(start + chunk, table[row + 5])
            j = start + cuda.threadIdx.x
            while j < end:
                vi = _load(va, j, b1)
                vm = _load(vma, j, b1) if amsgrad else vi
                pi, mi, vi, vm = update(_load(pa, j, b1), _load(ga, j, b1),
                                        _load(ma, j, b1), vi, vm, neg_lr_wd, wd, b1,
                                        neg_b1, b2, neg_b2, eps, step_size, bc2_sqrt)
                _store(ma, j, mi, b1)
                _store(va, j, vi, b1)
                if amsgrad:
                    _store(vma, j, vm, b1)
                _store(pa, j, pi, b1)
                j += cuda.blockDim.x
            c += cuda.gridDim.x

    return single, multi


@functools.lru_cache(maxsize=None)
def _adamax_kernel(maximize: bool, l2: bool):

    @cuda.jit
    def kernel(p, g, m, u, wd, w, one_minus_w, small, b2, eps, neg_clr):
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        n = p.size
        while i < n:
            pi = p[i]
            gi = g[i]
            if maximize:
                gi = -gi
            if l2:
                gi = _fma(pi, wd, gi)                # grad.add(param, alpha=wd)
            d = gi - m[i]
            if small:                                    # torch.lerp(m, g, w)
                mi = _fma(w, d, m[i])
            else:
                mi = _fma(-d, one_minus_w, gi)
            a = u[i] * b2
            b = abs(gi) + eps
            ui = a if (a > b or a != a) else b           # torch.maximum (NaN wins)
            m[i] = mi
            u[i] = ui
            p[i] = _fma(neg_clr, mi / ui, pi)        # param.addcdiv_(m, u, -clr)
            i += stride

    return kernel


# ---------------------------------------------------------------------------
# public steps

def adam_step(p, g, m, v, t, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, decoupled=False, amsgrad=False, v_max=None,
              maximize=False, stream=None) -> None:
    """One Adam (``decoupled=True``: AdamW) step at step number ``t``, in place, on the GPU.

    Same arguments and result as :func:`adamref.reference.adam_step`, for
    arrays with ``__cuda_array_interface__``; ``stream`` as in the module
    docstring.  Rounds as torch's CUDA fused Adam (see the module docstring).
    """
    spec = _Recorder()
    check_adam(spec, p, g, m, v, t, lr, beta1, beta2, eps, weight_decay,
               decoupled, amsgrad, v_max, maximize)
    arrays = (p, g, m, v) + ((v_max,) if amsgrad else ())
    checked_stream = _check_stream(stream)
    device = _torch_device(arrays)
    _require_device()
    n = math.prod(spec.specs[0].shape)
    if n == 0:
        return
    scalars = _adam_scalars(spec.specs[0].dtype, operator.index(t), lr, beta1, beta2, eps,
                            weight_decay)
    single, _ = _adam_kernels(bool(maximize), _wd_mode(weight_decay, decoupled),
                              bool(amsgrad))
    with _on_device(device):
        views = [_view(a, s) for a, s in zip(arrays, spec.specs)]
        if not amsgrad:
            views.append(views[3])                       # placeholder, never touched
        blocks, threads = _grid(n)
        single[blocks, threads, _make_stream(checked_stream, device)](*views, *scalars)
    if device is not None:
        _bump_versions((p, m, v, v_max))


def adamax_step(p, g, m, u, t, *, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, maximize=False, stream=None) -> None:
    """One Adamax step at step number ``t``, in place, on the GPU.

    Same arguments and result as :func:`adamref.reference.adamax_step`;
    rounds as ``torch.optim.Adamax`` on CUDA (see the module docstring).
    """
    spec = _Recorder()
    check_adamax(spec, p, g, m, u, t, lr, beta1, beta2, eps, weight_decay, maximize)
    arrays = (p, g, m, u)
    checked_stream = _check_stream(stream)
    device = _torch_device(arrays)
    _require_device()
    n = math.prod(spec.specs[0].shape)
    if n == 0:
        return
    scalars = _adamax_scalars(spec.specs[0].dtype, operator.index(t), lr, beta1, beta2,
                              eps, weight_decay)
    kernel = _adamax_kernel(bool(maximize), weight_decay != 0)
    with _on_device(device):
        views = [_view(a, s) for a, s in zip(arrays, spec.specs)]
        blocks, threads = _grid(n)
        kernel[blocks, threads, _make_stream(checked_stream, device)](*views, *scalars)
    if device is not None:
        _bump_versions((p, m, u))


class _Recorder:
    """A ``spec`` function for the checks that keeps what it described, in order."""

    __slots__ = ("specs",)

    def __init__(self):
        self.specs = []

    def __call__(self, name, a):
        s = _spec(name, a)
        self.specs.append(s)
        return s


# ---------------------------------------------------------------------------
# multi-tensor

_TABLES: OrderedDict = OrderedDict()
_TABLES_MAX = 16


def _as_list(name, x):
    if isinstance(x, (list, tuple)):
        return list(x)
    raise TypeError(f"{name} must be a list or tuple of CUDA arrays, got {type(x).__name__}")


def adam_step_multi_tensor(params, grads, ms, vs, t, *, lr=1e-3, beta1=0.9, beta2=0.999,
                           eps=1e-8, weight_decay=0.0, decoupled=False, amsgrad=False,
                           v_maxs=None, maximize=False, stream=None) -> None:
    """One Adam step for every tensor of a list, in one kernel launch (per dtype).

    ``params[i], grads[i], ms[i], vs[i]`` (and ``v_maxs[i]`` with ``amsgrad``)
    are the arrays of :func:`adam_step` for tensor ``i``; all share ``t`` and
    the hyperparameters, like one torch parameter group.  Tensors may differ
    in shape and dtype.  Every tensor is validated as in :func:`adam_step`
    (errors say which index), and no array may share memory with any other in
    the lists, all before anything is written.  The result equals
    :func:`adam_step` on each tensor in turn, bit for bit.
    """
    check_flags(decoupled=decoupled, amsgrad=amsgrad, maximize=maximize)
    check_step_number(t)
    check_hyperparameters(lr, beta1, beta2, eps, weight_decay)
    lists = [_as_list(name, x) for name, x in
             (("params", params), ("grads", grads), ("ms", ms), ("vs", vs))]
    names = ["params", "grads", "ms", "vs"]
    if amsgrad:
        if v_maxs is None:
            raise ValueError("amsgrad=True needs v_maxs, the running maxima of vs "
                             "(start them as zeros like vs)")
        lists.append(_as_list("v_maxs", v_maxs))
        names.append("v_maxs")
    elif v_maxs is not None:
        raise ValueError("v_maxs was given but amsgrad=False; pass amsgrad=True to use it")
    count = len(lists[0])
    for name, lst in zip(names, lists):
        if len(lst) != count:
            raise ValueError(f"{name} has {len(lst)} arrays, but params has {count}: "
                             f"the lists must have one entry per parameter")
    specs = []                        # per tensor: the specs of p, g, m, v(, v_max)
    for i in range(count):
        row = [lst[i] for lst in lists]
        spec = _Recorder()
        try:
            check_adam(spec, row[0], row[1], row[2], row[3], t, lr, beta1, beta2, eps,
                       weight_decay, decoupled, amsgrad, row[4] if amsgrad else None,
                       maximize)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"tensor {i}: {exc}") from None
        specs.append(spec.specs)
    _check_disjoint(specs, names)
    checked_stream = _check_stream(stream)
    device = _torch_device([a for lst in lists for a in lst])
    _require_device()

    groups: dict = {}
    for i, row in enumerate(specs):
        if row[0].memory[1]:
            groups.setdefault(row[0].dtype, []).append(i)
    if not groups:
        return
    single_and_multi = _adam_kernels(bool(maximize), _wd_mode(weight_decay, decoupled),
                                     bool(amsgrad))
    multi = single_and_multi[1]
    with _on_device(device):
        launch_stream = _make_stream(checked_stream, device)
        for dtype, members in groups.items():
            chunk = _chunk_size(sum(math.prod(specs[i][0].shape) for i in members))
            table, n_chunks = _table(specs, members, amsgrad, chunk, launch_stream)
            scalars = _adam_scalars(dtype, operator.index(t), lr, beta1, beta2, eps,
                                    weight_decay)
            if _SIMULATOR:
                blocks, threads = n_chunks, _SIM_THREADS
            else:
                blocks, threads = max(n_chunks, _MIN_GRID), _THREADS
            multi[blocks, threads, launch_stream](table, len(members), chunk, n_chunks,
                                                  *scalars)
    if device is not None:
        _bump_versions([a for k, lst in enumerate(lists) if k != 1 for a in lst])


def _chunk_size(total):
    """Elements per block: ``_MULTI_CHUNK`` at most, fewer while that leaves SMs idle.

    torch's multi_tensor_apply always cuts 65536-element chunks, so one
    tensor of 1e6 elements gets 16 blocks; here the chunk shrinks (to a
    multiple of the block size, 1024 at least) until the launch has about
    eight blocks per SM, one full wave.
    """
    if _SIMULATOR:
        return _MULTI_CHUNK
    sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
    chunk = -(-total // (8 * sms))
    chunk = -(-chunk // _THREADS) * _THREADS
    return max(min(chunk, _MULTI_CHUNK), 4 * _THREADS)


def _check_disjoint(specs, names) -> None:
    """No two arrays anywhere in the lists may overlap."""
    spans = sorted((s.memory[0], s.memory[0] + s.memory[1], f"{names[k]}[{i}]")
                   for i, row in enumerate(specs) for k, s in enumerate(row) if s.memory[1])
    for (a0, a1, a), (b0, b1, b) in zip(spans, spans[1:]):
        if b0 < a1:
            raise ValueError(f"{a} and {b} share memory; each array must be a "
                             f"separate buffer")


def _table(specs, members, amsgrad, chunk, stream):
    """The device table of one launch: per tensor 6 int64, then per chunk 2."""
    rows, chunks = [], []
    for k, i in enumerate(members):
        row = specs[i]
        n = math.prod(row[0].shape)
        rows.extend((row[0].memory[0], row[1].memory[0], row[2].memory[0], row[3].memory[0],
                     row[4].memory[0] if amsgrad else 0, n))
        chunks.extend(x for start in range(0, n, chunk) for x in (k, start))
    host = np.array(rows + chunks, dtype=np.int64)
    n_chunks = len(chunks) // 2
    if _SIMULATOR:
        return cuda.to_device(host), n_chunks
    key = (cuda.get_current_device().id, chunk, host.tobytes())
    table = _TABLES.pop(key, None)
    if table is None:
        table = cuda.to_device(host, stream=stream)
        if stream:
            stream.synchronize()                 # complete before any launch, on any stream
        else:
            cuda.synchronize()
    _remember(_TABLES, key, table, _TABLES_MAX)
    return table, n_chunks


# ---------------------------------------------------------------------------
# for tests: the PTX of a kernel (needs libNVVM, not a GPU)

def _ptx(kind="adam", dtype="float32", maximize=False, wd_mode=0, amsgrad=False,
         cc=(9, 0)) -> str:
    """PTX of ``kind`` in ("adam", "multi", "adamax") for one dtype and flag set."""
    from numba.cuda import types as ty
    f = ty.float32 if np.dtype(dtype) == np.float32 else ty.float64
    arr = f[::1]
    if kind == "adamax":
        fn = _adamax_kernel(maximize, wd_mode != 0).py_func
        sig = (arr,) * 4 + (f, f, f, ty.boolean, f, f, f)
    elif kind == "adam":
        fn = _adam_kernels(maximize, wd_mode, amsgrad)[0].py_func
        sig = (arr,) * 5 + (f,) * 9
    else:
        fn = _adam_kernels(maximize, wd_mode, amsgrad)[1].py_func
        sig = (ty.int64[::1], ty.int64, ty.int64, ty.int64) + (f,) * 9
    # compile_ptx needs no GPU, but a device function called from the kernel
    # asks the current device for its compute capability; without a GPU,
    # answer ``cc`` for it.
    from numba.cuda import dispatcher
    current = dispatcher.get_current_device
    if not is_available():
        dispatcher.get_current_device = lambda: _FakeDevice(cc)
    try:
        ptx, _ = cuda.compile_ptx(fn, sig, cc=cc)
    finally:
        dispatcher.get_current_device = current
    return ptx


class _FakeDevice:
    def __init__(self, cc):
        self.compute_capability = cc
