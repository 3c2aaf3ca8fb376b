"""The dedup engine off chain: normalisation, shingling, MinHash/LSH + verification,
canonical keepers, every stage's planted duplicates, order independence, bad input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from proofmesh.crypto.merkle import leaf_hash
from proofmesh.data.batch import batch_root, record_leaf
from proofmesh.data.exact import record_hash
from proofmesh.data.lsh import candidate_probability, choose_bands
from proofmesh.data.minhash import MinHasher
from proofmesh.data.neardup import NearDupDetector
from proofmesh.data.normalize import Normalization, normalize_column, normalize_text, reference_normalize
from proofmesh.data.pipeline import IngestConfig, ingest
from proofmesh.data.readers import ReadOptions, read_records
from proofmesh.errors import InputError

CORPUS = Path(__file__).resolve().parents[2] / "src" / "proofmesh" / "data" / "corpus"
WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho "
         "sigma tau upsilon phi chi psi omega river stone cloud field light north south").split()


def shingles_py(text: str, k: int = 5) -> set[str]:
    w = text.split()
    if not w:
        return set()
    if len(w) < k:
        return {" ".join(w)}
    return {" ".join(w[i:i + k]) for i in range(len(w) - k + 1)}


def jaccard_py(a: str, b: str) -> float:
    sa, sb = shingles_py(a), shingles_py(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 0.0


def test_normalize_matches_reference_on_unicode_edge_cases():
    rng = random.Random(5)
    alphabet = list("aBzZ é") + ["Ω", "ﬁ", "Ｆ", "日", "\t", "\n", "\u00a0", "\u2003", "\u3000", "\u200b", "\x85"]
    norms = [Normalization(), Normalization(nfkc=False), Normalization(lowercase=False),
             Normalization(whitespace=False)]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 15))) for _ in range(500)]
    for n in norms:
        got = normalize_column(pa.array(texts, pa.large_string()), n).to_pylist()
        assert got == [reference_normalize(t, n) for t in texts]
    assert normalize_text("  Ｈｅｌｌｏ\u3000WORLD\t ") == "hello world"


def test_shingle_sets_equal_python_shingles():
    rng = random.Random(1)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 30))) for _ in range(200)]
    sb = MinHasher().shingle_texts(texts)
    for i, t in enumerate(texts):
        assert sb.sizes[i] == len(shingles_py(t))
    # empty record: no shingles, sentinel signature
    assert sb.sizes[[i for i, t in enumerate(texts) if not t][0]] == 0 if any(not t for t in texts) else True


def test_minhash_estimates_jaccard():
    rng = random.Random(2)
    base = [rng.choice(WORDS) for _ in range(200)]
    edited = list(base)
    for p in rng.sample(range(200), 10):
        edited[p] = "changed"
    a, b = " ".join(base), " ".join(edited)
    sb = MinHasher(num_perm=512).shingle_texts([a, b])
    est = float((sb.signatures[0] == sb.signatures[1]).mean())
    assert abs(est - jaccard_py(a, b)) < 0.07


def test_band_choice_gives_recall_at_threshold():
    for t in (0.5, 0.7, 0.8, 0.9):
        b, r = choose_bands(t, 128)
        assert b * r <= 128 and candidate_probability(t, b, r) >= 0.995


def test_neardup_finds_exactly_the_pairs_above_threshold():
    """Verified pairs equal brute-force Python Jaccard ≥ 0.8 (recall and precision 1 here)."""
    rng = random.Random(3)
    docs = []
    for _ in range(150):
        docs.append([rng.choice(WORDS) + str(rng.randint(0, 50)) for _ in range(rng.randint(20, 60))])
    texts = [" ".join(d) for d in docs]
    for _ in range(120):            # near copies with 0-12% word edits, on both sides of 0.8
        src = list(rng.choice(docs))
        for p in rng.sample(range(len(src)), int(len(src) * rng.uniform(0, 0.12))):
            src[p] = "x" + str(rng.randint(0, 9))
        texts.append(" ".join(src))
    det = NearDupDetector(threshold=0.8)
    det.add(*__import__("proofmesh.data.minhash", fromlist=["encode_texts"]).encode_texts(texts))
    res = det.finish()
    got = {tuple(e) for e in res.edges.tolist()}
    truth = {(i, j) for i in range(len(texts)) for j in range(i + 1, len(texts))
             if jaccard_py(texts[i], texts[j]) >= 0.8 - 1e-12}
    assert truth and got == truth
    det.close()


def test_leaf_matches_openzeppelin_leaf_hash():
    h = record_hash("some text")
    assert record_leaf(7, h) == leaf_hash(["uint256", "bytes32"], [7, h])
    assert batch_root([]) == b"\x00" * 32


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_every_stage_drops_its_planted_duplicates(tmp_path):
    r = ingest([CORPUS / "contributor_a.jsonl"], tmp_path / "b", IngestConfig())
    rows = [json.loads(l) for l in (CORPUS / "contributor_a.jsonl").read_text().splitlines()]
    by_id = {x["id"]: x["text"] for x in rows}
    # exact: 30 surface variants fold to the same normalised text
    assert r.report["dropped"]["exact"] == 30
    # near: the expected count is the number of near copies whose closest original is ≥ 0.8
    originals = [reference_normalize(by_id[k]) for k in by_id if k[2:].isdigit()]
    orig_sh = [shingles_py(o) for o in originals]
    expected_near = 0
    for k, t in by_id.items():
        if k.startswith("a-near-"):
            s = shingles_py(reference_normalize(t))
            best = max(len(s & o) / len(s | o) for o in orig_sh)
            expected_near += best >= 0.8
    assert r.report["dropped"]["near"] == expected_near > 10
    manifest = [json.loads(l) for l in (tmp_path / "b" / "manifest.jsonl").read_text().splitlines()]
    kept = {m["record_hash"] for m in manifest if m["status"] == "kept"}
    assert len(kept) == r.record_count
    # every dropped record names a kept record it duplicates
    assert all(m["duplicate_of"] in kept for m in manifest if m["status"] in ("exact", "near"))


def test_kept_set_and_root_do_not_depend_on_input_order(tmp_path):
    rows = [json.loads(l) for l in (CORPUS / "contributor_a.jsonl").read_text().splitlines()]
    results = []
    for seed in (1, 2):
        rng = random.Random(seed)
        shuffled = list(rows)
        rng.shuffle(shuffled)
        src = _write_jsonl(tmp_path / f"in{seed}.jsonl", shuffled)
        results.append(ingest([src], tmp_path / f"out{seed}", IngestConfig()))
    assert results[0].root == results[1].root
    a = (tmp_path / "out1" / "records.jsonl").read_text()
    b = (tmp_path / "out2" / "records.jsonl").read_text()
    assert a == b


def test_parquet_and_folder_inputs_agree_with_jsonl(tmp_path):
    rows = [json.loads(l) for l in (CORPUS / "contributor_b.jsonl").read_text().splitlines()]
    pq.write_table(pa.table({"body": [r["text"] for r in rows]}), tmp_path / "b.parquet", row_group_size=17)
    folder = tmp_path / "txt"
    folder.mkdir()
    for i, r in enumerate(rows):
        (folder / f"{i:04d}.txt").write_text(r["text"], encoding="utf-8")
    r1 = ingest([CORPUS / "contributor_b.jsonl"], tmp_path / "o1", IngestConfig())
    r2 = ingest([tmp_path / "b.parquet"], tmp_path / "o2", IngestConfig(text_field="body"))
    r3 = ingest([folder], tmp_path / "o3", IngestConfig())
    assert r1.root == r2.root == r3.root


def test_bad_input_named_with_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"text": "fine record one"}\n'
                  b'{"text": "broken\n'
                  b'{"other": "no text field"}\n'
                  b'{"text": 42}\n'
                  b'{"text": "caf\xe9 not utf8"}\n'
                  b'\n'
                  b'{"text": "fine record two"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: malformed JSON"):
        list(read_records(p, on_error="fail"))
    opts = ReadOptions(on_error="skip")
    got = [t for b in read_records(p, options=opts) for t in b.texts.to_pylist()]
    assert got == ["fine record one", "fine record two"]
    reasons = [str(x) for x in opts.problems]
    assert any(":2: malformed JSON" in r for r in reasons)
    assert any(":3: no 'text' field" in r for r in reasons)
    assert any(":4: field 'text' is int" in r for r in reasons)
    assert any(":5: not UTF-8" in r for r in reasons)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        list(read_records(empty))


def test_oversized_record_is_reported_not_loaded(tmp_path):
    p = tmp_path / "big.jsonl"
    with open(p, "wb") as f:
        f.write(b'{"text": "small one here"}\n')
        f.write(b'{"text": "' + b"a" * (3 << 20) + b'"}\n')
        f.write(b'{"text": "small two here"}\n')
    opts = ReadOptions(on_error="skip", max_record_bytes=1 << 20, block_bytes=1 << 18)
    got = [(t, int(l)) for b in read_records(p, options=opts) for t, l in zip(b.texts.to_pylist(), b.lines)]
    assert got == [("small one here", 1), ("small two here", 3)]
    assert any(":2: record of" in str(x) and "exceeds" in str(x) for x in opts.problems)


def test_ingest_of_nothing_fails_cleanly(tmp_path):
    p = _write_jsonl(tmp_path / "x.jsonl", [{"other": 1}])
    with pytest.raises(InputError):
        ingest([p], tmp_path / "out", IngestConfig(on_error="skip"))
    assert not (tmp_path / "out").exists()
    leftovers = [x for x in tmp_path.iterdir() if x.name.startswith(".")]
    assert leftovers == []


def test_bad_config_is_refused():
    with pytest.raises(InputError, match="threshold"):
        IngestConfig(threshold=1.5)
    with pytest.raises(InputError, match="on-error"):
        ReadOptions(on_error="ignore")
