"""numba kernel of :class:`proofmesh.inference.receipt.ValuesSealer`: a model's outputs turned
into a signed value receipt in one native call (imported lazily: numba is slow to import).

Why native: at batch 32 a node's whole budget beside a 7 ms model run is ~0.7 ms, and every
step after the run runs cache-cold (the model has just streamed its 21 MB of weights through
the core's caches). In Python the steps — fixed point, the ``int256[]`` ABI words, keccak over
them, the EIP-712 struct and digest, the signature — were ~10 numpy / hashlib / cffi calls,
each with its own cold dispatch path: ~0.55 ms cold against ~0.16 ms warm. Here they are one
call whose code fits in a few cache lines, with no Python object made per step.

The ABI encoding is never materialised: each 32-byte word is absorbed into the keccak state
as four little-endian lanes (three sign-extension lanes and the byte-swapped int64). The
signature is libsecp256k1's ``secp256k1_ecdsa_sign_recoverable`` with its default RFC 6979
nonce — the copy inside coincurve, called through addresses passed in as integers (as
:mod:`proofmesh.edge._verify_numba` does) — so the bytes equal
:meth:`proofmesh.inference.receipt.Receipt.signed_with`'s; tests check both.
"""

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from proofmesh.crypto._keccak_numba import keccak_f

U64 = nb.uint64
RATE_LANES = 17                   # keccak256: 136-byte rate = 17 lanes
FIXED_POINT = 1e6                 # receipt.FIXED_POINT
LIMIT = 9.2e18                    # |value| must fit an int64 after scaling

OK, NOT_FINITE, OUT_OF_RANGE, SIGN_FAILED = 0, 1, 2, 3


@intrinsic
def _call6(typingctx, fn, a, b, c, d, e, f):
    """``int fn(void*, void*, void*, void*, void*, void*)`` at address ``fn``."""
    sig = types.int32(types.uintp, types.uintp, types.uintp, types.uintp, types.uintp, types.uintp, types.uintp)

    def codegen(context, builder, signature, args):
        p8 = ir.PointerType(ir.IntType(8))
        fnty = ir.FunctionType(ir.IntType(32), [p8] * 6)
        ptr = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(ptr, [builder.inttoptr(x, p8) for x in args[1:]])

    return sig, codegen


@intrinsic
def _call4(typingctx, fn, a, b, c, d):
    """``int fn(void*, void*, void*, void*)`` at address ``fn``."""
    sig = types.int32(types.uintp, types.uintp, types.uintp, types.uintp, types.uintp)

    def codegen(context, builder, signature, args):
        p8 = ir.PointerType(ir.IntType(8))
        fnty = ir.FunctionType(ir.IntType(32), [p8] * 4)
        ptr = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(ptr, [builder.inttoptr(x, p8) for x in args[1:]])

    return sig, codegen


@nb.njit(cache=True, inline="always")
def _bswap(v):
    r = U64(0)
    for k in range(8):
        r = (r << U64(8)) | ((v >> U64(8 * k)) & U64(0xFF))
    return r


@nb.njit(cache=True, inline="always")
def _absorb(st, i, lane):
    """XOR ``lane`` in at rate position ``i``; returns the next position (permuting when full)."""
    st[i] ^= lane
    i += 1
    if i == RATE_LANES:
        keccak_f(st)
        i = 0
    return i


@nb.njit(cache=True, inline="always")
def _finish(st, i, dst, dpos):
    """Pad (the message is whole lanes long), permute, write the 32-byte digest."""
    st[i] ^= U64(0x01)
    st[RATE_LANES - 1] ^= U64(0x80) << U64(56)
    keccak_f(st)
    for j in range(4):
        lane = st[j]
        for k in range(8):
            dst[dpos + 8 * j + k] = np.uint8((lane >> U64(8 * k)) & U64(0xFF))


@nb.njit(cache=True, inline="always")
def _keccak_words(src, nbytes, dst, dpos, st):
    """keccak256 of ``src[:nbytes]`` (``nbytes`` a multiple of 8) into ``dst[dpos:dpos+32]``."""
    for j in range(25):
        st[j] = U64(0)
    i = 0
    for w in range(nbytes // 8):
        lane = U64(0)
        for k in range(8):
            lane |= U64(src[8 * w + k]) << U64(8 * k)
        i = _absorb(st, i, lane)
    _finish(st, i, dst, dpos)


@nb.njit(cache=True, nogil=True)
def seal_values(y, values, words, prefix, fns, ctx, seckey, sig):
    """Commit and sign outputs ``y`` (1-D float32/float64): see the module docstring.

    ``values`` (int64, len(y)) receives round(y * 1e6); ``words`` (224 bytes) is the
    receipt struct's encoding (type hash, version, input hash, output hash, nonce, price,
    commitment) whose output-hash word (bytes 96-128) is written here; ``prefix`` (66
    bytes) is ``0x1901 ‖ domain separator`` followed by 32 bytes of room for the struct
    hash; ``fns``: addresses of sign_recoverable and recoverable serialize_compact;
    ``sig`` (65 bytes) receives r ‖ s ‖ v with v in {27, 28}. Returns OK or an error code.
    """
    n = y.size
    for k in range(n):
        f = np.float64(y[k]) * FIXED_POINT
        if not np.isfinite(f):
            return NOT_FINITE
        if abs(f) > LIMIT:
            return OUT_OF_RANGE
        values[k] = np.int64(np.rint(f))
    # keccak256(abi.encode(int256[] values)): offset word, length word, then the values
    st = np.zeros(25, np.uint64)
    i = 0
    for lane in (U64(0), U64(0), U64(0), _bswap(U64(32)), U64(0), U64(0), U64(0), _bswap(U64(n))):
        i = _absorb(st, i, lane)
    for k in range(n):
        v = values[k]
        ext = U64(0xFFFFFFFFFFFFFFFF) if v < 0 else U64(0)
        i = _absorb(st, i, ext)
        i = _absorb(st, i, ext)
        i = _absorb(st, i, ext)
        i = _absorb(st, i, _bswap(U64(v)))
    _finish(st, i, words, 96)
    # EIP-712: digest = keccak(0x1901 ‖ separator ‖ keccak(struct words))
    _keccak_words(words, 224, prefix, 34, st)
    digest = np.empty(32, np.uint8)
    msg = np.empty(72, np.uint8)          # 66 bytes, zero-padded to whole lanes below
    for k in range(66):
        msg[k] = prefix[k]
    for j in range(25):
        st[j] = U64(0)
    i = 0
    for w in range(8):                    # 64 whole bytes, then 2 bytes + padding 0x01
        lane = U64(0)
        for k in range(8):
            lane |= U64(msg[8 * w + k]) << U64(8 * k)
        i = _absorb(st, i, lane)
    st[i] ^= U64(msg[64]) | (U64(msg[65]) << U64(8)) | (U64(0x01) << U64(16))
    st[RATE_LANES - 1] ^= U64(0x80) << U64(56)
    keccak_f(st)
    for j in range(4):
        lane = st[j]
        for k in range(8):
            digest[8 * j + k] = np.uint8((lane >> U64(8 * k)) & U64(0xFF))
    rsig = np.empty(65, np.uint8)         # secp256k1_ecdsa_recoverable_signature (opaque)
    recid = np.zeros(1, np.int32)
    if _call6(fns[0], ctx, rsig.ctypes.data, digest.ctypes.data, seckey.ctypes.data, 0, 0) != 1:
        return SIGN_FAILED
    _call4(fns[1], ctx, sig.ctypes.data, recid.ctypes.data, rsig.ctypes.data)
    sig[64] = np.uint8(recid[0] + 27)
    return OK
