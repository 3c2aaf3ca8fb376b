"""Demo step: a provider publishes paid MCP tools, an agent discovers them on chain,
pays per call (voucher channel and one EIP-3009 `exact` payment), checks every receipt,
chains two tools, and the provider settles all voucher calls in one transaction."""

from __future__ import annotations

import asyncio

from proofmesh.agents.client import AgentClient
from proofmesh.agents.provider import ToolProvider
from proofmesh.agents.schema import tool_from_function
from proofmesh.chain.core import MESH, Registry, Token, from_wei
from proofmesh.chain.deploy import ROLES

PRICE = MESH // 100   # 0.01 MESH per call


def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


def summarize(text: str, max_words: int = 5) -> str:
    """Keep the first max_words words of a text."""
    return " ".join(text.split()[:max_words])


def _ensure_node(chain, role: int, stake: int) -> None:
    reg = Registry(chain)
    me = chain.account.address
    info = reg.info(me)
    if not info.registered:
        reg.register("http://127.0.0.1", role)
    elif info.roles & role != role:
        reg.update(info.endpoint, info.roles | role)
    have = reg.info(me).stake
    if have < stake:
        reg.stake(stake - have)


async def _unpaid_call(url: str) -> str:
    from mcp import Client
    from mcp.shared.exceptions import MCPError
    async with Client(url) as c:
        try:
            await c.call_tool("word_count", {"text": "free lunch?"})
        except MCPError as exc:
            return f"{exc.code} {exc.message}"
    return "served (unexpected)"


def run(ctx) -> dict:
    from proofmesh.store.blobstore import BlobStore

    provider_chain = ctx.chain.with_account(ctx.actor(6))
    agent_chain = ctx.chain.with_account(ctx.actor(7))
    _ensure_node(provider_chain, ROLES["tools"], 500 * MESH)
    _ensure_node(agent_chain, ROLES["data"], 200 * MESH)
    token = Token(ctx.chain)
    provider = ToolProvider(provider_chain, [tool_from_function(word_count), tool_from_function(summarize)], PRICE,
                            state_dir=ctx.workdir / "agents" / "provider")
    provider.start()
    try:
        ids = provider.publish(BlobStore(ctx.home.store_dir))
        ctx.log(f"provider {provider.address} serves {', '.join(ids)} at {provider.endpoint} "
                f"for {from_wei(PRICE)} MESH per call (schemas stored by CID, tools on chain)")
        ctx.log(f"an unpaid MCP call is refused: {asyncio.run(_unpaid_call(provider.endpoint))[:70]}...")

        agent = AgentClient(agent_chain, state_dir=ctx.workdir / "agents" / "agent", deposit=MESH)
        before = token.balance(provider.address)

        async def session():
            try:
                results = [await agent.call("word_count", {"text": "paid per call " * (i + 1)}) for i in range(5)]
                flow = await agent.workflow([("summarize", {"text": "an agent chains two paid tools with a "
                                                                     "receipt for each step", "max_words": 6}),
                                             ("word_count", lambda done: {"text": done[-1].result})])
                exact = await agent.call("word_count", {"text": "one exact payment"}, scheme="exact")
                return results, flow, exact
            finally:
                await agent.aclose()
        results, flow, exact = asyncio.run(session())
        ctx.log(f"agent {agent.address}: 5 voucher-paid calls, receipts verified "
                f"(last result {results[-1].result}, {results[-1].latency_s * 1e3:.1f} ms)")
        ctx.log(f"workflow summarize -> word_count: {[s.result for s in flow.steps]}, "
                f"total cost {from_wei(flow.total_cost)} MESH")
        ctx.log(f"exact scheme: EIP-3009 transfer {exact.transaction[:18]}... settled before the result")
        settled = provider.settle()
        agent.report_usage()
        asyncio.run(agent.aclose())     # report_usage journaled its counters again: hand the file back
        rec = provider.registry.get(ids["word_count"])
        ctx.log(f"provider settled {from_wei(settled['redeemed'])} MESH of voucher calls in one redeem; "
                f"word_count reputation: {rec.calls} calls, {rec.payers} staked payer(s), score "
                f"{from_wei(rec.score)}")
        return {"provider": provider.address, "tools": len(ids), "voucher_calls": 7, "exact_calls": 1,
                "provider_earned_mesh": from_wei(token.balance(provider.address) - before),
                "reputation_calls": rec.calls, "reputation_score_mesh": from_wei(rec.score)}
    finally:
        provider.stop()
