"""The batch-oriented exact stage: SIMD BLAKE3, fused normalisation, the compiled JSONL
scanner and block reader, the in-run hash table and the persistent index lookup — each
checked against the plain-Python statement of the same rule."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
from blake3 import blake3

from proofmesh.data.blake3_batch import blake3_many, blake3_spans
from proofmesh.data.exact import ExactDeduper, HashedBatch, hash_column
from proofmesh.data.index import CrossBatchIndex
from proofmesh.data.jsonl import scan_block
from proofmesh.data.normalize import Normalization, reference_normalize
from proofmesh.data.readers import ReadOptions, read_records


def test_blake3_many_equals_the_blake3_package_at_every_boundary():
    rng = np.random.default_rng(11)
    lengths = list(range(0, 1100)) + [k * 1024 + d for k in range(2, 10) for d in (-1, 0, 1)] \
        + [16 * 1024 + 1, 33 * 1024 + 5, 100_000, 1 << 20]
    rng.shuffle(lengths)
    blobs = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in lengths]
    data = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in blobs], out=offsets[1:])
    got = blake3_many(data, offsets)
    bad = [len(b) for b, g in zip(blobs, got) if blake3(b).digest() != g.tobytes()]
    assert bad == []
    # spans need not be packed or ordered
    starts = np.array([5, 0, 700, 3], dtype=np.int64)
    ends = np.array([5, 2000, 2900, 1500], dtype=np.int64)
    got = blake3_spans(data, starts, ends)
    assert [g.tobytes() for g in got] == [blake3(data[s:e].tobytes()).digest() for s, e in zip(starts, ends)]


def test_hash_column_equals_reference_rules_on_fast_and_slow_records():
    rng = random.Random(3)
    words = ["Alpha", "beta", "GAMMA", "d3lta", "x", "Ünï", "ﬁne", "Ｆull"]
    texts = []
    for i in range(3000):
        ws = [rng.choice(words[:5] if i % 2 else words) for _ in range(rng.randint(0, 30))]
        sep = " " if i % 3 else rng.choice([" ", "  ", "\t", "\n ", "\u00a0", "\u3000"])
        t = sep.join(ws)
        if i % 7 == 0:
            t = " " + t + " "
        texts.append(t)
    for norm in (Normalization(), Normalization(nfkc=False), Normalization(lowercase=False),
                 Normalization(whitespace=False), Normalization(False, False, False)):
        hb = hash_column(pa.array(texts, pa.large_string()), norm)
        want = [reference_normalize(t, norm) for t in texts]
        assert hb.normalized.to_pylist() == want
        assert hb.hashes == [blake3(w.encode()).digest() for w in want]
        assert hb.tokens.tolist() == [len([x for x in w.split(" ") if x]) for w in want]
        assert hb.key.tolist() == [int.from_bytes(h[:8], "little") for h in hb.hashes]


def _hashed(digests: list[bytes]) -> HashedBatch:
    d = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, 32)
    return HashedBatch(pa.array([""] * len(digests), pa.large_string()), d, np.zeros(len(digests), np.int64))


def test_key_collision_never_drops_a_different_record():
    """Two records whose record_hash share the 8-byte prefilter key (a 2^32 birthday search
    finds such a pair) are both kept; a real copy of either is still dropped, pointing at it."""
    a = b"K" * 8 + b"a" * 24
    b = b"K" * 8 + b"b" * 24
    dd = ExactDeduper()
    r1 = dd.add_hashed(_hashed([a, b]))
    assert r1.first.tolist() == [-1, -1]
    r2 = dd.add_hashed(_hashed([b, a, b"z" * 32]))
    assert r2.first.tolist() == [1, 0, -1]


def test_in_run_table_grows_and_first_occurrence_wins():
    rng = np.random.default_rng(1)
    digests = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(60_000)]
    dd = ExactDeduper()
    for s in range(0, 60_000, 7_000):          # forces several rehashes of the table
        dd.add_hashed(_hashed(digests[s:s + 7_000]))
    again = [digests[59_999], digests[0], digests[31_337], digests[31_337]]
    r = dd.add_hashed(_hashed(again))
    assert r.first.tolist() == [59_999, 0, 31_337, 31_337]
    assert dd.hash_at(31_337) == digests[31_337]


def test_persistent_index_finds_published_records_only(tmp_path):
    params = {"num_perm": 128, "shingle_size": 5, "seed": 1, "norm": "nlw"}
    index = CrossBatchIndex(tmp_path / "idx", params)
    texts = [f"published record number {i}" for i in range(50)]
    hb = hash_column(pa.array(texts, pa.large_string()), Normalization())
    index.commit(1, hb.hashes, np.empty((50, 0), np.uint64), [np.empty(0, np.uint64)] * 50, {})
    probe = hash_column(pa.array(["PUBLISHED   record number 7", "a new record", texts[49]],
                                 pa.large_string()), Normalization())
    assert index.published(probe.digests).tolist() == [True, False, True]
    assert index.published(probe.hashes).tolist() == [True, False, True]
    dd = ExactDeduper(Normalization(), published=index.published)
    r = dd.add(pa.array(["A new record", "published record number 3", "a new record"], pa.large_string()))
    assert r.published.tolist() == [False, True, False] and r.first.tolist() == [-1, -1, 0]
    index.close()


def test_scanner_agrees_with_json_loads_on_escapes_across_blocks():
    rng = random.Random(9)
    pieces = ["a", "B", " ", "é", "日", "\\n", '\\"', "\\\\", "\\u00e9", "\\ud83d\\ude00", "\\/", "\\t", "x" * 17]
    lines = []
    for i in range(2000):
        body = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        lines.append(f'{{"id": {i}, "text": "{body}", "tail": [1, {{"k": "v"}}]}}')
    block = ("\n".join(lines) + "\n").encode()
    data, offsets, ok, flagged, n = scan_block(block, "text", 1 << 20)
    assert n == 2000 and flagged.size == 0 and ok.tolist() == list(range(2000))
    got = pa.LargeStringArray.from_buffers(len(ok), pa.py_buffer(offsets), pa.py_buffer(data)).to_pylist()
    assert got == [json.loads(x)["text"] for x in lines]


def test_block_reader_equals_one_block_for_any_block_size(tmp_path):
    p = tmp_path / "c.jsonl"
    rows = [json.dumps({"text": f"record {i} " + "w" * (i % 97)}) for i in range(600)]
    p.write_text("\n".join(rows))              # no newline after the last line
    def read(block_bytes):
        opts = ReadOptions(block_bytes=block_bytes)
        return [(t, int(n)) for b in read_records(p, options=opts) for t, n in zip(b.texts.to_pylist(), b.lines)]
    want = [(json.loads(r)["text"], i + 1) for i, r in enumerate(rows)]
    assert read(8 << 20) == want
    assert read(1000) == want
    assert read(150) == want                   # most lines span two reads


def test_persistent_index_confirms_key_hits_on_the_full_hash(tmp_path):
    """Published records sharing an 8-byte key are all found; a third record with that key
    but another hash is new."""
    index = CrossBatchIndex(tmp_path / "idx", {"num_perm": 128, "shingle_size": 5, "seed": 1, "norm": "nlw"})
    a, b, c = b"K" * 8 + b"a" * 24, b"K" * 8 + b"b" * 24, b"K" * 8 + b"c" * 24
    index.commit(1, [a, b], np.empty((2, 0), np.uint64), [np.empty(0, np.uint64)] * 2, {})
    assert index.published([b, c, a, b"z" * 32]).tolist() == [True, False, True, False]
    index.close()
    reopened = CrossBatchIndex(tmp_path / "idx", {"num_perm": 128, "shingle_size": 5, "seed": 1, "norm": "nlw"})
    assert reopened.published([b, c]).tolist() == [True, False]
    reopened.close()
