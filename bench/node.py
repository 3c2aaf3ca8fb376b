"""Node benchmark: the daemon's JSON-RPC path and its event index, each against a named baseline.

1. JSON-RPC through the node daemon (FastAPI + uvicorn, ``POST /rpc``) vs the
   foundation's standard-library ``RPCServer`` vs the in-process provider (no HTTP):
   read calls/s (``eth_call`` balanceOf) and MESH transfers/s through ``Chain.transact``.
   Every other process (CLI, workers, devices) pays this path on the embedded backend.
2. Explorer reads: one ``EventIndex.poll`` (one ``eth_getLogs`` over every address-book
   contract, decoded by ABI) vs the naive way (``Chain.events`` once per contract and
   event type), on the same chain after ``--transfers`` transfers and node registrations.

    python bench/node.py            # 300 reads, 100 transfers per path, index over 400 transfers
    python bench/node.py --quick
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("PROOFMESH_KDF", "fast")

from web3 import Web3  # noqa: E402

from proofmesh.chain.client import Chain, EmbeddedProvider, close_embedded, open_embedded  # noqa: E402
from proofmesh.chain.compiler import compile_contract  # noqa: E402
from proofmesh.chain.core import MESH, Registry, Token  # noqa: E402
from proofmesh.chain.deploy import deploy_all  # noqa: E402
from proofmesh.chain.embedded import dev_accounts  # noqa: E402
from proofmesh.chain.rpcserver import RPCServer  # noqa: E402
from proofmesh.config import Home  # noqa: E402
from proofmesh.node.daemon import NodeDaemon  # noqa: E402
from proofmesh.node.events import EventIndex  # noqa: E402


def rate(n: int, fn) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def measure(chain: Chain, accts: list, reads: int, writes: int) -> tuple[float, float]:
    token = Token(chain)
    c = token.c
    r = rate(reads, lambda i: chain.call(c.functions.balanceOf(accts[1 + i % 8].address)))
    w = rate(writes, lambda i: chain.transact(c.functions.transfer(accts[2 + i % 7].address, MESH),
                                              sender=accts[1]))
    return r, w


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reads", type=int, default=300)
    ap.add_argument("--writes", type=int, default=100)
    ap.add_argument("--transfers", type=int, default=400)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.reads, args.writes, args.transfers = 60, 20, 60
    accts = dev_accounts()
    tmp = Path(tempfile.mkdtemp(prefix="bench-node-"))
    home = Home.resolve(tmp / "home")
    home.init()
    emb = open_embedded(home.chain_dir, home.settings.chain_id)
    chain = Chain(Web3(EmbeddedProvider(emb)), account=accts[0], home=home, embedded=emb)
    book = deploy_all(chain)
    chain.addresses = dict(book)
    token = Token(chain)
    for a in accts[1:]:
        token.transfer(a.address, 100_000 * MESH)
    print(f"deployed {len(book)} contracts; cpu count {os.cpu_count()}\n")

    results: dict[str, tuple[float, float]] = {}
    results["in-process provider (no HTTP, ceiling)"] = measure(chain, accts, args.reads, args.writes)

    srv = RPCServer(emb, publish=False).start()
    try:
        c2 = Chain.from_url(srv.url, account=accts[0], backend="embedded")
        c2.addresses = dict(book)
        results["stdlib RPCServer (baseline)"] = measure(c2, accts, args.reads, args.writes)
    finally:
        srv.stop()

    daemon = NodeDaemon(home, port=0, chain=chain, log_stderr=False, poll_interval=1.0).start()
    t = threading.Thread(target=daemon.serve, daemon=True)
    t.start()
    while not daemon.serving:
        time.sleep(0.05)
    try:
        c3 = Chain.from_url(f"{daemon.url}/rpc", account=accts[0], backend="embedded")
        c3.addresses = dict(book)
        results["node daemon POST /rpc (FastAPI)"] = measure(c3, accts, args.reads, args.writes)
    finally:
        daemon.request_stop()
        t.join(timeout=30)

    print(f"{'JSON-RPC path':44s} {'reads/s':>10s} {'transfers/s':>12s}")
    for name, (r, w) in results.items():
        print(f"{name:44s} {r:10.0f} {w:12.1f}")
    base = results["stdlib RPCServer (baseline)"]
    node = results["node daemon POST /rpc (FastAPI)"]
    print(f"daemon vs stdlib baseline: reads x{node[0] / base[0]:.2f}, transfers x{node[1] / base[1]:.2f}\n")

    # ---------------------------------------------------------------- event index
    reg = Registry(chain)
    for a in accts[1:6]:
        reg.register("http://127.0.0.1:1", 2, sender=a)
        reg.stake(500 * MESH, sender=a)
    for i in range(args.transfers):
        token.transfer(accts[1 + i % 9].address, MESH)
    head = chain.block_number()

    t0 = time.perf_counter()
    idx = EventIndex(chain)
    idx.poll()
    t_index = time.perf_counter() - t0
    n_index = len(idx.all())

    t0 = time.perf_counter()
    n_naive = 0
    for name in chain.addresses:
        for ev in [e["name"] for e in compile_contract(name).abi if e.get("type") == "event"]:
            try:
                n_naive += len(chain.events(name, ev, from_block=0))
            except Exception:  # a contract source edited since deployment: its new events are not on chain
                continue
    t_naive = time.perf_counter() - t0

    t0 = time.perf_counter()
    more = 50
    for i in range(more):
        token.transfer(accts[1 + i % 9].address, MESH)
    t_tx = time.perf_counter() - t0
    t0 = time.perf_counter()
    idx.poll()
    t_incr = time.perf_counter() - t0

    print(f"event index over {head} blocks, {len(chain.addresses)} contracts")
    print(f"{'way':44s} {'events':>8s} {'seconds':>9s}")
    print(f"{'naive: Chain.events per contract x event':44s} {n_naive:8d} {t_naive:9.3f}")
    print(f"{'EventIndex.poll (one getLogs, ABI decode)':44s} {n_index:8d} {t_index:9.3f}")
    print(f"EventIndex vs naive: x{t_naive / t_index:.1f} faster on a full read")
    print(f"incremental poll after {more} more transfers: {t_incr * 1000:.1f} ms "
          f"(the transfers themselves took {t_tx:.2f} s)")
    close_embedded(home.chain_dir)


if __name__ == "__main__":
    main()
