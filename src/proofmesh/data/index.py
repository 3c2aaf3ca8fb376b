"""The persistent cross-batch index: what the network has already published.

LMDB in ``<home>/data/index``. It holds, for every record of every batch published on
chain: its ``record_hash`` → (batch id, position), its prefilter key (the hash's first 8
bytes, see :mod:`proofmesh.data.exact`), its MinHash
band keys and its shingle set (for exact Jaccard verification of near matches). It is
written only by :meth:`CrossBatchIndex.commit`, in one LMDB transaction, *after* the
batch's publish transaction succeeded on chain — so a failed publish leaves it as it was,
and no record is ever marked seen that is not on chain. ``rebuild`` re-creates it from the
chain's BatchPublished events and the records in the store.

Band keys here use bands tuned for Jaccard 0.5 (42 × 3 rows of 128 permutations), which
recall near matches for any ingest threshold ≥ 0.5; candidates are then verified exactly
at the ingest's own threshold.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import lmdb
import numpy as np

from proofmesh.data.lsh import choose_bands, jaccard_of_sets
from proofmesh.errors import ConfigError

INDEX_THRESHOLD = 0.5
_REC = struct.Struct(">QQQ")        # batch id, position, prefilter key
PREFILTER = "record_hash[:8]"       # what the key db holds (an index with xxh3 keys must be rebuilt)


class CrossBatchIndex:
    """Record hashes and near-duplicate sketches of everything already published."""

    def __init__(self, path: str | Path, params: dict) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(str(self.path), max_dbs=8, map_size=1 << 36, subdir=True)
        self.meta = self.env.open_db(b"meta")
        self.rec = self.env.open_db(b"rec")
        self.keys = self.env.open_db(b"key", dupsort=True)
        self.band = self.env.open_db(b"band", dupsort=True)
        self.shingle = self.env.open_db(b"shingle")
        self.batches = self.env.open_db(b"batch")
        self.bands, self.rows = choose_bands(INDEX_THRESHOLD, int(params["num_perm"]))
        want = dict(params, bands=self.bands, rows=self.rows, prefilter=PREFILTER)
        with self.env.begin(write=True) as txn:
            raw = txn.get(b"params", db=self.meta)
            if raw is None:
                txn.put(b"params", json.dumps(want, sort_keys=True).encode(), db=self.meta)
            elif json.loads(raw) != want:
                raise ConfigError(
                    f"the data index at {self.path} was built with {json.loads(raw)}, not {want}",
                    fix="use the same --num-perm/--shingle-size/normalisation, or rebuild the index "
                        "with `proofmesh data index rebuild`")
        self._load_prefilters()

    def _load_prefilters(self) -> None:
        # In-memory structures answer "certainly new" without touching LMDB. LMDB keeps keys
        # sorted and big-endian 8-byte keys sort like the integers, so the joined band keys
        # are already a sorted uint64 array. Record keys go into a compiled hash table that
        # maps each key to its record_hash (entries sorted by key, duplicates adjacent), so a
        # hit is confirmed in memory too.
        from proofmesh.data.exact import build_key_table

        with self.env.begin() as txn:
            pairs = list(txn.cursor(db=self.keys).iternext(keys=True, values=True))
            bs = b"".join(txn.cursor(db=self.band).iternext_nodup(keys=True, values=False))
        self._keys = np.frombuffer(b"".join(k for k, _v in pairs), dtype=">u8").astype(np.uint64)
        self._key_hashes = np.frombuffer(b"".join(v for _k, v in pairs), dtype=np.uint8).reshape(-1, 32)
        self._key_table = build_key_table(self._keys)
        self._band = np.frombuffer(bs, dtype=">u8").astype(np.uint64)

    def close(self) -> None:
        self.env.close()

    def __len__(self) -> int:
        with self.env.begin() as txn:
            return txn.stat(self.rec)["entries"]

    # ---------------------------------------------------------------- lookups
    def published(self, digests: np.ndarray | list[bytes]) -> np.ndarray:
        """Which of these records (``(n, 32)`` record hashes, or a list of them) are already published.

        A compiled hash table of the prefilter keys answers "certainly new" for almost every
        record; a key hit is confirmed on the full record_hash, in memory."""
        from proofmesh.data.exact import as_digests, digest_keys, lookup_keys

        digests = as_digests(digests)
        out = np.zeros(digests.shape[0], dtype=bool)
        if self._keys.size == 0 or digests.shape[0] == 0:
            return out
        keys = digest_keys(digests)
        first = lookup_keys(self._key_table, keys)     # index of the key's first entry, or -1
        hit = np.flatnonzero(first >= 0)
        if hit.size:
            same = (self._key_hashes[first[hit]] == digests[hit]).all(axis=1)
            out[hit[same]] = True
            for i in hit[~same].tolist():      # another record shares the key: check its others
                j = int(first[i]) + 1
                while j < self._keys.size and self._keys[j] == keys[i]:
                    if self._key_hashes[j].tobytes() == digests[i].tobytes():
                        out[i] = True
                        break
                    j += 1
        return out

    def locate(self, record_hash: bytes) -> tuple[int, int] | None:
        """(batch id, position) of a published record, or None."""
        with self.env.begin() as txn:
            raw = txn.get(record_hash, db=self.rec)
        if raw is None:
            return None
        batch, pos, _x = _REC.unpack(raw)
        return batch, pos

    def near_published(self, band_keys: np.ndarray, shingles: list[np.ndarray],
                       threshold: float) -> list[tuple[int, bytes, float]]:
        """(row, published record_hash, Jaccard) of each row with a published match ≥ threshold
        (the most similar match per row)."""
        out: list[tuple[int, bytes, float]] = []
        if self._band.size == 0 or band_keys.shape[0] == 0:
            return out
        flat = band_keys.reshape(-1)
        pos = np.searchsorted(self._band, flat)
        hit = (pos < self._band.size) & (self._band[np.minimum(pos, self._band.size - 1)] == flat)
        rows = np.unique(np.flatnonzero(hit) // band_keys.shape[1])
        if rows.size == 0:
            return out
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.band)
            for r in rows.tolist():
                cands: set[bytes] = set()
                for k in band_keys[r].tolist():
                    key = int(k).to_bytes(8, "big")
                    if cur.set_key(key):
                        cands.update(cur.iternext_dup())
                best: tuple[float, bytes] | None = None
                for h in cands:
                    raw = txn.get(h, db=self.shingle)
                    if raw is None:
                        continue
                    sim = jaccard_of_sets(shingles[r], np.frombuffer(raw, dtype=np.uint64))
                    if sim >= threshold - 1e-12 and (best is None or (sim, h) > best):
                        best = (sim, h)
                if best is not None:
                    out.append((r, best[1], best[0]))
        return out

    # ---------------------------------------------------------------- writes
    def commit(self, batch_id: int, hashes: list[bytes], band_keys: np.ndarray,
               shingles: list[np.ndarray], info: dict) -> None:
        """Record a batch that is now on chain (one atomic LMDB transaction)."""
        from proofmesh.data.exact import as_digests, digest_keys

        keys = digest_keys(as_digests(hashes)).tolist()
        with self.env.begin(write=True) as txn:
            if txn.get(batch_id.to_bytes(8, "big"), db=self.batches) is not None:
                return  # idempotent: already indexed
            for pos, h in enumerate(hashes):
                x = keys[pos]
                txn.put(h, _REC.pack(batch_id, pos, x), db=self.rec, overwrite=False)
                txn.put(x.to_bytes(8, "big"), h, db=self.keys)
                for k in band_keys[pos].tolist():
                    txn.put(int(k).to_bytes(8, "big"), h, db=self.band)
                txn.put(h, np.ascontiguousarray(shingles[pos], dtype=np.uint64).tobytes(), db=self.shingle)
            txn.put(batch_id.to_bytes(8, "big"), json.dumps(info, sort_keys=True).encode(), db=self.batches)
        self._load_prefilters()

    def batch_ids(self) -> list[int]:
        with self.env.begin() as txn:
            return [int.from_bytes(k, "big") for k, _ in txn.cursor(db=self.batches)]

    def forget_record(self, record_hash: bytes) -> None:
        """Drop a taken-down record's sketches (its hash stays: a tombstone is not new data)."""
        with self.env.begin(write=True) as txn:
            txn.delete(record_hash, db=self.shingle)
