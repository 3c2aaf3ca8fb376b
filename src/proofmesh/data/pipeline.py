"""Ingest: stream records in, drop exact / near / semantic / already-published duplicates,
write a batch (records, manifest, report) ready to publish.

Per input batch (the *map* step, :func:`sketch`, which Ray can run on a cluster):
normalise → record_hash (BLAKE3, a block per call) → shingles + MinHash signature. Then, in order, on the
driver (the *reduce* step — global decisions, so they are made once):

1. exact: a record identical to an earlier one in this run, or to a published record
   (persistent index), is dropped;
2. near: survivors go into the LSH detector; ones whose near match is already published
   are dropped at once; at the end, verified pairs (exact Jaccard ≥ threshold) form
   clusters with union-find and each cluster keeps the record with the smallest
   record_hash — so the kept set does not depend on input order;
3. semantic (optional): MiniLM embeddings of the near-survivors, cosine ≥ threshold,
   clusters and keepers as above.

Kept records are written sorted by record_hash (so the Merkle root, too, is independent
of input order); leaf i = keccak(keccak(abi.encode(i, record_hash))).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from proofmesh.data.clusters import canonical_keepers, connected_components, hash_rank
from proofmesh.data.exact import ExactDeduper, HashedBatch, hash_column
from proofmesh.data.index import CrossBatchIndex
from proofmesh.data.minhash import MinHasher, ShingledBatch, arrow_buffers, band_hashes
from proofmesh.data.neardup import NearDupDetector
from proofmesh.data.normalize import Normalization
from proofmesh.data.readers import RawBatch, ReadOptions, read_records
from proofmesh.errors import InputError

STAGES = ("exact", "published-exact", "near", "published-near", "semantic")


@dataclass
class IngestConfig:
    """Every knob of an ingest; stored in the batch so anyone can re-run it."""

    text_field: str = "text"
    on_error: str = "fail"
    nfkc: bool = True
    lowercase: bool = True
    whitespace: bool = True
    threshold: float = 0.8
    num_perm: int = 128
    shingle_size: int = 5
    seed: int = 1
    near: bool = True
    semantic: bool = False
    semantic_threshold: float = 0.95
    min_tokens: int = 8
    max_record_bytes: int = 16 << 20

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise InputError(f"--threshold must be in (0, 1], got {self.threshold}", fix="e.g. --threshold 0.8")
        if not 0.0 < self.semantic_threshold <= 1.0:
            raise InputError(f"--semantic-threshold must be in (0, 1], got {self.semantic_threshold}",
                             fix="e.g. --semantic-threshold 0.95")
        if not 1 <= self.num_perm <= 1024:
            raise InputError(f"--num-perm must be in 1..1024, got {self.num_perm}", fix="e.g. --num-perm 128")
        if not 1 <= self.shingle_size <= 64:
            raise InputError(f"--shingle-size must be in 1..64, got {self.shingle_size}", fix="e.g. --shingle-size 5")
        if self.min_tokens < 0:
            raise InputError("--min-tokens must be ≥ 0", fix="e.g. --min-tokens 8")

    @property
    def norm(self) -> Normalization:
        return Normalization(self.nfkc, self.lowercase, self.whitespace)

    def index_params(self) -> dict:
        """What must match between this ingest and a persistent index."""
        return {"num_perm": self.num_perm, "shingle_size": self.shingle_size, "seed": self.seed,
                "norm": self.norm.tag()}


@dataclass
class Sketch:
    """The map step's output for one raw batch."""

    origins: list[str]         # file:line of each record
    hashed: HashedBatch
    shingled: ShingledBatch


def sketch(raw: RawBatch, cfg: IngestConfig, hasher: MinHasher | None = None) -> Sketch:
    """Normalise, hash, shingle and sign one batch (pure: same input → same output anywhere)."""
    hasher = hasher or MinHasher(cfg.num_perm, cfg.shingle_size, cfg.seed)
    hb = hash_column(raw.texts, cfg.norm)
    data, offsets = arrow_buffers(hb.normalized)
    return Sketch(raw.origins(), hb, hasher.shingle(data, offsets))


def _subset(sb: ShingledBatch, idx: np.ndarray) -> ShingledBatch:
    sizes = sb.sizes[idx]
    off = np.zeros(idx.size + 1, dtype=np.int64)
    np.cumsum(sizes, out=off[1:])
    parts = [sb.shingles[sb.shingle_offsets[i]:sb.shingle_offsets[i + 1]] for i in idx.tolist()]
    sh = np.concatenate(parts) if parts else np.empty(0, np.uint64)
    return ShingledBatch(off, sh, sb.signatures[idx])


class _TextSpill:
    """Normalised texts of candidate records, appended to a file and read back by row."""

    def __init__(self, directory: Path) -> None:
        fd, self.path = tempfile.mkstemp(prefix="texts-", dir=str(directory))
        self.f = os.fdopen(fd, "wb")
        self.lengths: list[np.ndarray] = []

    def add(self, hb: HashedBatch, idx: np.ndarray) -> None:
        data, offsets = arrow_buffers(hb.normalized)
        for i in idx.tolist():
            self.f.write(data[offsets[i]:offsets[i + 1]].tobytes())
        self.lengths.append(offsets[idx + 1] - offsets[idx])

    def reader(self) -> Callable[[int], str]:
        self.f.flush()
        lengths = np.concatenate(self.lengths) if self.lengths else np.empty(0, np.int64)
        off = np.zeros(lengths.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=off[1:])
        mm = np.memmap(self.path, dtype=np.uint8, mode="r") if off[-1] else np.empty(0, np.uint8)

        def text(row: int) -> str:
            return bytes(mm[off[row]:off[row + 1]]).decode("utf-8")
        return text

    def close(self) -> None:
        self.f.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


@dataclass
class IngestResult:
    batch_dir: Path
    report: dict
    root: bytes
    record_count: int
    token_count: int


@dataclass
class _Dropped:
    origin: str
    record_hash: bytes
    stage: str
    kept: bytes
    similarity: float


def ingest(paths: Iterable[str | Path], out_dir: str | Path, cfg: IngestConfig | None = None,
           index: CrossBatchIndex | None = None,
           progress: Callable[[int, int], None] | None = None,
           sketches: Iterator[Sketch] | None = None,
           options: ReadOptions | None = None) -> IngestResult:
    """Deduplicate everything under ``paths`` into a batch directory ``out_dir``.

    ``progress(records_done, dropped_so_far)`` is called after each input batch.
    ``sketches`` replaces the local map step (the Ray path passes its own).
    Nothing outside ``out_dir`` is written; ``out_dir`` appears only when complete.
    """
    cfg = cfg or IngestConfig()
    out_dir = Path(out_dir)
    started = time.perf_counter()
    opts = options or ReadOptions(text_field=cfg.text_field, on_error=cfg.on_error,
                                  max_record_bytes=cfg.max_record_bytes)
    if sketches is None:
        hasher = MinHasher(cfg.num_perm, cfg.shingle_size, cfg.seed)
        sketches = (sketch(raw, cfg, hasher) for p in paths for raw in read_records(p, options=opts))
    work = Path(tempfile.mkdtemp(prefix=".ingest-", dir=str(out_dir.parent)))
    try:
        return _ingest(sketches, out_dir, work, cfg, index, progress, opts, started)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _ingest(sketches: Iterator[Sketch], out_dir: Path, work: Path, cfg: IngestConfig,
            index: CrossBatchIndex | None, progress, opts: ReadOptions, started: float) -> IngestResult:
    det = NearDupDetector(cfg.threshold, cfg.num_perm, cfg.shingle_size, cfg.seed, spill_dir=work)
    texts = _TextSpill(work)
    idx_bands = idx_rows = None
    if index is not None:
        idx_bands, idx_rows = index.bands, index.rows
    exact = ExactDeduper(cfg.norm, published=index.published if index is not None else None)
    cand_hash: list[bytes] = []
    cand_tokens: list[np.ndarray] = []
    cand_origin: list[str] = []
    cand_idx_bands: list[np.ndarray] = []
    cand_alive: list[np.ndarray] = []   # False when dropped as published-near during the stream
    dropped: list[_Dropped] = []
    total = 0
    near_pub_hits: dict[int, tuple[bytes, float]] = {}
    for sk in sketches:
        hb, n = sk.hashed, len(sk.hashed)
        origins = sk.origins
        base = len(cand_hash)
        ex = exact.add_hashed(hb)
        for i in np.flatnonzero(ex.first >= 0).tolist():
            dropped.append(_Dropped(origins[i], hb.hashes[i], "exact", exact.hash_at(ex.first[i]), 1.0))
        for i in np.flatnonzero(ex.published).tolist():
            dropped.append(_Dropped(origins[i], hb.hashes[i], "published-exact", hb.hashes[i], 1.0))
        # candidates for the near stage: new to this run, including the published ones, which
        # are dropped already but keep their row so row numbers stay aligned
        rows = np.flatnonzero(ex.first < 0)
        for i in rows.tolist():
            cand_hash.append(hb.hashes[i])
            cand_origin.append(origins[i])
        alive = ~ex.published[rows]
        sub = _subset(sk.shingled, rows)
        ib = band_hashes(sub.signatures, idx_bands, idx_rows) if index is not None else \
            np.empty((rows.size, 0), np.uint64)
        if index is not None and cfg.near and rows.size:
            live = np.flatnonzero(alive)
            shs = [sub.shingles[sub.shingle_offsets[r]:sub.shingle_offsets[r + 1]] for r in live.tolist()]
            for r_local, h_pub, sim in index.near_published(ib[live], shs, cfg.threshold):
                r = int(live[r_local])
                alive[r] = False
                near_pub_hits[base + r] = (h_pub, sim)
        det.add_shingled(sub)
        texts.add(hb, rows)
        cand_tokens.append(hb.tokens[rows])
        cand_idx_bands.append(ib)
        cand_alive.append(alive)
        total += n
        if progress:
            progress(total, len(dropped))
    if total == 0:
        texts.close()
        det.close()
        raise InputError("no records to ingest (every input was empty or skipped)",
                         fix="check the input files and --text-field; see the problems listed above")

    alive = np.concatenate(cand_alive) if cand_alive else np.empty(0, bool)
    for r, (h_pub, sim) in near_pub_hits.items():
        dropped.append(_Dropped(cand_origin[r], cand_hash[r], "published-near", h_pub, sim))
    tokens_all = np.concatenate(cand_tokens)
    idx_bands_all = np.concatenate(cand_idx_bands) if index is not None else None
    m = len(cand_hash)
    rank = hash_rank(cand_hash)
    sim_best = np.zeros(m)
    counts = {s: 0 for s in STAGES}
    for d in dropped:
        counts[d.stage] += 1
    clusters: list[dict] = []
    # ---- near duplicates within the run
    text_of = texts.reader()
    if cfg.near:
        res = det.finish(active=alive)
        keeper = canonical_keepers(res.labels, rank)
        for (a, b), s in zip(res.edges.tolist(), res.similarity.tolist()):
            sim_best[a] = max(sim_best[a], s)
            sim_best[b] = max(sim_best[b], s)
        near_drop = np.flatnonzero(alive & (keeper != np.arange(m)))
        for r in near_drop.tolist():
            dropped.append(_Dropped(cand_origin[r], cand_hash[r], "near", cand_hash[keeper[r]], float(sim_best[r])))
        counts["near"] += int(near_drop.size)
        alive[near_drop] = False
        clusters += _largest_clusters(keeper, alive | (keeper != np.arange(m)), cand_hash, text_of, "near")
        candidates = res.candidates
    else:
        candidates = 0
    # ---- semantic duplicates among the survivors
    if cfg.semantic:
        from proofmesh.data.semantic import embed, semantic_pairs

        live = np.flatnonzero(alive)
        vecs = embed([text_of(r) for r in live.tolist()])
        pairs, cos = semantic_pairs(vecs, cfg.semantic_threshold)
        labels = connected_components(live.size, pairs)
        k_local = canonical_keepers(labels, rank[live])
        best = np.zeros(live.size)
        for (a, b), c in zip(pairs.tolist(), cos.tolist()):
            best[a] = max(best[a], c)
            best[b] = max(best[b], c)
        sem_drop = np.flatnonzero(k_local != np.arange(live.size))
        for r in sem_drop.tolist():
            g, kg = int(live[r]), int(live[k_local[r]])
            dropped.append(_Dropped(cand_origin[g], cand_hash[g], "semantic", cand_hash[kg], float(best[r])))
        counts["semantic"] += int(sem_drop.size)
        alive[live[sem_drop]] = False

    # ---- a record dropped early may duplicate one dropped later: point every entry at
    # the record that finally stands for it (kept here, or already published)
    later = {d.record_hash: d.kept for d in dropped if d.stage in ("near", "semantic", "published-near")}
    for d in dropped:
        seen = 0
        while d.kept in later and later[d.kept] != d.kept and seen < 8:
            d.kept = later[d.kept]
            seen += 1
    # ---- the batch: kept records sorted by record_hash
    kept_rows = np.flatnonzero(alive)
    kept_rows = kept_rows[np.argsort(rank[kept_rows], kind="stable")]
    kept_hashes = [cand_hash[r] for r in kept_rows.tolist()]
    kept_tokens = tokens_all[kept_rows]
    earning = kept_tokens >= cfg.min_tokens
    token_count = int(kept_tokens[earning].sum())
    from proofmesh.data.batch import batch_root

    root = batch_root(kept_hashes)
    staging = Path(tempfile.mkdtemp(prefix=".batch-", dir=str(out_dir.parent)))
    try:
        with open(staging / "records.jsonl", "w", encoding="utf-8") as f:
            for pos, r in enumerate(kept_rows.tolist()):
                f.write(json.dumps({"i": pos, "record_hash": cand_hash[r].hex(),
                                    "tokens": int(tokens_all[r]), "text": text_of(r)},
                                   ensure_ascii=False) + "\n")
        with open(staging / "manifest.jsonl", "w", encoding="utf-8") as f:
            for pos, r in enumerate(kept_rows.tolist()):
                f.write(json.dumps({"record_hash": cand_hash[r].hex(), "status": "kept", "position": pos,
                                    "origin": cand_origin[r]}) + "\n")
            for d in sorted(dropped, key=lambda d: (d.stage, d.origin)):
                f.write(json.dumps({"record_hash": d.record_hash.hex(), "status": d.stage,
                                    "duplicate_of": d.kept.hex(), "similarity": round(d.similarity, 6),
                                    "origin": d.origin}) + "\n")
        # sketches of the kept records, for the cross-batch index once published
        np.savez(staging / "sketch.npz",
                 bands=(idx_bands_all[kept_rows] if idx_bands_all is not None
                        else np.empty((kept_rows.size, 0), np.uint64)),
                 **_kept_shingles(det, kept_rows))
        report = {
            "input_records": total,
            "kept": int(kept_rows.size),
            "dropped": {k: v for k, v in counts.items()},
            "dropped_total": len(dropped),
            "problems": [str(p) for p in opts.problems],
            "near_candidates_verified": candidates,
            "largest_clusters": sorted(clusters, key=lambda c: -c["size"])[:5],
            "token_count": token_count,
            "records_below_min_tokens": int((~earning).sum()),
            "seconds": round(time.perf_counter() - started, 3),
        }
        batch = {"root": "0x" + root.hex(), "record_count": int(kept_rows.size), "token_count": token_count,
                 "config": asdict(cfg), "report": report, "published": None}
        (staging / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
        (staging / "batch.json").write_text(json.dumps(batch, indent=2, ensure_ascii=False))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        texts.close()
        det.close()
        shutil.rmtree(staging, ignore_errors=True)
    return IngestResult(out_dir, report, root, int(kept_rows.size), token_count)


def _kept_shingles(det: NearDupDetector, rows: np.ndarray) -> dict:
    offsets, shingles = det.shingle_csr()
    sizes = (offsets[rows + 1] - offsets[rows]) if rows.size else np.empty(0, np.int64)
    off = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(sizes, out=off[1:])
    parts = [np.asarray(shingles[offsets[r]:offsets[r + 1]]) for r in rows.tolist()]
    return {"shingle_offsets": off,
            "shingles": np.concatenate(parts) if parts else np.empty(0, np.uint64)}


def _largest_clusters(keeper: np.ndarray, member: np.ndarray, hashes: list[bytes],
                      text_of: Callable[[int], str], stage: str, top: int = 5) -> list[dict]:
    idx = np.flatnonzero(member)
    if idx.size == 0:
        return []
    ks, sizes = np.unique(keeper[idx], return_counts=True)
    out = []
    for k in ks[np.argsort(-sizes, kind="stable")][:top].tolist():
        size = int((keeper[idx] == k).sum())
        if size < 2:
            break
        others = [int(r) for r in idx[keeper[idx] == k].tolist() if r != k][:2]
        out.append({"stage": stage, "size": size, "kept": hashes[k].hex(),
                    "kept_text": text_of(k)[:160],
                    "examples": [text_of(r)[:160] for r in others]})
    return out
