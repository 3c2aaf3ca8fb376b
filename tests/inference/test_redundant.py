"""Redundant execution: a lying node is outvoted, disputed on chain and slashed;
a node that dies mid-request is failed over."""

from __future__ import annotations

import numpy as np
import pytest

from proofmesh.chain.core import Registry
from proofmesh.errors import ContractRevert
from proofmesh.inference.receipt import Receipt
from proofmesh.inference.router import Router
from tests.inference.conftest import advance_to


def test_lying_node_is_caught_and_slashed(network, accounts, x1):
    honest_a = network.start_node(accounts[3])
    honest_b = network.start_node(accounts[4])
    liar = network.start_node(accounts[5], tamper=0.25)     # adds 0.25 to every output
    reg = network.registry
    stake_before = Registry(network.chain).info(liar.account.address).stake
    bond_before = reg.service_bond(liar.account.address)

    router = Router(network.chain, network.version, account=accounts[6])
    router.discover()
    ans = router.infer(x1.tolist(), verify="redundant", k=3)
    # the answer is the honest majority's, and the conflict went on chain
    import onnxruntime as ort
    direct = ort.InferenceSession(str(network.onnx)).run(None, {"x": x1})[0]
    assert np.allclose(ans.output, direct, atol=1e-6)
    assert liar.account.address not in ans.agreeing and len(ans.agreeing) == 2
    assert ans.dispute is not None
    st = reg.dispute_state(ans.dispute)
    assert {st["node_a"], st["node_b"]} == {ans.node, liar.account.address}

    # the committee: bonded nodes that are not parties re-execute and commit votes, then
    # reveal them after the vote window
    voters = router.call_committee(ans.dispute)
    assert voters and liar.account.address not in voters
    with pytest.raises(ContractRevert, match="voting still open"):
        reg.resolve_dispute(ans.dispute, sender=accounts[6])
    advance_to(network.chain, st["deadline"] + 1)
    sides = router.reveal_committee(ans.dispute)
    a_is_honest = st["node_a"] == ans.node
    assert set(sides) == set(voters) and set(sides.values()) == {1 if a_is_honest else 2}
    with pytest.raises(ContractRevert, match="voting still open"):
        reg.resolve_dispute(ans.dispute, sender=accounts[6])
    advance_to(network.chain, st["reveal_deadline"] + 1)
    loser = reg.resolve_dispute(ans.dispute, sender=accounts[6])
    assert loser == liar.account.address
    # the voters' own duty loop (the node daemon's) claims their share of the slash
    from proofmesh.inference.committee import committee_tick
    for n in (honest_a, honest_b):
        if n.account.address in voters:
            assert committee_tick(n.node)["claimed"] == [ans.dispute]
            assert committee_tick(n.node)["claimed"] == []
    for n in (honest_a, honest_b):                  # a claim releases the voter's locked bond
        assert network.chain.call(reg.c.functions.open_cases(n.account.address)) == 0
    assert reg.service_bond(liar.account.address) < bond_before
    assert Registry(network.chain).info(liar.account.address).stake < stake_before
    # honest nodes keep their bonds
    assert reg.service_bond(honest_a.account.address) == reg.min_bond()
    assert reg.service_bond(honest_b.account.address) == reg.min_bond()


def test_dispute_attacks_are_refused(network, accounts, x1):
    a = network.start_node(accounts[3])
    b = network.start_node(accounts[4])
    router = Router(network.chain, network.version, account=accounts[6])
    router.discover()
    inputs = {"x": x1}
    ra = router._check(router.nodes[a.account.address], router._send(router.nodes[a.account.address], x1.tolist(), "plain"), inputs, "plain")
    rb = router._check(router.nodes[b.account.address], router._send(router.nodes[b.account.address], x1.tolist(), "plain"), inputs, "plain")
    reg = network.registry
    # honest nodes agree: no fraud proof possible
    with pytest.raises(ContractRevert, match="agree within tolerance"):
        reg.dispute(ra.receipt, ra.values, rb.receipt, rb.values, sender=accounts[6])
    # revealing values that are not what the node signed
    fake = [v + 10**6 for v in rb.values]
    with pytest.raises(ContractRevert, match="values do not match the receipt"):
        reg.dispute(ra.receipt, ra.values, rb.receipt, fake, sender=accounts[6])
    # a forged receipt "by b" signed by someone else names someone else as signer
    forged = Receipt(rb.receipt.version, rb.receipt.input_hash, __import__("proofmesh.inference.receipt", fromlist=["values_hash"]).values_hash(fake),
                     rb.receipt.nonce, 0, 0).signed(accounts[7], reg.domain)
    with pytest.raises(ContractRevert, match="no service bond"):
        reg.dispute(ra.receipt, ra.values, forged, fake, sender=accounts[6])
    # receipts for different inputs are not a conflict
    rc = router._check(router.nodes[b.account.address], router._send(router.nodes[b.account.address], (x1 + 1).tolist(), "plain"), {"x": x1 + 1}, "plain")
    with pytest.raises(ContractRevert, match="different requests"):
        reg.dispute(ra.receipt, ra.values, rc.receipt, rc.values, sender=accounts[6])
    # one wrong answer is one fault: the same receipts cannot open a second dispute (audit M2)
    liar = network.start_node(accounts[5], tamper=0.25)
    router.discover()
    node_l = router.nodes[liar.account.address]
    rl = router._check(node_l, router._send(node_l, x1.tolist(), "plain"), inputs, "plain")
    did = reg.dispute(ra.receipt, ra.values, rl.receipt, rl.values, sender=accounts[6])
    # the contract unpacks the receipts' packed int64 values exactly, signs included
    assert reg.dispute_values(did) == (list(ra.values), list(rl.values))
    assert any(v < 0 for v in ra.values) or any(v < 0 for v in rl.values)
    with pytest.raises(ContractRevert, match="already disputed"):
        reg.dispute(ra.receipt, ra.values, rl.receipt, rl.values, sender=accounts[6])
    with pytest.raises(ContractRevert, match="already disputed"):
        reg.dispute(rb.receipt, rb.values, rl.receipt, rl.values, sender=accounts[6])


def test_failover_when_the_chosen_node_dies_mid_request(network, accounts, x1):
    """The best-scored node accepts the request and dies before answering."""
    slow = network.start_node(accounts[3], delay_ms=1500)
    backup = network.start_node(accounts[4])
    router = Router(network.chain, network.version, account=accounts[6], timeout=10)
    router.discover()
    router.nodes[slow.account.address].latency = 1e-4      # make it the first choice
    import threading
    killer = threading.Timer(0.5, slow.server.kill)        # mid-request: it is sleeping in the handler
    killer.start()
    ans = router.infer(x1.tolist())
    killer.join()
    assert ans.node == backup.account.address
    assert ans.failovers == 1
    assert router.nodes[slow.account.address].down_until > 0


def test_votes_are_committed_then_revealed_and_winning_voters_share_the_slash(network, accounts, x1):
    """Audit I3: a voter cannot copy another's vote instead of re-executing (votes are
    hashed with the voter's address until the vote window closes), and voting pays."""
    import os

    from proofmesh.chain.core import Token
    from proofmesh.inference.model import OnnxModel
    from proofmesh.inference.receipt import output_values

    honest = network.start_node(accounts[3])
    liar = network.start_node(accounts[5], tamper=0.25)
    v1, copier, shill, v4 = (network.start_node(accounts[i]).account for i in (4, 7, 8, 9))
    router = Router(network.chain, network.version, account=accounts[6])
    router.discover()
    ask = {n.account.address: router.nodes[n.account.address] for n in (honest, liar)}
    ra = router._check(ask[honest.account.address], router._send(ask[honest.account.address], x1.tolist(), "plain"),
                       {"x": x1}, "plain")
    rl = router._check(ask[liar.account.address], router._send(ask[liar.account.address], x1.tolist(), "plain"),
                       {"x": x1}, "plain")
    reg, chain, token = network.registry, network.chain, Token(network.chain)
    disputer = accounts[6]
    did = reg.dispute(ra.receipt, ra.values, rl.receipt, rl.values, sender=disputer)
    st = reg.dispute_state(did)
    right = output_values(OnnxModel(network.onnx).run({"x": x1}))
    salts = {a.address: os.urandom(32) for a in (v1, shill, v4)}
    reg.commit_vote(did, right, salts[v1.address], sender=v1)
    reg.commit_vote(did, right, salts[v4.address], sender=v4)
    reg.commit_vote(did, rl.values, salts[shill.address], sender=shill)     # sides with the liar
    # the copier sees only v1's commitment hash: committing it gives a vote it cannot reveal
    copied = chain.call(reg.disputes.functions.vote_commitments(did, v1.address))
    reg._tx(reg.disputes.functions.commit_vote(did, copied), copier)
    with pytest.raises(ContractRevert, match="already voted"):
        reg.commit_vote(did, right, salts[v1.address], sender=v1)
    with pytest.raises(ContractRevert, match="revealed after the vote window"):
        reg.reveal_vote(did, right, salts[v1.address], sender=v1)

    advance_to(chain, st["deadline"] + 1)
    with pytest.raises(ContractRevert, match="voting closed"):
        reg.commit_vote(did, right, os.urandom(32), sender=accounts[2])
    assert reg.reveal_vote(did, right, salts[v1.address], sender=v1) == (1 if st["node_a"] == honest.account.address else 2)
    with pytest.raises(ContractRevert, match="already revealed"):
        reg.reveal_vote(did, right, salts[v1.address], sender=v1)
    # now v1's values and salt are public, and still useless to the copier
    with pytest.raises(ContractRevert, match="does not match its commitment"):
        reg.reveal_vote(did, right, salts[v1.address], sender=copier)
    with pytest.raises(ContractRevert, match="does not match its commitment"):
        reg.reveal_vote(did, right, salts[v4.address], sender=shill)      # another voter's salt
    reg.reveal_vote(did, right, salts[v4.address], sender=v4)
    reg.reveal_vote(did, rl.values, salts[shill.address], sender=shill)
    with pytest.raises(ContractRevert, match="voting still open"):
        reg.resolve_dispute(did, sender=disputer)

    advance_to(chain, st["reveal_deadline"] + 1)
    with pytest.raises(ContractRevert, match="reveal window over"):
        reg.reveal_vote(did, right, salts[v1.address], sender=copier)
    with pytest.raises(ContractRevert, match="no voter reward"):
        reg.claim_vote_reward(did, sender=v1)                 # not resolved yet
    before = token.balance(disputer.address)
    assert reg.resolve_dispute(did, sender=accounts[2]) == liar.account.address
    to_disputer = token.balance(disputer.address) - before
    pool = chain.call(reg.disputes.functions.voter_reward(did))
    assert to_disputer > 0 and pool - to_disputer in (0, 1)
    paid = reg.claim_vote_reward(did, sender=v1) + reg.claim_vote_reward(did, sender=v4)
    assert paid == pool - pool % 2 and paid > 0               # equal bonds: equal halves
    with pytest.raises(ContractRevert, match="already claimed"):
        reg.claim_vote_reward(did, sender=v1)
    for loser_side in (shill, copier):
        with pytest.raises(ContractRevert, match="no vote on the winning side"):
            reg.claim_vote_reward(did, sender=loser_side)
