"""numba kernel of :class:`proofmesh.inference.receipt.ValuesSealer`: a model's outputs turned
into a signed value receipt in one native call (imported lazily: numba is slow to import).

Why native: at batch 32 a node's whole budget beside a 7 ms model run is ~0.7 ms, and every
step after the run runs cache-cold (the model has just streamed its 21 MB of weights through
the core's caches). In Python the steps — fixed point, the packed int64 values, keccak over
them, the EIP-712 struct and digest, the signature — were ~10 numpy / hashlib / cffi calls,
each with its own cold dispatch path. Here they are one call with no Python object made per
step (measured right after a batch-32 model run, same process, load 5: 447 us in Python
against 179 us here; warm 108 against 67 us).

The signature is libsecp256k1's ``secp256k1_ecdsa_sign_recoverable`` with its default RFC 6979
nonce — the copy inside coincurve, called through addresses passed in as integers
(:mod:`proofmesh.crypto._ffi_numba`) — so the bytes equal
:meth:`proofmesh.inference.receipt.Receipt.signed_with`'s; tests check both.
"""

import numba as nb
import numpy as np

from proofmesh.crypto import _numba_cache  # noqa: F401  (before any @nb.njit: caches keyed by dependencies too)
from proofmesh.crypto._ffi_numba import call4, call6
from proofmesh.crypto._keccak_numba import keccak_into

U64 = nb.uint64
FIXED_POINT = 1e6                 # receipt.FIXED_POINT
CHUNK = 64                        # values.CHUNK: values per leaf of the value commitment
LIMIT = 9.2e18                    # |value| must fit an int64 after scaling

OK, NOT_FINITE, OUT_OF_RANGE, SIGN_FAILED = 0, 1, 2, 3


@nb.njit(cache=True, nogil=True)
def commit_into(packed, n, dst, dpos, st):
    """:func:`proofmesh.inference.values.values_hash` of ``n`` packed values into
    ``dst[dpos:dpos+32]``: keccak of the bytes up to 64 values, else the tagged Merkle root
    of their 64-value chunks."""
    if n <= CHUNK:
        keccak_into(packed, 0, packed.size, dst, dpos, st)
        return
    chunks = (n + CHUNK - 1) // CHUNK
    width = 1
    while width < chunks:
        width *= 2
    tree = np.zeros(32 * width, np.uint8)      # leaves, padded with zero words
    for c in range(chunks):
        start = 8 * CHUNK * c
        keccak_into(packed, start, min(8 * CHUNK, packed.size - start), tree, 32 * c, st)
    while width > 1:
        # in place: pair i is read (bytes 64i..64i+64) before node i is written (32i..32i+32,
        # a pair already consumed)
        for i in range(width // 2):
            keccak_into(tree, 64 * i, 64, tree, 32 * i, st)
        width //= 2
    tail = np.zeros(65, np.uint8)              # 0x01 ++ uint256(count) ++ root
    tail[0] = 1
    for j in range(8):
        tail[32 - j] = np.uint8((U64(n) >> U64(8 * j)) & U64(0xFF))
    tail[33:] = tree[:32]
    keccak_into(tail, 0, 65, dst, dpos, st)


@nb.njit(cache=True, nogil=True)
def seal_values(y, values, head, separator, fns, ctx, seckey, out):
    """Commit and sign outputs ``y`` (1-D float32/float64): see the module docstring.

    ``values`` (int64, len(y)) receives round(y * 1e6); ``head`` (224 bytes, read only) is
    the receipt struct's encoding (type hash, version, input hash, output hash, nonce,
    price, commitment) with the output-hash word (bytes 96-128) left to fill; ``separator``
    the domain separator; ``fns``: addresses of sign_recoverable and recoverable
    serialize_compact; ``out`` (97 bytes) receives the output hash, then r ‖ s ‖ v with v
    in {27, 28}. Returns OK or an error code.
    """
    n = y.size
    packed = np.empty(8 * n, np.uint8)     # 8-byte big-endian int64 per value (receipt.values_hash)
    for k in range(n):
        f = np.float64(y[k]) * FIXED_POINT
        if not np.isfinite(f):
            return NOT_FINITE
        if abs(f) > LIMIT:
            return OUT_OF_RANGE
        v = np.int64(np.rint(f))
        values[k] = v
        u = U64(v)
        for j in range(8):
            packed[8 * k + 7 - j] = np.uint8((u >> U64(8 * j)) & U64(0xFF))
    st = np.empty(25, np.uint64)
    words = head.copy()
    commit_into(packed, n, words, 96, st)                 # the receipt's output hash
    msg = np.empty(66, np.uint8)                          # 0x1901 ‖ separator ‖ struct hash
    msg[0] = 0x19
    msg[1] = 0x01
    msg[2:34] = separator
    keccak_into(words, 0, 224, msg, 34, st)
    digest = np.empty(32, np.uint8)
    keccak_into(msg, 0, 66, digest, 0, st)
    out[:32] = words[96:128]
    rsig = np.empty(65, np.uint8)         # secp256k1_ecdsa_recoverable_signature (opaque)
    recid = np.zeros(1, np.int32)
    if call6(fns[0], ctx, rsig.ctypes.data, digest.ctypes.data, seckey.ctypes.data, 0, 0) != 1:
        return SIGN_FAILED
    call4(fns[1], ctx, out[32:].ctypes.data, recid.ctypes.data, rsig.ctypes.data)
    out[96] = np.uint8(recid[0] + 27)
    return OK
