"""Union-find over duplicate edges, and the canonical keeper of each cluster.

The keeper of a cluster is the member with the smallest ``record_hash`` (bytes order), not
the first one seen, so shuffling the input never changes which records are kept.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from proofmesh.crypto import _numba_cache  # noqa: F401  (before any @nb.njit: caches keyed by dependencies too)


@nb.njit(cache=True)
def _find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@nb.njit(cache=True)
def _union_all(parent, ea, eb):
    for t in range(ea.shape[0]):
        ra = _find(parent, ea[t])
        rb = _find(parent, eb[t])
        if ra != rb:
            if ra < rb:
                parent[rb] = ra
            else:
                parent[ra] = rb
    for x in range(parent.shape[0]):
        parent[x] = _find(parent, x)


def connected_components(n: int, edges: np.ndarray) -> np.ndarray:
    """Component label (smallest member index) of each of ``n`` nodes joined by ``edges`` (m, 2)."""
    parent = np.arange(n, dtype=np.int64)
    if edges.shape[0]:
        _union_all(parent, np.ascontiguousarray(edges[:, 0], dtype=np.int64),
                   np.ascontiguousarray(edges[:, 1], dtype=np.int64))
    return parent


def canonical_keepers(labels: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """For every node, the index of its cluster's keeper: the member with the smallest ``rank``.

    ``rank`` is any total order consistent with the record hash (e.g. the position of each
    record hash in sorted order), so the keeper does not depend on input order.
    """
    n = labels.shape[0]
    order = np.lexsort((rank, labels))          # by cluster, then by rank
    sorted_labels = labels[order]
    first = np.ones(n, dtype=bool)
    first[1:] = sorted_labels[1:] != sorted_labels[:-1]
    keeper_idx = order[first]
    # Labels are node indices, so a dense array maps label -> keeper without a dict.
    dense = np.full(n, -1, dtype=np.int64)
    dense[sorted_labels[first]] = keeper_idx
    return dense[labels]


def hash_rank(record_hashes: list[bytes] | np.ndarray) -> np.ndarray:
    """Rank of each 32-byte record hash in ascending bytes order (the keeper order)."""
    arr = np.asarray(record_hashes)
    if arr.dtype.kind in ("S", "O"):
        arr = np.frombuffer(b"".join(bytes(h) for h in record_hashes), dtype="S32") \
            if len(record_hashes) else np.empty(0, dtype="S32")
    order = np.argsort(arr, kind="stable")
    rank = np.empty(order.shape[0], dtype=np.int64)
    rank[order] = np.arange(order.shape[0])
    return rank
