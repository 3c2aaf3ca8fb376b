"""The node daemon as a real process on a real embedded chain: serving, locking, crashing, resuming."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from proofmesh.chain.anvil import free_port
from proofmesh.chain.client import Chain
from proofmesh.chain.core import MESH, Registry, Token
from proofmesh.config import Home
from proofmesh.errors import ChainError
from proofmesh.node.daemon import DaemonError, NodeDaemon, running_daemon

from .conftest import finish, serve_in_thread, spawn_daemon, wait_healthy


def test_daemon_owns_chain_refuses_second_survives_kill9(home: Home, accounts: list, procs: list, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    d1 = spawn_daemon(home, port)
    procs.append(d1)
    h = wait_healthy(url, d1)
    assert h["ok"] and h["backend"] == "embedded" and h["rpc"] == f"{url}/rpc"
    assert running_daemon(home).pid == d1.pid

    # another process reaches the daemon's chain through the URL it published
    chain = Chain.connect(home, accounts[1])
    assert chain.rpc_url == f"{url}/rpc"
    before = Token(chain).balance(accounts[2].address)
    Token(chain).transfer(accounts[2].address, 7 * MESH)
    head = chain.block_number()

    # a second daemon on the same home refuses, naming the first one
    rc, out = finish(spawn_daemon(home, free_port()))
    assert rc == 1 and "already running" in out and str(d1.pid) in out

    # a port that is taken gives a clear error (another home, same port)
    other = Home.resolve(tmp_path / "other")
    other.init()
    rc, out = finish(spawn_daemon(other, port))
    assert rc == 1 and f"cannot listen on 127.0.0.1:{port}" in out and "--port" in out
    assert running_daemon(other) is None  # nothing left behind by the failed start

    metrics = httpx.get(f"{url}/metrics").text
    assert 'proofmesh_rpc_calls_total{method="eth_sendRawTransaction"}' in metrics
    head_line = next(line for line in metrics.splitlines() if line.startswith("proofmesh_chain_head_block"))
    assert float(head_line.split()[1]) >= 0

    # kill -9: no chance to clean up; the lock dies with the process
    os.kill(d1.pid, signal.SIGKILL)
    d1.wait(timeout=10)
    assert running_daemon(home) is None

    d2 = spawn_daemon(home, port)
    procs.append(d2)
    wait_healthy(url, d2)
    chain = Chain.connect(home, accounts[1])
    assert chain.block_number() >= head                                  # resumed, not re-created
    assert Token(chain).balance(accounts[2].address) == before + 7 * MESH  # the committed transfer survived

    # SIGTERM: graceful stop, the published URL and the lock are withdrawn
    d2.send_signal(signal.SIGTERM)
    rc, _ = finish(d2, timeout=60)
    assert rc == 0
    assert not (home.chain_dir / "rpc.json").exists()
    assert running_daemon(home) is None
    log = [json.loads(line) for line in (home.path / "node" / "node.log").read_text().splitlines()]
    msgs = [r["msg"] for r in log]
    assert "node stopping" in msgs and msgs[-1] == "node stopped"
    assert all({"ts", "level", "msg"} <= set(r) for r in log)


def test_unreachable_chain_fails_cleanly(tmp_path: Path) -> None:
    port = free_port()
    home = Home.resolve(tmp_path / "rpc-home")
    home.init(backend="rpc", rpc_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ChainError, match="cannot reach"):
        NodeDaemon(home, port=port, log_stderr=False).start()
    assert running_daemon(home) is None
    # the port was never taken: a new daemon could bind it
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_uninitialised_home_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no proofmesh home"):
        NodeDaemon(Home.resolve(tmp_path / "nothing-here"))


SERVICE_MODULE = textwrap.dedent('''
    """A real service module, written the way a domain package writes its own."""
    import threading
    from fastapi import APIRouter

    ROLES = 2   # compute

    class Counter:
        name = "counter"

        def __init__(self, ctx):
            self.ctx = ctx
            self.ticks = 0
            self.stopped_with = None
            self._t = None

        def router(self):
            r = APIRouter()

            @r.get("/ticks")
            def ticks():
                return {"ticks": self.ticks, "node": self.ctx.account.address}
            return r

        def start(self):
            def loop():
                while not self.ctx.stopping.wait(0.05):
                    self.ticks += 1
            self._t = threading.Thread(target=loop, daemon=True)
            self._t.start()

        def stop(self, timeout):
            self.stopped_with = timeout
            self._t.join(timeout)
            INSTANCES.append(self)

        def health(self):
            return {"ticks": self.ticks}

        def metrics(self):
            return {"ticks": self.ticks}

    INSTANCES = []

    def create(ctx):
        return Counter(ctx)
''')


def test_services_follow_onchain_roles(chain: Chain, home: Home, accounts: list, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pm_counter_service.py").write_text(SERVICE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    node = accounts[3]
    reg = Registry(chain.with_account(node))

    # not registered: roles 0, so the compute service is skipped with the reason
    d = NodeDaemon(home, port=0, chain=chain.with_account(node), log_stderr=False,
                   services=["pm_counter_service"]).start()
    assert [s.service.name for s in d.services] == ["store"]
    assert "needs one of roles" in d.skipped[0]["reason"]
    d._release()

    reg.register("http://127.0.0.1:1", 2)
    reg.stake(500 * MESH)
    d = NodeDaemon(home, port=0, chain=chain.with_account(node), log_stderr=False,
                   services=["pm_counter_service"], stop_timeout=8.0).start()
    t = serve_in_thread(d)
    try:
        time.sleep(0.3)
        ticks = httpx.get(f"{d.url}/svc/counter/ticks").json()
        assert ticks["ticks"] > 0 and ticks["node"] == node.address
        h = httpx.get(f"{d.url}/health").json()
        assert h["ok"] and h["roles"] == ["compute"] and h["services"]["counter"]["up"]
        m = httpx.get(f"{d.url}/metrics").text
        assert 'proofmesh_service_up{service="counter"} 1.0' in m
        assert 'proofmesh_service_ticks{service="counter"}' in m
        assert "proofmesh_node_roles 2.0" in m
    finally:
        d.request_stop()
        t.join(timeout=30)
    mod = sys.modules["pm_counter_service"]
    assert mod.INSTANCES and mod.INSTANCES[-1].stopped_with == pytest.approx(4.0)  # 8 s budget over 2 services
    assert running_daemon(home) is None


def test_second_inprocess_daemon_refused(chain: Chain, home: Home) -> None:
    d = NodeDaemon(home, port=0, chain=chain, log_stderr=False).start()
    try:
        with pytest.raises(DaemonError, match="already running"):
            NodeDaemon(home, port=0, chain=chain, log_stderr=False).start()
    finally:
        d._release()


TOOLS_MODULE = textwrap.dedent('''
    def word_count(text: str) -> int:
        """Count the words in a text."""
        return len(text.split())
''')


def test_domain_services_run_inside_the_daemon(chain: Chain, home: Home, accounts: list, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The edge gateway and the tool provider, started by roles, on the node's key."""
    from proofmesh.agents.registry import ToolRegistry, tool_id_of

    (tmp_path / "pm_node_tools.py").write_text(TOOLS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    node = accounts[4]
    reg = Registry(chain.with_account(node))
    reg.register("http://127.0.0.1:1", 8 | 16)   # gateway + tools
    reg.stake(5_000 * MESH)
    (home.path / "agents").mkdir(exist_ok=True)
    (home.path / "agents" / "tools.json").write_text(json.dumps(
        {"tools": ["pm_node_tools:word_count"], "price": "0.01", "settle_every": 0}))
    d = NodeDaemon(home, port=0, chain=chain.with_account(node), log_stderr=False,
                   services=["proofmesh.edge.service", "proofmesh.inference.service",
                             "proofmesh.agents.service"]).start()
    names = [s.service.name for s in d.services]
    assert names == ["store", "gateway", "tools"]
    assert d.skipped[0]["module"] == "proofmesh.inference.service"  # no INFERENCE role
    t = serve_in_thread(d)
    try:
        h = httpx.get(f"{d.url}/health", timeout=30).json()
        assert h["ok"], h
        assert h["services"]["gateway"]["up"] and h["services"]["tools"]["up"]
        beacon = httpx.get(f"{d.url}/svc/gateway/edge/beacon", timeout=30).json()
        assert beacon  # the gateway's own route, served by the daemon
        edge = chain.contract("EdgeEpochs")
        assert chain.call(edge.functions.gateways(node.address))[4] is True  # enrolled (active) with the node key
        status = httpx.get(f"{d.url}/svc/tools/status", timeout=30).json()
        assert status["tools"] == ["word_count"]
        rec = ToolRegistry(chain).contract.functions.tools(tool_id_of(node.address, "word_count")).call()
        assert rec[0] == node.address and rec[3] == status["endpoint"] and rec[4] == MESH // 100
    finally:
        d.request_stop()
        t.join(timeout=60)


def test_data_validator_service_attests_drawn_batches(chain: Chain, home: Home, accounts: list,
                                                      tmp_path: Path) -> None:
    """A DATA_VALIDATOR node's daemon draws the committee of a new batch and attests it."""
    from proofmesh.data.client import DataRegistryClient, open_index, publish
    from proofmesh.data.pipeline import IngestConfig, ingest
    from proofmesh.store.blobstore import BlobStore

    if "DataRegistry" not in chain.addresses:
        pytest.skip("the data capability is not deployed")
    validator, contributor = accounts[7], accounts[6]
    Registry(chain.with_account(validator)).register("http://127.0.0.1:2", 1)
    Registry(chain.with_account(validator)).stake(1_000 * MESH)
    Registry(chain.with_account(contributor)).register("http://127.0.0.1:3", 2)
    Registry(chain.with_account(contributor)).stake(1_000 * MESH)
    client = DataRegistryClient(chain)
    sid = client.register_source("https://example.org/validated", "CC0-1.0", "t", sender=contributor)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"line {i} of a small corpus, words a{i} b{i * 5} c{i * 11}"}) + "\n"
                              for i in range(40)))
    cfg = IngestConfig()
    index = open_index(home, cfg.index_params())
    ingest([corpus], tmp_path / "batch", cfg, index=index)
    batch_id = publish(chain, BlobStore(home.store_dir), index, tmp_path / "batch", sid, sender=contributor)["batch_id"]
    d = NodeDaemon(home, port=0, chain=chain.with_account(validator), log_stderr=False,
                   services=["proofmesh.data.service"]).start()
    assert [s.service.name for s in d.services] == ["store", "validator"]
    t = serve_in_thread(d)
    try:
        c = chain.contract("DataRegistry")
        deadline = time.monotonic() + 60
        while not chain.call(c.functions.attested(batch_id, validator.address)):
            assert time.monotonic() < deadline, httpx.get(f"{d.url}/svc/validator/status").json()
            chain.mine()  # the committee's seed block must be in the past
            time.sleep(0.5)
        assert validator.address in client.committee(batch_id)
        status = httpx.get(f"{d.url}/svc/validator/status").json()
        assert batch_id in status["attested"] and status["errors"] == 0
        ev = [e for e in chain.events("DataRegistry", "Attested") if e["args"]["batch_id"] == batch_id]
        assert ev[0]["args"]["validator"] == validator.address and ev[0]["args"]["available"] is True
    finally:
        d.request_stop()
        t.join(timeout=60)
