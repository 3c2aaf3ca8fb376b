"""A 3-node devnet on anvil: every process real and separate; crash, restart, store repair."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from proofmesh.chain.anvil import find_binary
from proofmesh.config import Home
from proofmesh.crypto.cid import cid_of_bytes
from proofmesh.errors import ProofmeshError
from proofmesh.node.daemon import running_daemon
from proofmesh.node.devnet import DevnetRecord, _alive, devnet_down, devnet_status, devnet_up

try:
    find_binary("anvil")
    HAVE_ANVIL = True
except ProofmeshError:
    HAVE_ANVIL = False

pytestmark = [pytest.mark.slow, pytest.mark.anvil,
              pytest.mark.skipif(not HAVE_ANVIL, reason="anvil (npm @foundry-rs/anvil) is not installed")]


def _status_cli(d: Path) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "proofmesh.cli.main", "devnet", "status", "--dir", str(d), "--json"],
                         capture_output=True, text=True, timeout=120, env=dict(os.environ, PROOFMESH_KDF="fast"))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_devnet_three_nodes_crash_restart_and_store_repair(tmp_path: Path) -> None:
    d = tmp_path / "devnet"
    record = devnet_up(d, nodes=3)
    try:
        rows = {r["node"]: r for r in _status_cli(d)}
        assert [rows[f"node{i}"]["health"] for i in range(3)] == ["ok", "ok", "ok"]
        assert rows["anvil"]["health"] == "ok"
        assert [rows[f"node{i}"]["stake"] for i in range(3)] == ["1000", "2000", "3000"]
        assert rows["node0"]["roles"] == "data,tools,evaluator" and rows["node1"]["roles"] == "compute,evaluator"
        assert len({rows[f"node{i}"]["address"] for i in range(3)}) == 3
        n0, n1, n2 = record.nodes

        # every node reads the same chain and sees the others in the registry
        for n in record.nodes:
            ex = httpx.get(f"{n.url}/api/explorer/nodes", timeout=30).json()
            assert {x["endpoint"] for x in ex["nodes"]} == {m.url for m in record.nodes}

        # a blob on node0 and node2; node0's copy rots on disk; node0's scrub re-hashes,
        # quarantines it and fetches the good bytes from a peer found on chain
        blob = os.urandom(300_000)
        cid = cid_of_bytes(blob)
        for n in (n0, n2):
            assert httpx.put(f"{n.url}/blobs", content=blob, timeout=30).json()["cid"] == cid
        path = Path(n0.home) / "store" / "blobs" / cid[-2:] / cid
        path.chmod(0o644)
        rotten = bytearray(blob)
        rotten[1000] ^= 0xFF
        path.write_bytes(bytes(rotten))
        assert httpx.get(f"{n0.url}/blobs/{cid}", timeout=30).status_code == 404  # detected by hash, not served
        report = httpx.post(f"{n0.url}/svc/store/scrub", timeout=60).json()
        assert cid in report["corrupted"]
        assert report["repaired"] == [{"cid": cid, "peer": n2.url}]
        assert set(report["peers"]) == {n1.url, n2.url}
        assert httpx.get(f"{n0.url}/blobs/{cid}", timeout=30).content == blob
        assert "proofmesh_service_repaired" in httpx.get(f"{n0.url}/metrics").text

        # kill -9 node1: status shows it down, `devnet up` brings it back on the same home
        pid = running_daemon(Home.resolve(n1.home)).pid
        head_before = httpx.get(f"{n1.url}/health").json()["head"]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while running_daemon(Home.resolve(n1.home)) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {r["node"]: r["health"] for r in devnet_status(d)}["node1"] == "down"
        devnet_up(d)
        h = httpx.get(f"{n1.url}/health").json()
        assert h["ok"] and h["address"] == n1.address and h["roles"] == ["compute", "evaluator"]
        assert h["head"] >= head_before and running_daemon(Home.resolve(n1.home)).pid != pid
        assert [r["health"] for r in devnet_status(d) if r["node"] != "anvil"] == ["ok", "ok", "ok"]
    finally:
        result = devnet_down(d)
    assert result["stopped"] == ["node0", "node1", "node2"] and result["anvil"]
    saved = DevnetRecord.load(d)
    assert not _alive(record.anvil_pid, "anvil") and saved.anvil_pid == 0
    assert all(running_daemon(Home.resolve(n.home)) is None for n in saved.nodes)
    assert (d / "anvil-state.json").exists()  # kept: `devnet up` resumes this network


def test_devnet_refuses_bad_node_count(tmp_path: Path) -> None:
    from proofmesh.errors import InputError

    with pytest.raises(InputError, match="between 1 and 32"):
        devnet_up(tmp_path / "x", nodes=0)
    assert not (tmp_path / "x" / "devnet.json").exists()


def test_devnet_status_without_devnet_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ProofmeshError, match="no devnet in"):
        devnet_status(tmp_path / "none")
