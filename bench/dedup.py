"""Near- and exact-duplicate detection: proofmesh vs datasketch vs rensa, same corpus, same run.

    python bench/dedup.py --docs 1000000                     # the README figures
    python bench/dedup.py --docs 1000000 --sections exact    # only the exact-dedup MB/s
    python bench/dedup.py --docs 100000 --sections near      # development size

Corpus: ``--docs`` generated documents (20–100 words from a 4,096-word vocabulary with
a Zipf-like law), of which ~12% are planted near-duplicates of an earlier document
(random word substitutions / insertions / deletions at a uniform 1–15% rate, sometimes
chained) and ~2% exact copies. Planted pairs therefore fall on both sides of 0.8 and 0.5.

Ground truth: every pair whose exact word-5-shingle Jaccard is ≥ the threshold, found by
an AllPairs-style similarity join (global rare-first token order, prefix filtering, length
filtering, exact verification) over shingles packed losslessly from the generator's own
word ids (5 × 12 bits), i.e. independent of every system's tokeniser and hashing.

Systems, each "text in → duplicate pairs/clusters out" from the same list of strings:
- proofmesh: NFKC/lower/space normalisation (Arrow), numba shingling + 128-perm MinHash,
  LSH bands tuned for recall, exact Jaccard verification, union-find clusters.
- datasketch: MinHash(num_perm=128).update_batch over Python word-5-shingles, MinHashLSH
  (threshold) insert + query; LSH candidates are its answer (its natural pipeline).
- rensa: RMinHash(128).update over the same Python shingles, RMinHashLSH(threshold, 128,
  16 bands) insert + query, candidates kept when the estimated Jaccard ≥ threshold (the
  verification its README shows).
Baselines run single-process as their users run them; proofmesh is shown on 1 thread
and on all cores (numba threads) so both comparisons are visible.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time

# numba's OpenMP threads spin between parallel regions by default; on a 2-core machine shared
# with other work the spinning threads take the CPU from the serial glue between kernels
# (measured here under load ~5: exact stage 2.2 s → 1.0 s wall). Sleeping costs nothing on an
# idle machine. Must be set before libgomp loads; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba as nb  # noqa: E402
import numpy as np  # noqa: E402

VOCAB = 4096
SHINGLE = 5


# ----------------------------------------------------------------------------------------
# corpus
# ----------------------------------------------------------------------------------------
def make_vocab(rng: np.random.Generator) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words: set[str] = set()
    while len(words) < VOCAB:
        n = int(rng.integers(2, 10))
        words.add("".join(rng.choice(letters, n)))
    return sorted(words)


def make_corpus(n: int, seed: int = 7) -> tuple[list[str], list[np.ndarray], dict]:
    """Documents as strings and as word-id arrays, plus planting statistics."""
    rng = np.random.default_rng(seed)
    vocab = np.array(make_vocab(rng), dtype=object)
    weights = 1.0 / np.arange(1, VOCAB + 1) ** 0.8
    weights /= weights.sum()
    cdf = np.cumsum(weights)
    docs: list[np.ndarray] = []
    kinds = rng.random(n)
    planted_near = planted_exact = 0
    for i in range(n):
        if i > 10 and kinds[i] < 0.12:
            src = docs[int(rng.integers(max(0, i - 5000), i))]
            rate = rng.uniform(0.01, 0.15)
            nedit = max(1, int(round(rate * src.size)))
            doc = src.copy()
            for _ in range(nedit):
                op = rng.integers(3)
                p = int(rng.integers(doc.size))
                w = np.searchsorted(cdf, rng.random())
                if op == 0:
                    doc[p] = w
                elif op == 1 and doc.size > 20:
                    doc = np.delete(doc, p)
                else:
                    doc = np.insert(doc, p, w)
            docs.append(doc.astype(np.int32))
            planted_near += 1
        elif i > 10 and kinds[i] < 0.14:
            docs.append(docs[int(rng.integers(max(0, i - 5000), i))].copy())
            planted_exact += 1
        else:
            length = int(rng.integers(20, 101))
            docs.append(np.searchsorted(cdf, rng.random(length)).astype(np.int32))
    texts = [" ".join(vocab[d]) for d in docs]
    return texts, docs, {"planted_near": planted_near, "planted_exact": planted_exact}


# ----------------------------------------------------------------------------------------
# exact ground truth: prefix-filter similarity join
# ----------------------------------------------------------------------------------------
def shingle_sets(docs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """CSR of each document's unique packed 5-shingles (exact, no hashing)."""
    sizes = np.empty(len(docs), dtype=np.int64)
    parts = []
    for i, d in enumerate(docs):
        d = d.astype(np.uint64)
        if d.size >= SHINGLE:
            s = np.zeros(d.size - SHINGLE + 1, dtype=np.uint64)
            for j in range(SHINGLE):
                s = (s << np.uint64(12)) | d[j: d.size - SHINGLE + 1 + j]
        else:
            s = np.zeros(1, dtype=np.uint64)
            for j in range(d.size):
                s = (s << np.uint64(12)) | d[j: j + 1]
            s |= np.uint64(1) << np.uint64(63)
        s = np.unique(s)
        sizes[i] = s.size
        parts.append(s)
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return offsets, np.concatenate(parts)


@nb.njit(cache=True)
def _prefix_join(offsets, tokens, threshold, ntok):
    n = offsets.shape[0] - 1
    # prefix lengths
    plen = np.empty(n, dtype=np.int64)
    for d in range(n):
        sz = offsets[d + 1] - offsets[d]
        plen[d] = sz - int(np.ceil(threshold * sz - 1e-9)) + 1
    # inverted index over prefix tokens (CSR)
    cnt = np.zeros(ntok + 1, dtype=np.int64)
    for d in range(n):
        for p in range(offsets[d], offsets[d] + plen[d]):
            cnt[tokens[p] + 1] += 1
    for t in range(ntok):
        cnt[t + 1] += cnt[t]
    post = np.empty(cnt[ntok], dtype=np.int64)
    fill = cnt[:-1].copy()
    for d in range(n):
        for p in range(offsets[d], offsets[d] + plen[d]):
            t = tokens[p]
            post[fill[t]] = d
            fill[t] += 1
    seen = np.full(n, -1, dtype=np.int64)
    out_a = []
    out_b = []
    out_s = []
    for x in range(n):
        sx = offsets[x + 1] - offsets[x]
        for p in range(offsets[x], offsets[x] + plen[x]):
            t = tokens[p]
            for q in range(cnt[t], cnt[t + 1]):
                y = post[q]
                if y <= x or seen[y] == x:
                    continue
                seen[y] = x
                sy = offsets[y + 1] - offsets[y]
                if sy < threshold * sx - 1e-9 or sx < threshold * sy - 1e-9:
                    continue
                # exact verification by merging the sorted (by token id) sets
                i = offsets[x]
                j = offsets[y]
                inter = 0
                while i < offsets[x + 1] and j < offsets[y + 1]:
                    if tokens[i] == tokens[j]:
                        inter += 1
                        i += 1
                        j += 1
                    elif tokens[i] < tokens[j]:
                        i += 1
                    else:
                        j += 1
                sim = inter / (sx + sy - inter)
                if sim >= threshold - 1e-12:
                    out_a.append(x)
                    out_b.append(y)
                    out_s.append(sim)
    return np.array(out_a, dtype=np.int64), np.array(out_b, dtype=np.int64), np.array(out_s)


def exact_truth(offsets: np.ndarray, shingles: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    # Token ids in ascending global frequency (rare first): prefixes then hold rare tokens.
    uniq, inverse, counts = np.unique(shingles, return_inverse=True, return_counts=True)
    order = np.lexsort((np.arange(uniq.size), counts))
    rank = np.empty(uniq.size, dtype=np.int64)
    rank[order] = np.arange(uniq.size)
    tokens = rank[inverse]
    # sort each document's tokens by the global order
    doc_of = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))
    tokens = tokens[np.lexsort((tokens, doc_of))]
    a, b, _ = _prefix_join(offsets, tokens, threshold, uniq.size)
    return set(zip(a.tolist(), b.tolist()))


# ----------------------------------------------------------------------------------------
# systems
# ----------------------------------------------------------------------------------------
def py_shingles(text: str) -> set[str]:
    words = text.lower().split()
    if len(words) < SHINGLE:
        return {" ".join(words)}
    return {" ".join(words[i:i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


def run_proofmesh(texts: list[str], threshold: float, threads: int):
    import pyarrow as pa

    from proofmesh.data.minhash import arrow_buffers
    from proofmesh.data.neardup import NearDupDetector
    from proofmesh.data.normalize import normalize_column

    nb.set_num_threads(threads)
    t0 = time.perf_counter()
    det = NearDupDetector(threshold=threshold)
    step = 65536
    for s in range(0, len(texts), step):
        col = normalize_column(pa.array(texts[s:s + step], pa.large_string()))
        data, offsets = arrow_buffers(col)
        det.add(data, offsets)
    res = det.finish()
    elapsed = time.perf_counter() - t0
    nb.set_num_threads(nb.config.NUMBA_NUM_THREADS)
    pairs = set(zip(res.edges[:, 0].tolist(), res.edges[:, 1].tolist()))
    return elapsed, pairs, {"candidates": res.candidates,
                            "clusters": int((np.bincount(res.labels) > 1).sum()),
                            "bands": f"{det.bands}x{det.rows}"}


def datasketch_signatures(texts: list[str]):
    from datasketch import MinHash

    t0 = time.perf_counter()
    sigs = []
    for t in texts:
        m = MinHash(num_perm=128)
        m.update_batch([s.encode("utf-8") for s in py_shingles(t)])
        sigs.append(m)
    return time.perf_counter() - t0, sigs


def datasketch_lsh(sigs, threshold: float):
    from datasketch import MinHashLSH

    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    for i, m in enumerate(sigs):
        lsh.insert(i, m)
    pairs = set()
    for i, m in enumerate(sigs):
        for j in lsh.query(m):
            if j != i:
                pairs.add((min(i, j), max(i, j)))
    return time.perf_counter() - t0, pairs


def rensa_signatures(texts: list[str]):
    from rensa import RMinHash

    t0 = time.perf_counter()
    sigs = []
    for t in texts:
        m = RMinHash(num_perm=128, seed=42)
        m.update(list(py_shingles(t)))
        sigs.append(m)
    return time.perf_counter() - t0, sigs


def rensa_lsh(sigs, threshold: float):
    from rensa import RMinHashLSH

    t0 = time.perf_counter()
    lsh = RMinHashLSH(threshold=threshold, num_perm=128, num_bands=16)
    for i, m in enumerate(sigs):
        lsh.insert(i, m)
    pairs = set()
    for i, m in enumerate(sigs):
        for j in lsh.query(m):
            if j != i and sigs[i].jaccard(sigs[j]) >= threshold:
                pairs.add((min(i, j), max(i, j)))
    return time.perf_counter() - t0, pairs


def prf(pred: set, truth: set) -> tuple[float, float, float]:
    tp = len(pred & truth)
    p = tp / len(pred) if pred else 1.0
    r = tp / len(truth) if truth else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


# ----------------------------------------------------------------------------------------
# exact-dedup throughput
# ----------------------------------------------------------------------------------------
def exact_stage(texts: list[str], published_share: float = 0.1, baseline_docs: int = 100_000,
                repeats: int = 3) -> dict:
    """JSONL file → read → normalise → record_hash → in-run set + persistent cross-batch index.

    The persistent index (LMDB, as ``proofmesh data ingest`` uses it) first receives the
    records of an earlier "published" batch — ``published_share`` of the corpus, drawn from
    all of it — so the cross-batch lookup finds real hits. Baseline in the same run: the loop
    a Python user writes (``json.loads``, ``str`` normalisation, ``blake3(...).digest()``, a
    ``set``), on the first ``baseline_docs`` lines of the same file. The proofmesh pass runs
    ``repeats`` times (best and median reported: on a shared machine other work adds noise)."""
    import unicodedata

    from blake3 import blake3

    from proofmesh.data.exact import ExactDeduper, hash_column
    from proofmesh.data.index import CrossBatchIndex
    from proofmesh.data.normalize import Normalization
    from proofmesh.data.readers import read_records

    import pyarrow as pa

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "corpus.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for i, t in enumerate(texts):
                f.write(json.dumps({"id": i, "text": t}) + "\n")
        size = os.path.getsize(path)
        rng = np.random.default_rng(3)
        pub_rows = np.sort(rng.choice(len(texts), int(len(texts) * published_share), replace=False))
        index = CrossBatchIndex(os.path.join(tmp, "index"), {"num_perm": 128, "shingle_size": 5, "seed": 1,
                                                            "norm": Normalization().tag()})
        pub = hash_column(pa.array([texts[i] for i in pub_rows.tolist()], pa.large_string()), Normalization())
        uniq = list(dict.fromkeys(pub.hashes))
        index.commit(1, uniq, np.empty((len(uniq), 0), np.uint64), [np.empty(0, np.uint64)] * len(uniq), {})
        os.system(f"cat {path} > /dev/null")  # warm the page cache: measure CPU, not the disk
        # compile outside the timing
        warm = ExactDeduper(Normalization(), published=index.published)
        for batch in read_records(path, text_field="text"):
            warm.add(batch)
            break
        runs = []
        for _ in range(repeats):          # a fresh in-run set each time; the best run is reported
            t0 = time.perf_counter()
            c0 = time.process_time()
            dd = ExactDeduper(Normalization(), published=index.published)
            kept = in_run = published = 0
            for batch in read_records(path, text_field="text"):
                r = dd.add(batch)
                kept += r.kept
                in_run += int((r.first >= 0).sum())
                published += int(r.published.sum())
            runs.append((time.perf_counter() - t0, time.process_time() - c0))
            del dd
        elapsed, cpu = min(runs)
        index.close()

        # baseline: the plain Python loop, same file, same rules, same hash
        base_bytes = 0
        seen: set[bytes] = set()
        pub_set = set(uniq)
        b_kept = 0
        t1 = time.perf_counter()
        with open(path, "rb") as f:
            for n_line, line in enumerate(f):
                if n_line >= baseline_docs:
                    break
                base_bytes += len(line)
                text = json.loads(line)["text"]
                text = " ".join(unicodedata.normalize("NFKC", text).lower().split())
                h = blake3(text.encode("utf-8")).digest()
                if h not in seen and h not in pub_set:
                    b_kept += 1
                seen.add(h)
        base_s = time.perf_counter() - t1
    walls = sorted(w for w, _c in runs)
    return {"bytes": size, "seconds": elapsed, "mb_s": size / elapsed / 1e6, "cpu_s": cpu,
            "median_mb_s": size / walls[len(walls) // 2] / 1e6, "repeats": repeats,
            "mb_per_cpu_s": size / cpu / 1e6, "kept": kept, "dropped_in_run": in_run,
            "dropped_published": published, "published_records": len(uniq),
            "baseline_bytes": base_bytes, "baseline_seconds": base_s,
            "baseline_mb_s": base_bytes / base_s / 1e6, "baseline_docs": min(baseline_docs, len(texts)),
            "load_average": os.getloadavg()[0]}


def gas_stage(texts: list[str]) -> dict:
    """Publish the unique records as one batch on a fresh embedded chain; gas per record/token."""
    from proofmesh.chain.bootstrap import bootstrap_home
    from proofmesh.chain.client import Chain, close_embedded
    from proofmesh.chain.core import MESH, Registry
    from proofmesh.config import Home
    from proofmesh.crypto.keys import Keystore
    from proofmesh.data.batch import batch_root
    from proofmesh.data.client import DataRegistryClient
    from proofmesh.data.exact import record_hash

    os.environ.setdefault("PROOFMESH_KDF", "fast")
    hashes = sorted({record_hash(" ".join(t.split())) for t in texts})
    tokens = sum(len(t.split()) for t in texts)
    t0 = time.perf_counter()
    root = batch_root(hashes)
    root_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        home = Home.resolve(tmp)
        home.init()
        bootstrap_home(home, "default", "pw")
        acct = Keystore(home).load("default", "pw")
        chain = Chain.connect(home, acct)
        Registry(chain).register("http://127.0.0.1", 2)
        Registry(chain).stake(100_000 * MESH)
        client = DataRegistryClient(chain)
        sid = client.register_source("bench://corpus", "CC0-1.0", "")
        cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
        _bid, tx = client.publish_raw(sid, root, len(hashes), tokens, cid, cid)
        close_embedded(home.chain_dir)
    return {"records": len(hashes), "tokens": tokens, "publish_gas": tx.gas_used,
            "gas_per_record": tx.gas_used / len(hashes), "gas_per_token": tx.gas_used / tokens,
            "merkle_root_s": root_s}


def near_section(args, texts: list[str], docs_holder: list, thresholds: list[float], cores: int) -> list[dict]:
    """Ground truth, then proofmesh vs rensa vs datasketch at each threshold (takes the word-id
    documents out of ``docs_holder`` so they are freed once shingled)."""
    t = time.perf_counter()
    offsets, shingles = shingle_sets(docs_holder.pop())
    truths = {}
    for th in thresholds:
        truths[th] = exact_truth(offsets, shingles, th)
        print(f"truth @{th}: {len(truths[th]):,} pairs (prefix-filter join)", flush=True)
    print(f"  ground truth took {time.perf_counter() - t:.1f}s", flush=True)
    del offsets, shingles

    # warm up numba's compile cache outside the timings
    run_proofmesh(texts[:2000], 0.8, cores)

    ds_sig = rs_sig = None
    nds = min(args.docs, args.datasketch_docs)
    if not args.skip_datasketch:
        ds_sig_t, ds_sig = datasketch_signatures(texts[:nds])
        print(f"datasketch signatures ({nds:,} docs): {ds_sig_t:.1f}s", flush=True)
    rs_sig_t, rs_sig = rensa_signatures(texts)
    print(f"rensa signatures: {rs_sig_t:.1f}s", flush=True)

    rows = []
    for th in thresholds:
        truth = truths[th]
        res = {}
        for threads in sorted({1, cores}):
            c0 = time.process_time()
            el, pairs, info = run_proofmesh(texts, th, threads)
            info["cpu_s"] = round(time.process_time() - c0, 2)
            res[f"proofmesh ({threads} thr)"] = (el, args.docs, prf(pairs, truth), info)
        el, pairs = rensa_lsh(rs_sig, th)
        res["rensa"] = (rs_sig_t + el, args.docs, prf(pairs, truth), {})
        if ds_sig is not None:
            el, pairs = datasketch_lsh(ds_sig, th)
            sub_truth = {(i, j) for (i, j) in truth if j < nds}
            res[f"datasketch ({nds // 1000}k docs)" if nds < args.docs else "datasketch"] = \
                (ds_sig_t + el, nds, prf(pairs, sub_truth), {})
        for name, (el, n, (p, r, f), info) in res.items():
            row = {"threshold": th, "system": name, "seconds": el, "docs": n, "docs_s": n / el,
                   "precision": p, "recall": r, "f1": f, **info}
            rows.append(row)
        print(f"\nthreshold {th}  (truth {len(truth):,} pairs)  load average {os.getloadavg()[0]:.1f}")
        print(f"{'system':<24}{'docs':>10}{'seconds':>9}{'docs/s':>11}{'precision':>11}{'recall':>8}{'F1':>7}"
              f"{'vs datasketch':>15}{'vs rensa':>10}")
        ds_rate = next((n / el for name, (el, n, _p, _i) in res.items() if name.startswith("datasketch")), None)
        rs_rate = args.docs / res["rensa"][0]
        for name, (el, n, (p, r, f), info) in res.items():
            rate = n / el
            vs_ds = f"{rate / ds_rate:.1f}x" if ds_rate else "-"
            print(f"{name:<24}{n:>10,}{el:>9.2f}{rate:>11,.0f}{p:>11.4f}{r:>8.4f}{f:>7.4f}"
                  f"{vs_ds:>15}{rate / rs_rate:>9.1f}x")
        sys.stdout.flush()
    return rows



def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--thresholds", default="0.8,0.5")
    ap.add_argument("--skip-datasketch", action="store_true")
    ap.add_argument("--datasketch-docs", type=int, default=100_000,
                    help="datasketch runs on the first N docs (it needs ~1 h for 1M on this box); its "
                         "docs/s and F1 (against the exact truth restricted to those docs) are compared")
    ap.add_argument("--skip-gas", action="store_true")
    ap.add_argument("--skip-exact", action="store_true")
    ap.add_argument("--sections", default="near,exact,gas",
                    help="comma-separated subset of near,exact,gas (e.g. --sections exact: only the "
                         "exact-dedup throughput, no ground truth)")
    ap.add_argument("--baseline-docs", type=int, default=100_000,
                    help="lines the plain-Python exact baseline runs on (it is ~20x slower)")
    ap.add_argument("--exact-repeats", type=int, default=3, help="exact-stage passes (best and median shown)")
    ap.add_argument("--json", dest="json_out", default=None, help="write results here")
    args = ap.parse_args(argv)
    thresholds = [float(x) for x in args.thresholds.split(",")]
    sections = {x.strip() for x in args.sections.split(",") if x.strip()}
    if args.skip_exact:
        sections.discard("exact")
    if args.skip_gas:
        sections.discard("gas")
    cores = nb.config.NUMBA_NUM_THREADS
    out: dict = {"docs": args.docs, "cores": cores}

    t = time.perf_counter()
    texts, docs, stats = make_corpus(args.docs)
    out.update(stats)
    print(f"corpus: {args.docs:,} docs, {sum(map(len, texts)) / 1e6:.1f} MB text, "
          f"{stats['planted_near']:,} planted near-dups, {stats['planted_exact']:,} exact copies "
          f"({time.perf_counter() - t:.1f}s)", flush=True)
    holder = [docs]
    del docs
    if "near" in sections:
        out["near"] = near_section(args, texts, holder, thresholds, cores)
    holder.clear()

    if "exact" in sections:
        ex = exact_stage(texts, baseline_docs=args.baseline_docs, repeats=args.exact_repeats)
        out["exact"] = ex
        print(f"\nexact dedup, JSONL read → normalise → BLAKE3 record_hash → in-run set + persistent index "
              f"({ex['published_records']:,} records published before)  load average {ex['load_average']:.1f} "
              f"on {os.cpu_count()} cores")
        print(f"  proofmesh: {ex['bytes'] / 1e6:.0f} MB in {ex['seconds']:.2f}s = {ex['mb_s']:.0f} MB/s "
              f"(best of {ex['repeats']}; median {ex['median_mb_s']:.0f} MB/s) "
              f"({cores} numba threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; CPU {ex['cpu_s']:.2f}s = {ex['mb_per_cpu_s']:.0f} MB per CPU-second; "
              f"kept {ex['kept']:,}, dropped {ex['dropped_in_run']:,} in-run + "
              f"{ex['dropped_published']:,} already published)")
        print(f"  baseline, Python loop (json.loads + str NFKC/lower/split + blake3 + set), first "
              f"{ex['baseline_docs']:,} lines: {ex['baseline_bytes'] / 1e6:.0f} MB in {ex['baseline_seconds']:.2f}s "
              f"= {ex['baseline_mb_s']:.0f} MB/s  → proofmesh {ex['mb_s'] / ex['baseline_mb_s']:.1f}x")
    if "gas" in sections:
        g = gas_stage(texts)
        out["gas"] = g
        print(f"\non chain: one batch of {g['records']:,} unique records / {g['tokens']:,} tokens: "
              f"publish {g['publish_gas']:,} gas = {g['gas_per_record']:.4f} gas/record, "
              f"{g['gas_per_token']:.5f} gas/token (Merkle root in {g['merkle_root_s']:.1f}s)")
    out["peak_rss_mb"] = peak_rss_mb()
    print(f"peak RSS: {out['peak_rss_mb']:.0f} MB (corpus + all three systems' state in one process)")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
