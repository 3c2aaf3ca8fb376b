"""Exact deduplication: normalise, hash, look up.

Two hashes per record, each for one job:

- ``record_hash`` = BLAKE3-256 of the normalised UTF-8 text. It names the record
  everywhere (Merkle leaves, manifests, the cross-batch index, fraud proofs), so it
  must be collision resistant: BLAKE3 is, and runs at ~5.9 GB/s on one core here
  vs 1.3 GB/s for SHA-256 — and anyone can recompute it with ``b3sum``. (The chain never
  recomputes it: leaves are keccak(index, record_hash), which the contract checks.)
- ``xxh3`` (64-bit) is only an in-memory prefilter: set membership on a machine word is
  far cheaper than on 32-byte keys, and a hit is always confirmed on ``record_hash``, so
  an xxh3 collision can never drop a record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from blake3 import blake3
from xxhash import xxh3_64_intdigest

from proofmesh.data.minhash import arrow_buffers
from proofmesh.data.normalize import Normalization, normalize_column


def record_hash(normalized_text: str | bytes) -> bytes:
    """The 32-byte ``record_hash`` of already normalised text."""
    b = normalized_text.encode("utf-8") if isinstance(normalized_text, str) else normalized_text
    return blake3(b).digest()


@dataclass
class HashedBatch:
    """Normalised texts of a batch with both hashes and token counts."""

    normalized: pa.Array          # large_string
    xxh: np.ndarray               # uint64
    hashes: list[bytes]           # record_hash of each
    tokens: np.ndarray            # int64: whitespace tokens of the normalised text

    def __len__(self) -> int:
        return len(self.hashes)


def hash_column(raw: pa.Array, norm: Normalization) -> HashedBatch:
    """Normalise a column of raw texts and hash every record."""
    col = normalize_column(raw, norm)
    data, offsets = arrow_buffers(col)
    mv = memoryview(data)
    offs = offsets.tolist()
    n = len(offs) - 1
    xxh = np.empty(n, dtype=np.uint64)
    hashes: list[bytes] = [b""] * n
    for i in range(n):
        piece = mv[offs[i]:offs[i + 1]]
        xxh[i] = xxh3_64_intdigest(piece)
        hashes[i] = blake3(piece).digest()
    tokens = _token_counts(data, offsets)
    return HashedBatch(col, xxh, hashes, tokens)


def _token_counts(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    from proofmesh.data.minhash import _word_bounds

    return _word_bounds(np.ascontiguousarray(data), np.ascontiguousarray(offsets))


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


class ExactDeduper:
    """Exact dedup over a stream of batches, with an optional cross-batch lookup.

    ``published(xxh, hashes) -> bool array`` answers which records are already on chain
    (the persistent index); it is asked only for records new to this run.
    """

    def __init__(self, norm: Normalization = Normalization(),
                 published: Callable[[np.ndarray, list[bytes]], np.ndarray] | None = None) -> None:
        self.norm = norm
        self._published = published
        self._by_xxh: dict[int, int] = {}
        self._by_hash: dict[bytes, int] = {}   # only records whose xxh3 collided
        self.hashes: list[bytes] = []           # record_hash by global index
        self.count = 0

    def add(self, raw: "pa.Array | object") -> ExactResult:
        """Hash one batch (a ``RawBatch`` or an Arrow string array) and mark its duplicates."""
        texts = raw.texts if hasattr(raw, "texts") else raw
        return self.add_hashed(hash_column(texts, self.norm))

    def add_hashed(self, hb: HashedBatch) -> ExactResult:
        """Mark the duplicates of an already hashed batch (in this run and, if given, published)."""
        n = len(hb)
        first = np.full(n, -1, dtype=np.int64)
        by_xxh, by_hash, all_hashes = self._by_xxh, self._by_hash, self.hashes
        base = self.count
        all_hashes.extend(hb.hashes)
        for i, x in enumerate(hb.xxh.tolist()):
            j = by_xxh.get(x)
            if j is None:
                by_xxh[x] = base + i
                continue
            h = all_hashes[base + i]
            if all_hashes[j] == h:
                first[i] = j
            else:  # xxh3 collision: decide on the collision-resistant hash
                k = by_hash.setdefault(h, base + i)
                if k != base + i:
                    first[i] = k
        published = np.zeros(n, dtype=bool)
        if self._published is not None:
            new = np.flatnonzero(first < 0)
            if new.size:
                published[new] = self._published(hb.xxh[new], [hb.hashes[i] for i in new.tolist()])
        self.count += n
        return ExactResult(hb, first, published, base)
