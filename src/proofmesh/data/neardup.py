"""Near-duplicate detection within a run: MinHash → LSH candidates → exact Jaccard → clusters.

Records arrive in batches (streamed); per record the detector keeps only its band keys
(``bands`` × 8 bytes) in memory and appends its shingle-hash set to a spill file on disk,
which is memory-mapped for verification. So memory grows with the *number* of records,
not with their text, and a corpus larger than RAM streams through.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from proofmesh.data.clusters import connected_components
from proofmesh.data.lsh import candidate_pairs, choose_bands, exact_jaccard, meets
from proofmesh.data.minhash import MinHasher, ShingledBatch, band_hashes


@dataclass
class NearDupResult:
    """Verified duplicate edges (i < j) with their exact Jaccard, and component labels."""

    edges: np.ndarray          # (m, 2) int64 row indices
    similarity: np.ndarray     # (m,) exact Jaccard of each edge
    labels: np.ndarray         # (n,) smallest row index of each record's component
    candidates: int            # LSH candidate pairs verified


class NearDupDetector:
    """Accumulate records batch by batch, then find all pairs with Jaccard ≥ ``threshold``.

    ``spill_dir`` holds the shingle file; ``None`` keeps shingles in memory (benchmarks,
    small inputs).
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle_size: int = 5,
                 seed: int = 1, bands: int | None = None, rows: int | None = None,
                 spill_dir: str | Path | None = None) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        self.threshold = threshold
        self.hasher = MinHasher(num_perm=num_perm, shingle_size=shingle_size, seed=seed)
        if bands is None or rows is None:
            bands, rows = choose_bands(threshold, num_perm)
        self.bands, self.rows = bands, rows
        self._band_chunks: list[np.ndarray] = []
        self._size_chunks: list[np.ndarray] = []
        self._mem_shingles: list[np.ndarray] = []
        self._spill = None
        self._spill_path = None
        if spill_dir is not None:
            fd, path = tempfile.mkstemp(prefix="shingles-", suffix=".u64", dir=str(spill_dir))
            self._spill = os.fdopen(fd, "wb")
            self._spill_path = path
        self.count = 0

    def add(self, data: np.ndarray, offsets: np.ndarray) -> ShingledBatch:
        """Shingle and index one batch (UTF-8 buffer + offsets of normalised text)."""
        sb = self.hasher.shingle(data, offsets)
        self.add_shingled(sb)
        return sb

    def add_shingled(self, sb: ShingledBatch) -> None:
        self._band_chunks.append(band_hashes(sb.signatures, self.bands, self.rows))
        self._size_chunks.append(sb.sizes)
        if self._spill is not None:
            self._spill.write(sb.shingles.tobytes())
        else:
            self._mem_shingles.append(sb.shingles)
        self.count += sb.sizes.shape[0]

    def shingle_csr(self) -> tuple[np.ndarray, np.ndarray]:
        """(offsets, shingles) of every record added so far (shingles memory-mapped when spilled)."""
        sizes = np.concatenate(self._size_chunks) if self._size_chunks else np.empty(0, np.int64)
        offsets = np.zeros(sizes.shape[0] + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        if self._spill is not None:
            self._spill.flush()
            total = int(offsets[-1])
            shingles = (np.memmap(self._spill_path, dtype=np.uint64, mode="r", shape=(total,))
                        if total else np.empty(0, np.uint64))
        else:
            shingles = (np.concatenate(self._mem_shingles) if self._mem_shingles
                        else np.empty(0, np.uint64))
        return offsets, shingles

    def finish(self, active: np.ndarray | None = None) -> NearDupResult:
        """Verified near-duplicate pairs among rows where ``active`` is true (all by default)."""
        n = self.count
        keys = np.concatenate(self._band_chunks) if self._band_chunks else np.empty((0, self.bands), np.uint64)
        offsets, shingles = self.shingle_csr()
        valid = np.diff(offsets) > 0
        if active is not None:
            valid &= active
        pairs = candidate_pairs(keys, valid)
        sim = exact_jaccard(offsets, shingles, pairs)
        keep = meets(sim, self.threshold)
        edges, sim = pairs[keep], sim[keep]
        return NearDupResult(edges=edges, similarity=sim, labels=connected_components(n, edges),
                             candidates=int(pairs.shape[0]))

    def shingles_of(self, i: int) -> np.ndarray:
        offsets, shingles = self.shingle_csr()
        return np.asarray(shingles[offsets[i]:offsets[i + 1]])

    def band_keys(self) -> np.ndarray:
        return np.concatenate(self._band_chunks) if self._band_chunks else np.empty((0, self.bands), np.uint64)

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            try:
                os.unlink(self._spill_path)
            except FileNotFoundError:
                pass
            self._spill = None

    def __enter__(self) -> "NearDupDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
