"""``fma(a, b, c) = a * b + c`` rounded once, for Numba ``@njit`` code.

Numba has no fused multiply-add builtin, and ``fastmath=True`` lets LLVM
fuse whichever products and sums it likes, which changes results.  This
intrinsic emits ``llvm.fma`` exactly where it is written, so a kernel can
round the way PyTorch's vectorised CPU code rounds (it uses FMA
instructions in ``lerp`` and where GCC contracts ``a * b + c``).
``llvm.fma`` is correctly rounded on every target; on CPUs with FMA
hardware (x86-64-v3 and later) it is one instruction and vectorises.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

__all__ = ["fma"]


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` with a single rounding; all three of one float type."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        ty = context.get_value_type(signature.return_type)
        fnty = ir.FunctionType(ty, [ty, ty, ty])
        fn = builder.module.declare_intrinsic("llvm.fma", [ty], fnty)
        return builder.call(fn, args)

    return a(a, b, c), codegen
