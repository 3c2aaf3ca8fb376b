"""Word shingling and MinHash signatures, compiled with numba and run on all cores.

The tokeniser is the hot loop of near-duplicate detection (in Python it costs more than
the hashing itself), so it runs over the raw UTF-8 bytes of a whole batch of already
normalised records (an Arrow ``large_string`` column: one data buffer + offsets) with
no Python object per record.

- A *word* is a maximal run of non-space bytes (normalisation has turned every
  whitespace run into one ASCII space, so splitting on 0x20 is Unicode-correct).
- A *shingle* is ``k`` consecutive words (``k=5`` by default); a record with fewer than
  ``k`` words has one shingle made of all its words; an empty record has none.
- A shingle's 64-bit hash is the order-sensitive combination of its words' FNV-1a
  hashes, finalised with splitmix64; the per-record set of unique shingle hashes is
  kept sorted (CSR layout) for exact Jaccard verification of LSH candidates.
- MinHash uses ``num_perm`` independent multiply-add-shift hash functions
  ``h_i(x) = ((a_i * x + b_i) mod 2^64) >> 32`` on the shingle hash's top 32 bits ``x``
  (strongly universal for 32-bit keys, Dietzfelbinger 1996): one multiply-add per
  shingle per permutation, which LLVM vectorises; this keeps the textbook LSH collision
  probability ``1-(1-J^r)^b`` that band selection relies on (one-permutation hashing
  with densification correlates bins on short records and breaks that formula).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from proofmesh.crypto import _numba_cache  # noqa: F401  (before any @nb.njit: caches keyed by dependencies too)

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SPACE = np.uint8(0x20)
_EMPTY = np.uint32(0xFFFFFFFF)


@nb.njit(inline="always")
def _splitmix(x):
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@nb.njit(cache=True)
def _count_words(data, start, end):
    n = 0
    in_word = False
    for p in range(start, end):
        if data[p] == _SPACE:
            in_word = False
        elif not in_word:
            in_word = True
            n += 1
    return n


@nb.njit(cache=True)
def _doc_shingles(data, start, end, k, out):
    """Write the sorted unique shingle hashes of one record into ``out``; return how many."""
    nwords = _count_words(data, start, end)
    if nwords == 0:
        return 0
    words = np.empty(nwords, dtype=np.uint64)
    w = 0
    h = _FNV_OFFSET
    in_word = False
    for p in range(start, end):
        c = data[p]
        if c == _SPACE:
            if in_word:
                words[w] = h
                w += 1
                in_word = False
        else:
            if not in_word:
                in_word = True
                h = _FNV_OFFSET
            h = (h ^ np.uint64(c)) * _FNV_PRIME
    if in_word:
        words[w] = h
        w += 1
    kk = k if nwords >= k else nwords
    ns = nwords - kk + 1
    tmp = np.empty(ns, dtype=np.uint64)
    for i in range(ns):
        s = np.uint64(kk)
        for j in range(kk):
            s = (s ^ words[i + j]) * _GOLDEN
            s = s ^ (s >> np.uint64(29))
        tmp[i] = _splitmix(s)
    tmp.sort()
    m = 0
    for i in range(ns):
        if i == 0 or tmp[i] != tmp[i - 1]:
            out[m] = tmp[i]
            m += 1
    return m


@nb.njit(parallel=True, cache=True)
def _word_bounds(data, offsets):
    n = offsets.shape[0] - 1
    counts = np.empty(n, dtype=np.int64)
    for d in nb.prange(n):
        counts[d] = _count_words(data, offsets[d], offsets[d + 1])
    return counts


@nb.njit(parallel=True, cache=True)
def _shingle_minhash(data, offsets, k, a, b, slot_start, shingles, counts, sigs):
    n = offsets.shape[0] - 1
    num_perm = a.shape[0]
    for d in nb.prange(n):
        s0 = slot_start[d]
        m = _doc_shingles(data, offsets[d], offsets[d + 1], k, shingles[s0:])
        counts[d] = m
        sig = np.full(num_perm, np.uint64(0xFFFFFFFF))
        for j in range(m):
            # 32-bit key: a 64x32-bit multiply vectorises on AVX2 (64x64 does not).
            x = shingles[s0 + j] >> np.uint64(32)
            for i in range(num_perm):
                v = (a[i] * x + b[i]) >> np.uint64(32)
                sig[i] = min(sig[i], v)
        for i in range(num_perm):
            sigs[d, i] = np.uint32(sig[i])


@nb.njit(parallel=True, cache=True)
def _compact(shingles, slot_start, counts, out_offsets, out):
    n = counts.shape[0]
    for d in nb.prange(n):
        s0 = slot_start[d]
        o0 = out_offsets[d]
        for j in range(counts[d]):
            out[o0 + j] = shingles[s0 + j]


@nb.njit(parallel=True, cache=True)
def _band_hashes(sigs, bands, rows):
    n = sigs.shape[0]
    out = np.empty((n, bands), dtype=np.uint64)
    for d in nb.prange(n):
        for bi in range(bands):
            h = np.uint64(bi + 1) * _GOLDEN
            for r in range(rows):
                h = (h ^ np.uint64(sigs[d, bi * rows + r])) * np.uint64(0xFF51AFD7ED558CCD)
                h = h ^ (h >> np.uint64(32))
            out[d, bi] = _splitmix(h)
    return out


@dataclass
class ShingledBatch:
    """Shingles and MinHash signatures of a batch of records.

    ``shingle_offsets``/``shingles``: CSR of each record's sorted unique shingle hashes;
    ``signatures``: (n, num_perm) uint32, all 0xFFFFFFFF for an empty record.
    """

    shingle_offsets: np.ndarray
    shingles: np.ndarray
    signatures: np.ndarray

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.shingle_offsets)


class MinHasher:
    """MinHash over word ``k``-shingles with ``num_perm`` permutations drawn from ``seed``.

    Equal parameters give equal signatures in every process and on every machine, so
    signatures can be stored in a persistent index and compared across batches.
    """

    def __init__(self, num_perm: int = 128, shingle_size: int = 5, seed: int = 1) -> None:
        if num_perm < 1 or num_perm > 1024:
            raise ValueError("num_perm must be in 1..1024")
        if shingle_size < 1 or shingle_size > 64:
            raise ValueError("shingle_size must be in 1..64")
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        self.seed = seed
        rng = np.random.Generator(np.random.PCG64(seed))
        self.a = rng.integers(0, 2**64, size=num_perm, dtype=np.uint64, endpoint=False) | np.uint64(1)
        self.b = rng.integers(0, 2**64, size=num_perm, dtype=np.uint64, endpoint=False)

    def params(self) -> dict:
        return {"num_perm": self.num_perm, "shingle_size": self.shingle_size, "seed": self.seed}

    def shingle(self, data: np.ndarray, offsets: np.ndarray) -> ShingledBatch:
        """Shingle and sign records given as one UTF-8 byte buffer and ``n+1`` int64 offsets."""
        data = np.ascontiguousarray(data, dtype=np.uint8)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        n = offsets.shape[0] - 1
        bound = _word_bounds(data, offsets)
        slot_start = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.maximum(bound, 1), out=slot_start[1:])
        scratch = np.empty(int(slot_start[-1]), dtype=np.uint64)
        counts = np.empty(n, dtype=np.int64)
        sigs = np.empty((n, self.num_perm), dtype=np.uint32)
        _shingle_minhash(data, offsets, self.shingle_size, self.a, self.b, slot_start, scratch,
                         counts, sigs)
        out_offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=out_offsets[1:])
        shingles = np.empty(int(out_offsets[-1]), dtype=np.uint64)
        _compact(scratch, slot_start, counts, out_offsets, shingles)
        return ShingledBatch(out_offsets, shingles, sigs)

    def shingle_texts(self, texts: list[str]) -> ShingledBatch:
        """Convenience for already normalised Python strings (tests, small inputs)."""
        data, offsets = encode_texts(texts)
        return self.shingle(data, offsets)


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64 keys: records sharing a key in any band are LSH candidates."""
    if bands * rows > signatures.shape[1]:
        raise ValueError(f"bands*rows={bands * rows} exceeds num_perm={signatures.shape[1]}")
    return _band_hashes(np.ascontiguousarray(signatures), bands, rows)


def encode_texts(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 buffer + offsets of a list of strings (the layout of an Arrow large_string)."""
    encoded = [t.encode("utf-8") for t in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.empty(0, np.uint8)
    return data, offsets


def arrow_buffers(column) -> tuple[np.ndarray, np.ndarray]:
    """Zero-copy (data, offsets) views of a pyarrow ``large_string`` array."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.type != pa.large_string():
        column = column.cast(pa.large_string())
    if column.null_count:
        column = column.fill_null("")
    _validity, off_buf, data_buf = column.buffers()
    offsets = np.frombuffer(off_buf, dtype=np.int64)[column.offset: column.offset + len(column) + 1]
    data = (np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None
            else np.empty(0, dtype=np.uint8))
    return data, offsets
