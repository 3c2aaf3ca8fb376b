"""Batch signature verification of wire readings, on every core.

ECDSA has no batch verification: each reading costs one public-key recovery
(libsecp256k1 via coincurve, ~40-60 µs here). Throughput therefore comes from (1) calling
libsecp256k1 through coincurve's cffi handles directly, without a Python object per key,
(2) the precomputed EIP-712 prefix of :class:`~proofmesh.edge.reading.ReadingDomain`,
and (3) a process pool so both cores recover signatures while the gateway's event loop
parses HTTP and writes the log.

:func:`verify_span` is what a worker runs; it returns 21 bytes per record: a status byte
(:data:`OK` or a rejection code) and the recovered signer (zeros when none).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os

from proofmesh.crypto.keccak import keccak256
from proofmesh.edge.reading import HALF_N, READING_TYPEHASH, RECORD_FIXED

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
    """Verify the records starting at ``offsets`` (last entry = end); 21 bytes per record."""
    out = bytearray()
    for i in range(len(offsets) - 1):
        status, signer = recover_signer(prefix, body, offsets[i])
        out.append(status)
        out += signer
    return bytes(out)


def _worker_verify(prefix: bytes, chunk: bytes, offsets: list[int]) -> bytes:
    return verify_span(prefix, chunk, offsets)


class VerifierPool:
    """A process pool that verifies spans of a batch in parallel.

    Uses the ``spawn`` start method (the gateway runs threads, and forking a threaded
    process is unsafe); each worker asks the kernel to kill it when the gateway dies, so a
    gateway killed with SIGKILL leaves no orphans behind.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self._pool = None
        if self.workers > 0:
            ctx = mp.get_context("spawn")
            self._pool = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx,
                                                initializer=_die_with_parent)
            # Start the workers now so the first batch does not pay for it.
            list(self._pool.map(_noop, range(self.workers)))

    def submit(self, prefix: bytes, body: bytes, offsets: list[int]) -> list[cf.Future]:
        """Split ``offsets`` into one span per worker; futures of 21-byte-per-record results."""
        n = len(offsets) - 1
        if self._pool is None or n < 64:
            f: cf.Future = cf.Future()
            f.set_result(verify_span(prefix, body, offsets))
            return [f]
        parts = min(self.workers, max(1, n // 64))
        step = -(-n // parts)
        futs = []
        for k in range(0, n, step):
            a, b = offsets[k], offsets[min(k + step, n)]
            rel = [o - a for o in offsets[k:min(k + step, n) + 1]]
            futs.append(self._pool.submit(_worker_verify, prefix, body[a:b], rel))
        return futs

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _noop(_: int) -> int:
    return 0


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when its parent (the gateway) dies."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pool's own EOF detection still applies
        pass
