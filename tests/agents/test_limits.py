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


# --------------------------------------------------------------------------- a hostile provider
# The agent reads the answers of providers found on chain. The MCP SDK reads a JSON answer whole;
# AgentClient gives it an httpx2 client whose transport caps every answer (http_max_answer_mb),
# and the SDK's read_timeout_seconds (AgentClient timeout_s) bounds each request in all.
@pytest.mark.parametrize("mode", ["declared", "flood", "deep", "trickle"])
def test_an_agent_survives_a_hostile_provider_and_calls_a_good_one_next(net, hostile_peer, http_probe, mode):
    import asyncio
    import time

    from proofmesh.agents.client import ToolCallFailed
    from proofmesh.agents.registry import ToolRegistry

    good = net.provider(1)
    agent = net.agent(5, timeout_s=2.0, max_answer_bytes=4 * MB)
    record = agent.discover("word_count")[0]
    ToolRegistry(net.staked(2)).register("word_count", record.schema_cid, hostile_peer.url, PRICE,
                                         good.schemes_bits)
    bad = net.accounts[2].address
    assert any(t.provider.lower() == bad.lower() for t in agent.discover("word_count", refresh=True))
    hostile_peer.mode = mode

    async def go() -> None:
        try:
            t0 = time.monotonic()
            with pytest.raises(ToolCallFailed) as info:
                await agent.call("word_count", {"text": "a b c"}, provider=bad)
            took = time.monotonic() - t0
            # Each request is bounded by timeout_s, except the SDK's server/discover probe of a new
            # connection, whose timeout is fixed at 10 s (mcp.client.session.DISCOVER_TIMEOUT_SECONDS)
            bound = 10 + 3 * 2.0 + 2 if mode == "trickle" else 6
            assert took < bound, f"the call took {took:.1f} s against a {mode} provider"
            if mode in ("declared", "flood"):
                assert "over this client's cap of 4,194,304 bytes" in info.value.message, info.value.message
            res = await agent.call("word_count", {"text": "a b c"}, provider=good.account.address)
            assert res.result == 3
        finally:
            await agent.aclose()

    _, grew = http_probe.peak_rss_growth(os.getpid(), lambda: asyncio.run(go()))
    assert grew < 48 * MB, f"the agent held {grew / MB:.1f} MB of a {mode} answer"


def test_an_agent_raises_answer_too_large_for_a_tool_answer_over_the_cap(net):
    """A provider whose tool result is larger than the agent's cap: AnswerTooLarge, not a
    result held whole; the provider counts as failed and the agent goes on."""
    import asyncio

    from proofmesh.agents.client import ToolCallFailed

    from .conftest import shout

    net.provider(1, funcs=(word_count, shout))
    agent = net.agent(5, timeout_s=10.0, max_answer_bytes=64 * 1024)

    async def go() -> None:
        try:
            assert (await agent.call("shout", {"text": "ab", "times": 2})).result == "AB AB"
            with pytest.raises(ToolCallFailed, match="over this client's cap of 65,536 bytes"):
                await agent.call("shout", {"text": "ab", "times": 40_000})      # a 120 KB result
            assert (await agent.call("word_count", {"text": "a b"})).result == 2
            assert agent.usage_of(agent.discover("shout")[0].tool_id)["failures"] == 1
        finally:
            await agent.aclose()

    asyncio.run(go())
