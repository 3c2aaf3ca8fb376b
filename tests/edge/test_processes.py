"""Real processes on 127.0.0.1: an anvil chain, a gateway and three devices (CLI commands).

The gateway is killed with SIGKILL mid-run and restarted: no reading it acknowledged is
lost, devices resend what they buffered, and the epochs are published on chain. Uses its
own anvil with short epochs (6 s, 1 s intervals) so several epochs pass in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from proofmesh.chain.client import Chain
from proofmesh.chain.core import MESH, Registry, Token
from proofmesh.chain.deploy import DeployParams, deploy_all
from proofmesh.config import Home
from proofmesh.crypto.keys import Keystore
from proofmesh.edge.identity import create_key
from proofmesh.edge.onchain import EdgeChain

CELL = "871f1d489ffffff"
PW = "edge-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def edge_net(tmp_path_factory, accounts):
    from proofmesh.chain.anvil import start_anvil

    os.environ["PROOFMESH_EDGE_EPOCH_SECONDS"], os.environ["PROOFMESH_EDGE_INTERVAL_SECONDS"] = "6", "1"
    proc = start_anvil(block_time=1)   # blocks keep coming, as on a real chain
    try:
        chain = Chain.from_url(proc.url, account=accounts[0])
        book = deploy_all(chain, DeployParams())
    finally:
        del os.environ["PROOFMESH_EDGE_EPOCH_SECONDS"], os.environ["PROOFMESH_EDGE_INTERVAL_SECONDS"]
    try:
        token = Token(chain)
        for a in accounts[1:4]:
            token.transfer(a.address, 100_000 * MESH)
        home = Home.resolve(tmp_path_factory.mktemp("gw-home"))
        home.init(backend="rpc", rpc_url=proc.url)
        home.save_address_book(chain.chain_id, book)
        Keystore(home).import_key("default", bytes(accounts[1].key), PW)
        chain.addresses = book
        Registry(chain).register("http://127.0.0.1", 8, sender=accounts[1])
        Registry(chain).stake(5_000 * MESH, sender=accounts[1])
        yield {"url": proc.url, "chain": chain, "home": home, "book": book}
    finally:
        proc.stop()


def _cli(home: Home, *args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PROOFMESH_PASSWORD=PW, PROOFMESH_EDGE_PASSWORD=PW)
    return subprocess.Popen([sys.executable, "-m", "proofmesh.cli.main", "--home", str(home.path), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited: {proc.stderr.read().decode()[-3000:]}")
        try:
            httpx.get(url, timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


@pytest.mark.slow
def test_devices_gateway_kill_restart_epochs(edge_net, accounts, tmp_path):
    chain, home = edge_net["chain"], edge_net["home"]
    edge = EdgeChain(chain)
    dirs = []
    for i in range(3):
        d = tmp_path / f"dev{i}"
        k = create_key(d / "device.key", PW)
        edge.register_device(k, device_class="sensor", cell=CELL, stake=100 * MESH, owner=accounts[2])
        (d / "device.json").write_text(json.dumps({"device": k.address}))
        dirs.append(d)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    gw_dir = tmp_path / "gw"
    gw_args = ("edge", "gateway", "--dir", str(gw_dir), "--port", str(port), "--workers", "1", "--grace", "1")
    gw = _cli(home, *gw_args)
    devs = []
    before_kill: dict = {}
    proof = None
    try:
        _wait_http(f"{url}/edge/beacon", gw, timeout=180)   # a fresh checkout JIT-compiles the verifier first
        devs = [_cli(home, "--json", "edge", "device", "run", "--dir", str(d), "--gateway", url, "--every", "0.5s",
                     "--count", "24", "--batch", "4") for d in dirs]
        end = time.time() + 60
        while time.time() < end:              # kill once readings are flowing
            before_kill = httpx.get(f"{url}/edge/stats").json()
            if before_kill["counts"].get("accepted", 0) >= 9:
                break
            time.sleep(0.3)
        gw.send_signal(signal.SIGKILL)          # no goodbye: whatever was acknowledged must survive
        gw.wait()
        time.sleep(2)
        gw = _cli(home, *gw_args)
        _wait_http(f"{url}/edge/beacon", gw, timeout=180)   # a fresh checkout JIT-compiles the verifier first
        results = []
        for p in devs:
            out, err = p.communicate(timeout=90)
            assert p.returncode == 0, err.decode()[-2000:]
            results.append(json.loads(out))
        last_epoch = (int(time.time())) // 6
        deadline = time.time() + 40
        while time.time() < deadline:
            pub = httpx.get(f"{url}/edge/epochs").json()
            if pub and max(map(int, pub)) >= last_epoch:
                break
            time.sleep(0.5)
        stats = httpx.get(f"{url}/edge/stats").json()
        # a third party proves one reading against the chain (what `proofmesh edge verify` prints)
        from proofmesh.edge.cli import verify_reading

        first_pub = json.loads((gw_dir / "epochs" / f"{min(map(int, stats['published']))}.json").read_text())
        some = next((lf for lf in first_pub["leaves"]), None)
        proof = verify_reading(edge, url, some["device"], some["seq"]) if some else None
    finally:
        gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(timeout=15)
        except subprocess.TimeoutExpired:
            gw.kill()
        gw_err = gw.stderr.read().decode()[-3000:]
        for p in devs:
            if p.poll() is None:
                p.kill()
    assert stats["counts"]["recovered"] > 0, (before_kill, stats["last_publish_error"], results)  # the restart rebuilt state from the log
    published = {int(e): v for e, v in stats["published"].items()}
    assert len(published) >= 3                            # several epochs, each on chain
    in_roots: set[tuple[str, int]] = set()
    for e, rec in published.items():
        data = json.loads((gw_dir / "epochs" / f"{e}.json").read_text())
        onchain = edge.epoch(stats["gateway"], e)
        assert "0x" + onchain["root"].hex() == data["root"] == rec["root"]
        in_roots |= {(lf["device"], lf["seq"]) for lf in data["leaves"]}
    acked = set()
    for d in dirs:
        for line in (d / "receipts.jsonl").read_text().splitlines():
            r = json.loads(line)
            acked |= {(dev, s) for dev, _e, a, b in r["runs"] for s in range(a, b + 1)}
    assert acked and acked <= in_roots                   # no acknowledged reading lost
    for res in results:
        assert res["pending"] == 0                        # the buffer drained after the restart
        assert res["sent_ok"] + res["rejected"] == res["made"] == 24
    assert sum(r["sent_ok"] for r in results) == len(in_roots)
    if proof is not None:
        assert proof["key_valid"] and not proof["faulty"] and proof["root"] == published[proof["epoch"]]["root"]
