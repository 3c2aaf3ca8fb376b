"""Audit L4: ToolRegistry adjudicates disputes by proof and slashes the tool bond.

A fault is two receipts signed by the provider of a tool it declared deterministic, with
the same arguments and different results. Disputes are committed with a bond and revealed
in a later block. Attacks: a false dispute, a self-dispute through a sybil, a double dispute
on one receipt, an unrevealed commitment. And the settled-value cache that backs usage
reports covers every channel generation, not only the last 16."""

from __future__ import annotations

import pytest

from proofmesh.agents.receipts import Receipt, Usage
from proofmesh.agents.registry import ToolRegistry
from proofmesh.agents.schema import json_hash
from proofmesh.chain.core import MESH, Registry
from proofmesh.chain.deploy import ROLES
from proofmesh.errors import ContractRevert
from proofmesh.payments import PaymentChannels, Wallet

CID = "bafkreiaghnj2d3jtvv7iajdu2m5vuwmtnoh73e5tisfx3ec3u6ezywimte"
ARGS = {"text": "one two three"}


def _node(chain, acct, roles, stake=500 * MESH):
    c = chain.with_account(acct)
    reg = Registry(c)
    reg.register("http://127.0.0.1:1", roles)
    if stake:
        reg.stake(stake)
    return c


def _tool(chain, acct, name="wc", deterministic=True):
    p = _node(chain, acct, ROLES["tools"])
    reg = ToolRegistry(p)
    tid = reg.register(name, CID, "http://x/mcp", 10, 3 | (4 if deterministic else 0), sender=acct)
    return reg, tid


def _receipt(reg, tid, signer, payer, result, nonce, args=ARGS):
    return Receipt(tid, json_hash(args), json_hash(result), payer.address, 10, nonce).signed(signer, reg.domain)


def _balance(chain, addr):
    return chain.call(chain.contract("MeshToken").functions.balanceOf(addr))


def _dispute(chain, acct, a, b):
    reg = ToolRegistry(chain.with_account(acct))
    salt = reg.commit_dispute(a, b, sender=acct)
    return reg.prove_fault(a, b, salt, sender=acct)


def _last(chain, event):
    return chain.events("ToolRegistry", event, from_block=0)[-1]["args"]


def test_inconsistent_receipts_of_a_deterministic_tool_slash_its_bond(chain, accounts):
    reg, tid = _tool(chain, accounts[1])
    nr = chain.contract("NodeRegistry")
    bond = chain.call(reg.contract.functions.tool_bond())
    burn_bps = chain.call(nr.functions.slash_burn_bps())
    payer = accounts[5]
    stake_before = chain.call(nr.functions.stake_of(accounts[1].address))
    bal_before = _balance(chain, payer.address)
    a = _receipt(reg, tid, accounts[1], payer, 3, 1)
    b = _receipt(reg, tid, accounts[1], payer, 4, 2)     # same arguments, another result
    assert _dispute(chain, payer, a, b) is True
    bounty = bond - bond * burn_bps // 10_000
    ev = _last(chain, "FaultProven")
    assert (ev["slashed"], ev["bounty"], ev["disputer"]) == (bond, bounty, payer.address)
    assert _balance(chain, payer.address) == bal_before + bounty          # dispute bond back + bounty
    assert chain.call(nr.functions.stake_of(accounts[1].address)) == stake_before - bond
    assert chain.call(nr.functions.bonded_by(reg.address, accounts[1].address)) == 0
    rec = reg.get(tid)
    assert not rec.active and rec.disputes == 1 and rec.deterministic
    assert reg.search(name="wc") == []


def test_the_deterministic_promise_cannot_be_dropped_to_dodge_a_proof(chain, accounts):
    reg, tid = _tool(chain, accounts[1])
    with pytest.raises(ContractRevert, match="deterministic flag is fixed"):
        reg.update(tid, CID, "http://x/mcp", 10, 3, sender=accounts[1])
    _, loose = _tool(chain, accounts[2], name="llm", deterministic=False)
    with pytest.raises(ContractRevert, match="deterministic flag is fixed"):
        ToolRegistry(chain.with_account(accounts[2])).update(loose, CID, "http://x/mcp", 10, 7, sender=accounts[2])
    reg.update(tid, CID, "http://moved/mcp", 12, 2 | 4, sender=accounts[1])     # everything else may change
    assert reg.get(tid).endpoint == "http://moved/mcp" and reg.get(tid).deterministic


def test_false_disputes_burn_the_disputer_bond(chain, accounts):
    reg, tid = _tool(chain, accounts[1])
    _, loose = _tool(chain, accounts[2], name="llm", deterministic=False)
    lreg = ToolRegistry(chain.with_account(accounts[2]))
    token = chain.contract("MeshToken")
    dbond = chain.call(reg.contract.functions.dispute_bond())
    nr = chain.contract("NodeRegistry")
    payer = accounts[5]
    cases = [
        # same arguments, same result: consistent
        (_receipt(reg, tid, accounts[1], payer, 3, 1), _receipt(reg, tid, accounts[1], payer, 3, 2),
         "receipts do not conflict"),
        # different arguments, different results: nothing wrong either
        (_receipt(reg, tid, accounts[1], payer, 3, 1), _receipt(reg, tid, accounts[1], payer, 2, 3, {"text": "a b"}),
         "receipts do not conflict"),
        # a receipt the provider never signed
        (_receipt(reg, tid, accounts[1], payer, 3, 1), _receipt(reg, tid, accounts[6], payer, 4, 2),
         "receipt not signed by provider"),
        # a tool its provider did not declare deterministic: different results are allowed
        (_receipt(lreg, loose, accounts[2], payer, "x", 1), _receipt(lreg, loose, accounts[2], payer, "y", 2),
         "tool not deterministic"),
    ]
    for a, b, reason in cases:
        bal, supply = _balance(chain, payer.address), chain.call(token.functions.totalSupply())
        assert _dispute(chain, payer, a, b) is False
        assert _last(chain, "DisputeRejected")["reason"] == reason
        assert _balance(chain, payer.address) == bal - dbond                     # the bond is lost ...
        assert chain.call(token.functions.totalSupply()) == supply - dbond       # ... burned, nobody gets it
    for provider in (accounts[1], accounts[2]):
        assert chain.call(nr.functions.bonded_by(reg.address, provider.address)) > 0
    assert reg.get(tid).active and reg.get(tid).disputes == 0


def test_self_dispute_through_a_sybil_loses_money(chain, accounts):
    provider, sybil = accounts[1], accounts[6]
    reg, tid = _tool(chain, provider)
    nr = chain.contract("NodeRegistry")
    bond = chain.call(reg.contract.functions.tool_bond())
    burn_bps = chain.call(nr.functions.slash_burn_bps())

    def wealth():
        return (chain.call(nr.functions.stake_of(provider.address)) + _balance(chain, provider.address)
                + _balance(chain, sybil.address))
    before = wealth()
    # the provider signs two conflicting receipts itself and lets its sybil collect the bounty
    assert _dispute(chain, sybil, _receipt(reg, tid, provider, sybil, 3, 1), _receipt(reg, tid, provider, sybil, 4, 2))
    assert wealth() == before - bond * burn_bps // 10_000 < before


def test_one_receipt_backs_one_proven_fault(chain, accounts):
    reg, tid = _tool(chain, accounts[1])
    payer, other = accounts[5], accounts[7]
    a = _receipt(reg, tid, accounts[1], payer, 3, 1)
    b = _receipt(reg, tid, accounts[1], payer, 4, 2)
    c = _receipt(reg, tid, accounts[1], payer, 5, 3)
    assert _dispute(chain, payer, a, b)
    bal = _balance(chain, other.address)
    for x, y in ((a, b), (b, a), (a, c)):       # the same evidence again, reversed, or reused with a new receipt
        assert _dispute(chain, other, x, y) is False
        assert _last(chain, "DisputeRejected")["reason"] == "receipt already used"
    assert _balance(chain, other.address) == bal                     # refunded, no bounty
    assert reg.get(tid).disputes == 1
    # a revealed commitment cannot be revealed twice
    oreg = ToolRegistry(chain.with_account(payer))
    salt = oreg.commit_dispute(a, c, sender=payer)
    oreg.prove_fault(a, c, salt, sender=payer)
    with pytest.raises(ContractRevert, match="no such commitment"):
        oreg.prove_fault(a, c, salt, sender=payer)


def test_commitments_hide_the_proof_and_unrevealed_ones_are_burned(chain, accounts):
    reg, tid = _tool(chain, accounts[1])
    payer, thief = accounts[5], accounts[8]
    a = _receipt(reg, tid, accounts[1], payer, 3, 1)
    b = _receipt(reg, tid, accounts[1], payer, 4, 2)
    preg = ToolRegistry(chain.with_account(payer))
    salt = preg.commit_dispute(a, b, sender=payer)
    # someone who learns the proof cannot reveal the payer's commitment as their own
    with pytest.raises(ContractRevert, match="no such commitment"):
        ToolRegistry(chain.with_account(thief)).prove_fault(a, b, salt, sender=thief)
    commitment = chain.call(reg.contract.functions.dispute_commitment(
        payer.address, tid, a.digest(reg.domain), b.digest(reg.domain), salt))
    with pytest.raises(ContractRevert, match="reveal period open"):
        reg.expire_dispute(commitment)
    chain.increase_time(86_400 + 1)
    supply = chain.call(chain.contract("MeshToken").functions.totalSupply())
    reg.expire_dispute(commitment)
    assert _last(chain, "DisputeRejected")["reason"] == "not revealed"
    dbond = chain.call(reg.contract.functions.dispute_bond())
    assert chain.call(chain.contract("MeshToken").functions.totalSupply()) == supply - dbond
    with pytest.raises(ContractRevert, match="no such commitment"):
        preg.prove_fault(a, b, salt, sender=payer)


def test_retired_tool_bond_stays_slashable_for_the_window(chain, accounts):
    reg, tid = _tool(chain, accounts[1])
    nr = chain.contract("NodeRegistry")
    reg.retire(tid, sender=accounts[1])
    with pytest.raises(ContractRevert, match="dispute window open"):
        reg.release_bond(tid, sender=accounts[1])
    payer = accounts[5]
    assert _dispute(chain, payer, _receipt(reg, tid, accounts[1], payer, 3, 1),
                    _receipt(reg, tid, accounts[1], payer, 4, 2))
    assert chain.call(nr.functions.bonded_by(reg.address, accounts[1].address)) == 0
    chain.increase_time(chain.call(reg.contract.functions.dispute_window()) + 1)
    with pytest.raises(ContractRevert, match="no bond"):
        reg.release_bond(tid, sender=accounts[1])


def test_settled_value_counts_every_channel_generation(chain, accounts):
    provider, payer = accounts[1], accounts[5]
    reg, tid = _tool(chain, provider)
    _node(chain, payer, ROLES["data"])
    pchain = chain.with_account(payer)
    pc = PaymentChannels(pchain)
    wallet = Wallet(pc, payer)
    ppc = PaymentChannels(chain.with_account(provider))
    generations = 18                         # more than the 16 the registry used to look back
    for _ in range(generations):
        cid = wallet.ensure_channel(provider.address, 100)
        ppc.redeem(wallet.pay(provider.address, 10), sender=provider)
        pc.request_withdrawal(cid, sender=payer)
        chain.increase_time(pc.withdraw_delay() + 1)
        pc.withdraw(cid, sender=payer)
    assert reg.settled_total(payer.address, provider.address) == 10 * generations
    usage = Usage(tid, payer.address, generations, 0, 10 * generations, 1).signed(payer, reg.domain)
    reg.report_usage(usage)
    rec = reg.get(tid)
    assert (rec.calls, rec.paid, rec.payers) == (generations, 10 * generations, 1)
