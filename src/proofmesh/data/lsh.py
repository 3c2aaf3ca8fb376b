"""LSH banding that proposes candidate pairs, and exact Jaccard verification that decides them.

Bands only *propose*: every candidate is verified by exact Jaccard on the two records'
shingle-hash sets, so precision does not depend on the band parameters and the bands
can be tuned for recall (``choose_bands``). A bucket larger than ``max_bucket`` (template
text shared by thousands of records) is linked as a star to its first member instead of
all pairs, which bounds the work at O(n) per band.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from proofmesh.crypto import _numba_cache  # noqa: F401  (before any @nb.njit: caches keyed by dependencies too)


def candidate_probability(j: float, bands: int, rows: int) -> float:
    """Probability that a pair with Jaccard ``j`` shares at least one band."""
    return 1.0 - (1.0 - j ** rows) ** bands


def choose_bands(threshold: float, num_perm: int, recall_target: float = 0.995) -> tuple[int, int]:
    """(bands, rows) with the most rows (fewest false candidates) that still proposes a pair
    at exactly ``threshold`` with probability ≥ ``recall_target``.

    For num_perm=128: threshold 0.8 → (21, 6); 0.5 → (42, 3).
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError("threshold must be in (0, 1]")
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if candidate_probability(threshold, bands, rows) >= recall_target:
            best = (bands, rows)
    return best


@nb.njit(cache=True)
def _bucket_pairs(keys, order, valid, max_bucket, out_a, out_b, pos):
    n = order.shape[0]
    i = 0
    while i < n:
        j = i + 1
        ki = keys[order[i]]
        while j < n and keys[order[j]] == ki:
            j += 1
        size = j - i
        if size > 1:
            if size <= max_bucket:
                for x in range(i, j):
                    for y in range(x + 1, j):
                        a = order[x]
                        b = order[y]
                        if valid[a] and valid[b]:
                            if pos >= out_a.shape[0]:
                                return -1
                            out_a[pos] = min(a, b)
                            out_b[pos] = max(a, b)
                            pos += 1
            else:
                first = order[i]
                for x in range(i + 1, j):
                    b = order[x]
                    if valid[first] and valid[b]:
                        if pos >= out_a.shape[0]:
                            return -1
                        out_a[pos] = min(first, b)
                        out_b[pos] = max(first, b)
                        pos += 1
        i = j
    return pos


@nb.njit(parallel=True, cache=True)
def _sort_bands(bands_mat):
    n, nb_ = bands_mat.shape
    orders = np.empty((nb_, n), dtype=np.int64)
    for b in nb.prange(nb_):
        orders[b] = np.argsort(bands_mat[:, b])
    return orders


def candidate_pairs(band_keys: np.ndarray, valid: np.ndarray | None = None,
                    max_bucket: int = 64) -> np.ndarray:
    """Unique (i, j), i < j, pairs of rows sharing a key in any band; shape (m, 2) int64."""
    n, nbands = band_keys.shape
    if valid is None:
        valid = np.ones(n, dtype=np.bool_)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    orders = _sort_bands(np.ascontiguousarray(band_keys))
    chunks = []
    cap = max(1024, 4 * n)
    for b in range(nbands):
        keys = np.ascontiguousarray(band_keys[:, b])
        while True:
            out_a = np.empty(cap, dtype=np.int64)
            out_b = np.empty(cap, dtype=np.int64)
            got = _bucket_pairs(keys, orders[b], valid, max_bucket, out_a, out_b, 0)
            if got >= 0:
                break
            cap *= 4
        if got:
            chunks.append(out_a[:got] * n + out_b[:got])
    if not chunks:
        return np.empty((0, 2), dtype=np.int64)
    packed = np.unique(np.concatenate(chunks))
    return np.stack([packed // n, packed % n], axis=1)


@nb.njit(inline="always")
def _intersect_sorted(s, a0, a1, b0, b1):
    inter = 0
    i = a0
    j = b0
    while i < a1 and j < b1:
        x = s[i]
        y = s[j]
        if x == y:
            inter += 1
            i += 1
            j += 1
        elif x < y:
            i += 1
        else:
            j += 1
    return inter


@nb.njit(parallel=True, cache=True)
def _jaccard_pairs(offsets, shingles, pa, pb, out):
    for t in nb.prange(pa.shape[0]):
        a = pa[t]
        b = pb[t]
        a0 = offsets[a]
        a1 = offsets[a + 1]
        b0 = offsets[b]
        b1 = offsets[b + 1]
        la = a1 - a0
        lb = b1 - b0
        if la == 0 or lb == 0:
            out[t] = 0.0
            continue
        inter = _intersect_sorted(shingles, a0, a1, b0, b1)
        out[t] = inter / (la + lb - inter)


def exact_jaccard(offsets: np.ndarray, shingles: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Exact Jaccard of each pair's sorted shingle-hash sets (CSR), computed in parallel."""
    out = np.empty(pairs.shape[0], dtype=np.float64)
    if pairs.shape[0]:
        _jaccard_pairs(offsets, shingles, np.ascontiguousarray(pairs[:, 0]),
                       np.ascontiguousarray(pairs[:, 1]), out)
    return out


def jaccard_of_sets(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted unique uint64 arrays (cross-batch checks)."""
    if a.size == 0 or b.size == 0:
        return 0.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def meets(similarity: np.ndarray, threshold: float) -> np.ndarray:
    """``similarity >= threshold`` with a tolerance for float rounding at the boundary."""
    return similarity >= threshold - 1e-12


def min_overlap(size: int, threshold: float) -> int:
    """Smallest shared-shingle count that can reach ``threshold`` for a set of ``size``."""
    return math.ceil(threshold * size - 1e-9)
