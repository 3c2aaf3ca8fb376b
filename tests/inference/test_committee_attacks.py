"""Attacks on the drawn committee and voter penalties (review of session 6), on the real
InferenceRegistry/InferenceDisputes on the embedded py-evm chain: the seed lost after 256
blocks, a vote within tolerance of both receipts, and total_bond / reward-pool accounting
over a random sequence of bonds, withdrawals, disputes, penalties and claims."""

from __future__ import annotations

import os
import random

import pytest

from proofmesh.chain.core import MESH, Token
from proofmesh.errors import ContractRevert
from proofmesh.inference.receipt import Receipt
from proofmesh.inference.values import values_hash
from tests.inference.conftest import advance_to

HONEST = [1_500_000, -2_000_000, 7]
LIAR = [1_500_000, -2_000_000, 250_007]        # tolerance is 1,000 (1e-3 x 1e6)


def _receipts(network, signer_a, values_a, signer_b, values_b):
    reg = network.registry
    ih, nonce = os.urandom(32), int.from_bytes(os.urandom(8), "big")
    ra = Receipt(network.version, ih, values_hash(values_a), nonce, 0).signed(signer_a, reg.domain)
    rb = Receipt(network.version, ih, values_hash(values_b), nonce, 0).signed(signer_b, reg.domain)
    return ra, rb


def _open_cases(reg, acct) -> int:
    return reg.chain.call(reg.c.functions.open_cases(acct.address))


def test_a_dispute_opened_by_the_client_can_be_voted_on_after_256_blocks(network, accounts):
    """On a fast L2 (0.25-2 s blocks) 256 blocks are 1-8 minutes, less than a committee
    takes to re-execute a large model (the router asks its members one after another):
    the seed, stored only by the first commit_vote, was lost and the dispute ended void,
    its receipts spent for ever (the liar escaped). The client now fixes the seed in the
    block after the opening (InferenceRegistry.dispute -> InferenceDisputes.draw)."""
    chain, reg = network.chain, network.registry
    a, b, disputer, voter, keeper = accounts[1], accounts[2], accounts[0], accounts[3], accounts[8]
    for acct in (a, b, voter):
        network.bond_node(acct)
    ra, rb = _receipts(network, a, HONEST, b, LIAR)
    did = reg.dispute(ra, HONEST, rb, LIAR, sender=disputer)       # what Router.infer does
    st = reg.dispute_state(did)
    while chain.block_number() <= st["opened"] + 300:               # a slow committee, a fast chain
        chain.mine()
    salt = os.urandom(32)
    reg.commit_vote(did, HONEST, salt, sender=voter)                # was: "committee not drawable"
    assert reg.dispute_state(did)["seed"] == st["seed"] != bytes(32)   # drawn in the block after the opening
    advance_to(chain, st["deadline"] + 1)
    assert reg.reveal_vote(did, HONEST, salt, sender=voter) == 1
    advance_to(chain, st["reveal_deadline"] + 1)
    assert reg.resolve_dispute(did, sender=disputer) == b.address  # the liar pays
    assert reg.claim_vote_reward(did, sender=voter) > 0

    # anyone may draw (a keeper, or the honest node); the seed is the opening block's
    # whoever stores it, it is stored once, and a lost seed still ends void, releasing all
    ra, rb = _receipts(network, a, HONEST, b, LIAR)
    did = reg.reveal_dispute(ra, HONEST, rb, LIAR, reg.commit_dispute(ra, rb, sender=disputer), sender=disputer)
    assert reg.dispute_state(did)["seed"] == bytes(32)
    seed = reg.draw(did, sender=keeper)
    assert seed == reg.dispute_state(did)["seed"] != bytes(32)
    n = chain.block_number()
    assert reg.draw(did, sender=keeper) == seed and chain.block_number() == n    # no second transaction
    assert chain.call(reg.disputes.functions.draw(did)) == seed                    # idempotent on chain too
    ra, rb = _receipts(network, a, HONEST, b, LIAR)
    lost = reg.reveal_dispute(ra, HONEST, rb, LIAR, reg.commit_dispute(ra, rb, sender=disputer), sender=disputer)
    opened = reg.dispute_state(lost)["opened"]
    while chain.block_number() <= opened + 256:
        chain.mine()
    with pytest.raises(ContractRevert, match="committee not drawable"):
        reg.draw(lost, sender=keeper)
    with pytest.raises(ContractRevert, match="committee not drawable"):
        reg.commit_vote(lost, HONEST, os.urandom(32), sender=voter)
    advance_to(chain, reg.dispute_state(lost)["reveal_deadline"] + 1)
    assert int(reg.resolve_dispute(lost, sender=keeper), 16) == 0
    with pytest.raises(ContractRevert, match="dispute not open"):
        reg.draw(lost, sender=keeper)
    assert _open_cases(reg, voter) == 0 and _open_cases(reg, a) == 1 and _open_cases(reg, b) == 1   # `did` open


def test_a_vote_within_tolerance_of_both_receipts_counts_for_neither(network, accounts):
    """Both receipts within tolerance of the truth but more than tolerance apart (a: +900,
    b: -200, tolerance 1,000): neither node is wrong. Voters re-executing the truth are
    within tolerance of both; the contract counted them for a (checked first), so the
    disputer, who orders the receipts, got the *closer* node b slashed and every honest
    voter sided with a. Such a vote now counts for neither: the dispute ends void."""
    chain, reg = network.chain, network.registry
    a, b, disputer = accounts[1], accounts[2], accounts[0]
    voters = accounts[3:6]
    for acct in (a, b, *voters):
        network.bond_node(acct)
    truth = HONEST
    biased = [truth[0], truth[1], truth[2] + 900]
    close = [truth[0], truth[1], truth[2] - 200]
    ra, rb = _receipts(network, a, biased, b, close)
    did = reg.dispute(ra, biased, rb, close, sender=disputer)
    salts = {v.address: os.urandom(32) for v in voters}
    for v in voters:
        reg.commit_vote(did, truth, salts[v.address], sender=v)
    st = reg.dispute_state(did)
    advance_to(chain, st["deadline"] + 1)
    sides = [reg.reveal_vote(did, truth, salts[v.address], sender=v) for v in voters]
    bond_b = reg.service_bond(b.address)
    advance_to(chain, st["reveal_deadline"] + 1)
    loser = reg.resolve_dispute(did, sender=disputer)
    assert sides == [0, 0, 0]
    assert int(loser, 16) == 0 and reg.dispute_state(did)["state"] == 3
    assert reg.service_bond(b.address) == bond_b
    # a vote within tolerance of one side only still counts for it (b is the liar here)
    ra, rb = _receipts(network, a, close, b, LIAR)
    did = reg.dispute(ra, close, rb, LIAR, sender=disputer)
    for v in voters:
        reg.commit_vote(did, truth, salts[v.address], sender=v)
    st = reg.dispute_state(did)
    advance_to(chain, st["deadline"] + 1)
    assert [reg.reveal_vote(did, truth, salts[v.address], sender=v) for v in voters] == [1, 1, 1]


def test_bond_and_reward_books_stay_exact_over_random_operations(network, accounts):
    """Invariants after every step of a seeded random run of post_bond, withdraw_bond,
    disputes (opened, voted, resolved), penalise_voter, release_voter and
    claim_vote_reward: total_bond == the sum of service bonds == what NodeRegistry holds
    bonded for InferenceRegistry; no open case without an unsettled vote or open dispute
    behind it; the disputes contract holds exactly the pools minus the claims (claims
    never exceed a pool, whatever order penalties and claims come in)."""
    chain, reg = network.chain, network.registry
    token = Token(chain)
    nreg = chain.contract("NodeRegistry")
    rng = random.Random(20261126)
    disputer, nodes = accounts[0], accounts[1:9]
    for acct in nodes:
        network.bond_node(acct)
    pools_in: dict[int, int] = {}      # dispute -> what joined its pool
    claimed: dict[int, int] = {}
    votes: dict[int, dict[str, tuple]] = {}   # dispute -> voter -> (values, salt)
    disputes: list[int] = []
    penalised: list[int] = []
    base = token.balance(reg.disputes.address)

    def check(step: str) -> None:
        bonds = {x.address: reg.service_bond(x.address) for x in nodes}
        assert reg.total_bond() == sum(bonds.values()), step
        for x in nodes:
            assert chain.call(nreg.functions.bonded_by(reg.c.address, x.address)) == bonds[x.address], step
            expected = 0
            for d in disputes:
                s = reg.dispute_state(d)
                expected += s["state"] == 1 and x.address in (s["node_a"], s["node_b"])
                v = reg.vote(d, x.address)
                expected += v["committed"] and not v["settled"]
            assert _open_cases(reg, x) == expected, step
        for d in disputes:
            pool = chain.call(reg.disputes.functions.voter_reward(d))
            assert pool == pools_in.get(d, 0) and claimed.get(d, 0) <= pool, step
        assert token.balance(reg.disputes.address) - base == \
            sum(pools_in.values()) - sum(claimed.values()), step

    def open_dispute() -> None:
        a, b = rng.sample([x for x in nodes if reg.service_bond(x.address) > 0], 2)
        ra, rb = _receipts(network, a, HONEST, b, LIAR)
        did = reg.dispute(ra, HONEST, rb, LIAR, sender=disputer)
        disputes.append(did)
        votes[did] = {}
        for x in nodes:
            if x in (a, b) or not reg.eligible(did, x.address) or rng.random() < 0.2:
                continue
            values = rng.choice([HONEST, HONEST, HONEST, LIAR, [0, 0, 0]])
            salt = os.urandom(32)
            reg.commit_vote(did, values, salt, sender=x)
            votes[did][x.address] = (values, salt, x)

    def finish(did: int) -> None:
        st = reg.dispute_state(did)
        advance_to(chain, st["deadline"] + 1)
        if st["state"] == 1 and chain.timestamp() <= st["reveal_deadline"]:
            for values, salt, x in votes[did].values():
                if rng.random() < 0.8:                        # some stay silent
                    reg.reveal_vote(did, values, salt, sender=x)
        advance_to(chain, st["reveal_deadline"] + 1)
        if reg.dispute_state(did)["state"] == 1:
            reg.resolve_dispute(did, sender=disputer)
            pools_in[did] = chain.call(reg.disputes.functions.voter_reward(did))

    def settle_voters(did: int) -> None:
        order = list(votes[did].values())
        rng.shuffle(order)
        for _, _, x in order:                               # penalties and claims interleaved
            v = reg.vote(did, x.address)
            if v["settled"] and not (v["side"] and v["side"] == reg.dispute_state(did)["winner"]):
                continue
            if x.address in reg.penalisable(did):
                got = reg.penalise_voter(did, x.address, sender=disputer)
                penalised.append(got["slashed"])
                pools_in[did] += got["to_pool"]
                assert got["slashed"] <= v["weight"]
            elif v["side"] and v["side"] == reg.dispute_state(did)["winner"]:
                st = reg.dispute_state(did)
                total = st["weight_a"] if v["side"] == 1 else st["weight_b"]
                owed = chain.call(reg.disputes.functions.voter_reward(did)) * v["weight"] // total - v["paid"]
                if owed > 0:
                    claimed[did] = claimed.get(did, 0) + reg.claim_vote_reward(did, sender=x)
                elif not v["settled"]:
                    reg.release_voter(did, x.address, sender=disputer)
            else:
                reg.release_voter(did, x.address, sender=disputer)

    for step in range(24):
        op = rng.choice(["bond", "bond", "withdraw", "dispute", "dispute", "finish", "settle", "settle"])
        x = rng.choice(nodes)
        if op == "bond":
            free = chain.call(nreg.functions.free_stake(x.address))
            if free > 0:
                reg.post_bond(rng.randint(1, free), sender=x)
        elif op == "withdraw":
            if _open_cases(reg, x) == 0 and reg.service_bond(x.address) > 0:
                reg.request_bond_withdrawal(sender=x)
                advance_to(chain, reg.bond_unlock_at(x.address) + 1)
                # (the delay outlasts every dispute window: disputes resolve below)
                amount = rng.randint(1, reg.service_bond(x.address))
                reg.withdraw_bond(amount, sender=x)
                if reg.service_bond(x.address) < reg.min_bond():
                    reg.post_bond(reg.min_bond(), sender=x)
        elif op == "dispute":
            open_dispute()
        elif op == "finish" and disputes:
            finish(rng.choice(disputes))
        elif op == "settle" and disputes:
            did = rng.choice(disputes)
            finish(did)
            settle_voters(did)
        check(f"step {step}: {op}")
    for did in disputes:
        finish(did)
        settle_voters(did)
        settle_voters(did)                 # claims of penalties that came after a claim
    check("end")
    assert all(_open_cases(reg, x) == 0 for x in nodes)
    dust = token.balance(reg.disputes.address) - base
    assert 0 <= dust <= sum(len(v) for v in votes.values())            # rounding only
    assert any(pools_in.values()) and any(claimed.values()) and any(penalised)


def test_a_disputer_with_one_drawn_sybil_cannot_get_an_honest_node_slashed(network, accounts):
    """Review 6, R6-4. An attacker with two bonded nodes (liar L, sybil S) asks honest node A
    for an answer, has L sign a wrong one for the same input, and disputes the pair itself.
    The chain holds only the input's hash and committee members re-execute only what they
    are sent: the attacker sends the input to S alone, and S's one bond meets the quorum.
    The defence: A kept the input when it answered, and its duty loop (committee.defend, run
    by committee_tick) sends it to every drawn member; the honest members outvote S."""
    import numpy as np

    from proofmesh.inference import wire
    from proofmesh.inference.committee import committee_tick

    chain, reg = network.chain, network.registry
    honest, liar, sybil, attacker = accounts[1], accounts[2], accounts[3], accounts[0]
    a = network.start_node(honest)
    bystanders = [network.start_node(acct) for acct in accounts[4:7]]    # drawn, honest, never sent the input
    for acct in (liar, sybil):
        network.bond_node(acct)
    # the attacker's request to the honest node, and the liar's receipt for the same input
    x = np.random.default_rng(9).random((1, 4), dtype=np.float32)
    body = wire.encode_request({"version": network.version, "nonce": 77}, {"x": x})
    ans = wire.decode_answer(a.node.peers.request("POST", a.url + "/v1/infer", content=body, max_bytes=1 << 20,
                                                  deadline_s=30, headers={"content-type": wire.CONTENT_TYPE,
                                                                          "accept": wire.ANSWER_TYPE}).content)
    ra = Receipt.from_json(ans["receipt"])
    honest_values = [int(v) for v in ans["values"]]
    lie = [v + 250_000 for v in honest_values]                 # far beyond the 1,000 tolerance
    rl = Receipt(network.version, ra.input_hash, values_hash(lie), ra.nonce, 0).signed(liar, reg.domain)
    did = reg.dispute(rl, lie, ra, honest_values, sender=attacker)
    assert reg.eligible(did, sybil.address) and all(reg.eligible(did, b.account.address) for b in bystanders)
    salt = os.urandom(32)
    reg.commit_vote(did, lie, salt, sender=sybil)              # the only member the attacker told
    # the accused node's duty: it sends the input it kept to the drawn members
    tick = committee_tick(a.node)
    assert tick["defended"] == [did]
    assert all(reg.vote(did, b.account.address)["committed"] for b in bystanders)
    assert committee_tick(a.node)["defended"] == []             # once per member
    st = reg.dispute_state(did)
    advance_to(chain, st["deadline"] + 1)
    reg.reveal_vote(did, lie, salt, sender=sybil)
    for b in bystanders:
        assert committee_tick(b.node)["revealed"] == [did]
    bond, liar_bond = reg.service_bond(honest.address), reg.service_bond(liar.address)
    advance_to(chain, st["reveal_deadline"] + 1)
    assert reg.resolve_dispute(did, sender=attacker).lower() == liar.address.lower()
    assert reg.service_bond(honest.address) == bond, "an honest node was slashed by a one-sybil committee"
    assert reg.service_bond(liar.address) < liar_bond
