"""Request limits of the embedded chain's stdlib JSON-RPC server (RPCServer) on 127.0.0.1: a body
over the limit is refused from its Content-Length before any of it is read, a body without one
(chunked) gets 411, and JSON that is not JSON or nests too deep is a JSON-RPC parse error (HTTP
400), never a crash; the server keeps answering. The FastAPI ``rpc_router`` is covered in the
node daemon's tests (tests/node/test_http_limits.py), behind the daemon's BodyLimit."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from proofmesh.chain.embedded import EmbeddedChain
from proofmesh.chain.rpcserver import RPCServer
from proofmesh.http_limits import MB, HttpLimits
from tests.conftest import drip

LIMIT = 4 * MB
CHAIN_ID = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}


@pytest.fixture
def rpc(tmp_path: Path) -> Iterator[str]:
    chain = EmbeddedChain.open(tmp_path / "chain")
    server = RPCServer(chain, publish=False, limits=HttpLimits(max_body_bytes=LIMIT, max_connections=4)).start()
    try:
        yield server.url
    finally:
        server.stop()
        chain.close()


def still_serving(url: str) -> None:
    r = httpx.post(url, json=CHAIN_ID)
    assert r.status_code == 200 and r.json()["result"] == "0x7a69"


def test_a_declared_body_over_the_limit_gets_413_before_it_is_read(rpc, http_probe):
    status, _, body = http_probe(rpc).declared("/", 400 * MB)
    err = json.loads(body)
    assert status == 413 and err["type"] == "BodyTooLarge" and "419,430,400 bytes" in err["error"]
    assert "http_max_body_mb" in err["fix"]
    still_serving(rpc)


def test_a_chunked_body_gets_411_and_is_not_held(rpc, http_probe):
    probe = http_probe(rpc)
    (status, _, body, _), grew = probe.peak_rss_growth(os.getpid(), lambda: probe.chunked("/", 3 * LIMIT))
    assert status == 411 and "Content-Length" in json.loads(body)["error"]
    assert grew < 3 * LIMIT
    for bad in ("-1", "12abc"):
        with socket.create_connection(("127.0.0.1", int(rpc.rsplit(":", 1)[1]))) as s:
            s.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {bad}\r\n\r\n".encode())
            assert probe._read(s)[0] == 400
    still_serving(rpc)


def test_deeply_nested_or_broken_json_is_a_parse_error_not_a_crash(rpc, http_probe):
    probe = http_probe(rpc)
    for body in (b"[" * MB, b"{nope", b"\xff" * 10):
        status, _, answer = probe.body("/", body)
        assert status == 400 and json.loads(answer)["error"]["code"] == -32700
    # parsed, but not calls: invalid requests, answered per element
    r = httpx.post(rpc, content=json.dumps([1, [CHAIN_ID], CHAIN_ID]))
    assert r.status_code == 200 and [a.get("error", {}).get("code") for a in r.json()] == [-32600, -32600, None]
    assert httpx.post(rpc, content=b"[]").json()["error"]["code"] == -32600
    still_serving(rpc)


def test_a_body_just_under_the_limit_is_served(rpc):
    body = json.dumps(CHAIN_ID).encode()
    body += b" " * (LIMIT - 1 - len(body))
    r = httpx.post(rpc, content=body)
    assert r.status_code == 200 and r.json()["result"] == "0x7a69"


def test_connections_past_the_limit_get_503(rpc):
    port = int(rpc.rsplit(":", 1)[1])
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    try:
        time.sleep(0.2)
        assert httpx.post(rpc, json=CHAIN_ID).status_code == 503
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    while httpx.post(rpc, json=CHAIN_ID).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_body_dripped_slower_than_the_deadline_gets_408_in_total_time(tmp_path):
    """The socket timeout is per read: one byte every 0.5 s never trips it. The total deadline
    (here 2 s) does, with 408 in the project's error shape, and the server keeps answering."""
    chain = EmbeddedChain.open(tmp_path / "chain")
    server = RPCServer(chain, publish=False,
                       limits=HttpLimits(max_body_bytes=LIMIT, max_connections=4, body_timeout_s=2.0)).start()
    try:
        port = int(server.url.rsplit(":", 1)[1])
        body = json.dumps(CHAIN_ID).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body))
            status, headers, rest, took = drip(s, body)
        assert status == 408 and headers.get("connection") == "close"
        err = json.loads(rest)
        assert err["type"] == "BodyTimeout" and "http_body_timeout_s" in err["fix"]
        assert 1.5 < took < 4, f"408 after {took:.1f} s, deadline 2 s"
        still_serving(server.url)
    finally:
        server.stop()
        chain.close()
