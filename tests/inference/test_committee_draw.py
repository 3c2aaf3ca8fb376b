"""Dispute committees are drawn (Algorand-style self-selection from the opening block's
hash) and wrong or silent voters are penalised: real InferenceRegistry/InferenceDisputes
on the embedded py-evm chain. Receipts are signed by hand by bonded accounts (no servers:
the contracts only see signatures and values)."""

from __future__ import annotations

import os
import random

import pytest
from web3.logs import DISCARD

from proofmesh.chain.core import MESH, GovernanceClient, Token
from proofmesh.crypto.keccak import keccak256
from proofmesh.errors import ContractRevert
from proofmesh.inference.committee import drawn, penalise_wrong_voters, vote_on_dispute
from proofmesh.inference.receipt import Receipt
from proofmesh.inference.values import values_hash
from tests.inference.conftest import advance_to

HONEST = [1_500_000, -2_000_000, 7]
LIAR = [1_500_000, -2_000_000, 250_007]        # tolerance is 1,000 (1e-3 x 1e6)
NEITHER = [0, 0, 0]


def _set_committee(chain, reg, size: int, penalty_bps: int = 1_000) -> None:
    GovernanceClient(chain).apply_now(reg.c.functions.set_committee(size, penalty_bps))


def _open(network, honest, liar, disputer) -> int:
    """Two bonded nodes sign conflicting value receipts for one input; the disputer opens
    the dispute (commit, then reveal). Returns the dispute id."""
    reg = network.registry
    ih, nonce = os.urandom(32), int.from_bytes(os.urandom(8), "big")
    ra = Receipt(network.version, ih, values_hash(HONEST), nonce, 0).signed(honest, reg.domain)
    rb = Receipt(network.version, ih, values_hash(LIAR), nonce, 0).signed(liar, reg.domain)
    return reg.dispute(ra, HONEST, rb, LIAR, sender=disputer)


def _seed(chain, did: int, opened: int) -> bytes:
    return keccak256(bytes(chain.w3.eth.get_block(opened)["hash"]) + did.to_bytes(32, "big"))


def _open_cases(reg, node) -> int:
    return reg.chain.call(reg.c.functions.open_cases(node.address))


def test_only_drawn_nodes_vote_and_the_draw_is_the_contracts(network, accounts):
    chain, reg = network.chain, network.registry
    a, b, disputer, late = accounts[1], accounts[2], accounts[0], accounts[9]
    voters = accounts[3:9]
    for acct in (a, b, *voters):
        network.bond_node(acct)
    assert reg.total_bond() == 8 * reg.min_bond()
    # 8 equal bonds, 3 seats: each voter is drawn with probability 3/8; open disputes until
    # one draws some voters and not others (P(a dispute does not) < 7%)
    _set_committee(chain, reg, 3)
    for _ in range(30):
        did = _open(network, a, b, disputer)
        st = reg.dispute_state(did)
        seed = _seed(chain, did, st["opened"])
        # the client fixed the seed in the next block (draw): not left to the first vote
        assert st["bond_per_seat"] == reg.total_bond() // 3 and st["seed"] == seed
        picks = {v.address: reg.eligible(did, v.address) for v in voters}
        # the contract's draw is the documented formula (committee.drawn)
        assert picks == {v.address: drawn(seed, v.address, reg.min_bond(), st["bond_per_seat"]) for v in voters}
        if any(picks.values()) and not all(picks.values()):
            break
    else:
        pytest.fail("30 disputes drew all or none of 6 voters at p = 3/8")
    assert not reg.eligible(did, a.address) and not reg.eligible(did, b.address)     # parties never
    out = next(v for v in voters if not picks[v.address])
    chosen = next(v for v in voters if picks[v.address])
    with pytest.raises(ContractRevert, match="not drawn for this dispute's committee"):
        reg.commit_vote(did, HONEST, os.urandom(32), sender=out)
    # a node that is not drawn says so and commits nothing (before re-executing anything)
    assert vote_on_dispute(network.start_node(out).node, did, [[0.0] * 4]) == \
        {"committed": False, "eligible": False, "node": out.address}
    res = reg.commit_vote(did, HONEST, os.urandom(32), sender=chosen)
    assert not reg.disputes.events.CommitteeDrawn().process_receipt(res.receipt, errors=DISCARD)   # drawn once
    drawn_ev = chain.events("InferenceDisputes", "CommitteeDrawn", from_block=st["opened"],
                            argument_filters={"dispute": did})
    assert len(drawn_ev) == 1 and bytes(drawn_ev[0]["args"]["seed"]) == seed == reg.dispute_state(did)["seed"]
    assert reg.vote(did, chosen.address)["weight"] == reg.min_bond()
    # a node bonding once the seed is known cannot join: its bond is newer than the seed block
    network.bond_node(late)
    with pytest.raises(ContractRevert, match="bond posted after the dispute opened"):
        reg.commit_vote(did, HONEST, os.urandom(32), sender=late)
    assert not reg.eligible(did, late.address)
    # a dispute whose seed nobody stored (InferenceDisputes.draw, which the client's
    # registry.dispute calls, or a first vote) for 256 blocks can no longer be drawn (void)
    ih, nonce = os.urandom(32), int.from_bytes(os.urandom(8), "big")
    ra = Receipt(network.version, ih, values_hash(HONEST), nonce, 0).signed(a, reg.domain)
    rb = Receipt(network.version, ih, values_hash(LIAR), nonce, 0).signed(b, reg.domain)
    did2 = reg.reveal_dispute(ra, HONEST, rb, LIAR, reg.commit_dispute(ra, rb, sender=disputer), sender=disputer)
    opened = reg.dispute_state(did2)["opened"]
    while chain.block_number() <= opened + 256:
        chain.mine()
    assert not any(reg.eligible(did2, v.address) for v in voters)
    with pytest.raises(ContractRevert, match="committee not drawable"):
        reg.commit_vote(did2, HONEST, os.urandom(32), sender=chosen)
    # the draw parameters are governance's
    with pytest.raises(ContractRevert):
        chain.transact(reg.c.functions.set_committee(100, 0), sender=voters[0])
    with pytest.raises(ContractRevert, match="committee size is zero"):
        _set_committee(chain, reg, 0)


def test_committee_size_is_about_k_over_many_seeds():
    """200 seeded draws over 40 nodes of uneven bonds: the mean committee is k (16) within
    a bound ~7 standard errors wide; a node bonded a full seat is always drawn."""
    rng = random.Random(20261126)
    nodes = ["0x" + rng.randbytes(20).hex() for _ in range(40)]
    bonds = [rng.randint(100, 1_000) * MESH for _ in nodes]
    k = 16
    per_seat = sum(bonds) // k
    sizes = []
    for _ in range(200):
        seed = rng.randbytes(32)
        sizes.append(sum(drawn(seed, n, b, per_seat) for n, b in zip(nodes, bonds)))
    mean = sum(sizes) / len(sizes)
    assert 14 <= mean <= 18, mean
    assert min(sizes) < mean < max(sizes)                 # it is a draw, not a fixed set
    # weight matters: the 10 biggest bonds are drawn more often than the 10 smallest
    order = sorted(range(40), key=lambda i: bonds[i])
    seeds = [rng.randbytes(32) for _ in range(200)]
    def hits(idx):
        return sum(drawn(s, nodes[i], bonds[i], per_seat) for s in seeds for i in idx)
    assert hits(order[-10:]) > 2 * hits(order[:10])
    assert all(drawn(s, nodes[0], per_seat, per_seat) for s in seeds)


def test_vote_weight_is_frozen_at_commit(network, accounts):
    chain, reg = network.chain, network.registry
    a, b, voter, disputer = accounts[1], accounts[2], accounts[3], accounts[0]
    for acct in (a, b, voter):
        network.bond_node(acct)
    did = _open(network, a, b, disputer)
    salt = os.urandom(32)
    reg.commit_vote(did, HONEST, salt, sender=voter)
    frozen = reg.service_bond(voter.address)
    reg.post_bond(150 * MESH, sender=voter)                  # more stake behind the vote now...
    advance_to(chain, reg.dispute_state(did)["deadline"] + 1)
    assert reg.reveal_vote(did, HONEST, salt, sender=voter) == 1
    st = reg.dispute_state(did)
    assert st["weight_a"] == frozen == reg.vote(did, voter.address)["weight"]   # ...counts for nothing
    assert reg.service_bond(voter.address) == frozen + 150 * MESH


def test_wrong_and_silent_voters_are_penalised_into_the_winners_pool(network, accounts):
    chain, reg = network.chain, network.registry
    token = Token(chain)
    a, b, disputer = accounts[1], accounts[2], accounts[0]
    w1, w2, wrong, silent, neither = accounts[3:8]
    for acct in (a, b, w1, w2, wrong, silent, neither):
        network.bond_node(acct)
    assert reg.committee_params() == {"committee_size": 16, "voter_penalty_bps": 1_000}
    gas: dict[str, int] = {}
    did = _open(network, a, b, disputer)
    gas["dispute (reveal)"] = chain.w3.eth.get_transaction_receipt(
        chain.events("InferenceDisputes", "Disputed", from_block=reg.dispute_state(did)["opened"],
                     argument_filters={"dispute": did})[0]["transactionHash"])["gasUsed"]
    gas["draw"] = chain.w3.eth.get_transaction_receipt(
        chain.events("InferenceDisputes", "CommitteeDrawn", from_block=reg.dispute_state(did)["opened"],
                     argument_filters={"dispute": did})[0]["transactionHash"])["gasUsed"]
    salts = {x.address: os.urandom(32) for x in (w1, w2, wrong, silent, neither)}
    ballots = {w1.address: HONEST, w2.address: HONEST, wrong.address: LIAR, silent.address: HONEST,
               neither.address: NEITHER}
    for x in (w1, w2, wrong, silent, neither):                # k = 16 > 7 nodes: all are drawn
        assert reg.eligible(did, x.address)
        res = reg.commit_vote(did, ballots[x.address], salts[x.address], sender=x)
        gas.setdefault("commit_vote (first)", res.gas_used)
    gas["commit_vote"] = res.gas_used
    # the bond at risk is locked: a voter cannot withdraw it before the dispute is settled
    bond = reg.service_bond(wrong.address)
    reg.request_bond_withdrawal(sender=wrong)
    advance_to(chain, reg.bond_unlock_at(wrong.address) + 1)
    with pytest.raises(ContractRevert, match="open challenge or dispute"):
        reg.withdraw_bond(bond, sender=wrong)
    # (the delay outlasts the dispute windows; the vote is still open, so re-open one)
    did = _open(network, a, b, disputer)
    for x in (w1, w2, wrong, silent, neither):
        reg.commit_vote(did, ballots[x.address], salts[x.address], sender=x)
    assert all(_open_cases(reg, x) == 2 for x in (w1, w2, wrong, silent, neither))
    st = reg.dispute_state(did)
    advance_to(chain, st["deadline"] + 1)
    for x, kind in ((w1, "a"), (w2, "a"), (wrong, "b"), (neither, "neither")):   # `silent` never reveals
        res = reg.reveal_vote(did, ballots[x.address], salts[x.address], sender=x)
        gas[f"reveal_vote ({kind})"] = chain.w3.eth.get_block("latest")["gasUsed"]
    with pytest.raises(ContractRevert, match="no penalties in this dispute"):
        reg.penalise_voter(did, wrong.address, sender=disputer)          # not resolved yet
    with pytest.raises(ContractRevert, match="dispute not settled yet"):
        reg.release_voter(did, neither.address, sender=disputer)
    advance_to(chain, st["reveal_deadline"] + 1)
    assert reg.resolve_dispute(did, sender=disputer) == b.address
    assert reg.dispute_state(did)["winner"] == 1
    pool = chain.call(reg.disputes.functions.voter_reward(did))
    burn_bps = chain.call(chain.contract("NodeRegistry").functions.slash_burn_bps())
    assert set(reg.penalisable(did)) == {wrong.address, silent.address}
    for x in (w1, w2, neither):                            # winners and side 0: no penalty
        with pytest.raises(ContractRevert, match="revealed for the winning side or neither"):
            reg.penalise_voter(did, x.address, sender=accounts[8])

    # the wrong-side voter loses 10 % of its frozen weight; the unburned part joins the pool
    total_before, bond_before = reg.total_bond(), reg.service_bond(wrong.address)
    got = reg.penalise_voter(did, wrong.address, sender=accounts[8])     # anyone
    gas["penalise_voter"] = got["gas"]
    fine = reg.min_bond() // 10
    assert got["slashed"] == fine and got["to_pool"] == fine - fine * burn_bps // 10_000
    assert reg.service_bond(wrong.address) == bond_before - fine and reg.total_bond() == total_before - fine
    assert chain.call(reg.disputes.functions.voter_reward(did)) == pool + got["to_pool"]
    pool += got["to_pool"]
    with pytest.raises(ContractRevert, match="voter already settled"):
        reg.penalise_voter(did, wrong.address, sender=accounts[8])
    # a winner claims now, and again after the pool grows: nobody loses to the ordering
    first = reg.claim_vote_reward(did, sender=w1)
    assert first == pool // 2
    with pytest.raises(ContractRevert, match="already claimed"):
        reg.claim_vote_reward(did, sender=w1)
    with pytest.raises(ContractRevert, match="to be penalised"):
        reg.release_voter(did, silent.address, sender=silent)              # no escaping the penalty
    # the silent voter is penalised by the keeper duty (committee.penalise_wrong_voters)
    assert penalise_wrong_voters(reg, did, sender=accounts[8]) == [silent.address]
    assert penalise_wrong_voters(reg, did, sender=accounts[8]) == []
    assert reg.service_bond(silent.address) == reg.min_bond() - fine
    pool += fine - fine * burn_bps // 10_000
    assert chain.call(reg.disputes.functions.voter_reward(did)) == pool
    second = reg.claim_vote_reward(did, sender=w1)
    w2_paid = reg.claim_vote_reward(did, sender=w2)
    assert first + second == pool // 2 and w2_paid == pool // 2
    assert token.balance(reg.disputes.address) == pool - 2 * (pool // 2)   # rounding dust only
    # the side-0 voter is released (anyone may); winners were, by their claims
    for x in (w1, w2):
        with pytest.raises(ContractRevert, match="voter already settled"):
            reg.release_voter(did, x.address, sender=accounts[8])
    with pytest.raises(ContractRevert, match="voter already settled"):
        reg.release_voter(did, wrong.address, sender=accounts[8])         # penalised: settled
    reg.release_voter(did, neither.address, sender=accounts[8])
    assert reg.service_bond(neither.address) == reg.min_bond()
    with pytest.raises(ContractRevert, match="not a voter in this dispute"):
        reg.penalise_voter(did, accounts[9].address, sender=accounts[8])
    # the first dispute still holds every voter's bond; once it is void (no reveals), all
    # are released and the penalised voter can finally withdraw what is left
    first_did = did - 1
    advance_to(chain, reg.dispute_state(first_did)["reveal_deadline"] + 1)
    assert int(reg.resolve_dispute(first_did, sender=disputer), 16) == 0
    with pytest.raises(ContractRevert, match="no penalties in this dispute"):
        reg.penalise_voter(first_did, silent.address, sender=accounts[8])
    for x in (w1, w2, wrong, silent, neither):
        reg.release_voter(first_did, x.address, sender=accounts[8])
        assert _open_cases(reg, x) == 0
    left = reg.service_bond(wrong.address)
    reg.request_bond_withdrawal(sender=wrong)
    advance_to(chain, reg.bond_unlock_at(wrong.address) + 1)
    reg.withdraw_bond(left, sender=wrong)
    assert reg.service_bond(wrong.address) == 0
    print("\ngas:", {k: f"{v:,}" for k, v in gas.items()})


def test_a_tied_vote_is_void_and_penalises_nobody(network, accounts):
    chain, reg = network.chain, network.registry
    a, b, disputer, va, vb = accounts[1], accounts[2], accounts[0], accounts[3], accounts[4]
    for acct in (a, b, va, vb):
        network.bond_node(acct)
    did = _open(network, a, b, disputer)
    salts = {va.address: os.urandom(32), vb.address: os.urandom(32)}
    reg.commit_vote(did, HONEST, salts[va.address], sender=va)
    reg.commit_vote(did, LIAR, salts[vb.address], sender=vb)
    st = reg.dispute_state(did)
    advance_to(chain, st["deadline"] + 1)
    reg.reveal_vote(did, HONEST, salts[va.address], sender=va)
    reg.reveal_vote(did, LIAR, salts[vb.address], sender=vb)
    advance_to(chain, st["reveal_deadline"] + 1)
    assert int(reg.resolve_dispute(did, sender=disputer), 16) == 0
    assert reg.dispute_state(did)["state"] == 3 and reg.penalisable(did) == []
    for v in (va, vb):
        with pytest.raises(ContractRevert, match="no penalties in this dispute"):
            reg.penalise_voter(did, v.address, sender=disputer)
        reg.release_voter(did, v.address, sender=disputer)
        with pytest.raises(ContractRevert, match="voter already settled"):
            reg.release_voter(did, v.address, sender=disputer)
        assert reg.service_bond(v.address) == reg.min_bond() and _open_cases(reg, v) == 0


def test_node_duty_penalises_wrong_voters_then_claims_or_releases(network, accounts):
    """The daemon's committee_tick: a winning node penalises the silent voter (its penalty
    grows the pool) before claiming; a node that voted for neither side releases its bond."""
    from proofmesh.inference.committee import _vote_salt, committee_tick

    chain, reg = network.chain, network.registry
    a, b, disputer, silent = accounts[1], accounts[2], accounts[0], accounts[5]
    for acct in (a, b, silent):
        network.bond_node(acct)
    winner, neither = network.start_node(accounts[3]).node, network.start_node(accounts[4]).node
    did = _open(network, a, b, disputer)
    for node, values in ((winner, HONEST), (neither, NEITHER)):
        assert reg.eligible(did, node.address)
        node.ballots.commit(did, values)           # as vote_on_dispute keeps a re-execution's values
        reg.commit_vote(did, values, _vote_salt(node, did), sender=node.account)
    reg.commit_vote(did, HONEST, os.urandom(32), sender=silent)
    st = reg.dispute_state(did)
    advance_to(chain, st["deadline"] + 1)
    assert committee_tick(winner)["revealed"] == [did] and committee_tick(neither)["revealed"] == [did]
    advance_to(chain, st["reveal_deadline"] + 1)
    assert reg.resolve_dispute(did, sender=disputer) == b.address
    pool = chain.call(reg.disputes.functions.voter_reward(did))
    done = committee_tick(winner)
    assert done["penalised"] == [(did, silent.address)] and done["claimed"] == [did]
    assert chain.call(reg.disputes.functions.voter_reward(did)) > pool        # the penalty joined it
    assert reg.vote(did, winner.address)["paid"] == chain.call(reg.disputes.functions.voter_reward(did))
    done = committee_tick(neither)
    assert done["released"] == [did] and done["penalised"] == [] and done["claimed"] == []
    for acct in (winner.account, neither.account, silent):
        assert _open_cases(reg, acct) == 0
    assert committee_tick(winner) == committee_tick(neither) == \
        {"revealed": [], "claimed": [], "penalised": [], "released": [], "defended": []}
