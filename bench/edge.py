"""Edge gateway throughput vs signature-recovery baselines, and gas per epoch root.

Run: ``python bench/edge.py [--readings 40000] [--workers 2] [--clients 4] [--gas]``

In one run, on this machine:

1. baselines — loops that recover the signer of EIP-712 readings:
   a. ``eth_account`` (``encode_typed_data`` + recover) on eth-keys' pure-Python backend,
   b. the same with the coincurve backend (eth-keys' default when coincurve is installed),
   c. raw ``coincurve.PublicKey.from_signature_and_message`` on precomputed digests, in one
      process and in two processes at once (the 1- and 2-core ceilings of recovery alone:
      ECDSA has no batch verification),
   d. the gateway's verifier kernel (payload hash, digest, recovery, signer address in numba,
      GIL released) on one thread and on two;
2. the gateway end to end: a real ``proofmesh.edge.gateway`` (FastAPI + uvicorn) in its own
   process on 127.0.0.1 with its verifier threads; client threads POST pre-signed binary
   batches; every reading is verified, judged (seq, nonce, window, key), appended to the
   log and fsynced per batch, and acknowledged with signed receipts. The device directory
   is preloaded (no chain polling) so the figure is the gateway's own cost. CPU seconds of
   the gateway process and of the client are printed per reading: on a loaded machine the
   wall-clock rate says little, the CPU cost says what 2 idle cores would do;
3. with ``--gas``: gas of ``EdgeEpochs.publish`` (one epoch root, any number of readings)
   on a freshly deployed embedded chain.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import coincurve  # noqa: E402
import httpx  # noqa: E402
import orjson  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_account.messages import encode_typed_data  # noqa: E402

from proofmesh.edge.reading import READING_TYPES, ReadingDomain, encode_batch, make_reading, split_batch  # noqa: E402

CONTRACT = "0x" + "5e" * 20
KERNEL_CPU_US = [0.0]          # CPU µs per reading of the verifier kernel, measured in baselines()
CHAIN_ID = 31337


def _rate(n: int, dt: float) -> float:
    return n / dt if dt > 0 else float("inf")


def baselines(n_native: int, n_cc: int, n_raw: int) -> dict[str, float]:
    from eth_keys import KeyAPI
    from eth_keys.backends import CoinCurveECCBackend, NativeECCBackend

    dom = ReadingDomain(CHAIN_ID, CONTRACT)
    pk = coincurve.PrivateKey(os.urandom(32))
    dev = bytes.fromhex(Account.from_key(pk.secret).address[2:])
    rs = [make_reading(pk, dom, device=dev, seq=i + 1, nonce=os.urandom(32), timestamp=1_700_000_000 + i,
                       payload=b"[21.5, 48.0]") for i in range(max(n_native, n_cc, n_raw))]

    def typed(r):
        return encode_typed_data(dom.eip712_domain(), READING_TYPES, {
            "device": "0x" + r.device.hex(), "seq": r.seq, "nonce": r.nonce, "timestamp": r.timestamp,
            "payloadHash": r.payload_hash, "modelVersion": r.model_version, "outputHash": r.output_hash})

    out = {}
    for name, backend, n in (("eth_account, pure-Python backend", NativeECCBackend(), n_native),
                             ("eth_account, coincurve backend", CoinCurveECCBackend(), n_cc)):
        api = KeyAPI(backend)
        t = time.perf_counter()
        for r in rs[:n]:
            from eth_account.messages import _hash_eip191_message
            h = _hash_eip191_message(typed(r))
            sig = api.Signature(vrs=(r.v - 27, int.from_bytes(r.r, "big"), int.from_bytes(r.s, "big")))
            addr = api.ecdsa_recover(h, sig).to_canonical_address()
            assert addr == dev
        out[name] = _rate(n, time.perf_counter() - t)
    digests = [dom.reading_digest(r.device, r.seq, r.nonce, r.timestamp, r.payload_hash, r.model_version,
                                  r.output_hash) for r in rs[:n_raw]]
    sigs = [r.r + r.s + bytes([r.v - 27]) for r in rs[:n_raw]]
    out["raw coincurve recovery (1 core)"] = _raw_recover(digests, sigs)
    # Two processes at once: the two-core ceiling of recovery alone (no hashing, no I/O).
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        pool.map(_noop, range(2))
        half = n_raw // 2
        t = time.perf_counter()
        pool.starmap(_raw_recover, [(digests[:half], sigs[:half]), (digests[half:], sigs[half:])])
        out["raw coincurve recovery (2 processes)"] = _rate(n_raw, time.perf_counter() - t)
    # The gateway's verifier: hashing + checks + recovery in numba, GIL released.
    from proofmesh.edge.verifier import VerifierPool, verify_batch

    body = encode_batch(rs[:n_raw])
    offsets = split_batch(body)
    verify_batch(dom.prefix, body, offsets[:2])
    t, c = time.perf_counter(), time.process_time()
    verify_batch(dom.prefix, body, offsets)
    out["gateway verifier kernel (1 thread)"] = _rate(n_raw, time.perf_counter() - t)
    KERNEL_CPU_US[0] = (time.process_time() - c) / n_raw * 1e6
    pool2 = VerifierPool(2)
    try:
        t = time.perf_counter()
        verdicts, futs = pool2.submit(dom.prefix, body, offsets)
        for f in futs:
            f.result()
        out["gateway verifier kernel (2 threads)"] = _rate(n_raw, time.perf_counter() - t)
        assert verdicts.status.max() == 0 and verdicts.signers[0].tobytes() == dev
    finally:
        pool2.close()
    return out


def _noop(_: int) -> int:
    return 0


def _raw_recover(digests: list[bytes], sigs: list[bytes]) -> float:
    t = time.perf_counter()
    for d, s in zip(digests, sigs):
        coincurve.PublicKey.from_signature_and_message(s, d, hasher=None)
    return _rate(len(digests), time.perf_counter() - t)


# ------------------------------------------------------------------ gateway process

def _gateway_main(directory: str, port: int, workers: int, devices: list[str], ready: mp.Event) -> None:
    import uvicorn

    from proofmesh.edge.gateway import DeviceDirectory, GatewayConfig, GatewayCore, make_app
    from proofmesh.edge.identity import KeyHolder

    class Preloaded(DeviceDirectory):
        """Every bench device registered from t=0, never revoked (no chain polling)."""

        def __init__(self) -> None:
            self.keys = {bytes.fromhex(d): (bytes.fromhex(d), 0, 2**64 - 1) for d in devices}

        def refresh(self) -> int:
            return 0

    acct = Account.create()
    core = GatewayCore(GatewayConfig(Path(directory), workers=workers, publish=False),
                       KeyHolder(acct, coincurve.PrivateKey(bytes(acct.key)), Path(directory)),
                       directory=Preloaded(), domain=ReadingDomain(CHAIN_ID, CONTRACT),
                       epoch_length=3600, interval_length=600)
    now = int(time.time())
    core.first_epoch = now // 3600
    ready.set()
    uvicorn.run(make_app(core), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway_throughput(n_readings: int, workers: int, clients: int, per_batch: int) -> dict[str, float]:
    n_dev = clients * per_batch
    rounds = max(1, n_readings // n_dev)
    keys = [coincurve.PrivateKey(os.urandom(32)) for _ in range(n_dev)]
    devs = [bytes.fromhex(Account.from_key(k.secret).address[2:]) for k in keys]
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="edge-bench-")
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_gateway_main, args=(tmp, port, workers, [d.hex() for d in devs], ready))
    proc.start()
    url = f"http://127.0.0.1:{port}"
    try:
        ready.wait(120)
        for _ in range(300):
            try:
                beacon = httpx.get(f"{url}/edge/beacon", timeout=1).json()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        dom = ReadingDomain(beacon["chain_id"], beacon["verifying_contract"])
        nonce = bytes.fromhex(beacon["nonce"][2:])
        ts = int(beacon["server_time"])
        t = time.perf_counter()
        # batches[c][r]: client c's devices, round r (seq r+1): per-device order is kept per client.
        batches = [[encode_batch([make_reading(keys[i], dom, device=devs[i], seq=r + 1, nonce=nonce, timestamp=ts,
                                               payload=b"[21.5,48.0,0.31,3]")
                                  for i in range(c * per_batch, (c + 1) * per_batch)]) for r in range(rounds)]
                   for c in range(clients)]
        sign_s = time.perf_counter() - t
        accepted = [0] * clients
        errors: list[str] = []

        def client(c: int) -> None:
            # A lean keep-alive client (stdlib http.client + orjson): it shares the 2 cores with
            # the gateway here, while real devices post from their own hardware.
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            try:
                for body in batches[c]:
                    conn.request("POST", "/edge/readings", body=body,
                                 headers={"content-type": "application/octet-stream"})
                    resp = conn.getresponse()
                    data = resp.read()
                    if resp.status != 200:
                        errors.append(data[:200].decode(errors="replace"))
                        return
                    answer = orjson.loads(data)
                    if answer["receipt"] is None or len(answer["receipt"]["runs"]) != len(answer["codes"]):
                        errors.append("batch answered without a receipt run per reading")
                        return
                    accepted[c] += answer["accepted"]
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        load = os.getloadavg()[0]
        gw_cpu0, cl_cpu0 = _proc_cpu(proc.pid), time.process_time()
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        dt = time.perf_counter() - t
        gw_cpu, cl_cpu = _proc_cpu(proc.pid) - gw_cpu0, time.process_time() - cl_cpu0
        total = clients * per_batch * rounds
        stats = httpx.get(f"{url}/edge/stats", timeout=10).json()
        if errors or sum(accepted) != total:
            raise SystemExit(f"gateway accepted {sum(accepted)}/{total}: {errors[:2]} {stats['counts']}")
        log_bytes = Path(tmp, "readings.log").stat().st_size
        return {"readings": total, "seconds": dt, "readings_per_s": total / dt, "batches": clients * rounds,
                "batch_size": per_batch, "presign_s": sign_s, "log_bytes": log_bytes, "workers": workers,
                "gateway_cpu_us": gw_cpu / total * 1e6, "client_cpu_us": cl_cpu / total * 1e6,
                "load_before": load}
    finally:
        proc.terminate()
        proc.join(10)


def gas_per_root() -> dict[str, int]:
    from web3 import Web3

    from proofmesh.chain.client import Chain, EmbeddedProvider, close_embedded, open_embedded
    from proofmesh.chain.core import MESH, Registry, Token
    from proofmesh.chain.deploy import DeployParams, deploy_all
    from proofmesh.chain.embedded import dev_accounts
    from proofmesh.config import Home
    from proofmesh.edge.beacon import Beacons
    from proofmesh.edge.epoch_tree import EpochCommitment
    from proofmesh.edge.onchain import EdgeChain

    accts = dev_accounts()
    home = Home.resolve(tempfile.mkdtemp(prefix="edge-gas-"))
    home.init()
    emb = open_embedded(home.chain_dir, home.settings.chain_id)
    chain = Chain(Web3(EmbeddedProvider(emb)), account=accts[0], home=home)
    try:
        book = deploy_all(chain, DeployParams())
        chain.addresses = book
        Token(chain).transfer(accts[1].address, 10_000 * MESH)
        Registry(chain).register("http://gw", 8, sender=accts[1])
        Registry(chain).stake(5_000 * MESH, sender=accts[1])
        edge = EdgeChain(chain)
        b = Beacons(os.urandom(32), edge.epoch_length, edge.interval_length)
        e0 = chain.timestamp() // edge.epoch_length + 1
        enroll = edge.enroll(e0, b.seed_hash(e0), sender=accts[1])
        out = {"enroll": enroll.gas_used}
        pk = coincurve.PrivateKey(os.urandom(32))
        dev = bytes.fromhex(Account.from_key(pk.secret).address[2:])
        dom = edge.domain
        for k, n in enumerate((0, 1_000, 20_000)):
            e = e0 + k
            rs = [(make_reading(pk, dom, device=dev, seq=i + 1, nonce=b.nonce(e * edge.epoch_length // edge.interval_length),
                                timestamp=e * edge.epoch_length, payload=b"1"), e * edge.epoch_length // edge.interval_length)
                  for i in range(n)]
            c = EpochCommitment.build(e, rs, edge.interval_length)
            chain.increase_time(max(0, (e + 1) * edge.epoch_length - chain.timestamp()) + 1)
            tx = edge.publish(c, b.seed(e), b.seed_hash(e + 1), sender=accts[1])
            out[f"publish ({n} readings)"] = tx.gas_used
        return out
    finally:
        close_embedded(home.chain_dir)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=40_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[2])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--batch", type=int, default=500, help="readings per HTTP batch")
    ap.add_argument("--gas", action="store_true", help="also measure gas per epoch root (deploys a chain)")
    args = ap.parse_args()
    print(f"cpu cores: {os.cpu_count()}  python {sys.version.split()[0]}  coincurve {coincurve.__version__ if hasattr(coincurve, '__version__') else ''}")
    base = baselines(200, 2_000, 20_000)
    print(f"\nbaselines (signature recovery of EIP-712 readings; load average {os.getloadavg()[0]:.2f}):")
    for k, v in base.items():
        print(f"  {k:42s} {v:>10,.0f} readings/s")
    results = []
    for w in args.workers:
        r = gateway_throughput(args.readings, w, args.clients, args.batch)
        results.append(r)
        print(f"\ngateway end to end over HTTP, {w} verifier thread(s), {args.clients} client threads, "
              f"batches of {args.batch} (load average {r['load_before']:.2f} before):")
        print(f"  {r['readings']:,} readings in {r['seconds']:.2f} s = {r['readings_per_s']:,.0f} readings/s "
              f"(log {r['log_bytes'] / 1e6:.1f} MB, fsync per batch; pre-signing took {r['presign_s']:.1f} s)")
        cpu = r["gateway_cpu_us"] + r["client_cpu_us"]
        print(f"  CPU per reading: gateway {r['gateway_cpu_us']:.1f} us (of which the signature kernel "
              f"~{KERNEL_CPU_US[0]:.1f} us) + HTTP client {r['client_cpu_us']:.1f} us"
              f" -> at most {2e6 / cpu:,.0f} readings/s on 2 otherwise idle cores")
        for k, v in base.items():
            print(f"  x{r['readings_per_s'] / v:8.1f} vs {k}")
        print(f"  target >= 20,000 readings/s: {'MET' if r['readings_per_s'] >= 20_000 else 'NOT MET'}")
    if args.gas:
        print("\ngas:")
        for k, v in gas_per_root().items():
            if v:
                print(f"  {k:42s} {v:>10,}")
    print(json.dumps({"baselines": base, "gateway": results}))


if __name__ == "__main__":
    main()
