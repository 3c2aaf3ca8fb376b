"""Batch signature verification of wire readings, on every core.

ECDSA has no batch verification: each reading costs one public-key recovery
(libsecp256k1, ~70 µs per core here), so throughput comes from native code and both
cores. The native kernel (:mod:`proofmesh.edge._verify_numba`) checks a span of a batch
— payload hash, low-s, v, EIP-712 digest, recovery, signer address — in numba with the GIL
released, calling the libsecp256k1 inside coincurve directly; :class:`VerifierPool` runs
spans on threads of the gateway process (no pickling, no worker processes).

Why recovery and not ``verify`` against the device's known key (~20% cheaper here): a verify
does not check ``v`` , but the signature is re-checked on chain with ``ecrecover``, which
does. A reading with the wrong ``v`` would pass the gateway and then prove the gateway
faulty (``EdgeEpochs.challenge_reading``) — a slashing trap any device could set.

Results are a status byte per record (:data:`OK` or a rejection code) and the recovered
signer (zeros when none); :func:`verify_span` is the pure-Python reference.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import sys
import threading

import numpy as np

from proofmesh.crypto.keccak import keccak256
from proofmesh.edge.reading import HALF_N, HEAD, READING_TYPEHASH, RECORD_FIXED, runs_root

HEAD_SIZE = HEAD.size
SWITCH_INTERVAL = 0.0002      # seconds; see VerifierPool

OK = 0
BAD_SIGNATURE = 1
MALLEABLE = 2
PAYLOAD_MISMATCH = 3
STATUS_NAMES = {BAD_SIGNATURE: "bad_signature", MALLEABLE: "malleable_signature",
                PAYLOAD_MISMATCH: "payload_hash_mismatch"}

_Z12 = bytes(12)
_Z24 = bytes(24)
_NOSIGNER = bytes(20)

try:  # direct cffi calls into libsecp256k1 (coincurve's own bindings)
    from coincurve._libsecp256k1 import ffi as _ffi, lib as _lib
    from coincurve.context import GLOBAL_CONTEXT as _GCTX

    _CTX = _GCTX.ctx
    _RSIG = _ffi.new("secp256k1_ecdsa_recoverable_signature *")
    _PUB = _ffi.new("secp256k1_pubkey *")
    _OUT = _ffi.new("unsigned char[65]")
    _OUTLEN = _ffi.new("size_t *")
    _UNCOMPRESSED = _lib.SECP256K1_EC_UNCOMPRESSED

    def recover_pubkey(sig64: bytes, recid: int, digest: bytes) -> bytes | None:
        """64-byte uncompressed public key (without 0x04) or None."""
        if not _lib.secp256k1_ecdsa_recoverable_signature_parse_compact(_CTX, _RSIG, sig64, recid):
            return None
        if not _lib.secp256k1_ecdsa_recover(_CTX, _PUB, _RSIG, digest):
            return None
        _OUTLEN[0] = 65
        _lib.secp256k1_ec_pubkey_serialize(_CTX, _OUT, _OUTLEN, _PUB, _UNCOMPRESSED)
        return _ffi.buffer(_OUT, 65)[1:]
except (ImportError, AttributeError):  # pragma: no cover - older coincurve layouts
    import coincurve

    def recover_pubkey(sig64: bytes, recid: int, digest: bytes) -> bytes | None:
        try:
            return coincurve.PublicKey.from_signature_and_message(
                sig64 + bytes([recid]), digest, hasher=None).format(compressed=False)[1:]
        except Exception:
            return None


def recover_signer(prefix: bytes, rec: bytes | memoryview, off: int = 0) -> tuple[int, bytes]:
    """(status, signer) of the wire record at ``off`` under the domain ``prefix``."""
    end = off + RECORD_FIXED
    plen = int.from_bytes(rec[end - 2:end], "big")
    payload = rec[end:end + plen]
    if keccak256(payload) != rec[off + 68:off + 100]:
        return PAYLOAD_MISMATCH, _NOSIGNER
    s = rec[off + 196:off + 228]
    if int.from_bytes(s, "big") > HALF_N:
        return MALLEABLE, _NOSIGNER
    v = rec[off + 228]
    if v not in (27, 28):
        return BAD_SIGNATURE, _NOSIGNER
    struct_hash = keccak256(b"".join((READING_TYPEHASH, _Z12, rec[off:off + 20], _Z24, rec[off + 20:off + 28],
                                      rec[off + 28:off + 60], _Z24, rec[off + 60:off + 164])))
    digest = keccak256(prefix + struct_hash)
    pub = recover_pubkey(bytes(rec[off + 164:off + 228]), v - 27, digest)
    if pub is None:
        return BAD_SIGNATURE, _NOSIGNER
    return OK, keccak256(pub)[12:]


def verify_span(prefix: bytes, body: bytes, offsets: list[int]) -> bytes:
    """Verify the records starting at ``offsets`` (last entry = end); 21 bytes per record.

    The pure-Python reference of the native kernel (the tests check one against the other).
    """
    out = bytearray()
    for i in range(len(offsets) - 1):
        status, signer = recover_signer(prefix, body, offsets[i])
        out.append(status)
        out += signer
    return bytes(out)


class Verdicts:
    """Results of one batch: ``status[i]`` (:data:`OK` or a rejection code) and
    ``signers[i]`` (20 bytes, zeros when none) as numpy arrays filled by the workers."""

    __slots__ = ("status", "signers")

    def __init__(self, n: int) -> None:
        self.status = np.empty(n, np.uint8)
        self.signers = np.empty((n, 20), np.uint8)

    def as_bytes(self) -> bytes:
        """The 21-bytes-per-record form of :func:`verify_span`."""
        return np.concatenate([self.status[:, None], self.signers], axis=1).tobytes()


class _Native:
    """libsecp256k1 entry points and the numba kernel, loaded once per process."""

    def __init__(self) -> None:
        from coincurve._libsecp256k1 import ffi, lib
        from coincurve.context import GLOBAL_CONTEXT

        from proofmesh.edge import _verify_numba

        self.kernel = _verify_numba.verify_records
        # Recovery only reads the context, so one context serves every thread.
        self.ctx = int(ffi.cast("uintptr_t", GLOBAL_CONTEXT.ctx))
        self.fns = np.array([int(ffi.cast("uintptr_t", ffi.addressof(lib, name))) for name in (
            "secp256k1_ecdsa_recoverable_signature_parse_compact", "secp256k1_ecdsa_recover",
            "secp256k1_ec_pubkey_serialize")], dtype=np.uint64)
        self.typehash = np.frombuffer(READING_TYPEHASH, np.uint8)
        self.half_n = np.frombuffer(HALF_N.to_bytes(32, "big"), np.uint8)

    def run(self, prefix: np.ndarray, body: np.ndarray, offsets: np.ndarray, lo: int, hi: int,
            out: Verdicts) -> None:
        self.kernel(body, offsets, lo, hi, prefix, self.typehash, self.half_n, self.fns, self.ctx,
                    out.status, out.signers)


_native: _Native | None = None
_native_lock = threading.Lock()


def native() -> _Native:
    """The native verifier (JIT-compiled on first use, then cached on disk by numba)."""
    global _native
    with _native_lock:
        if _native is None:
            n = _Native()
            # Compile (or load from numba's cache) now, not inside the first batch.
            # Read-only buffers, as batches (bytes) give: numba compiles per array flavour.
            probe = np.frombuffer(bytes(HEAD_SIZE + RECORD_FIXED), np.uint8)
            n.run(np.frombuffer(bytes(34), np.uint8), probe,
                  np.asarray([HEAD_SIZE, HEAD_SIZE + RECORD_FIXED], np.int64), 0, 1, Verdicts(1))
            runs_root([(bytes(20), 0, 1, 1), (bytes(20), 0, 3, 3)])     # the receipt kernels too
            _native = n
        return _native


def verify_batch(prefix: bytes, body: bytes, offsets: list[int]) -> Verdicts:
    """Verify every record of a batch in this thread (native kernel)."""
    n = len(offsets) - 1
    out = Verdicts(n)
    native().run(np.frombuffer(prefix, np.uint8), np.frombuffer(body, np.uint8),
                 np.asarray(offsets, np.int64), 0, n, out)
    return out


class VerifierPool:
    """Threads that verify spans of a batch in parallel, inside the gateway process.

    The kernel runs with the GIL released (numba ``nogil`` calling libsecp256k1 directly),
    so ``workers`` threads use that many cores with no pickling or copying of batches and
    no worker processes to supervise; the event loop keeps parsing HTTP and judging
    verified batches meanwhile. ``workers=0`` verifies inline in the caller's thread.
    """

    CHUNK = 128      # records per task: small enough that concurrent batches share the threads

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self._native = native()
        if self.workers > 0:
            # A verifier thread needs the GIL for a moment between spans (to hand back its
            # result and take the next span). With the default 5 ms switch interval it can
            # sit idle that long while the event loop judges a batch; 0.2 ms keeps the
            # cores busy (measured: ~20% more readings/s through the gateway here).
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        self._pool = cf.ThreadPoolExecutor(self.workers, thread_name_prefix="edge-verify") if self.workers > 0 else None

    def submit(self, prefix: bytes, body: bytes, offsets: list[int]) -> tuple[Verdicts, list[cf.Future]]:
        """Start verifying a batch; the verdicts are complete when every future is done."""
        n = len(offsets) - 1
        out = Verdicts(n)
        pre = np.frombuffer(prefix, np.uint8)
        buf = np.frombuffer(body, np.uint8)
        offs = np.asarray(offsets, np.int64)
        if self._pool is None or n < 2 * self.CHUNK:
            f: cf.Future = cf.Future()
            if self._pool is None:
                self._native.run(pre, buf, offs, 0, n, out)
                f.set_result(None)
                return out, [f]
            return out, [self._pool.submit(self._native.run, pre, buf, offs, 0, n, out)]
        parts = max(self.workers, -(-n // self.CHUNK))
        step = -(-n // parts)
        return out, [self._pool.submit(self._native.run, pre, buf, offs, k, min(k + step, n), out)
                     for k in range(0, n, step)]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
