"""Adam and Adamax as fused, parallel Numba kernels for NumPy arrays on the CPU.

Same API and semantics as :mod:`adamref.reference` (``torch.optim.Adam``,
``AdamW`` and ``Adamax`` at ``state["step"] == t``).  Each step is one pass
over memory: every element of ``p, g, m, v`` is read once and ``p, m, v``
written once, by a ``prange`` loop spread over ``numba.get_num_threads()``
threads.  Everything that does not depend on the element (the bias
corrections, ``lr / (1 - beta1^t)``, the casts to the array's precision) is
worked out once per call, outside the loop.

Rounding follows ``torch.optim.Adam(fused=True)`` on the CPU
(``aten/src/ATen/native/cpu/FusedAdamKernel.cpp``, checked against torch
2.13's x86-64 AVX512 and AVX2 builds, :data:`TORCH_BITWISE_BUILDS`), so there
float32 and float64 results are bit for bit PyTorch's, for every flag and
size; Adamax is bit for bit ``torch.optim.Adamax(foreach=False)``.  Torch's
other builds (ARM, its non-SIMD kernel) round some operations otherwise: a
few units of roundoff apart, not bit for bit.  The vectorised loop rounds like
this (``fma(a, b, c) = a b + c`` rounded once; ``w = 1 - beta1``)::

    g  <- -g                              if maximize
    g  <- fma(p, wd, g)                   L2 weight decay
    p  <- p (1 - lr wd)                   AdamW (decoupled) weight decay
    m  <- fma(w, g - m, m)                if w < 1/2, else fma(w - 1, g - m, g)
    v  <- fma((1 - beta2) g, g, beta2 v)
    v_max <- max(v_max, v); v <- v_max   if amsgrad
    p  <- p + (-lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

The division by the constant ``sqrt(1 - beta2^t)`` is done without a divide
instruction, as a multiply and two fmas that give the same correctly rounded
quotient (:func:`_divide`); division is the slowest operation in the loop.

PyTorch's scalar remainder, the last ``n mod 8`` elements in float32 (``n
mod 4`` in float64), rounds ``v`` the other way,
``v <- fma(v, beta2, ((1 - beta2) g) g)``, and the kernels here do the same
there (see :data:`TORCH_SCALAR_TAIL`), and its AMSGrad maximum there is
``std::max(v_max, v)``, which keeps ``v_max`` when ``v`` is NaN; the vector
loop's maximum is NaN when either is.  (The bits of a NaN are not matched:
where PyTorch makes a NaN, so do these kernels, perhaps with another sign or
payload.)

L2 weight decay and AMSGrad change the loop, so they are compile-time
flags: one kernel per dtype and combination (at most 4 for Adam, 2 for
Adamax, per dtype), compiled on first use and cached on disk
(``cache=True``), so a new process loads it instead of compiling.
``maximize`` and AdamW's decay are multiplications by -1 or 1 and by
``1 - lr wd`` or 1, exact no-ops when off, as in PyTorch's kernel.

Multi-tensor kernels (:class:`MultiTensorTable`, used by
:mod:`adamref.optim`) step a whole list of tensors in one call: an int64
table holds, per tensor, the addresses of ``p, g, m, v, v_max`` and of its
float32 step counter, its length and where PyTorch's scalar tail starts;
the kernel turns addresses into arrays (``inttoptr`` + ``numba.carray``),
counts each tensor's step, works out its bias corrections, and runs the same
element functions as :func:`adam_step` over pieces of the concatenated
element range, one per thread, so the result is :func:`adam_step` on each
tensor, bit for bit.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import carray, njit, prange
from numba.core import types
from numba.extending import intrinsic

from adamref._checks import check_adam, check_adamax, numpy_spec
from adamref._fma import fma

__all__ = ["adam_step", "adamax_step", "TORCH_SCALAR_TAIL", "TORCH_BITWISE_BUILDS"]

#: How many trailing elements PyTorch 2.13's fused CPU Adam (AVX512 build of
#: ``FusedAdamKernel.cpp``, compiled by GCC 13) sends through its scalar
#: loop, where ``v`` is rounded as ``fma(v, beta2, ((1 - beta2) g) g)``:
#: ``n mod TORCH_SCALAR_TAIL[dtype]``.  Measured, not documented by PyTorch
#: (GCC apparently vectorises the remainder loop with 256-bit vectors, which
#: round like the main loop, and leaves the last ``n mod 8`` floats, ``n mod
#: 4`` doubles, scalar).
TORCH_SCALAR_TAIL = {np.dtype(np.float32): 8, np.dtype(np.float64): 4}

#: The builds of torch 2.13's fused CPU Adam, as ``torch.backends.cpu.get_cpu_capability()``
#: names them, whose results these kernels reproduce bit for bit, every element and every
#: size included (measured on x86-64: AVX512 natively, AVX2 with
#: ``ATEN_CPU_CAPABILITY=avx2``; both have the scalar tail above).  Other builds (ARM's,
#: torch's non-SIMD ``DEFAULT``) round some operations differently: there the two agree
#: to a few units of roundoff of each element's scale per step, not bit for bit.
TORCH_BITWISE_BUILDS = ("AVX512", "AVX2")


# ---------------------------------------------------------------- element math
@njit(inline="always")
def _first_moment(m, g, coeff, small):
    """``m <- m + w (g - m)`` with ``w = 1 - beta1``, rounded as ``torch.lerp``.

    ``small`` is ``w < 1/2``; then ``coeff = w`` and ``m <- fma(w, g - m, m)``,
    else ``coeff = w - 1`` and ``m <- fma(w - 1, g - m, g)`` (exactly ``g``
    when ``beta1 = 0``).
    """
    if small:
        return fma(coeff, g - m, m)
    return fma(coeff, g - m, g)


@njit(inline="always")
def _lerp_coeff(w, one):
    """``torch.lerp``'s coefficient for weight ``w = 1 - beta1``, and whether ``w < 1/2``.

    ``coeff = w`` if ``w < 1/2`` else ``w - 1`` (exact for ``w`` in [1/2, 1]);
    ``one`` is 1 in the array's precision.
    """
    small = w < 0.5
    if small:
        return w, small
    return w - one, small


@njit(inline="always")
def _second_moment(v, g, beta2, one_minus_beta2, tail):
    """``v <- beta2 v + (1 - beta2) g^2``; ``tail`` picks PyTorch's scalar rounding."""
    if tail:
        return fma(v, beta2, one_minus_beta2 * g * g)
    return fma(one_minus_beta2 * g, g, v * beta2)


@njit(inline="always")
def _divide(x, c, r):
    """``x / c`` correctly rounded, for ``x >= 0`` and a constant ``c > 0``, given
    ``r = RN(1 / c)``: one multiply and two fmas instead of a division.

    ``q = x r`` is within an ulp of ``x / c``, so the remainder ``e = x - q c`` is
    exact as one fma, and ``RN(q + e r)`` is the correctly rounded quotient
    (Markstein's theorem, the last step of Itanium's division).  Division is
    the slowest instruction in the step; this takes one of the two out of the
    loop.  When ``x`` is inf or NaN, ``e`` is NaN and ``q`` (inf or NaN) is
    already ``x / c``.
    """
    q = x * r
    e = fma(-q, c, x)
    if e != e:
        return q
    return fma(e, r, q)


@njit(inline="always")
def _nan_max(a, b):
    """``max(a, b)``, NaN if either is NaN (``torch.maximum``)."""
    if a > b or a != a:
        return a
    return b


@njit(inline="always")
def _v_max(v_max, v, tail):
    """AMSGrad's ``max(v_max, v)`` as PyTorch takes it: NaN-propagating in its
    vector loop, ``std::max(v_max, v)`` in its scalar tail (a NaN ``v`` is dropped there).
    """
    if tail:
        return v if v_max < v else v_max
    return _nan_max(v_max, v)


@njit(inline="always")
def _adam_at(i, p, g, m, v, v_max, s, l2, amsgrad, tail):
    """One element of :func:`adam_step`; ``s`` holds the per-call scalars."""
    sign, wd, decay, coeff, small, beta2, one_minus_beta2, bc2_sqrt, inv_bc2_sqrt, eps, \
        neg_step = s
    g_i = g[i] * sign
    p_i = p[i]
    if l2:
        g_i = fma(p_i, wd, g_i)                            # g <- g + wd p
    p_i = p_i * decay                                      # AdamW: p <- (1 - lr wd) p
    m_i = _first_moment(m[i], g_i, coeff, small)           # m_t (eq. 1)
    v_i = _second_moment(v[i], g_i, beta2, one_minus_beta2, tail)   # v_t (eq. 2)
    m[i] = m_i
    v[i] = v_i
    if amsgrad:
        v_i = _v_max(v_max[i], v_i, tail)                  # v_max <- max(v_max, v_t)
        v_max[i] = v_i
    denom = _divide(math.sqrt(v_i), bc2_sqrt, inv_bc2_sqrt) + eps   # sqrt(v_hat_t) + eps
    p[i] = p_i + (neg_step * m_i) / denom                  # theta_t (eq. 5)


@njit(inline="always")
def _adamax_at(i, p, g, m, u, s, l2):
    """One element of :func:`adamax_step`."""
    sign, wd, coeff, small, beta2, eps, neg_step = s
    g_i = g[i] * sign
    if l2:
        g_i = fma(p[i], wd, g_i)                           # g <- g + wd p
    m_i = _first_moment(m[i], g_i, coeff, small)           # m_t
    u_i = _nan_max(u[i] * beta2, abs(g_i) + eps)           # u_t = max(beta2 u, |g| + eps)
    m[i] = m_i
    u[i] = u_i
    p[i] = p[i] + (neg_step * m_i) / u_i                   # theta_t


# ---------------------------------------------------------------- kernels
@lru_cache(maxsize=None)
def _adam_kernel(dtype: np.dtype, l2: bool, amsgrad: bool):
    """The Adam kernel for one dtype, with ``l2`` and ``amsgrad`` fixed at compile time.

    Scalars arrive as Python floats (double) and are rounded to the array's
    precision once, as PyTorch casts its double hyperparameters.  The loop
    runs to ``n_vec`` in parallel with PyTorch's vector rounding, then the
    last ``n - n_vec`` elements with its scalar rounding.
    """
    T = dtype.type

    @njit(parallel=True, cache=True, error_model="numpy")
    def adam_kernel(p, g, m, v, v_max, n_vec, sign, wd, decay, one_minus_beta1, beta2,
                    bc2_sqrt, eps, neg_step):
        coeff, small = _lerp_coeff(T(one_minus_beta1), T(1.0))
        s = (T(sign), T(wd), T(decay), coeff, small, T(beta2), T(1.0 - beta2),
             T(bc2_sqrt), T(1.0) / T(bc2_sqrt), T(eps), T(neg_step))
        for i in prange(n_vec):
            _adam_at(i, p, g, m, v, v_max, s, l2, amsgrad, False)
        for i in range(n_vec, p.size):
            _adam_at(i, p, g, m, v, v_max, s, l2, amsgrad, True)

    return adam_kernel


@lru_cache(maxsize=None)
def _adamax_kernel(dtype: np.dtype, l2: bool):
    """The Adamax kernel for one dtype, with ``l2`` fixed at compile time."""
    T = dtype.type

    @njit(parallel=True, cache=True, error_model="numpy")
    def adamax_kernel(p, g, m, u, sign, wd, one_minus_beta1, beta2, eps, neg_step):
        coeff, small = _lerp_coeff(T(one_minus_beta1), T(1.0))
        s = (T(sign), T(wd), coeff, small, T(beta2), T(eps), T(neg_step))
        for i in prange(p.size):
            _adamax_at(i, p, g, m, u, s, l2)

    return adamax_kernel


# ---------------------------------------------------------------- public API
def adam_step(p, g, m, v, t, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, decoupled=False, amsgrad=False, v_max=None,
              maximize=False) -> None:
    """One Adam step at step number ``t`` (1 for the first), in place.

    Updates ``p``, ``m``, ``v`` (and ``v_max`` when ``amsgrad``), with
    ``g`` negated if ``maximize`` and ``g <- g + wd p`` for L2 decay::

        m     <- beta1 m + (1 - beta1) g
        v     <- beta2 v + (1 - beta2) g^2
        p     <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    ``decoupled=True`` (AdamW) instead shrinks ``p`` by ``1 - lr wd`` first;
    ``amsgrad`` keeps ``v_max = max(v_max, v)`` and uses it in place of ``v``.
    Arrays are NumPy, float32 or float64, C-contiguous, one shape.
    """
    check_adam(numpy_spec, p, g, m, v, t, lr, beta1, beta2, eps, weight_decay,
               decoupled, amsgrad, v_max, maximize)
    lr, beta1, beta2, eps, wd = map(float, (lr, beta1, beta2, eps, weight_decay))
    kernel = _adam_kernel(p.dtype, wd != 0 and not decoupled, bool(amsgrad))
    n = p.size
    kernel(*_flat(p, g, m, v, v_max if amsgrad else v),
           n - n % TORCH_SCALAR_TAIL[p.dtype],             # where PyTorch's scalar tail starts
           -1.0 if maximize else 1.0, wd,
           1.0 - lr * wd if decoupled else 1.0,            # AdamW's p <- (1 - lr wd) p
           1.0 - beta1, beta2,
           math.sqrt(1.0 - beta2 ** int(t)),               # sqrt(1 - beta2^t)
           eps, -(lr / (1.0 - beta1 ** int(t))))           # -lr / (1 - beta1^t)


def adamax_step(p, g, m, u, t, *, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, maximize=False) -> None:
    """One Adamax step (Kingma & Ba, section 7.1) at step number ``t``, in place.

    Updates ``p``, ``m`` and the infinity norm ``u``::

        m <- beta1 m + (1 - beta1) g
        u <- max(beta2 u, |g| + eps)
        p <- p - lr / (1 - beta1^t) * m / u

    as ``torch.optim.Adamax`` does (``eps`` inside the maximum), rounded as
    its ``foreach=False`` path: ``g <- fma(p, wd, g)`` for weight decay,
    ``m`` as in :func:`adam_step`, ``p <- p + ((-lr / (1 - beta1^t)) m) / u``.
    """
    check_adamax(numpy_spec, p, g, m, u, t, lr, beta1, beta2, eps, weight_decay, maximize)
    lr, beta1, beta2, eps, wd = map(float, (lr, beta1, beta2, eps, weight_decay))
    kernel = _adamax_kernel(p.dtype, wd != 0)
    kernel(*_flat(p, g, m, u), -1.0 if maximize else 1.0, wd, 1.0 - beta1, beta2, eps,
           -(lr / (1.0 - beta1 ** int(t))))


# ---------------------------------------------------------------- multi-tensor kernels
#: Columns of a :class:`MultiTensorTable` row (one row per tensor, int64).
P, G, M, V, V_MAX, STEP, N, N_VEC = range(8)
_COLUMNS = 8
#: Pieces are cut at multiples of this many elements (a 64-byte cache line of float32).
_ALIGN = 16
#: A piece has at least this many elements: below it, one thread does the whole list.
_MIN_PIECE = 32_768


@intrinsic
def _pointer(typingctx, address, like):
    """The int64 ``address`` as a pointer to ``like``'s float type (``inttoptr``)."""
    if not (isinstance(address, types.Integer) and isinstance(like, types.Float)):
        return None
    ptr = types.CPointer(like)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(ptr))

    return ptr(address, like), codegen


@njit(inline="always")
def _column(table, k, column, n, like):
    """Row ``k``'s array in ``column`` as a 1-d array of ``n`` elements of ``like``'s type."""
    return carray(_pointer(table[k, column], like), n)


@njit(inline="always")
def _indices(lo, hi):
    """``range(lo, hi)`` with unsigned indices: a signed index makes Numba check for
    negative ones (wraparound) at every access, and the loop stops vectorising (4x slower).
    """
    return range(np.uint64(lo), np.uint64(max(lo, hi)))


@njit(inline="always")
def _count_steps(table):
    """``step <- step + 1`` in float32 (as ``torch._foreach_add_(state_steps, 1)``) for
    every row with a gradient (``G`` not 0); rows without one keep their step.
    Returns every row's step as float64, the ``t`` of the bias corrections.
    """
    steps = np.empty(table.shape[0])          # np.zeros would be a parallel loop (parfor)
    for k in range(table.shape[0]):
        step = _column(table, k, STEP, 1, np.float32(0))
        if table[k, G] != 0:
            step[0] = step[0] + np.float32(1.0)
        steps[k] = np.float64(step[0])
    return steps


@njit(inline="always")
def _adam_segment(table, k, lo, hi, s, l2, amsgrad, like):
    """:func:`_adam_at` over elements ``lo:hi`` of row ``k``, scalars ``s``; elements
    from ``N_VEC`` on are PyTorch's scalar tail of that tensor."""
    n = table[k, N]
    p = _column(table, k, P, n, like)
    g = _column(table, k, G, n, like)
    m = _column(table, k, M, n, like)
    v = _column(table, k, V, n, like)
    v_max = _column(table, k, V_MAX if amsgrad else V, n, like)
    n_vec = table[k, N_VEC]
    for i in _indices(lo, min(hi, n_vec)):
        _adam_at(i, p, g, m, v, v_max, s, l2, amsgrad, False)
    for i in _indices(max(lo, n_vec), hi):
        _adam_at(i, p, g, m, v, v_max, s, l2, amsgrad, True)


@njit(inline="always")
def _adamax_segment(table, k, lo, hi, s, l2, like):
    """:func:`_adamax_at` over elements ``lo:hi`` of row ``k``, scalars ``s``."""
    n = table[k, N]
    p = _column(table, k, P, n, like)
    g = _column(table, k, G, n, like)
    m = _column(table, k, M, n, like)
    u = _column(table, k, V, n, like)
    for i in _indices(lo, hi):
        _adamax_at(i, p, g, m, u, s, l2)


@njit(inline="always")
def _adam_piece(table, segments, bounds, piece, per_tensor, shared, l2, amsgrad, like):
    """The segments of one piece, rows with a gradient only; ``per_tensor[k]`` holds row
    ``k``'s ``sqrt(1 - beta2^t)``, its inverse, ``eps`` and ``-lr / (1 - beta1^t)``."""
    for s in range(bounds[piece], bounds[piece + 1]):
        k = segments[s, 0]
        if table[k, G] != 0:
            _adam_segment(table, k, segments[s, 1], segments[s, 2],
                          shared + (per_tensor[k, 0], per_tensor[k, 1], per_tensor[k, 2],
                                    per_tensor[k, 3]), l2, amsgrad, like)


@njit(inline="always")
def _adamax_piece(table, segments, bounds, piece, per_tensor, shared, l2, like):
    """The segments of one piece, rows with a gradient only; ``per_tensor[k]`` is row
    ``k``'s ``-lr / (1 - beta1^t)``."""
    for s in range(bounds[piece], bounds[piece + 1]):
        k = segments[s, 0]
        if table[k, G] != 0:
            _adamax_segment(table, k, segments[s, 1], segments[s, 2],
                            shared + (per_tensor[k],), l2, like)


@lru_cache(maxsize=None)
def _adam_multi_kernel(dtype: np.dtype, l2: bool, amsgrad: bool):
    """The multi-tensor Adam kernel: :func:`adam_step` on every row of a table, one call.

    Each tensor has its own step (a parameter whose gradient was None at
    some step is behind the others), so ``t``, ``-lr / (1 - beta1^t)`` and
    ``sqrt(1 - beta2^t)`` are worked out per row first, serially, in double,
    as :func:`adam_step` works them out.  Then the pieces run in parallel;
    every element is rounded as in :func:`adam_step`, the last ``n mod
    TORCH_SCALAR_TAIL`` elements of each tensor (``N_VEC`` on) with PyTorch's
    scalar rounding, wherever the piece boundaries fall.
    """
    T = dtype.type

    @njit(parallel=True, cache=True, error_model="numpy")
    def adam_multi_kernel(table, segments, bounds, sign, wd, decay, lr, beta1, beta2, eps):
        steps = _count_steps(table)
        per_tensor = np.empty((table.shape[0], 4), dtype=T)
        for k in range(table.shape[0]):
            bc2_sqrt = T(math.sqrt(1.0 - beta2 ** steps[k]))        # sqrt(1 - beta2^t)
            per_tensor[k, 0] = bc2_sqrt
            per_tensor[k, 1] = T(1.0) / bc2_sqrt
            per_tensor[k, 2] = T(eps)
            per_tensor[k, 3] = T(-(lr / (1.0 - beta1 ** steps[k])))  # -lr / (1 - beta1^t)
        coeff, small = _lerp_coeff(T(1.0 - beta1), T(1.0))
        shared = (T(sign), T(wd), T(decay), coeff, small, T(beta2), T(1.0 - beta2))
        if bounds.size == 2:                # one piece: no parallel region, no threads woken
            _adam_piece(table, segments, bounds, 0, per_tensor, shared, l2, amsgrad, T(0))
        else:
            for piece in prange(bounds.size - 1):
                _adam_piece(table, segments, bounds, piece, per_tensor, shared, l2, amsgrad,
                            T(0))

    return adam_multi_kernel


@lru_cache(maxsize=None)
def _adamax_multi_kernel(dtype: np.dtype, l2: bool):
    """The multi-tensor Adamax kernel: :func:`adamax_step` on every row of a table."""
    T = dtype.type

    @njit(parallel=True, cache=True, error_model="numpy")
    def adamax_multi_kernel(table, segments, bounds, sign, wd, lr, beta1, beta2, eps):
        steps = _count_steps(table)
        per_tensor = np.empty(table.shape[0], dtype=T)
        for k in range(table.shape[0]):
            per_tensor[k] = T(-(lr / (1.0 - beta1 ** steps[k])))     # -lr / (1 - beta1^t)
        coeff, small = _lerp_coeff(T(1.0 - beta1), T(1.0))
        shared = (T(sign), T(wd), coeff, small, T(beta2), T(eps))
        if bounds.size == 2:                # one piece: no parallel region, no threads woken
            _adamax_piece(table, segments, bounds, 0, per_tensor, shared, l2, T(0))
        else:
            for piece in prange(bounds.size - 1):
                _adamax_piece(table, segments, bounds, piece, per_tensor, shared, l2, T(0))

    return adamax_multi_kernel


class MultiTensorTable:
    """A list of tensors laid out for the multi-tensor kernels, built once and reused.

    ``rows`` gives, per tensor, the addresses of ``p, m, v, v_max`` (``v_max``
    0 without AMSGrad; Adamax's ``u`` in the ``v`` column), of its float32
    step counter, and its length; all arrays C-contiguous, of ``dtype``,
    alive and untouched by anything else while the table is in use (the
    caller guarantees it: nothing is checked here).  Gradient addresses are
    set before each step with :meth:`set_grads` (0: no gradient, the tensor
    and its step are left alone), since autograd allocates new gradients.

    The concatenated element range (all tensors end to end) is cut into
    ``threads`` pieces of nearly equal length at multiples of 16 elements,
    each a list of segments ``(tensor, start, end)``, so one large tensor and
    many small ones both keep every thread busy.
    """

    def __init__(self, rows, dtype, threads: int):
        self.dtype = np.dtype(dtype)
        self.table = np.zeros((len(rows), _COLUMNS), dtype=np.int64)
        for k, (p, m, v, v_max, step, n) in enumerate(rows):
            self.table[k] = (p, 0, m, v, v_max, step, n, n - n % TORCH_SCALAR_TAIL[self.dtype])
        sizes = self.table[:, N]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        total = int(offsets[-1])
        pieces = max(1, min(int(threads), -(-total // _MIN_PIECE)))
        cuts = [total * j // pieces // _ALIGN * _ALIGN for j in range(pieces)] + [total]
        segments, bounds = [], [0]
        for a, b in zip(cuts[:-1], cuts[1:]):
            for k in range(max(0, int(np.searchsorted(offsets, a, "right")) - 1), len(rows)):
                if offsets[k] >= b:
                    break
                lo, hi = max(a, offsets[k]) - offsets[k], min(b, offsets[k + 1]) - offsets[k]
                if hi > lo:
                    segments.append((k, lo, hi))
            bounds.append(len(segments))
        self.segments = np.array(segments, dtype=np.int64).reshape(-1, 3)
        self.bounds = np.array(bounds, dtype=np.int64)

    def set_grads(self, addresses) -> None:
        """The gradients' addresses for the next step, one per row (0 for none)."""
        self.table[:, G] = np.fromiter(addresses, np.int64, len(self.table))

    def adam(self, *, lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad,
             maximize) -> None:
        """One :func:`adam_step` per row with a gradient, its own step counted up first."""
        lr, beta1, beta2, eps, wd = map(float, (lr, beta1, beta2, eps, weight_decay))
        kernel = _adam_multi_kernel(self.dtype, wd != 0 and not decoupled, bool(amsgrad))
        kernel(self.table, self.segments, self.bounds, -1.0 if maximize else 1.0, wd,
               1.0 - lr * wd if decoupled else 1.0, lr, beta1, beta2, eps)

    def adamax(self, *, lr, beta1, beta2, eps, weight_decay, maximize) -> None:
        """One :func:`adamax_step` per row with a gradient, its own step counted up first."""
        lr, beta1, beta2, eps, wd = map(float, (lr, beta1, beta2, eps, weight_decay))
        kernel = _adamax_multi_kernel(self.dtype, wd != 0)
        kernel(self.table, self.segments, self.bounds, -1.0 if maximize else 1.0, wd, lr,
               beta1, beta2, eps)


def _flat(*arrays) -> tuple:
    """1-d views of C-contiguous arrays (no copy), so one compiled kernel serves every shape."""
    if arrays[0].ndim == 1:
        return arrays
    return tuple(a.reshape(-1) for a in arrays)
