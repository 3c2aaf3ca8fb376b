"""ToolRegistry contract: who may register, bonds, usage reports, wash trading (disputes: test_disputes.py)."""

from __future__ import annotations

import pytest

from proofmesh.agents.receipts import Usage
from proofmesh.agents.registry import ToolRegistry, tool_id_of
from proofmesh.agents.x402 import Authorization, token_domain
from proofmesh.chain.core import MESH, Registry
from proofmesh.chain.deploy import ROLES
from proofmesh.errors import ContractRevert

CID = "bafkreiaghnj2d3jtvv7iajdu2m5vuwmtnoh73e5tisfx3ec3u6ezywimte"


def _node(chain, acct, roles, stake=500 * MESH):
    c = chain.with_account(acct)
    reg = Registry(c)
    reg.register("http://127.0.0.1:1", roles)
    if stake:
        reg.stake(stake)
    return c


def _pay_exact(chain, payer, provider_chain, tool_id, amount):
    token = chain.contract("MeshToken").address
    auth = Authorization.create(payer, token_domain(chain.chain_id, token), provider_chain.account.address, amount,
                                now=chain.timestamp())
    ToolRegistry(provider_chain).settle_exact(tool_id, auth, sender=provider_chain.account)


def _usage(reg, tool_id, payer, calls, failures, paid, seq, signer=None):
    return Usage(tool_id, payer.address, calls, failures, paid, seq).signed(signer or payer, reg.domain)


def test_register_requires_staked_tool_provider_and_bonds(any_chain, accounts):
    chain = any_chain
    reg = ToolRegistry(chain)
    bond = chain.call(reg.contract.functions.tool_bond())
    not_provider = _node(chain, accounts[1], ROLES["data"])
    with pytest.raises(ContractRevert, match="not a tool provider"):
        ToolRegistry(not_provider).register("t", CID, "http://x/mcp", 1, 3, sender=accounts[1])
    unstaked = _node(chain, accounts[2], ROLES["tools"], stake=0)
    with pytest.raises(ContractRevert, match="provider not active"):
        ToolRegistry(unstaked).register("t", CID, "http://x/mcp", 1, 3, sender=accounts[2])
    p = _node(chain, accounts[3], ROLES["tools"])
    r = ToolRegistry(p)
    tid = r.register("t", CID, "http://x/mcp", 7, 3, sender=accounts[3])
    assert tid == tool_id_of(accounts[3].address, "t")
    nr = chain.contract("NodeRegistry")
    assert chain.call(nr.functions.bonded_by(reg.address, accounts[3].address)) == bond > 0
    rec = reg.get(tid)
    assert (rec.name, rec.price, rec.provider, rec.active) == ("t", 7, accounts[3].address, True)
    assert set(rec.schemes) == {"exact", "voucher"}
    with pytest.raises(ContractRevert, match="tool exists"):
        r.register("t", CID, "http://x/mcp", 7, 3, sender=accounts[3])
    with pytest.raises(ContractRevert, match="not the provider"):
        ToolRegistry(not_provider).update(tid, CID, "http://evil/mcp", 0, 3, sender=accounts[1])
    r.update(tid, CID, "http://y/mcp", 9, 1, sender=accounts[3])
    assert reg.get(tid).endpoint == "http://y/mcp" and reg.get(tid).schemes == ["exact"]
    r.retire(tid, sender=accounts[3])
    assert not reg.get(tid).active and reg.search(name="t") == []
    # the bond stays slashable for the dispute window, then anyone may release it
    with pytest.raises(ContractRevert, match="dispute window open"):
        r.release_bond(tid, sender=accounts[3])
    chain.increase_time(chain.call(reg.contract.functions.dispute_window()) + 1)
    r.release_bond(tid, sender=accounts[3])
    assert chain.call(nr.functions.bonded_by(reg.address, accounts[3].address)) == 0
    with pytest.raises(ContractRevert, match="no bond"):
        r.release_bond(tid, sender=accounts[3])
    with pytest.raises(ContractRevert, match="tool retired"):
        r.update(tid, CID, "http://y/mcp", 9, 1, sender=accounts[3])


def test_usage_reports_forged_replayed_backwards_or_unbacked_are_refused(chain, accounts):
    p = _node(chain, accounts[1], ROLES["tools"])
    payer = accounts[5]
    _node(chain, payer, ROLES["data"])
    reg = ToolRegistry(p)
    tid = reg.register("t", CID, "http://x/mcp", 10, 3, sender=accounts[1])
    _pay_exact(chain, payer, p, tid, 30)
    with pytest.raises(ContractRevert, match="bad usage signature"):
        reg.report_usage(_usage(reg, tid, payer, 3, 0, 30, 1, signer=accounts[6]))
    with pytest.raises(ContractRevert, match="paid exceeds settled"):
        reg.report_usage(_usage(reg, tid, payer, 3, 0, 31, 1))
    ok = _usage(reg, tid, payer, 3, 0, 30, 1)
    reg.report_usage(ok)
    with pytest.raises(ContractRevert, match="stale usage report"):
        reg.report_usage(ok)                                   # replay
    with pytest.raises(ContractRevert, match="went backwards"):
        reg.report_usage(_usage(reg, tid, payer, 2, 0, 30, 2))
    # a usage report signed for another chain id / contract recovers someone else
    other = Usage(tid, payer.address, 4, 0, 30, 3).signed(
        payer, type(reg.domain)("ToolRegistry", "1", 1, reg.address))
    with pytest.raises(ContractRevert, match="bad usage signature"):
        reg.report_usage(other)
    rec = reg.get(tid)
    assert (rec.calls, rec.failures, rec.paid, rec.payers, rec.score) == (3, 0, 30, 1, 30)


def test_wash_trading_is_capped_per_payer_and_self_payment_ignored(chain, accounts):
    reg0 = ToolRegistry(chain)
    cap = chain.call(reg0.contract.functions.payer_value_cap())
    washer = _node(chain, accounts[1], ROLES["tools"])
    honest = _node(chain, accounts[2], ROLES["tools"])
    wt = ToolRegistry(washer).register("wash", CID, "http://x/mcp", MESH, 3, sender=accounts[1])
    ht = ToolRegistry(honest).register("honest", CID, "http://y/mcp", MESH, 3, sender=accounts[2])
    # the washer pays itself (no count) and pumps 3x the cap through one staked sybil
    _pay_exact(chain, accounts[1], washer, wt, 5 * MESH)
    reg0.report_usage(_usage(reg0, wt, accounts[1], 5, 0, 5 * MESH, 1))
    sybil = accounts[5]
    _node(chain, sybil, ROLES["data"])
    _pay_exact(chain, sybil, washer, wt, 3 * cap)
    reg0.report_usage(_usage(reg0, wt, sybil, 300, 0, 3 * cap, 1))
    w = reg0.get(wt)
    assert w.payers == 1 and w.calls == 300 and w.score == cap       # self-payment ignored, sybil capped
    # three distinct staked payers paying 40% of the cap each outrank it
    for i in (6, 7, 8):
        _node(chain, accounts[i], ROLES["data"])
        _pay_exact(chain, accounts[i], honest, ht, cap * 2 // 5)
        reg0.report_usage(_usage(reg0, ht, accounts[i], 1, 0, cap * 2 // 5, 1))
    h = reg0.get(ht)
    assert h.payers == 3 and h.score == 3 * (cap * 2 // 5) > w.score
    assert [t.name for t in reg0.search()][:2] == ["honest", "wash"]


def test_only_provider_settles_exact_and_only_governance_sets_parameters(chain, accounts):
    p = _node(chain, accounts[1], ROLES["tools"])
    reg = ToolRegistry(p)
    tid = reg.register("t", CID, "http://x/mcp", 10, 3, sender=accounts[1])
    other = _node(chain, accounts[2], ROLES["tools"])
    token = chain.contract("MeshToken").address
    auth = Authorization.create(accounts[5], token_domain(chain.chain_id, token), accounts[1].address, 10,
                                now=chain.timestamp())
    with pytest.raises(ContractRevert, match="not the provider"):
        ToolRegistry(other).settle_exact(tid, auth, sender=accounts[2])
    low = Authorization.create(accounts[5], token_domain(chain.chain_id, token), accounts[1].address, 9,
                               now=chain.timestamp())
    with pytest.raises(ContractRevert, match="below price"):
        reg.settle_exact(tid, low, sender=accounts[1])
    with pytest.raises(ContractRevert):
        chain.transact(reg.contract.functions.set_parameters(accounts[0].address, 0, 0, 1), sender=accounts[0])


def test_payer_counts_once_it_stakes_and_only_for_new_value(chain, accounts):
    p = _node(chain, accounts[1], ROLES["tools"])
    payer = accounts[5]
    reg = ToolRegistry(p)
    tid = reg.register("t", CID, "http://x/mcp", 10, 3, sender=accounts[1])
    _pay_exact(chain, payer, p, tid, 50)
    reg.report_usage(_usage(reg, tid, payer, 2, 0, 20, 1))          # not staked yet: recorded, not counted
    assert (reg.get(tid).calls, reg.get(tid).payers) == (0, 0)
    _node(chain, payer, ROLES["data"])
    reg.report_usage(_usage(reg, tid, payer, 5, 0, 50, 2))          # staked now: only the increase counts
    rec = reg.get(tid)
    assert (rec.calls, rec.paid, rec.payers, rec.score) == (3, 30, 1, 30)
