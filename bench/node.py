"""Node benchmark: the daemon's JSON-RPC path and its event index, each against a named baseline.

1. JSON-RPC through the node daemon (FastAPI + uvicorn, ``POST /rpc``) vs the
   foundation's standard-library ``RPCServer`` vs the in-process provider (no HTTP):
   read calls/s (``eth_call`` balanceOf) and MESH transfers/s through ``Chain.transact``.
   Every other process (CLI, workers, devices) pays this path on the embedded backend.
2. Explorer reads: one ``EventIndex.poll`` (one ``eth_getLogs`` over every address-book
   contract, decoded by ABI) vs the naive way (``Chain.events`` once per contract and
   event type), on the same chain after ``--transfers`` transfers and node registrations.
3. Inference inside the daemon: ``POST /v1/infer`` latency (sequential, keep-alive) of a
   small MLP served by the daemon's inference service vs the same InferenceNode served
   alone by its own uvicorn (``create_app`` + ``ServerHandle``, the baseline), interleaved
   rounds in one process.

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
          f"(the transfers themselves took {t_tx:.2f} s)\n")
    bench_inference(home, chain, accts, tmp, rounds=3 if args.quick else 6, per_round=60 if args.quick else 200)
    close_embedded(home.chain_dir)


def bench_inference(home: Home, chain: Chain, accts: list, tmp: Path, *, rounds: int, per_round: int) -> None:
    import secrets
    import statistics

    import httpx
    import numpy as np

    from proofmesh.inference.model import export_mlp
    from proofmesh.inference.publish import publish_model
    from proofmesh.inference.registry import InferenceRegistry
    from proofmesh.inference.server import InferenceNode, NodeConfig, ServerHandle, create_app

    node = accts[7]
    onnx = export_mlp(tmp / "mlp.onnx", seed=5)
    v = publish_model(chain, "bench-mlp", onnx, tolerance=1e-3).version
    reg, ireg = Registry(chain), InferenceRegistry(chain)
    reg.register("http://127.0.0.1:1", 4, sender=node)
    reg.stake(300 * MESH, sender=node)
    ireg.post_bond(ireg.min_bond(), sender=node)
    with home.config_file.open("a") as f:
        f.write(f'\n[inference]\nserve = [{{version = {v}, onnx = "{onnx}"}}]\n')
    daemon = NodeDaemon(home, port=0, chain=chain.with_account(node), log_stderr=False,
                        services=["proofmesh.inference.service"]).start()
    t = threading.Thread(target=daemon.serve, daemon=True)
    t.start()
    while not daemon.serving:
        time.sleep(0.05)
    alone = ServerHandle(create_app(InferenceNode(NodeConfig(v, onnx, tmp / "alone"), node, domain=ireg.domain,
                                                  registry=ireg))).start()
    x = np.random.default_rng(3).random((1, 4), dtype=np.float32).tolist()
    lat: dict[str, list[float]] = {"alone (create_app + own uvicorn, baseline)": [], "node daemon service": []}
    urls = dict(zip(lat, (alone.url, daemon.url)))
    try:
        with httpx.Client() as c:
            for _ in range(rounds):
                for name, url in urls.items():
                    ts = []
                    for _ in range(per_round):
                        body = {"version": v, "input": x, "nonce": secrets.randbits(256), "mode": "plain"}
                        t0 = time.perf_counter()
                        r = c.post(f"{url}/v1/infer", json=body)
                        ts.append(time.perf_counter() - t0)
                        assert r.status_code == 200, r.text
                    lat[name].append(statistics.median(ts))
    finally:
        daemon.request_stop()
        t.join(timeout=30)
        alone.stop()
    print(f"POST /v1/infer, MLP, sequential keep-alive, {rounds} x {per_round} requests per path")
    print(f"{'path':44s} {'median ms':>10s}   per-round medians")
    for name, vals in lat.items():
        print(f"{name:44s} {statistics.median(vals) * 1000:10.3f}   {[round(a * 1000, 2) for a in vals]}")
    base, svc = (statistics.median(v_) for v_ in lat.values())
    print(f"daemon service vs alone: x{svc / base:.2f} latency")


if __name__ == "__main__":
    main()
