"""Value commitments of any size: outputs beyond 64 values are committed in chunks under a
Merkle root, and a dispute opens the one chunk where two receipts disagree. Before, a
dispute carried at most 64 values, so a node lying about a larger answer (a batch of 32
rows of a 10-class model, a 384-dim embedding) could not be slashed."""

from __future__ import annotations

import os

import numpy as np
import pytest

from proofmesh.errors import ContractRevert, InputError
from proofmesh.inference.receipt import Receipt, ValuesSealer, _reference_values_hash
from proofmesh.inference.router import Router
from proofmesh.inference.committee import reveal_vote_on_dispute, vote_on_dispute
from proofmesh.inference.values import (CHUNK, ValuesOpening, chunk_count, disagreeing_chunk, open_values,
                                        values_hash, verify_opening)
from tests.inference.conftest import advance_to

SIZES = (0, 1, 63, 64, 65, 128, 129, 210, 320, 1000, 4097)


@pytest.fixture(scope="module")
def sealer():
    from proofmesh.inference.receipt import receipt_domain

    return ValuesSealer(os.urandom(32), receipt_domain(31337, "0x" + "11" * 20))


@pytest.mark.parametrize("n", SIZES)
def test_native_sealer_commits_like_the_reference(sealer, n):
    y = np.random.default_rng(n).normal(size=n).astype(np.float32)
    values, receipt = sealer.seal(1, b"\x01" * 32, 5, 0, [y])
    assert receipt.output_hash == values_hash(values) == _reference_values_hash(values.tolist())
    for i in range(chunk_count(n)):
        o = open_values(values, i)
        assert verify_opening(receipt.output_hash, o)
        assert o.values() == values[CHUNK * i: CHUNK * (i + 1)].tolist()


def test_up_to_64_values_the_commitment_is_the_plain_hash():
    from proofmesh.crypto.keccak import keccak256

    v = list(range(-32, 32))
    assert values_hash(v) == keccak256(np.asarray(v, dtype=">i8").tobytes())
    assert values_hash(v + [1]) != keccak256(np.asarray(v + [1], dtype=">i8").tobytes())


def test_openings_that_lie_are_refused():
    values = list(range(1000, 1210))               # 4 chunks, depth 2
    root = values_hash(values)
    o = open_values(values, 2)
    assert verify_opening(root, o)
    assert not verify_opening(root, ValuesOpening(o.count, o.index, o.packed[:-8] + bytes(8), o.proof))
    assert not verify_opening(root, ValuesOpening(o.count - 10, o.index, o.packed, o.proof))   # same depth, other count
    assert not verify_opening(root, ValuesOpening(CHUNK, 0, o.packed, ()))                    # claims a lone chunk
    assert not verify_opening(root, ValuesOpening(o.count, 1, o.packed, o.proof))            # another position
    assert not verify_opening(root, ValuesOpening(o.count, o.index, o.packed, o.proof[:-1]))  # an inner node as leaf
    with pytest.raises(InputError, match="chunk 4 does not exist"):
        open_values(values, 4)
    w = list(values)
    w[150] += 7
    assert disagreeing_chunk(values, w, 6) == 2 and disagreeing_chunk(values, w, 7) is None
    assert disagreeing_chunk(values, values[:-1], 0) == 0


def _honest_answer(network, accounts, x):
    router = Router(network.chain, network.version, account=accounts[6])
    router.discover()
    a = router.nodes[network.nodes[0].account.address]
    return router._check(a, router._send(a, x.tolist(), "plain"), {"x": x}, "plain")


def _reveal(reg, ra, rb, open_a, open_b, sender):
    """commit + reveal with hand-made openings (the registry helper always opens one chunk of both)."""
    salt = reg.commit_dispute(ra, rb, sender=sender)
    return reg._tx(reg.disputes.functions.dispute(ra.as_tuple(), ra.signature, open_a.as_tuple(),
                                                  rb.as_tuple(), rb.signature, open_b.as_tuple(), salt), sender)


def test_a_lie_in_chunk_2_of_a_210_value_answer_is_disputed_and_slashed(network, accounts):
    honest = network.start_node(accounts[3])
    voters = [network.start_node(accounts[4]), network.start_node(accounts[7])]
    liar = network.start_node(accounts[5])
    reg = network.registry
    x = np.random.default_rng(7).random((70, 4), dtype=np.float32)       # 70 rows x 3 outputs
    ra = _honest_answer(network, accounts, x)
    assert len(ra.values) == 210
    # the liar's receipt: right everywhere but one value of chunk 2, signed with its node key
    lie = list(ra.values)
    lie[150] += 10**6
    rl = Receipt(ra.receipt.version, ra.receipt.input_hash, values_hash(lie), 99, 0).signed(liar.account, reg.domain)

    disputer = accounts[6]
    # attacks on the opening: each reverts, nothing is opened
    o_a, o_l = open_values(ra.values, 2), open_values(lie, 2)
    with pytest.raises(ContractRevert, match="openings of different chunks"):
        _reveal(reg, ra.receipt, rl, o_a, open_values(lie, 1), disputer)
    bad_path = ValuesOpening(o_l.count, 2, o_l.packed, (bytes(32),) + o_l.proof[1:])
    with pytest.raises(ContractRevert, match="values do not match the receipt"):
        _reveal(reg, ra.receipt, rl, o_a, bad_path, disputer)
    with pytest.raises(ContractRevert, match="values do not match the receipt"):
        _reveal(reg, ra.receipt, rl, o_a, ValuesOpening(200, 2, o_l.packed, o_l.proof), disputer)
    with pytest.raises(ContractRevert, match="Merkle path has the wrong length"):
        _reveal(reg, ra.receipt, rl, o_a, ValuesOpening(o_l.count, 2, o_l.packed, o_l.proof[:1]), disputer)
    with pytest.raises(ContractRevert, match="no such chunk"):
        _reveal(reg, ra.receipt, rl, ValuesOpening(210, 4, b"", ()), ValuesOpening(210, 4, b"", ()), disputer)
    with pytest.raises(ContractRevert, match="agree within tolerance"):    # chunk 0: both honest there
        reg.dispute(ra.receipt, ra.values, rl, lie, sender=disputer, chunk=0)
    assert reg.chain.call(reg.disputes.functions.dispute_count()) == 0

    odd = network.start_node(accounts[8]).account       # bonded before the dispute: it may be drawn
    did = reg.dispute(ra.receipt, ra.values, rl, lie, sender=disputer)       # picks chunk 2
    st = reg.dispute_state(did)
    assert (st["chunk"], st["count_a"], st["count_b"]) == (2, 210, 210)
    assert reg.dispute_values(did) == (list(ra.values[128:192]), lie[128:192])
    for v in voters:                       # bonded nodes re-execute the whole input and commit votes
        assert vote_on_dispute(v.node, did, x.tolist())["committed"]
    # a vote with the wrong count sides with nobody, even with the right chunk
    reg.commit_vote(did, list(ra.values) + [0], bytes(32), sender=odd)
    advance_to(network.chain, st["deadline"] + 1)
    for v in voters:
        assert reveal_vote_on_dispute(v.node, did)["side"] == 1
    assert reg.reveal_vote(did, list(ra.values) + [0], bytes(32), sender=odd) == 0
    st = reg.dispute_state(did)
    assert st["weight_a"] > 0 and st["weight_b"] == 0
    advance_to(network.chain, st["reveal_deadline"] + 1)
    bond = reg.service_bond(liar.account.address)
    assert reg.resolve_dispute(did, sender=disputer) == liar.account.address
    assert reg.service_bond(liar.account.address) < bond
    assert reg.service_bond(honest.account.address) == reg.min_bond()


def test_a_lie_about_the_output_count_is_disputed(network, accounts):
    network.start_node(accounts[3])
    liar = network.start_node(accounts[5])
    reg = network.registry
    x = np.random.default_rng(8).random((30, 4), dtype=np.float32)        # 90 values
    ra = _honest_answer(network, accounts, x)
    short = list(ra.values[:-3])                                           # one row dropped
    rl = Receipt(ra.receipt.version, ra.receipt.input_hash, values_hash(short), 98, 0).signed(liar.account, reg.domain)
    did = reg.dispute(ra.receipt, ra.values, rl, short, sender=accounts[6])
    st = reg.dispute_state(did)
    assert (st["chunk"], st["count_a"], st["count_b"]) == (0, 90, 87)


@pytest.mark.slow
def test_a_circuit_lie_in_chunk_1_is_settled_by_proof(chain, accounts, tmp_path, ezkl_home):
    """A 100-output circuit: the proof's outputs are compared on the disputed chunk only."""
    from proofmesh.inference.model import export_mlp
    from proofmesh.inference.publish import publish_circuit
    from proofmesh.inference.receipt import COMMIT_CIRCUIT
    from proofmesh.inference.zk import Circuit
    from tests.inference.conftest import Network

    onnx = export_mlp(tmp_path / "mlp100.onnx", (4, 8, 100))
    net = Network(chain, accounts, onnx, tmp_path / "nodes")
    try:
        circuit = Circuit.build(onnx, tmp_path / "circuits", batch=1, dev=True)
        publish_circuit(chain, net.version, circuit)
        honest = net.start_node(accounts[3], circuit_dir=circuit.dir)
        liar = net.start_node(accounts[5], circuit_dir=circuit.dir)
        reg = net.registry
        router = Router(chain, net.version, account=accounts[6], circuit=circuit, workdir=tmp_path / "router")
        router.discover()
        x = np.random.default_rng(9).random((1, 4), dtype=np.float32)
        h = router.nodes[honest.account.address]
        ra = router._check(h, router._send(h, x.tolist(), "circuit"), {"x": x}, "circuit")
        assert ra.receipt.commitment == COMMIT_CIRCUIT and len(ra.values) == 100
        lie = list(ra.values)
        lie[70] += 10**6                                   # chunk 1 (values 64..99)
        rl = Receipt(net.version, ra.receipt.input_hash, values_hash(lie), 97, 0,
                     COMMIT_CIRCUIT).signed(liar.account, reg.domain)
        did = reg.dispute(ra.receipt, ra.values, rl, lie, sender=accounts[6])
        assert reg.dispute_state(did)["chunk"] == 1
        bond = reg.service_bond(liar.account.address)
        settled = router.settle_with_proof(did, {"x": x})
        assert settled["b_wrong"] and not settled["a_wrong"]
        print(f"\nsettle_by_proof gas (100 outputs, chunk 1 of 36 values): {settled['gas']:,}")
        assert reg.service_bond(liar.account.address) == bond - settled["slashed"] and settled["slashed"] > 0
        assert reg.service_bond(honest.account.address) == reg.min_bond()
    finally:
        net.stop()


def test_ballots_survive_a_restart(tmp_path):
    """A node restarted between commit and reveal still has its vote's values (the commit
    is on chain already: without them the vote could never be revealed)."""
    from proofmesh.inference.committee import Ballots
    from proofmesh.store.journal import JournalLocked

    b = Ballots(tmp_path / "ballots-1.jsonl")
    b.commit(7, [1, -2, 3])
    b.commit(8, [4])
    b.reveal(8)
    b.commit(9, [5])
    b.done(9)
    with pytest.raises(JournalLocked):                 # one owner: a second node on this workdir
        Ballots(tmp_path / "ballots-1.jsonl")
    b.close()
    again = Ballots(tmp_path / "ballots-1.jsonl")
    assert again.committed == {7: [1, -2, 3]} and again.revealed == {8}
    again.close()
