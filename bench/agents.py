"""Agent tool network benchmark.

1. Latency of one tool call through proofmesh (x402 `voucher` scheme: discovery cached,
   a signed cumulative voucher attached, verified with libsecp256k1 by the provider,
   a signed receipt checked by the agent) vs a plain MCP call to the same function
   served by the official SDK's ``MCPServer`` — same transport (streamable HTTP on
   127.0.0.1), same process, interleaved rounds, medians.
2. The `exact` scheme (an EIP-3009 transfer executed on chain per call), separately.
3. Gas per settled call when 1,000 voucher-paid calls settle in one redeem (+ one
   usage report) vs one `settle_exact` transaction per call.

Run: python bench/agents.py [--calls 1000] [--rounds 10] [--exact 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

E = 10**18


def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


def _plain_server(port: int):
    import uvicorn
    from mcp.server.mcpserver import MCPServer
    srv = MCPServer("plain", log_level="WARNING")
    srv.add_tool(word_count)
    app = srv.streamable_http_app(json_response=True)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.01)
    return server, th


def _network(path: Path):
    """A fresh embedded chain with everything deployed; a staked tool provider and a staked agent."""
    from proofmesh.chain.client import Chain
    from proofmesh.chain.core import Registry, Token
    from proofmesh.chain.deploy import ROLES, deploy_all
    from proofmesh.chain.embedded import dev_accounts
    from proofmesh.config import Home

    home = Home.resolve(path)
    home.init()
    accts = dev_accounts()
    chain = Chain.connect(home, accts[0])
    deploy_all(chain)
    out = []
    for acct, role in ((accts[1], ROLES["tools"]), (accts[2], ROLES["data"]), (accts[3], ROLES["tools"])):
        Token(chain).transfer(acct.address, 100_000 * E)
        c = chain.with_account(acct)
        Registry(c).register("http://127.0.0.1", role)
        Registry(c).stake(1_000 * E)
        out.append(c)
    return out[0], out[1], out[2]


def _gas_since(chain, block: int) -> list[tuple[str, int]]:
    out = []
    for n in range(block + 1, chain.w3.eth.block_number + 1):
        for tx in chain.w3.eth.get_block(n, full_transactions=True).transactions:
            rcpt = chain.w3.eth.get_transaction_receipt(tx["hash"])
            out.append((tx["input"][:4].hex() if isinstance(tx["input"], bytes) else str(tx["input"])[:10],
                        rcpt["gasUsed"]))
    return out


async def _bench_latency(client, mem_client, provider: str, mem_provider: str, mcp_url: str, calls: int,
                         rounds: int, args: dict):
    from mcp import Client
    plain: list[float] = []
    paid: list[float] = []
    mem: list[float] = []
    cpu = {"plain": 0.0, "paid": 0.0, "mem": 0.0}
    async with Client(mcp_url) as plain_client:
        await plain_client.call_tool("word_count", args)
        # warm: discovery, connection, channel
        await client.call("word_count", args, provider=provider)
        await mem_client.call("word_count", args, provider=mem_provider)
        per_round = max(1, calls // rounds)
        for _ in range(rounds):
            c0 = time.process_time()
            for _ in range(per_round):
                t = time.perf_counter()
                r = await plain_client.call_tool("word_count", args)
                plain.append(time.perf_counter() - t)
            cpu["plain"] += time.process_time() - c0
            assert r.structured_content["result"] == 3
            c0 = time.process_time()
            for _ in range(per_round):
                t = time.perf_counter()
                res = await client.call("word_count", args, provider=provider)
                paid.append(time.perf_counter() - t)
            cpu["paid"] += time.process_time() - c0
            assert res.result == 3
            c0 = time.process_time()
            for _ in range(per_round):
                t = time.perf_counter()
                res = await mem_client.call("word_count", args, provider=mem_provider)
                mem.append(time.perf_counter() - t)
            cpu["mem"] += time.process_time() - c0
            assert res.result == 3
        # close the MCP sessions in reverse order of opening, inside this task's cancel scopes
        await mem_client.aclose()
        await client.aclose()
    return plain, paid, mem, {k: v / len(plain) for k, v in cpu.items()}


def main() -> None:
    import logging
    logging.getLogger("httpx").setLevel(logging.WARNING)
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1000, help="voucher-paid calls (and plain calls)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--exact", type=int, default=20, help="exact-scheme calls")
    ns = ap.parse_args()

    from proofmesh.agents.client import AgentClient
    from proofmesh.agents.provider import ToolProvider, free_port
    from proofmesh.agents.schema import tool_from_function
    provider_chain, agent_chain, mem_provider_chain = _network(Path(tempfile.mkdtemp(prefix="pm-bench-agents-")))
    state = Path(tempfile.mkdtemp(prefix="pm-bench-agents-state-"))
    provider = ToolProvider(provider_chain, [tool_from_function(word_count)], E // 100, state_dir=state / "p")
    provider.start()
    provider.publish()
    # The same stack with the payment books (voucher wallet/ledger, usage) kept in memory only:
    # isolates what durable bookkeeping on this disk costs from the protocol's own work.
    mem_provider = ToolProvider(mem_provider_chain, [tool_from_function(word_count)], E // 100, state_dir=None)
    mem_provider.start()
    mem_provider.publish()
    mem_client = AgentClient(agent_chain, state_dir=None, deposit=1000 * E)
    port = free_port()
    plain_server, plain_thread = _plain_server(port)
    client = AgentClient(agent_chain, state_dir=state / "a", deposit=1000 * E)
    args = {"text": "one two three"}
    try:
        plain, paid, mem, cpu = asyncio.run(_bench_latency(client, mem_client, provider.address, mem_provider.address,
                                                      f"http://127.0.0.1:{port}/mcp", ns.calls, ns.rounds, args))
        med_plain, med_paid = statistics.median(plain), statistics.median(paid)
        print(f"plain MCP call (SDK MCPServer)        median {med_plain * 1e3:7.3f} ms   "
              f"mean {statistics.mean(plain) * 1e3:7.3f} ms   n={len(plain)}")
        print(f"proofmesh call, voucher scheme        median {med_paid * 1e3:7.3f} ms   "
              f"mean {statistics.mean(paid) * 1e3:7.3f} ms   n={len(paid)}")
        med_mem = statistics.median(mem)
        print(f"proofmesh call, voucher, books in RAM median {med_mem * 1e3:7.3f} ms   "
              f"mean {statistics.mean(mem) * 1e3:7.3f} ms   n={len(mem)}")
        print(f"overhead per call (median), durable books   {(med_paid - med_plain) * 1e3:7.3f} ms   "
              f"(target <= 2 ms: {'met' if med_paid - med_plain <= 0.002 else 'NOT met'})")
        print(f"overhead per call (median), books in RAM    {(med_mem - med_plain) * 1e3:7.3f} ms   "
              f"(target <= 2 ms: {'met' if med_mem - med_plain <= 0.002 else 'NOT met'})")

        # CPU time of this process (client and server threads) per call: less sensitive than wall
        # time to other processes competing for the cores
        print(f"CPU per call: plain {cpu['plain'] * 1e3:.3f} ms, proofmesh durable {cpu['paid'] * 1e3:.3f} ms "
              f"(+{(cpu['paid'] - cpu['plain']) * 1e3:.3f}), proofmesh RAM books {cpu['mem'] * 1e3:.3f} ms "
              f"(+{(cpu['mem'] - cpu['plain']) * 1e3:.3f})")

        # exact: one on-chain transfer per call
        async def exact_calls():
            lat = []
            for _ in range(ns.exact):
                t = time.perf_counter()
                await client.call("word_count", args, scheme="exact", provider=provider.address)
                lat.append(time.perf_counter() - t)
            await client.aclose()
            return lat
        block = provider_chain.w3.eth.block_number
        lat_exact = asyncio.run(exact_calls())
        gas_exact = [g for _, g in _gas_since(provider_chain, block)]
        print(f"proofmesh call, exact scheme (EIP-3009 tx per call) "
              f"median {statistics.median(lat_exact) * 1e3:7.3f} ms   n={len(lat_exact)}")

        # settle everything paid by voucher in one redeem (+ one usage report)
        client.report_usage  # noqa: B018  (the provider reports usage when it settles)
        block = provider_chain.w3.eth.block_number
        settled = provider.settle()
        gas = _gas_since(provider_chain, block)
        n_voucher_calls = len(paid) + 1
        total = sum(g for _, g in gas)
        print(f"settle: {settled}")
        print(f"gas, voucher: {n_voucher_calls} calls settled by {len(gas)} tx = {total} gas "
              f"-> {total / n_voucher_calls:.1f} gas per call")
        print(f"gas, exact:   {statistics.mean(gas_exact):.0f} gas per call (one settle_exact tx each)")
        rec = provider.registry.get(provider.tools["word_count"].tool_id)
        print(f"reputation after settle: calls={rec.calls} payers={rec.payers} paid={rec.paid} score={rec.score}")
    finally:
        provider.stop()
        mem_provider.stop()
        plain_server.should_exit = True
        plain_thread.join(timeout=5)


if __name__ == "__main__":
    main()
