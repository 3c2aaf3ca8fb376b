"""Request limits of the node daemon (a real NodeDaemon serving on 127.0.0.1, in this process):
its BodyLimit covers the FastAPI app and every route mounted in it — the chain's ``POST /rpc``,
the services' ``/svc/...`` routes — except the blob store's ``PUT /blobs``, which streams to disk
under its own ``max_upload``."""

from __future__ import annotations

import json
import os
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
