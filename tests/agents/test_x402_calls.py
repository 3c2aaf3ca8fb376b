"""Paid MCP tool calls end to end: real MCP SDK client, real providers on 127.0.0.1,
real contracts on the embedded EVM."""

from __future__ import annotations

import asyncio

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from proofmesh.agents.receipts import Receipt
from proofmesh.agents.schema import json_hash
from proofmesh.agents.x402 import META_PAYMENT, META_RESPONSE, Requirement, payment_payload
from proofmesh.chain.core import MESH, Token
from proofmesh.payments import PaymentChannels, Voucher, sign_voucher

from .conftest import PRICE, shout, word_count


def run(coro):
    return asyncio.run(coro)


async def raw_call(url, name, args, payment=None):
    """A plain MCP SDK client call; the MCP error is raised outside the client's task group."""
    error = None
    async with Client(url) as c:
        meta = {META_PAYMENT: payment} if payment is not None else None
        try:
            return await c.call_tool(name, args, meta=meta)
        except MCPError as exc:
            error = exc
    raise error


def test_unpaid_call_is_refused_with_402_and_requirements(net):
    p = net.provider(1)
    with pytest.raises(MCPError) as err:
        run(raw_call(p.endpoint, "word_count", {"text": "a b"}))
    assert err.value.code == 402
    accepts = [Requirement.from_json(r) for r in err.value.data["accepts"]]
    assert {r.scheme for r in accepts} == {"voucher", "exact"}
    for r in accepts:
        assert r.amount == PRICE and r.pay_to == p.address and r.chain_id == net.chain.chain_id
        assert r.asset == p.token and r.registry == p.registry.address
    assert p.stats.served == 0 and p.stats.by_reason["unpaid"] == 1


def test_paid_voucher_call_returns_result_and_valid_receipt(net):
    p = net.provider(1)
    agent = net.agent(5)
    res = agent.call_sync("word_count", {"text": "one two three"})
    assert res.result == 3 and res.price == PRICE and res.scheme == "voucher"
    r = res.receipt
    assert r.signer(p.registry.domain) == p.address
    assert r.args_hash == json_hash({"text": "one two three"}) and r.result_hash == json_hash(3)
    assert r.payer == agent.address and r.payment == PRICE
    assert p.stats.served == 1


def _voucher_payment(net, p, agent_idx, cumulative, nonce, *, signer=None):
    pc = PaymentChannels(net.chain.with_account(net.accounts[agent_idx]))
    cid = pc.channel_id(net.accounts[agent_idx].address, p.address)
    v = sign_voucher(signer or net.accounts[agent_idx], pc.domain, Voucher(cid, cumulative, nonce))
    return payment_payload("voucher", net.chain.chain_id, {"voucher": v.to_json()}), v


def test_voucher_attacks_are_refused(net):
    p = net.provider(1)
    agent = net.agent(5, deposit=3 * PRICE)
    agent.call_sync("word_count", {"text": "x"})          # opens the channel; nonce 1, cumulative = PRICE
    url = p.endpoint

    def refused(payment, match):
        with pytest.raises(MCPError) as err:
            run(raw_call(url, "word_count", {"text": "y"}, payment))
        assert err.value.code == 402 and match in err.value.message, err.value.message

    # replay of an accepted voucher (same nonce, same amount)
    pay1, _ = _voucher_payment(net, p, 5, PRICE, 1)
    refused(pay1, "not above")
    # reordered: a later voucher first, then an older one
    pay3, _ = _voucher_payment(net, p, 5, 2 * PRICE, 3)
    assert run(raw_call(url, "word_count", {"text": "y"}, pay3)).structured_content["result"] == 1
    pay2, _ = _voucher_payment(net, p, 5, 3 * PRICE, 2)
    refused(pay2, "not above")
    # underpaying: cumulative does not cover what is owed + price
    under, _ = _voucher_payment(net, p, 5, 2 * PRICE + PRICE // 2, 4)
    refused(under, "does not cover")
    # overspending the deposit (3 * PRICE deposited)
    over, _ = _voucher_payment(net, p, 5, 4 * PRICE, 5)
    refused(over, "exceeds the channel deposit")
    # forged signer: a voucher for the agent's channel signed by someone else
    forged, _ = _voucher_payment(net, p, 5, 3 * PRICE, 6, signer=net.accounts[7])
    refused(forged, "not the channel's payer")
    # a voucher on a channel that pays another provider
    assert p.stats.served == 2
    assert p.ledger.owed(_voucher_payment(net, p, 5, 1, 1)[1].channel) == 2 * PRICE


def test_schema_mismatch_is_refused_before_payment(net):
    p = net.provider(1)
    agent = net.agent(5)
    agent.call_sync("word_count", {"text": "warm up"})
    pay, _ = _voucher_payment(net, p, 5, 2 * PRICE, 2)
    with pytest.raises(MCPError) as err:
        run(raw_call(p.endpoint, "word_count", {"text": 5}, pay))
    assert err.value.code == -32602 and "text" in err.value.message
    with pytest.raises(MCPError) as err:
        run(raw_call(p.endpoint, "word_count", {"txt": "a"}, pay))
    assert err.value.code == -32602
    # nothing was charged: the same voucher still pays for a valid call
    assert run(raw_call(p.endpoint, "word_count", {"text": "a b"}, pay)).structured_content["result"] == 2
    # the client refuses bad arguments locally, before signing anything
    from proofmesh.errors import InputError
    nonce_before = agent.wallet._books[p.address].nonce if hasattr(agent.wallet, "_books") else None
    with pytest.raises(InputError, match="text"):
        agent.call_sync("word_count", {"text": ["not", "a", "string"]})
    if nonce_before is not None:
        assert agent.wallet._books[p.address].nonce == nonce_before


def test_exact_scheme_executes_one_transfer_per_call(net):
    p = net.provider(1)
    agent = net.agent(5)
    token = Token(net.chain)
    before_p, before_a = token.balance(p.address), token.balance(agent.address)
    res = agent.call_sync("word_count", {"text": "a b c d"}, scheme="exact")
    assert res.result == 4 and res.transaction and res.transaction.startswith("0x")
    assert token.balance(p.address) - before_p == PRICE
    assert before_a - token.balance(agent.address) == PRICE
    assert p.registry.settled_total(agent.address, p.address) == PRICE


def test_exact_attacks_are_refused(net):
    from proofmesh.agents.x402 import Authorization
    p = net.provider(1)
    a = net.accounts[5]
    net.staked(5, 1)

    def pay(auth):
        return payment_payload("exact", net.chain.chain_id, auth.to_json())

    ok = Authorization.create(a, p.token_domain, p.address, PRICE)
    assert run(raw_call(p.endpoint, "word_count", {"text": "a"}, pay(ok))).structured_content["result"] == 1
    cases = [
        (ok, "did not settle"),                                                    # replayed authorization
        (Authorization.create(a, p.token_domain, p.address, PRICE - 1), "below the price"),
        (Authorization.create(a, p.token_domain, net.accounts[3].address, PRICE), "not this provider"),
        (Authorization.create(a, p.token_domain, p.address, PRICE, now=1_000), "validity window"),
    ]
    forged = Authorization.create(net.accounts[6], p.token_domain, p.address, PRICE)
    cases.append((Authorization(a.address, forged.to, forged.value, forged.valid_after, forged.valid_before,
                                forged.nonce, forged.signature), "not signed by"))
    for auth, match in cases:
        with pytest.raises(MCPError) as err:
            run(raw_call(p.endpoint, "word_count", {"text": "a"}, pay(auth)))
        assert err.value.code == 402 and match in err.value.message, err.value.message
    assert p.stats.served == 1
    assert p.registry.settled_total(a.address, p.address) == PRICE


def test_vouchers_settle_exactly_and_cannot_be_redeemed_twice(net):
    from proofmesh.errors import ContractRevert
    p = net.provider(1)
    agent = net.agent(5, deposit=MESH)
    token = Token(net.chain)
    before = token.balance(p.address)

    async def many():
        for i in range(7):
            await agent.call("word_count", {"text": "w " * i})
        await agent.aclose()
    run(many())
    settled = p.settle()
    assert settled["redeemed"] == 7 * PRICE
    assert token.balance(p.address) - before == 7 * PRICE
    pc = PaymentChannels(net.chain)
    cid = pc.channel_id(agent.address, p.address)
    st = pc.state(cid)
    assert st.paid == 7 * PRICE and st.deposit == MESH - 7 * PRICE
    assert p.settle()["redeemed"] == 0          # nothing new: no second redeem
    # redeeming the same (latest) voucher again directly on chain is refused
    best = p.ledger._books[cid].best
    with pytest.raises(ContractRevert, match="replayed or older"):
        PaymentChannels(p.chain).redeem(best, sender=p.account)


def test_multi_tool_workflow_has_a_receipt_per_step_and_total_cost(net):
    p1 = net.provider(1, funcs=(shout,), price=2 * PRICE)
    p2 = net.provider(2, funcs=(word_count,), price=PRICE)
    agent = net.agent(5)

    async def go():
        try:
            return await agent.workflow([
                ("shout", {"text": "hello proof mesh", "times": 2}),
                ("word_count", lambda done: {"text": done[-1].result}),
            ])
        finally:
            await agent.aclose()
    wf = run(go())
    assert [s.result for s in wf.steps] == ["HELLO PROOF MESH HELLO PROOF MESH", 6]
    assert [s.provider for s in wf.steps] == [p1.address, p2.address]
    assert wf.total_cost == 3 * PRICE
    assert all(isinstance(s.receipt, Receipt) for s in wf.steps)


def test_restarted_provider_still_refuses_replayed_vouchers_and_settles(net):
    from proofmesh.agents.provider import ToolProvider
    from proofmesh.agents.schema import tool_from_function
    p = net.provider(1)
    agent = net.agent(5)
    agent.call_sync("word_count", {"text": "a"})
    agent.call_sync("word_count", {"text": "a b"})
    replay, _ = _voucher_payment(net, p, 5, 2 * PRICE, 2)      # the last accepted voucher
    p.stop()
    again = ToolProvider(p.chain, [tool_from_function(word_count)], PRICE, state_dir=net.tmp / "provider1")
    again.start()
    net.providers.append(again)
    again.publish()                                            # same tool id, new endpoint
    with pytest.raises(MCPError) as err:
        run(raw_call(again.endpoint, "word_count", {"text": "y"}, replay))
    assert err.value.code == 402 and "not above" in err.value.message
    assert agent.call_sync("word_count", {"text": "a b c"}, ).result == 3   # rediscovers the new endpoint
    assert again.settle()["redeemed"] == 3 * PRICE
