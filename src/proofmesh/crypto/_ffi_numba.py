"""numba intrinsics that call a C function through its address: how the compiled kernels
(:mod:`proofmesh.edge._verify_numba`, :mod:`proofmesh.inference._receipt_numba`) call the
libsecp256k1 inside coincurve's extension.

The address is an argument (an integer the caller takes from coincurve's cffi ``lib``), not
a ctypes global baked into the code, so a compiled kernel embeds no process-specific address
and numba can cache it on disk. Every pointer argument is an integer (``array.ctypes.data``).
"""

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from proofmesh.crypto import _numba_cache  # noqa: F401  (before any @nb.njit: caches keyed by dependencies too)


def _pointer_call(builder, args, n):
    p8 = ir.PointerType(ir.IntType(8))
    fnty = ir.FunctionType(ir.IntType(32), [p8] * n)
    ptr = builder.inttoptr(args[0], fnty.as_pointer())
    return builder.call(ptr, [builder.inttoptr(x, p8) for x in args[1:]])


@intrinsic
def call4(typingctx, fn, a, b, c, d):
    """``int fn(void*, void*, void*, void*)`` at address ``fn``."""
    sig = types.int32(types.uintp, types.uintp, types.uintp, types.uintp, types.uintp)
    return sig, lambda context, builder, signature, args: _pointer_call(builder, args, 4)


@intrinsic
def call6(typingctx, fn, a, b, c, d, e, f):
    """``int fn(void*, void*, void*, void*, void*, void*)`` at address ``fn``."""
    sig = types.int32(types.uintp, types.uintp, types.uintp, types.uintp, types.uintp, types.uintp, types.uintp)
    return sig, lambda context, builder, signature, args: _pointer_call(builder, args, 6)
