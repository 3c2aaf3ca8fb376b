"""Regression tests of the security-audit findings fixed in DataRegistry (docs/security-audit.md):
each test performs the attack and shows it now fails."""

from __future__ import annotations

import pytest

from proofmesh.chain.core import MESH, Registry
from proofmesh.data.batch import batch_tree
from proofmesh.data.client import DataRegistryClient
from proofmesh.data.exact import record_hash
from proofmesh.errors import ContractRevert
from proofmesh.store.blobstore import BlobStore


def _stake(chain, account, roles: int, amount: int = 1_000 * MESH) -> None:
    reg = Registry(chain)
    reg.register(f"http://127.0.0.1:1/{account.address[:8]}", roles, sender=account)
    reg.stake(amount, sender=account)


@pytest.fixture
def world(chain, accounts, home):
    """Publisher accounts[1]; honest validators accounts[3..5]."""
    _stake(chain, accounts[1], 2)
    for a in accounts[3:6]:
        _stake(chain, a, 1)
    client = DataRegistryClient(chain)
    store = BlobStore(home.store_dir)
    sid = client.register_source("s://audit", "MIT", sender=accounts[1])
    return chain, client, store, sid


def _publish(client, store, sender, sid, hashes):
    cid = store.put_bytes(b"{}\n")
    tree = batch_tree(hashes)
    bid, _ = client.publish_raw(sid, tree.root, len(hashes), 100 * len(hashes), cid, cid, sender=sender)
    return bid, tree


def test_h1_sybils_staked_after_publication_are_never_drawn(world, accounts):
    """H1/M5: the publisher registers and stakes heavy sybil validators after publishing
    (once the seed is public): the committee comes from the snapshot taken at publication
    (NodeRegistry active_at), so they get no seat; an expired seed re-commits to a future block
    instead of a hash the caller times."""
    chain, client, store, sid = world
    honest = {a.address for a in accounts[3:6]}
    bid, _ = _publish(client, store, accounts[1], sid, [record_hash(f"h1 record {i}") for i in range(4)])
    bid2, _ = _publish(client, store, accounts[1], sid, [record_hash(f"h1 late {i}") for i in range(4)])
    chain.mine(2)                                  # the seed block's hash is now public
    sybils = accounts[6:8]
    for s in sybils:
        _stake(chain, s, 1, 100_000 * MESH)        # 100x the honest stake each
    members = client.draw_committee(bid)
    assert len(members) == 3 and set(members) == honest
    # the seed block's hash expired: the draw re-commits to the next block (no caller-timed hash)
    chain.mine(260)
    tx = chain.transact(client.c.functions.draw_committee(bid2))
    from web3.logs import DISCARD

    ev = client.c.events.SeedRecommitted().process_receipt(tx.receipt, errors=DISCARD)
    assert len(ev) == 1 and ev[0]["args"]["seed_block"] == tx.receipt["blockNumber"] + 1
    assert client.committee(bid2) == []
    with pytest.raises(ContractRevert, match="wait one block"):
        chain.transact(client.c.functions.draw_committee(bid2))
    members2 = client.draw_committee(bid2)
    assert set(members2) == honest               # sybils staked later are still not candidates


def test_m1_takedown_then_duplicate_proof_cannot_brick_finalize(world, accounts):
    """M1: a batch [X, X] is attested, the owner takes both records down, then someone proves
    the duplicate (0, 1): the proof is refused, so `live` cannot underflow and finalize works."""
    chain, client, store, sid = world
    owner, challenger = accounts[1], accounts[6]
    x = record_hash("a record that later has to be taken down (personal data)")
    bid, tree = _publish(client, store, owner, sid, [x, x])
    members = client.draw_committee(bid)
    deadline = chain.timestamp() + 600
    for v in accounts[3:6]:
        if v.address in members:
            sig = client.sign_attestation(v, bid, tree.root, True, 9000, 0, deadline)
            client.submit_attestation(bid, v.address, True, 9000, 0, deadline, sig)
    client.takedown_record(bid, 0, x, tree.proof(0), "gdpr", sender=owner)
    client.takedown_record(bid, 1, x, tree.proof(1), "gdpr", sender=owner)
    with pytest.raises(ContractRevert, match="already taken down"):
        client.challenge_duplicate(bid, 0, tree.proof(0), bid, 1, tree.proof(1), x, sender=challenger)
    assert client.batch(bid).taken_down == 2 and client.batch(bid).duplicates == 0
    chain.increase_time(86_400 + 1)
    chain.mine()
    assert client.pending_reward(bid) == 0
    client.finalize(bid)
    nr = chain.contract("NodeRegistry")
    assert chain.call(nr.functions.bonded_by(client.c.address, owner.address)) == 0


def test_l1_challenge_window_is_bounded_by_node_registry(chain):
    """L1: set_params refuses a zero challenge window and one longer than
    NodeRegistry.max_challenge_window (a bond could unbond before a fraud proof lands);
    the bound itself is accepted."""
    from web3.exceptions import ContractLogicError

    from proofmesh.chain.core import GovernanceClient
    from proofmesh.errors import ProofmeshError

    client = DataRegistryClient(chain)
    c = client.c
    window = chain.call(chain.contract("NodeRegistry").functions.max_challenge_window())
    rest = [chain.call(getattr(c.functions, name)()) for name in
            ("min_batch_bond", "bond_per_record", "duplicate_slash", "reward_per_token", "committee_size")]
    gov = chain.addresses["Governance"]
    for w, reason in ((0, "zero challenge window"), (window + 1, "challenge window too long")):
        fn = c.functions.set_params(w, *rest)
        with pytest.raises(ContractLogicError, match=reason):
            fn.call({"from": gov})
        with pytest.raises(ProofmeshError):
            GovernanceClient(chain).apply_now(fn, salt=w.to_bytes(32, "big"))
    assert chain.call(c.functions.challenge_window()) != window
    GovernanceClient(chain).apply_now(c.functions.set_params(window, *rest))
    assert chain.call(c.functions.challenge_window()) == window
