"""Validation shared by every backend (reference, cpu, cuda).

Every public step function calls :func:`check_adam` or :func:`check_adamax`
before it touches any array, so bad input raises a ``TypeError`` or
``ValueError`` that names the argument and leaves every array as it was.

Arrays reach the checks as :class:`ArraySpec` records, so the same rules
serve NumPy arrays (:func:`numpy_spec`) and device arrays that expose
``__cuda_array_interface__`` (:func:`cuda_spec`).
"""

from __future__ import annotations

import math
import operator
from numbers import Real
from typing import NamedTuple

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class ArraySpec(NamedTuple):
    """What the checks need to know about one array.

    ``memory`` says where its bytes live: for a NumPy array, the array that
    owns them (``None`` if no NumPy array does); for a device array, the
    ``(address, nbytes)`` range.
    """

    name: str
    array: object
    shape: tuple
    dtype: np.dtype
    contiguous: bool
    writable: bool
    memory: object


def numpy_spec(name: str, a) -> ArraySpec:
    """Describe a NumPy array; anything else is a ``TypeError``."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    flags = a.flags
    owner = a.base
    if owner is None:
        owner = a
    elif not isinstance(owner, np.ndarray) or owner.base is not None:
        owner = None                      # foreign memory (torch, buffers): compare bytes
    return _new_spec(ArraySpec, (name, a, a.shape, a.dtype, flags.c_contiguous,
                                 flags.writeable, owner))


# ``ArraySpec(...)`` runs NamedTuple's ``__new__`` in Python (~0.4 us); building the
# tuple directly is the same object and keeps per-call validation to a few us.
_new_spec = tuple.__new__


def cuda_spec(name: str, a) -> ArraySpec:
    """Describe an object exposing ``__cuda_array_interface__`` (torch, CuPy, Numba)."""
    try:
        cai = a.__cuda_array_interface__
    except AttributeError:
        raise TypeError(
            f"{name} must be a CUDA array (an object with __cuda_array_interface__, "
            f"such as a torch CUDA tensor, a CuPy array or a Numba device array), "
            f"got {type(a).__name__}") from None
    shape = tuple(cai["shape"])
    dtype = np.dtype(cai["typestr"])
    address, readonly = cai["data"]
    strides = cai.get("strides")
    contiguous = strides is None or tuple(strides) == _c_strides(shape, dtype.itemsize)
    nbytes = math.prod(shape) * dtype.itemsize
    return ArraySpec(name, a, shape, dtype, contiguous, not readonly, (address, nbytes))


def _overlap(a: ArraySpec, b: ArraySpec) -> bool:
    """Whether two arrays may share bytes."""
    if isinstance(a.memory, tuple):
        (x, n), (y, _) = a.memory, b.memory
        return n > 0 and abs(x - y) < n   # equal-sized ranges [x, x+n) and [y, y+n)
    if a.memory is not None and b.memory is not None and a.memory is not b.memory:
        return False                      # two different NumPy owners never overlap
    return np.may_share_memory(a.array, b.array)


def _c_strides(shape: tuple, itemsize: int) -> tuple:
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def check_arrays(specs: list[ArraySpec], written: tuple[str, ...]) -> None:
    """Same shape, same float dtype, C-contiguous; ``written`` ones writable; no overlap.

    ``specs[0]`` is the parameter ``p``: the others must match its shape
    and dtype.  ``g`` may be read-only, but no two arrays may share memory,
    since the step reads one while it writes another.
    """
    name0, _, shape, dtype, _, _, _ = specs[0]
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name0} must have dtype float32 or float64, got {dtype}")
    for name, _, s_shape, s_dtype, contiguous, writable, _ in specs:
        if s_dtype != dtype:
            raise TypeError(f"{name} has dtype {s_dtype}, but {name0} has dtype "
                            f"{dtype}: all arrays must share one dtype")
        if s_shape != shape:
            raise ValueError(f"{name} has shape {s_shape}, but {name0} has shape "
                             f"{shape}: all arrays must share one shape")
        if not contiguous:
            raise ValueError(f"{name} must be C-contiguous")
        if not writable and name in written:
            raise ValueError(f"{name} is read-only, but the step updates it in place")
    if _distinct_numpy_owners(specs):
        return
    for i, a in enumerate(specs):
        for b in specs[i + 1:]:
            if _overlap(a, b):
                raise ValueError(f"{a.name} and {b.name} share memory; "
                                 f"each array must be a separate buffer")


def _distinct_numpy_owners(specs: list[ArraySpec]) -> bool:
    """Each array's bytes belong to a different NumPy array (the usual case): no overlap."""
    owners = {id(s.memory) for s in specs if isinstance(s.memory, np.ndarray)}
    return len(owners) == len(specs)


def check_step_number(t) -> int:
    """``t`` is the 1-based step number: an integer >= 1."""
    if type(t) is int and t >= 1:
        return t
    if isinstance(t, (bool, np.bool_)):
        raise TypeError(f"t must be an integer step number (1 for the first step), got {t!r}")
    try:
        t = operator.index(t)
    except TypeError:
        raise TypeError(f"t must be an integer step number (1 for the first step), "
                        f"got {type(t).__name__} {t!r}") from None
    if t < 1:
        raise ValueError(f"t must be >= 1 (the first step is t=1), got {t}")
    return t


def _real(name: str, x) -> float:
    if type(x) is float or type(x) is int:
        return x
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__} {x!r}")
    return float(x)


def check_hyperparameters(lr, beta1, beta2, eps, weight_decay) -> None:
    """``lr, eps, weight_decay`` finite and >= 0; ``beta1, beta2`` in [0, 1)."""
    for name, x in (("lr", lr), ("eps", eps), ("weight_decay", weight_decay)):
        x = _real(name, x)
        if not 0.0 <= x < math.inf:
            raise ValueError(f"{name} must be finite and >= 0, got {x!r}")
    for name, x in (("beta1", beta1), ("beta2", beta2)):
        x = _real(name, x)
        if not 0.0 <= x < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {x!r}")


def check_flags(**flags) -> None:
    """Switches must be real booleans, so that ``amsgrad="no"`` is not read as True."""
    for name, x in flags.items():
        if x is not True and x is not False and not isinstance(x, np.bool_):
            raise TypeError(f"{name} must be True or False, got {type(x).__name__} {x!r}")


def check_adam(spec, p, g, m, v, t, lr, beta1, beta2, eps, weight_decay,
               decoupled, amsgrad, v_max, maximize) -> None:
    """All the checks of ``adam_step``; ``spec`` describes an array (numpy_spec/cuda_spec)."""
    check_flags(decoupled=decoupled, amsgrad=amsgrad, maximize=maximize)
    check_step_number(t)
    check_hyperparameters(lr, beta1, beta2, eps, weight_decay)
    arrays = [spec("p", p), spec("g", g), spec("m", m), spec("v", v)]
    if amsgrad:
        if v_max is None:
            raise ValueError("amsgrad=True needs v_max, the running maximum of v "
                             "(start it as zeros like v)")
        arrays.append(spec("v_max", v_max))
    elif v_max is not None:
        raise ValueError("v_max was given but amsgrad=False; pass amsgrad=True to use it")
    check_arrays(arrays, written=("p", "m", "v", "v_max"))


def check_adamax(spec, p, g, m, u, t, lr, beta1, beta2, eps, weight_decay, maximize) -> None:
    """All the checks of ``adamax_step``."""
    check_flags(maximize=maximize)
    check_step_number(t)
    check_hyperparameters(lr, beta1, beta2, eps, weight_decay)
    arrays = [spec("p", p), spec("g", g), spec("m", m), spec("u", u)]
    check_arrays(arrays, written=("p", "m", "u"))


def check_momentum_decay(momentum_decay) -> None:
    """NAdam's ``momentum_decay`` (psi in mu_t = beta1 (1 - 0.96^(t psi) / 2)): finite, >= 0."""
    x = _real("momentum_decay", momentum_decay)
    if not 0.0 <= x < math.inf:
        raise ValueError(f"momentum_decay must be finite and >= 0, got {x!r}")


def check_mu_product(mu_product) -> None:
    """NAdam's running product of mu_t: a writable one-element float array in [0, 1].

    It is state, like ``torch.optim.NAdam``'s ``state["mu_product"]`` (a 0-d
    float32 tensor under torch's default dtype), so it may have a dtype other
    than the parameter's; its dtype decides how the product is rounded.
    """
    if not isinstance(mu_product, np.ndarray):
        raise TypeError(f"mu_product must be a numpy.ndarray with one element "
                        f"(start it as np.ones((), np.float32)), got "
                        f"{type(mu_product).__name__}")
    if mu_product.size != 1:
        raise ValueError(f"mu_product must have exactly one element, got shape "
                         f"{mu_product.shape}")
    if mu_product.dtype not in FLOAT_DTYPES:
        raise TypeError(f"mu_product must have dtype float32 or float64, got "
                        f"{mu_product.dtype}")
    if not mu_product.flags.writeable:
        raise ValueError("mu_product is read-only, but the step updates it in place")
    value = float(mu_product.reshape(()))
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"mu_product must be in [0, 1] (a product of momentum "
                         f"coefficients, 1 before the first step), got {value!r}")


def check_nadam(spec, p, g, m, v, t, mu_product, lr, beta1, beta2, eps, weight_decay,
                momentum_decay, decoupled, maximize) -> None:
    """All the checks of ``nadam_step``."""
    check_flags(decoupled=decoupled, maximize=maximize)
    check_step_number(t)
    check_hyperparameters(lr, beta1, beta2, eps, weight_decay)
    check_momentum_decay(momentum_decay)
    check_mu_product(mu_product)
    arrays = [spec("p", p), spec("g", g), spec("m", m), spec("v", v)]
    check_arrays(arrays, written=("p", "m", "v"))
    if any(np.may_share_memory(mu_product, a.array) for a in arrays):
        raise ValueError("mu_product shares memory with another array; "
                         "each array must be a separate buffer")


def check_radam(spec, p, g, m, v, t, lr, beta1, beta2, eps, weight_decay,
                decoupled, maximize) -> None:
    """All the checks of ``radam_step``."""
    check_flags(decoupled=decoupled, maximize=maximize)
    check_step_number(t)
    check_hyperparameters(lr, beta1, beta2, eps, weight_decay)
    arrays = [spec("p", p), spec("g", g), spec("m", m), spec("v", v)]
    check_arrays(arrays, written=("p", "m", "v"))
