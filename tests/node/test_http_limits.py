"""Request limits of the node daemon (a real NodeDaemon serving on 127.0.0.1, in this process):
its BodyLimit covers the FastAPI app and every route mounted in it — the chain's ``POST /rpc``,
the services' ``/svc/...`` routes — except the blob store's ``PUT /blobs``, which streams to disk
under its own ``max_upload``."""

from __future__ import annotations

import json
import os
import socket
from typing import Iterator

import httpx
import pytest

from proofmesh.chain.client import Chain
from proofmesh.config import Home
from proofmesh.crypto.cid import cid_of_bytes
from proofmesh.http_limits import MB, HttpLimits
from proofmesh.node.daemon import NodeDaemon

from .conftest import serve_in_thread

LIMIT = 8 * MB
CHAIN_ID = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}


@pytest.fixture
def node(chain: Chain, home: Home) -> Iterator[str]:
    d = NodeDaemon(home, port=0, chain=chain, log_stderr=False, stop_timeout=5.0,
                   limits=HttpLimits(max_body_bytes=LIMIT, max_connections=64)).start()
    t = serve_in_thread(d)
    try:
        yield d.url
    finally:
        d.request_stop()
        t.join(timeout=30)


def still_serving(url: str) -> None:
    r = httpx.post(f"{url}/rpc", json=CHAIN_ID)
    assert r.status_code == 200 and r.json()["result"] == "0x7a69"
    assert httpx.get(f"{url}/health").status_code in (200, 503)


def test_the_settings_set_the_daemons_limits(home: Home, chain: Chain) -> None:
    home.settings.http_max_body_mb = 3
    home.settings.http_max_connections = 9
    d = NodeDaemon(home, port=0, chain=chain, log_stderr=False)
    assert d.limits == HttpLimits(max_body_bytes=3 * MB, max_connections=9)


def test_a_declared_body_over_the_limit_gets_413_on_every_route(node, http_probe):
    probe = http_probe(node)
    for path in ("/rpc", "/svc/store/scrub", "/no/such/route"):
        status, headers, body = probe.declared(path, 400 * MB)
        err = json.loads(body)
        assert status == 413 and err["type"] == "BodyTooLarge", (path, status, body)
        assert "8 MB" in err["error"] and "PROOFMESH_HTTP_MAX_BODY_MB" in err["fix"]
        assert headers.get("connection") == "close"
        still_serving(node)


def test_a_chunked_body_over_the_limit_gets_413_and_is_not_held(node, http_probe):
    probe = http_probe(node)
    (status, _, body, sent), grew = probe.peak_rss_growth(os.getpid(), lambda: probe.chunked("/rpc", 3 * LIMIT))
    assert status == 413 and json.loads(body)["type"] == "BodyTooLarge"
    assert grew < 3 * LIMIT, f"the daemon held {grew / MB:.1f} MB of a {3 * LIMIT / MB:.0f} MB body"
    still_serving(node)


def test_deeply_nested_json_is_a_4xx_and_the_daemon_keeps_serving(node, http_probe):
    probe = http_probe(node)
    status, _, body = probe.body("/rpc", b"[" * MB)
    assert status == 400 and json.loads(body)["error"]["code"] == -32700
    assert "deeper" in json.loads(body)["error"]["message"]
    status, _, body = probe.body("/rpc", b"{broken")
    assert status == 400 and json.loads(body)["error"]["code"] == -32700
    r = httpx.post(f"{node}/rpc", content=json.dumps([1, CHAIN_ID]))
    assert r.status_code == 200 and r.json()[0]["error"]["code"] == -32600
    still_serving(node)


def test_a_body_just_under_the_limit_is_served(node):
    body = json.dumps(CHAIN_ID).encode()
    body += b" " * (LIMIT - 1 - len(body))
    r = httpx.post(f"{node}/rpc", content=body)
    assert r.status_code == 200 and r.json()["result"] == "0x7a69"


def test_blob_uploads_are_bounded_by_the_store_not_the_body_limit(node):
    data = os.urandom(LIMIT + MB)
    r = httpx.put(f"{node}/blobs", content=data, timeout=60)
    assert r.status_code == 201 and r.json()["cid"] == cid_of_bytes(data)


def test_a_services_json_route_answers_nested_json_with_a_4xx(chain: Chain, home: Home, accounts: list,
                                                              http_probe) -> None:
    """The inference service's admin route (mounted in the daemon) parses its body with
    parse_json: a '[[[[' body is a 422 with the reason, not a 500."""
    from proofmesh.chain.core import MESH, Registry
    from proofmesh.inference.registry import InferenceRegistry

    node = accounts[5]
    reg, ireg = Registry(chain), InferenceRegistry(chain)
    reg.register("http://127.0.0.1:1", 4, sender=node)          # INFERENCE
    reg.stake(300 * MESH, sender=node)
    ireg.post_bond(ireg.min_bond(), sender=node)
    d = NodeDaemon(home, port=0, chain=chain.with_account(node), log_stderr=False, stop_timeout=5.0,
                   services=["proofmesh.inference.service"],
                   limits=HttpLimits(max_body_bytes=LIMIT, max_connections=64)).start()
    t = serve_in_thread(d)
    try:
        token = (home.path / "node" / "admin.token").read_text()
        r = httpx.post(f"{d.url}/svc/inference/versions", content=b"[" * MB,
                       headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 422 and r.json()["type"] == "BadJSON" and "deeper" in r.json()["error"]
        status, _, _ = http_probe(d.url).declared("/svc/inference/versions", 400 * MB)
        assert status == 413
        still_serving(d.url)
    finally:
        d.request_stop()
        t.join(timeout=30)


# --------------------------------------------------------------------------- refusals in /metrics
def refused_counts(url: str) -> dict[str, float]:
    """``proofmesh_http_refused_total`` by reason, scraped from the daemon's /metrics."""
    out: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("proofmesh_http_refused_total{"):
            out[line.split('reason="', 1)[1].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
    return out


def test_the_daemon_counts_refused_requests_by_reason(chain: Chain, home: Home, http_probe) -> None:
    """413s and 408s are sent by the limits before any route (or the request middleware) sees the
    request: /metrics counts them by reason, and a dripping upload leaves nothing in the store."""
    from proofmesh.http_limits import REFUSALS
    from proofmesh.store.blobstore import BlobStore

    from tests.conftest import drip, wait_for

    store = BlobStore(home.store_dir)
    blobs = sorted(store.list())
    d = NodeDaemon(home, port=0, chain=chain, log_stderr=False, stop_timeout=5.0,
                   limits=HttpLimits(max_body_bytes=LIMIT, max_connections=64, body_timeout_s=1.0,
                                     min_rate_kbps=8)).start()
    t = serve_in_thread(d)
    port = int(d.url.rsplit(":", 1)[1])
    try:
        assert refused_counts(d.url) == {reason: 0.0 for reason in REFUSALS}   # exported from the start
        probe = http_probe(d.url)
        assert probe.declared("/rpc", 400 * MB)[0] == 413
        assert probe.declared("/no/such/route", 400 * MB)[0] == 413
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:     # an upload, dripped
            s.sendall(b"PUT /blobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
            status, _, body, took = drip(s, b"x" * 100000, 0.2)
        assert status == 408 and json.loads(body)["type"] == "BodyTooSlow" and took < 3.0, (status, body, took)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:     # a JSON-RPC body, dripped
            s.sendall(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            status, _, body, _ = drip(s, b" " * 100, 0.3)
        assert status == 408 and json.loads(body)["type"] == "BodyTimeout", (status, body)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:     # headers, dripped
            status, _, body, _ = drip(s, b"POST /rpc HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 100, 0.3)
        assert status == 408 and json.loads(body)["type"] == "HeadersTimeout", (status, body)
        assert refused_counts(d.url) == {"body_too_large": 2.0, "body_too_slow": 1.0, "body_timeout": 1.0,
                                         "headers_timeout": 1.0}
        wait_for(lambda: list(store.tmp_dir.iterdir()) == [], 10, "the aborted upload's temporary file removed")
        assert sorted(store.list()) == blobs
        still_serving(d.url)
    finally:
        d.request_stop()
        t.join(timeout=30)


def test_the_node_refuses_to_start_without_httptools(tmp_path) -> None:
    """``proofmesh node start`` on a machine without httptools: one line saying what is missing
    and how to install it, exit 1, and nothing left behind (no lock, no published URL)."""
    import subprocess
    import sys

    home = Home.resolve(tmp_path / "h")
    home.init()
    code = ("import sys; sys.modules['httptools'] = None\n"
            "from proofmesh.cli.main import main\nmain()")
    out = subprocess.run([sys.executable, "-c", code, "--home", str(home.path), "node", "start", "--port", "0"],
                         capture_output=True, text=True, timeout=120, env=dict(os.environ, PROOFMESH_KDF="fast"))
    said = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 1, said
    assert "httptools is not installed" in said and "pip install 'httptools>=0.6'" in said, said
    assert not (home.path / "node" / "LOCK").exists() and not (home.path / "node" / "daemon.json").exists()


# --------------------------------------------------------------------------- the explorer's probe
@pytest.mark.parametrize("mode", ["declared", "flood", "deep", "trickle", "trickle_head"])
def test_the_explorer_probes_a_hostile_registered_endpoint_cheaply(chain: Chain, accounts: list, hostile_peer,
                                                                    http_probe, mode: str):
    """Anyone can register an endpoint on chain; the explorer's /health probe of it reads at most
    64 KB within 0.5 s in all, whatever the endpoint answers, and the next node is probed as usual."""
    import time
    from types import SimpleNamespace

    from proofmesh.chain.core import Registry
    from proofmesh.node.events import EventIndex
    from proofmesh.node.explorer.api import Explorer

    good = type(hostile_peer)()                   # a second peer, answering well
    try:
        Registry(chain.with_account(accounts[1])).register(hostile_peer.url, 4)
        Registry(chain.with_account(accounts[2])).register(good.url, 4)
        hostile_peer.mode = mode
        explorer = Explorer(SimpleNamespace(chain=chain, index=EventIndex(chain)))
        t0 = time.monotonic()
        section, grew = http_probe.peak_rss_growth(os.getpid(), explorer.inference)
        took = time.monotonic() - t0
        latency = {row["endpoint"]: row["latency_ms"] for row in section["nodes"]}
        assert latency[hostile_peer.url] is None and latency[good.url] is not None
        assert took < 3, f"the explorer's section took {took:.1f} s with a {mode} endpoint"
        assert grew < 16 * MB, f"the explorer held {grew / MB:.1f} MB of a {mode} answer"
    finally:
        good.close()
