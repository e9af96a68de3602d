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
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import njit, prange

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


def _flat(*arrays) -> tuple:
    """1-d views of C-contiguous arrays (no copy), so one compiled kernel serves every shape."""
    if arrays[0].ndim == 1:
        return arrays
    return tuple(a.reshape(-1) for a in arrays)
