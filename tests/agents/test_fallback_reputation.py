"""Fallback across providers of the same tool, and reputation that moves with outcomes
but cannot be bought by paying yourself."""

from __future__ import annotations

import asyncio

import pytest

from proofmesh.agents.client import ToolCallFailed
from proofmesh.chain.core import MESH

from .conftest import PRICE, flaky, word_count


def run(coro):
    return asyncio.run(coro)


def test_fallback_to_another_provider_when_one_is_offline(net):
    p1 = net.provider(1)
    p2 = net.provider(2)
    agent = net.agent(5)
    ranked = agent.discover("word_count")
    assert {t.provider for t in ranked} == {p1.address, p2.address}
    first = ranked[0].provider
    dead = p1 if first == p1.address else p2
    alive = p2 if dead is p1 else p1
    dead.stop()
    res = agent.call_sync("word_count", {"text": "still works"})
    assert res.result == 2 and res.provider == alive.address
    assert len(res.failed_providers) == 1 and dead.address in res.failed_providers[0]
    assert agent.usage_of(ranked[0].tool_id)["failures"] == 1
    # every provider down: one clear error naming each failure
    alive.stop()
    with pytest.raises(ToolCallFailed, match="every provider of 'word_count' failed"):
        agent.call_sync("word_count", {"text": "x"})


def test_tool_error_counts_as_failure_and_falls_back(net):
    p1 = net.provider(1, funcs=(flaky,))
    agent = net.agent(5)
    assert agent.call_sync("flaky", {"x": 2}).result == 4
    with pytest.raises(ToolCallFailed, match="negative input"):
        agent.call_sync("flaky", {"x": -1})
    tid = p1.tools["flaky"].tool_id
    assert agent.usage_of(tid)["failures"] == 1 and agent.usage_of(tid)["calls"] == 1
    assert p1.stats.failed == 1


def test_reputation_changes_with_outcomes_and_ranks_discovery(net):
    good = net.provider(1, funcs=(word_count,))
    other = net.provider(2, funcs=(word_count,))
    agents = [net.agent(i) for i in (5, 6)]

    async def use(agent, provider, n):
        for _ in range(n):
            await agent.call("word_count", {"text": "a b"}, provider=provider.address)
        await agent.aclose()
    for a in agents:
        run(use(a, good, 2))
    run(use(agents[0], other, 2))
    for p in (good, other):
        p.settle()
    for a in agents:
        a.report_usage()          # the last call of each agent is reported by the agent itself
    g = good.registry.get(good.tools["word_count"].tool_id)
    o = other.registry.get(other.tools["word_count"].tool_id)
    assert (g.calls, g.payers, g.paid) == (4, 2, 4 * PRICE)
    assert (o.calls, o.payers, o.paid) == (2, 1, 2 * PRICE)
    assert g.score > o.score > 0
    fresh = net.agent(8)
    assert [t.provider for t in fresh.discover("word_count")] == [good.address, other.address]
    # failures lower the score
    before = g.score
    bad = net.provider(3, funcs=(flaky,))
    a = agents[1]
    assert a.call_sync("flaky", {"x": 1}).result == 2
    with pytest.raises(ToolCallFailed):
        a.call_sync("flaky", {"x": -5})
    bad.settle()
    a.report_usage()
    f = bad.registry.get(bad.tools["flaky"].tool_id)
    assert (f.calls, f.failures) == (1, 1)
    # the failed call was paid by voucher too; the score halves with one failure in two calls
    assert f.paid == 2 * PRICE and f.score == PRICE
    assert good.registry.get(good.tools["word_count"].tool_id).score == before


def test_unstaked_payers_and_self_payment_do_not_buy_rank(net):
    p = net.provider(1)
    unstaked = net.agent(5, staked=False)
    res = unstaked.call_sync("word_count", {"text": "a"})
    assert res.result == 1                  # unstaked agents are served ...
    p.settle()
    unstaked.report_usage()
    rec = p.registry.get(p.tools["word_count"].tool_id)
    assert (rec.calls, rec.payers, rec.score) == (0, 0, 0)   # ... but do not count for reputation


def test_discovery_skips_providers_that_unstaked(net):
    p1 = net.provider(1)
    p2 = net.provider(2)
    from proofmesh.chain.core import Registry
    reg = Registry(p1.chain)
    free = reg.info(p1.address).free_stake
    reg.request_unstake(free, sender=p1.account)        # below the minimum stake: no longer active
    agent = net.agent(5)
    assert [t.provider for t in agent.discover("word_count")] == [p2.address]
    assert agent.call_sync("word_count", {"text": "a b"}).provider == p2.address
