"""Exact deduplication: normalise, hash, look up — a block of records per call, never a
Python call per record.

One hash per record, two uses:

- ``record_hash`` = BLAKE3-256 of the normalised UTF-8 text. It names the record
  everywhere (Merkle leaves, manifests, the cross-batch index, fraud proofs), so it must be
  collision resistant, and anyone can recompute it with ``b3sum``. (The chain never
  recomputes it: leaves are keccak(index, record_hash), which the contract checks.) A whole
  block is hashed in one compiled call (:mod:`proofmesh.data.blake3_batch`).
- ``key`` = its first 8 bytes as an integer: the in-memory prefilter (hash-table slot here,
  sorted-array search in the persistent index). Only 64 bits, so two different records can
  share a key — by chance (~n²/2⁶⁵) or on purpose (a 2³² birthday search) — and a key hit
  is therefore always confirmed on the full ``record_hash`` before a record is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numba as nb
import numpy as np
import pyarrow as pa
from blake3 import blake3

from proofmesh.crypto import _numba_cache  # noqa: F401  (before any @nb.njit: caches keyed by dependencies too)
from proofmesh.data.blake3_batch import blake3_many
from proofmesh.data.minhash import arrow_buffers
from proofmesh.data.normalize import Normalization, normalize_with_tokens


def record_hash(normalized_text: str | bytes) -> bytes:
    """The 32-byte ``record_hash`` of already normalised text."""
    b = normalized_text.encode("utf-8") if isinstance(normalized_text, str) else normalized_text
    return blake3(b).digest()


def digest_keys(digests: np.ndarray) -> np.ndarray:
    """The uint64 prefilter key of each ``(n, 32)`` record hash: its first 8 bytes (little endian)."""
    return np.ascontiguousarray(digests[:, :8]).view("<u8").reshape(-1).astype(np.uint64, copy=False)


def as_digests(hashes: np.ndarray | list[bytes]) -> np.ndarray:
    """Record hashes as a ``(n, 32)`` uint8 array (from a list of 32-byte ``bytes`` or as is)."""
    if isinstance(hashes, np.ndarray):
        return hashes.reshape(-1, 32)
    return np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(-1, 32)


def split_digests(digests: np.ndarray) -> list[bytes]:
    """``(n, 32)`` record hashes as a list of ``bytes``."""
    buf = np.ascontiguousarray(digests).tobytes()
    return [buf[i:i + 32] for i in range(0, len(buf), 32)]


@dataclass
class HashedBatch:
    """Normalised texts of a batch with their record hashes and token counts."""

    normalized: pa.Array          # large_string
    digests: np.ndarray           # (n, 32) uint8: record_hash of each
    tokens: np.ndarray            # int64: space-separated tokens of the normalised text

    def __len__(self) -> int:
        return self.digests.shape[0]

    @cached_property
    def key(self) -> np.ndarray:
        """uint64 prefilter key of each record (first 8 bytes of its record_hash)."""
        return digest_keys(self.digests)

    @cached_property
    def hashes(self) -> list[bytes]:
        """record_hash of each record as ``bytes`` (built on first use)."""
        return split_digests(self.digests)


def hash_column(raw: pa.Array, norm: Normalization) -> HashedBatch:
    """Normalise a column of raw texts and hash every record."""
    col, tokens = normalize_with_tokens(raw, norm)
    data, offsets = arrow_buffers(col)
    return HashedBatch(col, blake3_many(data, offsets), tokens)


@dataclass
class ExactResult:
    """Per record of one added batch: the global index of the earlier identical record (or -1),
    and whether it was already published (cross-batch)."""

    hashed: HashedBatch
    first: np.ndarray            # int64 global index of the kept identical record, -1 if new
    published: np.ndarray        # bool: identical to a record already published on chain
    start: int                   # global index of this batch's first record

    @property
    def kept(self) -> int:
        return int(((self.first < 0) & ~self.published).sum())

    @property
    def dropped(self) -> int:
        return len(self.hashed) - self.kept


@nb.njit(cache=True)
def _insert_keys(table_k, table_v, keys, base, first):
    """Open-addressing insert-or-find of each key, in order (so the first occurrence wins):
    ``first[i]`` = global index already holding ``keys[i]``, else -1 and ``base + i`` is stored.
    Slot value -1 marks empty; the table size is a power of two."""
    mask = table_k.shape[0] - 1
    used = 0
    for i in range(keys.shape[0]):
        k = keys[i]
        h = (k ^ (k >> np.uint64(29))) & np.uint64(mask)   # keys are already uniform
        while True:
            v = table_v[h]
            if v < 0:
                table_k[h] = k
                table_v[h] = base + i
                first[i] = -1
                used += 1
                break
            if table_k[h] == k:
                first[i] = v
                break
            h = (h + np.uint64(1)) & np.uint64(mask)
    return used


@nb.njit(cache=True)
def _rehash(table_k, table_v, keys, vals):
    """Re-insert distinct (key, value) pairs into an empty, larger table."""
    mask = table_k.shape[0] - 1
    for i in range(keys.shape[0]):
        k = keys[i]
        h = (k ^ (k >> np.uint64(29))) & np.uint64(mask)
        while table_v[h] >= 0:
            h = (h + np.uint64(1)) & np.uint64(mask)
        table_k[h] = k
        table_v[h] = vals[i]


def build_key_table(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A read-only open-addressing table from each key to the index of its first occurrence
    in ``keys`` (load factor ≤ 1/2)."""
    size = 1 << max(4, int(2 * max(1, keys.size) - 1).bit_length())
    table_k = np.zeros(size, dtype=np.uint64)
    table_v = np.full(size, -1, dtype=np.int64)
    if keys.size:
        _insert_keys(table_k, table_v, np.ascontiguousarray(keys, dtype=np.uint64), 0,
                     np.empty(keys.size, dtype=np.int64))
    return table_k, table_v


@nb.njit(cache=True)
def _lookup(table_k, table_v, keys, out):
    mask = table_k.shape[0] - 1
    for i in range(keys.shape[0]):
        k = keys[i]
        h = (k ^ (k >> np.uint64(29))) & np.uint64(mask)
        out[i] = -1
        while table_v[h] >= 0:
            if table_k[h] == k:
                out[i] = table_v[h]
                break
            h = (h + np.uint64(1)) & np.uint64(mask)


def lookup_keys(table: tuple[np.ndarray, np.ndarray], keys: np.ndarray) -> np.ndarray:
    """For each key, the value stored in a :func:`build_key_table` table, or -1."""
    out = np.empty(keys.size, dtype=np.int64)
    _lookup(table[0], table[1], np.ascontiguousarray(keys, dtype=np.uint64), out)
    return out


class ExactDeduper:
    """Exact dedup over a stream of batches, with an optional cross-batch lookup.

    In-run set: a compiled open-addressing table from prefilter key to the first record's
    global index, plus every record_hash in one growing array (32 bytes a record) for the
    confirmation. ``published(digests) -> bool array`` answers which records are
    already on chain (the persistent index); it is asked only for records new to this run.
    """

    def __init__(self, norm: Normalization = Normalization(),
                 published: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.norm = norm
        self._published = published
        self._table_k = np.zeros(1 << 16, dtype=np.uint64)
        self._table_v = np.full(1 << 16, -1, dtype=np.int64)
        self._used = 0
        self._by_hash: dict[bytes, int] = {}   # only records whose key collided with another record
        self._digests = np.empty((1024, 32), dtype=np.uint8)
        self.count = 0

    def hash_at(self, i: int) -> bytes:
        """record_hash of the record with global index ``i``."""
        return self._digests[i].tobytes()

    @property
    def digests(self) -> np.ndarray:
        """record_hash of every record added so far, by global index: ``(count, 32)``."""
        return self._digests[:self.count]

    def add(self, raw: "pa.Array | object") -> ExactResult:
        """Hash one batch (a ``RawBatch`` or an Arrow string array) and mark its duplicates."""
        texts = raw.texts if hasattr(raw, "texts") else raw
        return self.add_hashed(hash_column(texts, self.norm))

    def _reserve(self, n: int) -> None:
        need = self.count + n
        if need > self._digests.shape[0]:
            grown = np.empty((max(need, 2 * self._digests.shape[0]), 32), dtype=np.uint8)
            grown[:self.count] = self._digests[:self.count]
            self._digests = grown
        if 2 * (self._used + n) > self._table_k.shape[0]:   # keep the load factor under 1/2
            size = self._table_k.shape[0]
            while 2 * (self._used + n) > size:
                size *= 2
            live = self._table_v >= 0
            old_k, old_v = self._table_k[live], self._table_v[live]
            self._table_k = np.zeros(size, dtype=np.uint64)
            self._table_v = np.full(size, -1, dtype=np.int64)
            _rehash(self._table_k, self._table_v, old_k, old_v)

    def add_hashed(self, hb: HashedBatch) -> ExactResult:
        """Mark the duplicates of an already hashed batch (in this run and, if given, published)."""
        n = len(hb)
        base = self.count
        self._reserve(n)
        self._digests[base:base + n] = hb.digests
        first = np.empty(n, dtype=np.int64)
        self._used += _insert_keys(self._table_k, self._table_v, hb.key, base, first)
        hit = np.flatnonzero(first >= 0)
        if hit.size:
            same = (self._digests[first[hit]] == hb.digests[hit]).all(axis=1)
            for i in hit[~same].tolist():
                # key collision with a different record: decide on the full record_hash
                k = self._by_hash.setdefault(hb.digests[i].tobytes(), base + i)
                first[i] = k if k != base + i else -1
        published = np.zeros(n, dtype=bool)
        if self._published is not None:
            new = np.flatnonzero(first < 0)
            if new.size:
                published[new] = self._published(hb.digests[new])
        self.count += n
        return ExactResult(hb, first, published, base)
