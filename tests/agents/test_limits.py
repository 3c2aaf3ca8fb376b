"""Request limits of a tool provider's MCP server (real uvicorn on 127.0.0.1): a body over the
limit gets 413 whether declared or streamed, without the provider holding it; a '[[[[' flood is
a JSON-RPC parse error (400), not a 500; the provider keeps serving; a request just under the
limit is answered."""

from __future__ import annotations

import json
import os
from typing import Iterator

import httpx
import pytest

from proofmesh.agents.provider import ToolProvider
from proofmesh.agents.schema import tool_from_function
from proofmesh.http_limits import MB, HttpLimits

from .conftest import PRICE, word_count

LIMIT = 4 * MB
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "limits-test", "version": "0"}}}


@pytest.fixture
def provider(chain, accounts, tmp_path) -> Iterator[ToolProvider]:
    p = ToolProvider(chain.with_account(accounts[1]), [tool_from_function(word_count)], PRICE,
                     state_dir=tmp_path / "provider", limits=HttpLimits(max_body_bytes=LIMIT, max_connections=32))
    p.start()
    try:
        yield p
    finally:
        p.stop()


def still_serving(p: ToolProvider) -> None:
    r = httpx.post(p.endpoint, json=INITIALIZE, headers=MCP_HEADERS)
    assert r.status_code == 200 and r.json()["result"]["serverInfo"]["name"] == "proofmesh-tools"


def test_the_chains_home_sets_the_default_limits(chain, accounts, tmp_path):
    chain.home.settings.http_max_body_mb = 5
    p = ToolProvider(chain.with_account(accounts[1]), [tool_from_function(word_count)], PRICE,
                     state_dir=tmp_path / "p")
    try:
        assert p.limits.max_body_bytes == 5 * MB and p.limits.max_connections == chain.home.settings.http_max_connections
    finally:
        p.close()


def test_a_declared_body_over_the_limit_gets_413(provider, http_probe):
    status, _, body = http_probe(provider.endpoint).declared("", 400 * MB)
    err = json.loads(body)
    assert status == 413 and err["type"] == "BodyTooLarge" and "PROOFMESH_HTTP_MAX_BODY_MB" in err["fix"]
    still_serving(provider)


def test_a_streamed_body_over_the_limit_gets_413_and_is_not_held(provider, http_probe):
    probe = http_probe(provider.endpoint)
    (status, _, body, _), grew = probe.peak_rss_growth(os.getpid(), lambda: probe.chunked("", 3 * LIMIT))
    assert status == 413 and json.loads(body)["type"] == "BodyTooLarge"
    assert grew < 3 * LIMIT, f"the provider held {grew / MB:.1f} MB of a {3 * LIMIT / MB:.0f} MB body"
    still_serving(provider)


def test_a_nested_json_flood_is_a_parse_error_not_a_crash(provider):
    for body in (b"[" * MB, b"{broken"):
        r = httpx.post(provider.endpoint, content=body, headers=MCP_HEADERS)
        assert r.status_code == 400 and r.json()["error"]["code"] == -32700
    still_serving(provider)


def test_a_request_just_under_the_limit_is_answered(provider):
    body = json.dumps(INITIALIZE).encode()
    body += b" " * (LIMIT - 1 - len(body))
    r = httpx.post(provider.endpoint, content=body, headers=MCP_HEADERS)
    assert r.status_code == 200 and r.json()["id"] == 1
