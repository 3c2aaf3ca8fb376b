"""proofmesh.crypto hot paths vs their baselines, measured in the same process.

    python bench/crypto.py                      # the README figures (1,000,000 leaves)
    python bench/crypto.py --leaves 100000      # quick

1. Merkle root of N leaves (OpenZeppelin StandardMerkleTree layout, leaves sorted):
   proofmesh ``MerkleTree`` (numba keccak kernel over a numpy array-tree) vs the same
   algorithm in pure Python with ``eth_hash`` (web3's keccak; its backend here is
   pycryptodome) and with ``safe-pysha3`` (the fastest per-call keccak). All three must
   give the same root (checked).
2. Leaf hashing of N single-``bytes32`` values: ``double_hash_32`` (numba, vectorised) vs
   ``leaf_hash`` per value (eth_abi + keccak), measured on a subset and reported per second.
3. EIP-712 signature recovery of a 3-field struct: ``TypedStruct.recover`` (precompiled type
   hash + libsecp256k1) vs ``eth_account`` (``encode_typed_data`` + ``Account.recover_message``),
   same signed messages; plus the fast path on 2 threads.
4. CID of 64 MiB: ``cid_of_bytes`` (UnixFS DAG, kubo layout) vs a plain ``hashlib.sha256``
   of the same bytes (the floor: the DAG costs the leaf hashes plus small node blocks).

Times are CPU time of the measuring thread (``time.thread_time``), so that other processes
on a shared machine do not distort single-threaded figures; wall times are printed too.
The 2-thread figure is wall time and only means something on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from proofmesh.crypto import merkle  # noqa: E402
from proofmesh.crypto.cid import cid_of_bytes  # noqa: E402
from proofmesh.crypto.eip712 import Domain, TypedStruct  # noqa: E402
from proofmesh.crypto import keccak  # noqa: E402
from proofmesh.crypto.keccak import double_hash_32  # noqa: E402
from proofmesh.crypto.merkle import MerkleTree, leaf_hash  # noqa: E402


def timed(fn, *args, **kw):
    """(result, seconds). Seconds are this thread's CPU time, not wall time: the machine is
    shared, and CPU time of a single-threaded run is what it would take on an idle core.
    (Wall time is printed in the header of each section for reference.)"""
    w, c = time.perf_counter(), time.thread_time()
    out = fn(*args, **kw)
    cpu, wall = time.thread_time() - c, time.perf_counter() - w
    WALL.append(wall)
    return out, cpu


WALL: list[float] = []


def python_oz_root(leaves: list[bytes], keccak) -> bytes:
    """OpenZeppelin's makeMerkleTree in plain Python (sorted leaves, array layout)."""
    leaves = sorted(leaves)
    n = len(leaves)
    tree = [b""] * (2 * n - 1)
    for i, h in enumerate(leaves):
        tree[2 * n - 2 - i] = h
    for i in range(n - 2, -1, -1):
        a, b = tree[2 * i + 1], tree[2 * i + 2]
        tree[i] = keccak(a + b if a < b else b + a)
    return tree[0]


def bench_merkle(n: int) -> None:
    from eth_hash.auto import keccak as eth_keccak
    from sha3 import keccak_256

    print(f"\n== Merkle root of {n:,} leaves (OpenZeppelin layout, sorted leaves) ==")
    arr = np.frombuffer(os.urandom(32 * n), np.uint8).reshape(n, 32)
    leaves = [r.tobytes() for r in arr]
    MerkleTree(arr[:4096])  # JIT warm-up / load the numba cache (excluded)
    tree, t_pm = timed(MerkleTree, arr)
    _, t_pm_list = timed(MerkleTree, leaves)
    root_sha3, t_sha3 = timed(python_oz_root, leaves, lambda b: keccak_256(b).digest())
    root_eth, t_eth = timed(python_oz_root, leaves, eth_keccak)
    assert tree.root == root_sha3 == root_eth, "roots differ"
    print(f"  (wall times: {', '.join(f'{w:.2f}' for w in WALL[-4:])} s)")
    rows = [("proofmesh MerkleTree (numpy input)", t_pm), ("proofmesh MerkleTree (list of bytes)", t_pm_list),
            ("pure Python + safe-pysha3", t_sha3), ("pure Python + eth_hash (baseline)", t_eth)]
    for name, t in rows:
        print(f"  {name:40s} {t:8.3f} s CPU   {t_eth / t:6.1f}x vs baseline")
    step = max(1, n // 1000)
    _, t_proofs = timed(lambda: [tree.proof(i) for i in range(0, n, step)])
    per = t_proofs / len(range(0, n, step))
    print(f"  proof extraction: {per * 1e6:.1f} µs per proof ({len(tree.proof(0))} siblings)")


def bench_leaves(n: int) -> None:
    print(f"\n== OpenZeppelin leaf hashes of bytes32 values ==")
    arr = np.frombuffer(os.urandom(32 * n), np.uint8).reshape(n, 32)
    double_hash_32(arr[:10])
    out, t_fast = timed(double_hash_32, arr)
    m = min(n, 50_000)
    subset = [r.tobytes() for r in arr[:m]]
    ref, t_slow = timed(lambda: [leaf_hash(["bytes32"], [v]) for v in subset])
    assert [r.tobytes() for r in out[:m]] == ref
    print(f"  double_hash_32 (numba)            {n / t_fast:12,.0f} leaves/s  ({n:,} leaves in {t_fast:.3f} s)")
    print(f"  leaf_hash per value (baseline)    {m / t_slow:12,.0f} leaves/s  (measured on {m:,})")
    print(f"  speed-up                          {(n / t_fast) / (m / t_slow):12.1f}x")


def bench_eip712(count: int) -> None:
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    print(f"\n== EIP-712 recovery, {count:,} signed 3-field messages ==")
    domain = Domain("ProofmeshEdge", "1", 31337, "0x" + "c0" * 20)
    fields = [{"name": "device", "type": "address"}, {"name": "value", "type": "int256"},
              {"name": "nonce", "type": "uint64"}]
    ts = TypedStruct(domain, "Reading", fields)
    accts = [Account.create() for _ in range(8)]
    msgs = [{"device": accts[i % 8].address, "value": i * 7 - 300, "nonce": i} for i in range(count)]
    sigs = [ts.sign(accts[i % 8], m) for i, m in enumerate(msgs)]

    def fast(lo=0, hi=count):
        for m, s in zip(msgs[lo:hi], sigs[lo:hi]):
            ts.recover(m, s)

    def fast_bytes():
        for m, s in zip(msgs, sigs):
            ts.recover_bytes(m, s)

    full_types = {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                                   {"name": "chainId", "type": "uint256"},
                                   {"name": "verifyingContract", "type": "address"}],
                  "Reading": fields}
    m_base = min(count, 2000)

    def baseline():
        out = []
        for m, s in zip(msgs[:m_base], sigs[:m_base]):
            sm = encode_typed_data(full_message={"types": full_types, "primaryType": "Reading",
                                                 "domain": domain.as_dict(), "message": m})
            out.append(Account.recover_message(sm, signature=s))
        return out

    base_addrs, t_base = timed(baseline)
    assert base_addrs == [ts.recover(m, s) for m, s in zip(msgs[:m_base], sigs[:m_base])]
    _, t_fast = timed(fast)
    _, t_bytes = timed(fast_bytes)
    half = count // 2
    th = [threading.Thread(target=fast, args=(0, half)), threading.Thread(target=fast, args=(half, count))]
    t0 = time.perf_counter()
    for t in th:
        t.start()
    for t in th:
        t.join()
    t_two = time.perf_counter() - t0  # wall time: the only meaningful figure for 2 threads
    base_rate = m_base / t_base
    for name, rate in [("TypedStruct.recover (checksum address)", count / t_fast),
                       ("TypedStruct.recover_bytes (20 bytes)", count / t_bytes),
                       ("TypedStruct.recover, 2 threads (wall)", count / t_two),
                       (f"eth_account (baseline, {m_base:,} msgs)", base_rate)]:
        print(f"  {name:42s} {rate:10,.0f} /s   {rate / base_rate:5.1f}x")


def bench_cid(mib: int) -> None:
    print(f"\n== CID of {mib} MiB ==")
    data = os.urandom(mib * 1024 * 1024)
    cid, t_cid = timed(cid_of_bytes, data)
    _, t_sha = timed(lambda: hashlib.sha256(data).digest())
    print(f"  cid_of_bytes (UnixFS DAG)         {mib / t_cid:8.0f} MiB/s  -> {cid[:20]}…")
    print(f"  hashlib.sha256 (floor)            {mib / t_sha:8.0f} MiB/s  (DAG overhead {t_cid / t_sha - 1:+.0%})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leaves", type=int, default=1_000_000)
    ap.add_argument("--signatures", type=int, default=20_000)
    ap.add_argument("--cid-mib", type=int, default=64)
    a = ap.parse_args()
    print(f"proofmesh.crypto bench — {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"keccak backend {keccak.BACKEND}")
    bench_merkle(a.leaves)
    bench_leaves(a.leaves)
    bench_eip712(a.signatures)
    bench_cid(a.cid_mib)


if __name__ == "__main__":
    main()
