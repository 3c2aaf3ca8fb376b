"""numba kernel of :mod:`proofmesh.edge.verifier`: a whole span of wire readings checked in
native code with the GIL released (imported lazily: numba is slow to import).

Per record it does what :func:`proofmesh.edge.verifier.recover_signer` does — payload
hash, low-s and v checks, the EIP-712 digest (three keccaks), public-key recovery and the
signer's address (one more keccak) — without creating a Python object. libsecp256k1 is the
copy inside coincurve's extension; its entry points are called through addresses passed in
as integers (:mod:`proofmesh.crypto._ffi_numba` and the two intrinsics below), not as ctypes
globals, so the compiled kernel embeds no process-specific address and numba can cache it.
"""

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from proofmesh.crypto import _numba_cache  # noqa: F401  (before any @nb.njit: caches keyed by dependencies too)
from proofmesh.crypto._ffi_numba import call4
from proofmesh.crypto._keccak_numba import keccak_into

U64 = nb.uint64


@intrinsic
def _call_parse(typingctx, fn, ctx, out, inp, recid):
    """``int fn(ctx*, sig*, const uchar*64, int recid)`` (recoverable_signature_parse_compact)."""
    sig = types.int32(types.uintp, types.uintp, types.uintp, types.uintp, types.int32)

    def codegen(context, builder, signature, args):
        p8 = ir.PointerType(ir.IntType(8))
        fnty = ir.FunctionType(ir.IntType(32), [p8, p8, p8, ir.IntType(32)])
        ptr = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(ptr, [builder.inttoptr(args[1], p8), builder.inttoptr(args[2], p8),
                                  builder.inttoptr(args[3], p8), args[4]])

    return sig, codegen


@intrinsic
def _call_serialize(typingctx, fn, ctx, out, outlen, pub, flags):
    """``int fn(ctx*, uchar* out, size_t* outlen, pubkey*, unsigned flags)`` (ec_pubkey_serialize)."""
    sig = types.int32(types.uintp, types.uintp, types.uintp, types.uintp, types.uintp, types.uint32)

    def codegen(context, builder, signature, args):
        p8 = ir.PointerType(ir.IntType(8))
        fnty = ir.FunctionType(ir.IntType(32), [p8, p8, p8, p8, ir.IntType(32)])
        ptr = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(ptr, [builder.inttoptr(args[1], p8), builder.inttoptr(args[2], p8),
                                  builder.inttoptr(args[3], p8), builder.inttoptr(args[4], p8), args[5]])

    return sig, codegen


@nb.njit(cache=True, nogil=True)
def verify_records(body, offsets, lo, hi, prefix, typehash, half_n, fns, ctx, status, signers):
    """Check records ``lo … hi-1`` of ``body`` (a wire batch as uint8); see the module docstring.

    ``fns``: addresses of parse_compact, recover, serialize; ``status[i]``: 0 (OK), 1 (bad
    signature), 2 (malleable), 3 (payload hash mismatch); ``signers[i]``: 20-byte signer.
    """
    st = np.empty(25, np.uint64)
    sb = np.zeros(256, np.uint8)            # the struct's ABI encoding
    db = np.empty(66, np.uint8)             # 0x1901 ‖ domain separator ‖ struct hash
    h = np.empty(32, np.uint8)
    rsig = np.empty(65, np.uint8)           # secp256k1_ecdsa_recoverable_signature
    pub = np.empty(64, np.uint8)            # secp256k1_pubkey
    ser = np.empty(65, np.uint8)
    outlen = np.empty(1, np.uint64)
    sig64 = np.empty(64, np.uint8)
    for k in range(32):
        sb[k] = typehash[k]
    for k in range(34):
        db[k] = prefix[k]
    p_rsig = rsig.ctypes.data
    p_pub = pub.ctypes.data
    p_ser = ser.ctypes.data
    p_len = outlen.ctypes.data
    p_sig = sig64.ctypes.data
    p_db = db.ctypes.data
    for i in range(lo, hi):
        o = offsets[i]
        status[i] = 1
        for k in range(20):
            signers[i, k] = 0
        plen = (np.int64(body[o + 229]) << 8) | np.int64(body[o + 230])
        keccak_into(body, o + 231, plen, h, 0, st)
        same = True
        for k in range(32):
            if h[k] != body[o + 68 + k]:
                same = False
                break
        if not same:
            status[i] = 3
            continue
        # s > (n-1)/2 is the malleable twin of a valid signature: refused as the contract does.
        high = False
        for k in range(32):
            a = body[o + 196 + k]
            if a != half_n[k]:
                high = a > half_n[k]
                break
        if high:
            status[i] = 2
            continue
        v = body[o + 228]
        if v != 27 and v != 28:
            continue
        # struct: typehash | 0*12 device | 0*24 seq | nonce | 0*24 ts | payloadHash | modelVersion | outputHash
        for k in range(20):
            sb[44 + k] = body[o + k]
        for k in range(8):
            sb[88 + k] = body[o + 20 + k]
        for k in range(32):
            sb[96 + k] = body[o + 28 + k]
        for k in range(8):
            sb[152 + k] = body[o + 60 + k]
        for k in range(96):
            sb[160 + k] = body[o + 68 + k]
        keccak_into(sb, 0, 256, db, 34, st)
        keccak_into(db, 0, 66, h, 0, st)
        for k in range(64):
            sig64[k] = body[o + 164 + k]
        if _call_parse(fns[0], ctx, p_rsig, p_sig, np.int32(v - 27)) != 1:
            continue
        if call4(fns[1], ctx, p_pub, p_rsig, h.ctypes.data) != 1:
            continue
        outlen[0] = 65
        _call_serialize(fns[2], ctx, p_ser, p_len, p_pub, np.uint32(2))   # SECP256K1_EC_UNCOMPRESSED
        keccak_into(ser, 1, 64, h, 0, st)
        for k in range(20):
            signers[i, k] = h[12 + k]
        status[i] = 0


@nb.njit(cache=True, nogil=True)
def run_leaves(devices, epochs, firsts, lasts, out):
    """OpenZeppelin leaves of receipt runs: keccak(keccak(abi_encode(address, uint64, uint64, uint64)))."""
    st = np.empty(25, np.uint64)
    enc = np.zeros(128, np.uint8)
    h = np.empty(32, np.uint8)
    for i in range(devices.shape[0]):
        for k in range(20):
            enc[12 + k] = devices[i, k]
        e = epochs[i]
        a = firsts[i]
        b = lasts[i]
        for k in range(8):
            sh = U64(8 * (7 - k))
            enc[56 + k] = np.uint8((e >> sh) & U64(0xFF))
            enc[88 + k] = np.uint8((a >> sh) & U64(0xFF))
            enc[120 + k] = np.uint8((b >> sh) & U64(0xFF))
        keccak_into(enc, 0, 128, h, 0, st)
        keccak_into(h, 0, 32, out[i], 0, st)
