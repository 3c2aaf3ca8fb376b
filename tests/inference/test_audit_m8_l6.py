"""Audit M8 (commit-reveal for challenges and disputes: a front-runner copying a reveal
earns nothing) and L6 (the verifier's code is pinned at registration and checked on
every use and by clients)."""

from __future__ import annotations

import os

import pytest

from proofmesh.chain.core import Registry, Token
from proofmesh.errors import ContractRevert, VerificationError
from proofmesh.inference.publish import publish_model
from proofmesh.inference.receipt import COMMIT_ZK, Receipt
from proofmesh.inference.registry import InferenceRegistry
from proofmesh.inference.router import Router
from tests.inference.conftest import advance_to


def _conflict(network, accounts, x1):
    """Two real nodes (one lying) answer the same input: two conflicting signed receipts."""
    honest = network.start_node(accounts[3])
    liar = network.start_node(accounts[5], tamper=0.25)
    voter = network.start_node(accounts[4])
    router = Router(network.chain, network.version, account=accounts[6])
    router.discover()
    inputs = {"x": x1}
    a = router.nodes[honest.account.address]
    b = router.nodes[liar.account.address]
    ra = router._check(a, router._send(a, x1.tolist(), "plain"), inputs, "plain")
    rb = router._check(b, router._send(b, x1.tolist(), "plain"), inputs, "plain")
    return ra, rb, voter


def test_m8_front_runner_copying_a_dispute_reveal_earns_nothing(network, accounts, x1):
    reg = network.registry
    chain = network.chain
    token = Token(chain)
    ra, rb, voter = _conflict(network, accounts, x1)
    disputer, sybil = accounts[6], accounts[8]       # sybil: the liar's own second account

    salt = reg.commit_dispute(ra.receipt, rb.receipt, sender=disputer)
    # the sybil copies the reveal transaction from the mempool: it has no commitment
    with pytest.raises(ContractRevert, match="no earlier commitment from this sender"):
        reg.reveal_dispute(ra.receipt, ra.values, rb.receipt, rb.values, salt, sender=sybil)
    # ... nor can it reveal someone else's commitment with other data or salt
    with pytest.raises(ContractRevert, match="no earlier commitment"):
        reg.reveal_dispute(ra.receipt, ra.values, rb.receipt, rb.values, os.urandom(32), sender=disputer)
    # it commits as soon as it sees the reveal: its own reveal comes a block too late
    sybil_salt = reg.commit_dispute(ra.receipt, rb.receipt, sender=sybil)
    did = reg.reveal_dispute(ra.receipt, ra.values, rb.receipt, rb.values, salt, sender=disputer)
    with pytest.raises(ContractRevert, match="already disputed"):
        reg.reveal_dispute(ra.receipt, ra.values, rb.receipt, rb.values, sybil_salt, sender=sybil)
    # a spent commitment cannot be revealed twice
    with pytest.raises(ContractRevert, match="no earlier commitment"):
        reg.reveal_dispute(ra.receipt, ra.values, rb.receipt, rb.values, salt, sender=disputer)
    st = reg.dispute_state(did)
    assert st["disputer"] == disputer.address

    # the committee votes; the liar is slashed and the reward goes to the disputer (and the
    # voter) only
    from proofmesh.inference.receipt import output_values
    from proofmesh.inference.model import OnnxModel
    honest_values = output_values(OnnxModel(network.onnx).run({"x": x1}))
    vsalt = os.urandom(32)
    reg.commit_vote(did, honest_values, vsalt, sender=voter.account)
    advance_to(chain, st["deadline"] + 1)
    assert reg.reveal_vote(did, honest_values, vsalt, sender=voter.account) == 1
    advance_to(chain, st["reveal_deadline"] + 1)
    sybil_before, disputer_before = token.balance(sybil.address), token.balance(disputer.address)
    liar = st["node_b"]
    bond_before = reg.service_bond(liar)
    assert chain.call(reg.c.functions.open_cases(liar)) == 1        # the arbiter opened a case
    assert reg.resolve_dispute(did, sender=sybil) == liar
    assert reg.service_bond(liar) < bond_before
    assert chain.call(reg.c.functions.open_cases(liar)) == 0
    assert token.balance(sybil.address) == sybil_before
    assert token.balance(disputer.address) > disputer_before


def test_m8_front_runner_copying_a_challenge_reveal_earns_nothing(network, accounts):
    """A zk receipt whose node never proves it: the challenger who committed gets the
    slash reward; a copy of its reveal by someone else reverts."""
    chain, reg = network.chain, network.registry
    token = Token(chain)
    # a circuit record (any contract stands in for the verifier: no proof is ever checked here)
    verifier = chain.deploy("test/MerkleVerifier")
    reg.register_circuit(network.version, b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, verifier, True, 1)
    node = accounts[3]
    network.start_node(node)                          # registered, staked, bonded
    bad = Receipt(network.version, os.urandom(32), os.urandom(32), 1, 0, COMMIT_ZK).signed(node, reg.domain)
    challenger, sybil = accounts[6], accounts[8]
    salt = reg.commit_challenge(bad, sender=challenger)
    with pytest.raises(ContractRevert, match="no earlier commitment from this sender"):
        reg.reveal_challenge(bad, salt, sender=sybil)
    sybil_salt = reg.commit_challenge(bad, sender=sybil)
    cid = reg.reveal_challenge(bad, salt, sender=challenger)
    with pytest.raises(ContractRevert, match="already challenged"):
        reg.reveal_challenge(bad, sybil_salt, sender=sybil)
    assert reg.challenge_state(cid)["challenger"] == challenger.address
    advance_to(chain, reg.challenge_state(cid)["deadline"] + 1)
    sybil_before, challenger_before = token.balance(sybil.address), token.balance(challenger.address)
    reg.expire_challenge(cid, sender=sybil)
    assert token.balance(sybil.address) == sybil_before
    assert token.balance(challenger.address) > challenger_before + chain.call(reg.c.functions.challenge_deposit())


def test_m8_only_the_arbiter_opens_cases_and_slashes(network, accounts):
    reg = network.registry
    c = reg.c.functions
    assert network.chain.call(c.arbiter()) == reg.disputes.address
    with pytest.raises(ContractRevert, match="not the arbiter"):
        network.chain.transact(c.arbiter_slash(accounts[3].address, accounts[6].address, 0), sender=accounts[6])
    with pytest.raises(ContractRevert, match="not the arbiter"):
        network.chain.transact(c.arbiter_case(accounts[3].address, True), sender=accounts[6])
    with pytest.raises(ContractRevert):
        network.chain.transact(c.set_arbiter(accounts[6].address), sender=accounts[6])


def test_l6_verifier_code_is_pinned_and_checked(anvil_chain, accounts, mlp_onnx):
    """The code at the verifier address is the code registered (on chain, every use) and
    the code compiled from the client's verifying key (clients)."""
    from proofmesh.chain.compiler import compile_contract

    chain = anvil_chain
    version = publish_model(chain, f"l6-{os.urandom(3).hex()}", mlp_onnx).version
    reg = InferenceRegistry(chain)
    verifier = chain.deploy("test/MerkleVerifier")
    creation = compile_contract("test/MerkleVerifier").bytecode
    reg.register_circuit(version, b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, verifier, True, 1)
    rec = reg.check_verifier(version, creation)
    assert rec.verifier_codehash == bytes(chain.w3.keccak(chain.w3.eth.get_code(verifier)))
    with pytest.raises(VerificationError, match="not compiled from this verifying key"):
        reg.check_verifier(version, compile_contract("test/TypedSigVerifier").bytecode)
    node = accounts[3]
    Registry(chain).register("http://127.0.0.1:1", 4, sender=node)
    rc = Receipt(version, (5).to_bytes(32, "big"), os.urandom(32), 1, 0, COMMIT_ZK).signed(node, reg.domain)
    # the code at the address changes (e.g. a metamorphic/upgradeable verifier): every use refuses it
    chain.w3.provider.make_request("anvil_setCode", [verifier, "0x600160005260206000f3"])   # returns 1 always
    with pytest.raises(ContractRevert, match="verifier code changed"):
        reg.submit_proof(rc, b"\x00" * 64, [5, 6], sender=accounts[6])
    with pytest.raises(VerificationError, match="not the code registered"):
        reg.check_verifier(version, creation)
