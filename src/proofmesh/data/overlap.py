"""Contamination check: exact and near overlap between two datasets (e.g. train vs eval).

Each side is a batch directory, an input path (JSONL/Parquet/folder), or an on-chain
batch (its records fetched from the store). Exact overlap compares record hashes; near
overlap runs the same MinHash/LSH/exact-Jaccard machinery on both sides together and
keeps only pairs that cross sides.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from proofmesh.data.exact import hash_column
from proofmesh.data.lsh import candidate_pairs, exact_jaccard, meets
from proofmesh.data.minhash import MinHasher, arrow_buffers, band_hashes
from proofmesh.data.lsh import choose_bands
from proofmesh.data.normalize import Normalization
from proofmesh.data.readers import ReadOptions, read_records


def load_texts(spec: str, text_field: str = "text", store=None, client=None) -> tuple[str, list[str]]:
    """(label, raw texts) of a batch dir, an input path, or ``batch:<id>`` / a bare id on chain."""
    p = Path(spec)
    if (p / "records.jsonl").exists():
        with open(p / "records.jsonl", encoding="utf-8") as f:
            return str(p), [json.loads(line)["text"] for line in f]
    if p.exists():
        opts = ReadOptions(text_field=text_field, on_error="skip")
        texts: list[str] = []
        for b in read_records(p, options=opts):
            texts.extend(b.texts.to_pylist())
        return str(p), texts
    bid = spec.split(":", 1)[1] if spec.startswith("batch:") else spec
    if bid.isdigit() and store is not None and client is not None:
        b = client.batch(int(bid))
        data = store.get_bytes(b.records_cid).decode("utf-8")
        return f"batch #{bid}", [json.loads(line)["text"] for line in data.splitlines() if line]
    from proofmesh.errors import InputError

    raise InputError(f"{spec!r} is neither a batch directory, an input path nor an on-chain batch id",
                     fix="pass a folder from `data ingest`, a JSONL/Parquet file, or batch:<id>")


def overlap(texts_a: list[str], texts_b: list[str], threshold: float = 0.8, num_perm: int = 128,
            shingle_size: int = 5, norm: Normalization = Normalization(), examples: int = 3) -> dict:
    """Counts and examples of B's records that exactly / nearly occur in A."""
    col = pa.array(texts_a + texts_b, pa.large_string())
    hb = hash_column(col, norm)
    na = len(texts_a)
    in_a = set(hb.hashes[:na])
    exact_b = [i for i in range(len(texts_b)) if hb.hashes[na + i] in in_a]
    mh = MinHasher(num_perm, shingle_size)
    data, offsets = arrow_buffers(hb.normalized)
    sb = mh.shingle(data, offsets)
    bands, rows = choose_bands(threshold, num_perm)
    pairs = candidate_pairs(band_hashes(sb.signatures, bands, rows), np.diff(sb.shingle_offsets) > 0)
    cross = pairs[(pairs[:, 0] < na) & (pairs[:, 1] >= na)]
    sim = exact_jaccard(sb.shingle_offsets, sb.shingles, cross)
    keep = meets(sim, threshold)
    cross, sim = cross[keep], sim[keep]
    exact_set = set(exact_b)
    near_b = sorted({int(j) - na for j in cross[:, 1].tolist()} - exact_set)
    ex = []
    for (a, j), s in sorted(zip(cross.tolist(), sim.tolist()), key=lambda t: -t[1]):
        if j - na in exact_set:
            continue
        ex.append({"b": texts_b[j - na][:120], "a": texts_a[a][:120], "jaccard": round(s, 4)})
        if len(ex) >= examples:
            break
    nb = max(1, len(texts_b))
    return {"records_a": na, "records_b": len(texts_b), "exact_overlap": len(exact_b),
            "near_overlap": len(near_b), "exact_fraction": round(len(exact_b) / nb, 4),
            "near_fraction": round(len(near_b) / nb, 4), "threshold": threshold, "near_examples": ex}
