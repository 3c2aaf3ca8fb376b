"""Benchmark of the models capability.

1. Weights-root throughput (GB/s): per-tensor sha256 on mmap'ed safetensors, tensors
   spread over threads, vs the baseline: one single-stream ``hashlib.sha256`` over the same
   files (what a "hash the checkpoint file" approach does), measured in the same run with
   the files in the page cache. Target: >= 1.5x the baseline on 2 cores.
2. Gas of every ModelRegistry / ModelEvaluation operation on the embedded py-evm chain.

Run:  python bench/models.py [--size-mb 512] [--repeats 3] [--threads 2] [--no-gas]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_model(folder: Path, size_mb: int) -> Path:
    """A GPT-2-like sharded checkpoint of about ``size_mb`` MB (random fp32 tensors, 2 shards)."""
    from safetensors.numpy import save_file

    index = folder / "model.safetensors.index.json"
    if index.exists() and json.loads(index.read_text()).get("size_mb") == size_mb:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    d = 768
    rng = np.random.default_rng(0)
    per_layer = {"attn.c_attn.weight": (d, 3 * d), "attn.c_proj.weight": (d, d),
                 "mlp.c_fc.weight": (d, 4 * d), "mlp.c_proj.weight": (4 * d, d),
                 "ln_1.weight": (d,), "ln_2.weight": (d,), "attn.c_attn.bias": (3 * d,), "mlp.c_fc.bias": (4 * d,)}
    layer_bytes = sum(int(np.prod(s)) * 4 for s in per_layer.values())
    vocab = 50257
    emb_bytes = vocab * d * 4
    n_layers = max(1, (size_mb * 2**20 - emb_bytes) // layer_bytes)
    tensors: dict[str, np.ndarray] = {"wte.weight": rng.standard_normal((vocab, d), dtype=np.float32)}
    for i in range(n_layers):
        for k, shape in per_layer.items():
            tensors[f"h.{i}.{k}"] = rng.standard_normal(shape, dtype=np.float32)
    names = sorted(tensors)
    half = len(names) // 2
    weight_map = {}
    for shard, part in enumerate((names[:half], names[half:]), 1):
        fname = f"model-{shard:05d}-of-00002.safetensors"
        save_file({n: tensors[n] for n in part}, str(folder / fname))
        weight_map.update({n: fname for n in part})
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map, "size_mb": size_mb}))
    return folder


def hashlib_single_stream(files: list[Path]) -> float:
    """Baseline: one sha256 stream per file, files one after another (seconds). The file is
    mmap'ed like the weights root does, so the comparison isolates the parallelism (no
    read() copies on either side)."""
    import mmap

    t0 = time.perf_counter()
    for f in files:
        with open(f, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            h = hashlib.sha256()
            view = memoryview(mm)
            for off in range(0, len(mm), 64 * 2**20):
                h.update(view[off:off + 64 * 2**20])
            view.release()
            h.digest()
    return time.perf_counter() - t0


def balance_bound(sizes: list[int], threads: int) -> float:
    """Speedup the largest-first schedule allows on ``threads`` free cores if every byte
    costs the same (total bytes / bytes of the busiest thread)."""
    loads = [0] * threads
    for n in sorted(sizes, reverse=True):
        loads[loads.index(min(loads))] += n
    return sum(sizes) / max(loads)


def bench_hashing(size_mb: int, repeats: int, threads: int) -> dict:
    from proofmesh.models.weights import list_tensors, manifest

    folder = make_model(Path(tempfile.gettempdir()) / f"proofmesh-bench-models-{size_mb}", size_mb)
    files = sorted(folder.glob("*.safetensors"))
    total = sum(f.stat().st_size for f in files)
    entries, _ = list_tensors(folder)
    hashlib_single_stream(files)               # warm the page cache
    base_t, root_t, root1_t, root_cpu, base_cpu, root_cpu_s = [], [], [], [], [], []
    for _ in range(repeats):
        c0 = time.process_time()
        base_t.append(hashlib_single_stream(files))
        base_cpu.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        m = manifest(folder, threads=threads)
        root_t.append(time.perf_counter() - t0)
        root_cpu_s.append(time.process_time() - c0)
        root_cpu.append(root_cpu_s[-1] / root_t[-1])
        t0 = time.perf_counter()
        m1 = manifest(folder, threads=1)
        root1_t.append(time.perf_counter() - t0)
        assert m.root == m1.root
    gb = total / 1e9
    # Best of N: other processes on a shared machine only ever add time; the medians are
    # printed too so a noisy run is visible as such.
    res = {"bytes": total, "tensors": len(entries), "threads": threads, "repeats": repeats,
           "hashlib_GBps": gb / min(base_t), "root_GBps": gb / min(root_t), "root_1thread_GBps": gb / min(root1_t),
           "hashlib_GBps_median": gb / statistics.median(base_t), "root_GBps_median": gb / statistics.median(root_t),
           "cores_busy": max(root_cpu),
           "cpu_s_per_GB_hashlib": statistics.median(base_cpu) / gb,
           "cpu_s_per_GB_root": statistics.median(root_cpu_s) / gb,
           "balance_bound": balance_bound([e.length for e in entries], threads), "cpu_count": os.cpu_count(), "loadavg": os.getloadavg()[0]}
    res["speedup"] = res["root_GBps"] / res["hashlib_GBps"]
    res["speedup_median"] = res["root_GBps_median"] / res["hashlib_GBps_median"]
    return res


def bench_gas() -> dict[str, int]:
    from web3 import Web3

    from proofmesh.chain.client import Chain, EmbeddedProvider, close_embedded, open_embedded
    from proofmesh.chain.core import MESH, Registry, Token
    from proofmesh.chain.deploy import DeployParams, deploy_all
    from proofmesh.chain.embedded import dev_accounts
    from proofmesh.config import Home
    from proofmesh.models import evalset
    from proofmesh.models.registry import ModelRegistryClient, name_id
    from proofmesh.models.weights import TensorHash, WeightsManifest

    accts = dev_accounts()
    work = Path(tempfile.mkdtemp(prefix="proofmesh-bench-models-"))
    home = Home.resolve(work / "home")
    home.init()
    emb = open_embedded(home.chain_dir, 31337)
    try:
        chain = Chain(Web3(EmbeddedProvider(emb)), account=accts[0], home=home)
        deploy_all(chain, DeployParams())
        token = Token(chain)
        for a in accts[2:7]:
            token.transfer(a.address, 10_000 * MESH)
            r = Registry(chain.with_account(a))
            r.register("http://127.0.0.1:1", 32)
            r.stake(1_000 * MESH)
        owner = chain.with_account(accts[1])
        c = ModelRegistryClient(owner)
        gas: dict[str, int] = {}

        def fake(seed: int, n: int = 150) -> WeightsManifest:
            # a 150-tensor manifest (GPT-2-small has 148): what registration stores is the root
            rng = np.random.default_rng(seed)
            return WeightsManifest([TensorHash(f"t{i}", "F32", (768, 768), rng.bytes(32)) for i in range(n)])

        v1, tx = c.register_version("bench", fake(1), config=b'{"n_layer": 12}')
        gas["register (root version, new name)"] = tx.gas_used
        v2, tx = c.register_version("bench", fake(2), parent=v1.id, data_batches=["0x" + "ab" * 32] * 4, job_id=1,
                                    config=b'{"n_layer": 12, "lr": 1e-4}')
        gas["register (child, 4 data batches, job)"] = tx.gas_used
        m = fake(2)
        t = m.tensors[7]
        gas["verify_tensor (view, 8-step proof)"] = c.registry.functions.verify_tensor(
            v2.id, t.name, t.dtype, list(t.shape), t.sha256, m.proof(t.name)).estimate_gas()
        recs = [{"input_ids": [i, i + 1, i + 2]} for i in range(100)]
        f = work / "eval.jsonl"
        f.write_text("".join(json.dumps(r) + "\n" for r in recs))
        es = evalset.load(f)
        salt = evalset.new_salt()
        tx = owner.transact(c.evaluation.functions.commit_eval_set(
            name_id("bench"), evalset.commitment(es.root, salt, accts[1].address)))
        esid = c.evaluation.events.EvalSetCommitted().process_receipt(tx.receipt)[0]["args"]["eval_set_id"]
        gas["commit_eval_set"] = tx.gas_used
        gas["set_policy"] = c.set_policy("bench", "accuracy", True, 0.01, 3).gas_used
        gas["reveal_eval_set (100 records)"] = c.reveal_eval_set(esid, f, salt).gas_used
        for label, vid in (("v1", v1.id), ("v2", v2.id)):
            tx = chain.transact(c.evaluation.functions.request_evaluation(vid, esid), sender=accts[1])
            rid = c.evaluation.events.EvaluationRequested().process_receipt(tx.receipt)[0]["args"]["request_id"]
            if label == "v1":
                gas["request_evaluation"] = tx.gas_used
            chain.mine(2)          # the seed block must be mined before the draw
            tx = chain.transact(c.evaluation.functions.draw(rid), sender=accts[1])
            if label == "v1":
                gas["draw (3 of 5 evaluators)"] = tx.gas_used
            drawn = c.request(rid)["evaluators"]
            by = {a.address: a for a in accts}
            for i, addr in enumerate(drawn):
                a = c.make_attestation(rid, 0.80 + 0.01 * i + (0.02 if label == "v2" else 0), by[addr])
                tx = c.submit_attestation(rid, a)
                if label == "v1":
                    gas["attest" if i < len(drawn) - 1 else "attest (last: median + reputation)"] = tx.gas_used
        gas["release (root version)"] = c.release(v1.id, esid).gas_used
        gas["release (vs best released ancestor)"] = c.release(v2.id, esid).gas_used
        return gas
    finally:
        close_embedded(home.chain_dir)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--no-gas", action="store_true")
    args = ap.parse_args()

    h = bench_hashing(args.size_mb, args.repeats, args.threads)
    print(f"weights root over {h['bytes'] / 1e6:.0f} MB, {h['tensors']} tensors, 2 shards "
          f"(cpu_count={h['cpu_count']}, load avg {h['loadavg']:.1f}, best of {h['repeats']})")
    print(f"  baseline hashlib.sha256 single stream : {h['hashlib_GBps']:.2f} GB/s")
    print(f"  weights_root, 1 thread               : {h['root_1thread_GBps']:.2f} GB/s")
    print(f"  weights_root, {h['threads']} threads              : {h['root_GBps']:.2f} GB/s"
          f"  = {h['speedup']:.2f}x baseline (target >= 1.5x) {'MET' if h['speedup'] >= 1.5 else 'NOT MET'}")
    print(f"  CPU seconds per GB: baseline {h['cpu_s_per_GB_hashlib']:.3f}, weights_root {h['cpu_s_per_GB_root']:.3f}"
          f"; largest-first schedule allows {h['balance_bound']:.2f}x on {h['threads']} free cores")
    print(f"  cores kept busy by weights_root: {h['cores_busy']:.2f} (CPU time / wall time; 2.0 = both cores)")
    print(f"  medians: baseline {h['hashlib_GBps_median']:.2f} GB/s, weights_root {h['root_GBps_median']:.2f} GB/s"
          f" = {h['speedup_median']:.2f}x")
    if not args.no_gas:
        print("gas (embedded py-evm chain):")
        for k, v in bench_gas().items():
            print(f"  {k:42} {v:>9,}")


if __name__ == "__main__":
    main()
