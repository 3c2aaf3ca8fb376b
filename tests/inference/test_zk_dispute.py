"""Redundant-mode disputes settled by a zk proof on a version with a circuit (issue 7 gap 1).

Nodes holding the registered circuit sign CIRCUIT value receipts (the Poseidon input
instance bound into ``input_hash``); when two conflict, a proof of the disputed input
slashes the wrong one at once, with no committee vote. Real contracts on the embedded
EVM, real ezkl (the tiny MLP at batch 1: one module-scoped circuit, two proofs)."""

from __future__ import annotations


import numpy as np
import pytest

from proofmesh.chain.core import Registry, Token
from proofmesh.errors import ContractRevert, VerificationError
from proofmesh.inference.publish import publish_circuit
from proofmesh.inference.receipt import COMMIT_CIRCUIT, Receipt, circuit_input_hash, input_hash
from proofmesh.inference.router import Router
from proofmesh.inference.zk import Circuit, ZkProof
from tests.inference.conftest import advance_to

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def zk(tmp_path_factory, mlp_circuit, ezkl_home):
    work = tmp_path_factory.mktemp("zkd")
    circuit = mlp_circuit
    x = np.random.default_rng(5).random((1, 4), dtype=np.float32)
    x2 = np.random.default_rng(6).random((1, 4), dtype=np.float32)
    w2 = circuit.witness(x2, work / "w")
    other = circuit.prove(w2, work / "other.json")     # a valid proof of another input
    yield {"circuit": circuit, "x": x, "x2": x2, "other": other, "work": work}


def _ask(router: Router, node, x: np.ndarray, mode: str = "circuit"):
    h = router.nodes[node.account.address]
    return router._check(h, router._send(h, x.tolist(), mode), {"x": x}, mode)


def test_lying_node_is_slashed_by_proof_without_a_vote(network, accounts, zk, tmp_path):
    chain, reg = network.chain, network.registry
    publish_circuit(chain, network.version, zk["circuit"])
    assert reg.output_scale(network.version) == zk["circuit"].output_scales[0]
    cdir = zk["circuit"].dir
    honest_a = network.start_node(accounts[3], circuit_dir=cdir)
    honest_b = network.start_node(accounts[4], circuit_dir=cdir)
    liar = network.start_node(accounts[5], circuit_dir=cdir, tamper=0.25)
    disputer = accounts[6]
    stake_before = Registry(chain).info(liar.account.address).stake
    bond_before = reg.service_bond(liar.account.address)
    token = Token(chain)
    reward_before = token.balance(disputer.address)

    router = Router(chain, network.version, account=disputer, circuit=zk["circuit"], workdir=tmp_path / "router")
    router.discover()
    assert router.circuit_usable() and all(h.circuit_receipts for h in router.nodes.values())
    ans = router.infer(zk["x"].tolist(), verify="redundant", k=3)
    # the honest majority's answer, on CIRCUIT receipts: the circuit's own output
    assert ans.receipt.commitment == COMMIT_CIRCUIT
    w = zk["circuit"].witness(zk["x"], tmp_path / "w")
    assert np.allclose(ans.output, w.answer, atol=1e-6)
    assert ans.receipt.input_hash == circuit_input_hash(input_hash({"x": zk["x"]}), w.input_hash)
    assert liar.account.address not in ans.agreeing and len(ans.agreeing) == 2
    # the dispute was opened and settled by the router's proof at once: no vote, no wait
    assert ans.dispute is not None
    assert ans.settled is not None and "error" not in ans.settled, ans.settled
    st = reg.dispute_state(ans.dispute)
    assert st["state"] == 2 and st["commitment"] == COMMIT_CIRCUIT
    assert st["weight_a"] == 0 and st["weight_b"] == 0                  # nobody voted
    assert chain.timestamp() <= st["deadline"]                          # settled inside the vote window
    liar_is_b = st["node_b"] == liar.account.address
    assert ans.settled["b_wrong"] == liar_is_b and ans.settled["a_wrong"] == (not liar_is_b)
    assert ans.settled["slashed"] > 0
    print(f"\nsettle_by_proof gas: {ans.settled['gas']}")
    assert reg.service_bond(liar.account.address) == bond_before - ans.settled["slashed"]
    assert Registry(chain).info(liar.account.address).stake < stake_before
    assert token.balance(disputer.address) > reward_before             # the slash reward
    for n in (honest_a, honest_b):
        assert reg.service_bond(n.account.address) == reg.min_bond()
    for n in (honest_a, honest_b, liar):
        assert chain.call(reg.c.functions.open_cases(n.account.address)) == 0

    # replay: the settled dispute cannot be settled, voted on or resolved again
    proof = Circuit.load_proof(tmp_path / "router" / f"dispute-{ans.dispute}.proof.json")
    with pytest.raises(ContractRevert, match="dispute not open"):
        reg.settle_by_proof(ans.dispute, input_hash({"x": zk["x"]}), proof, sender=accounts[7])
    with pytest.raises(ContractRevert, match="dispute not open"):
        reg.commit_vote(ans.dispute, ans.values, b"\x01" * 32, sender=honest_a.account)
    with pytest.raises(ContractRevert, match="dispute not open"):
        reg.resolve_dispute(ans.dispute, sender=accounts[7])
    # and its receipts cannot back a second dispute
    liar_rcpt = _ask(router, liar, zk["x"])
    with pytest.raises(ContractRevert, match="already disputed"):
        reg.dispute(ans.receipt, ans.values, liar_rcpt.receipt, liar_rcpt.values, sender=disputer)


def test_proof_settlement_refuses_forgeries_and_spares_honest_nodes(network, accounts, zk, tmp_path):
    chain, reg = network.chain, network.registry
    publish_circuit(chain, network.version, zk["circuit"])
    cdir = zk["circuit"].dir
    honest = network.start_node(accounts[3], circuit_dir=cdir)
    liar = network.start_node(accounts[5], circuit_dir=cdir, tamper=0.25)
    disputer = accounts[6]
    router = Router(chain, network.version, account=disputer, circuit=zk["circuit"], workdir=tmp_path / "router")
    router.discover()
    x = zk["x"]
    raw = input_hash({"x": x})
    ra, rl = _ask(router, honest, x), _ask(router, liar, x)
    assert ra.receipt.commitment == rl.receipt.commitment == COMMIT_CIRCUIT

    # a plain value receipt and a circuit receipt are not one kind: no dispute
    rv = _ask(router, liar, x, "plain")
    with pytest.raises(ContractRevert, match="not value receipts of one kind"):
        reg.dispute(ra.receipt, ra.values, rv.receipt, rv.values, sender=disputer)
    # a node committing a wrong Poseidon instance: refused by the router, and refused at
    # dispute opening (its input_hash is not the honest receipt's)
    h = router.nodes[liar.account.address]
    out = router._send(h, x.tolist(), "circuit")
    bad = Receipt(network.version, circuit_input_hash(raw, int(out["circuit_input"], 16) + 1),
                  rl.receipt.output_hash, out["_nonce"], 0, COMMIT_CIRCUIT).signed(liar.account, reg.domain)
    with pytest.raises(VerificationError, match="another input"):
        router._check(h, {**out, "receipt": bad.to_json()}, {"x": x}, "circuit")
    with pytest.raises(ContractRevert, match="different requests"):
        reg.dispute(ra.receipt, ra.values, bad, rl.values, sender=disputer)

    # the honest node is a, the liar b
    did = reg.dispute(ra.receipt, ra.values, rl.receipt, rl.values, sender=disputer)
    w = zk["circuit"].witness(x, tmp_path / "w")
    proof = zk["circuit"].prove(w, tmp_path / "p.json")
    other = zk["other"]
    # a valid proof for a different input is refused, whatever raw hash comes with it
    with pytest.raises(ContractRevert, match="another input"):
        reg.settle_by_proof(did, raw, other, sender=accounts[7])
    with pytest.raises(ContractRevert, match="another input"):
        reg.settle_by_proof(did, input_hash({"x": zk["x2"]}), other, sender=accounts[7])
    # the right instances with a bit-flipped proof, or the right proof with other outputs, revert
    flipped = bytearray(proof.proof)
    flipped[300] ^= 1
    with pytest.raises(ContractRevert, match="invalid proof"):
        reg.settle_by_proof(did, raw, ZkProof(bytes(flipped), proof.instances), sender=accounts[7])
    with pytest.raises(ContractRevert, match="invalid proof"):
        reg.settle_by_proof(did, raw, ZkProof(proof.proof, [proof.instances[0], *[v + 1 for v in proof.instances[1:]]]),
                            sender=accounts[7])
    with pytest.raises(ContractRevert, match="another input"):
        reg.settle_by_proof(did, b"\x00" * 32, proof, sender=accounts[7])
    # only the chunks' hashes are stored: a prover passing other chunks (the liar's on both
    # sides would have the honest node slashed too; swapped sides; one value off) is refused
    ca, cb = reg.dispute_chunks(did)
    off = bytearray(ca)
    off[-1] ^= 1
    for bad in ((cb, cb), (cb, ca), (bytes(off), cb), (ca, b"")):
        with pytest.raises(ContractRevert, match="chunks are not the disputed ones"):
            reg.settle_by_proof(did, raw, proof, sender=accounts[7], chunks=bad)
    # the valid proof slashes only the liar, and the reward goes to the disputer, not the prover
    honest_bond = reg.service_bond(honest.account.address)
    prover_before = Token(chain).balance(accounts[7].address)
    got = reg.settle_by_proof(did, raw, proof, sender=accounts[7])
    assert got["a_wrong"] is False and got["b_wrong"] is True and got["slashed"] > 0
    assert reg.service_bond(honest.account.address) == honest_bond
    assert Token(chain).balance(accounts[7].address) == prover_before
    with pytest.raises(ContractRevert, match="dispute not open"):
        reg.settle_by_proof(did, raw, proof, sender=accounts[7])

    # both receipts wrong: both nodes are slashed by one proof
    liar2 = network.start_node(accounts[4], circuit_dir=cdir, tamper=-0.25)
    router.discover()
    x3 = np.random.default_rng(9).random((1, 4), dtype=np.float32)
    r1, r2 = _ask(router, liar, x3), _ask(router, liar2, x3)
    bonds = (reg.service_bond(liar.account.address), reg.service_bond(liar2.account.address))
    did2 = reg.dispute(r1.receipt, r1.values, r2.receipt, r2.values, sender=disputer)
    # the vote path still works on a circuit dispute: a non-party re-executes the circuit
    # (its input hash matches) and sides with neither liar
    router._disputes[did2] = x3.tolist()
    assert router.call_committee(did2) == [honest.account.address]
    assert chain.call(reg.disputes.functions.vote_commitments(did2, honest.account.address)) != bytes(32)
    advance_to(chain, reg.dispute_state(did2)["deadline"] + 1)
    assert router.reveal_committee(did2) == {honest.account.address: 0}
    w3 = zk["circuit"].witness(x3, tmp_path / "w")
    got = reg.settle_by_proof(did2, input_hash({"x": x3}), zk["circuit"].prove(w3, tmp_path / "p3.json"),
                              sender=disputer)
    assert got["a_wrong"] and got["b_wrong"]
    assert reg.service_bond(liar.account.address) < bonds[0] and reg.service_bond(liar2.account.address) < bonds[1]
    # settled by proof: no voter is penalised; the voter's locked bond is released
    assert chain.call(reg.c.functions.open_cases(honest.account.address)) == 1
    with pytest.raises(ContractRevert, match="no penalties in this dispute"):
        reg.penalise_voter(did2, honest.account.address, sender=disputer)
    reg.release_voter(did2, honest.account.address, sender=disputer)
    assert chain.call(reg.c.functions.open_cases(honest.account.address)) == 0

    # a value (no circuit) dispute cannot be settled by proof; the output scale is the owner's, once
    rh = _ask(router, honest, x3, "plain")
    rv2 = _ask(router, liar2, x3, "plain")
    did3 = reg.dispute(rh.receipt, rh.values, rv2.receipt, rv2.values, sender=disputer)
    with pytest.raises(ContractRevert, match="not a circuit dispute"):
        reg.settle_by_proof(did3, input_hash({"x": x3}), proof, sender=disputer)
    with pytest.raises(ContractRevert, match="not the model owner"):
        reg.set_output_scale(network.version, 0, sender=accounts[7])
    with pytest.raises(ContractRevert, match="already set"):
        reg.set_output_scale(network.version, 0)


def test_node_signs_no_circuit_receipts_without_the_output_scale(network, accounts, zk):
    """A circuit registered without the scale (or with another one) could slash honest
    CIRCUIT receipts: the node then signs only value receipts, and the router falls back."""
    chain, reg = network.chain, network.registry
    c = zk["circuit"]
    verifier = c.deploy_verifier(chain)
    reg.register_circuit(network.version, c.settings_hash, c.vk_hash, c.srs_hash, verifier, c.dev_srs, c.batch)
    reg.set_output_scale(network.version, c.output_scales[0] + 1)       # not this circuit's scale
    a = network.start_node(accounts[3], circuit_dir=c.dir)
    assert a.node.circuit_scale is None
    router = Router(chain, network.version, account=accounts[6], circuit=c)
    router.discover()
    assert not router.circuit_usable() and not router.nodes[accounts[3].address].circuit_receipts
    from proofmesh.errors import NotAvailableError
    with pytest.raises(NotAvailableError, match="no circuit receipts"):
        _ask(router, a, zk["x"])


def test_cli_redundant_infer_settles_a_conflict_by_proof(home, chain, accounts, network, zk, monkeypatch):
    """`proofmesh infer VERSION in.json --verify redundant` on a circuit version: the CLI finds
    the circuit built in its home, and a conflict is opened and settled by its proof."""
    import json

    from typer.testing import CliRunner

    from proofmesh.cli.main import app
    from proofmesh.crypto.keys import Keystore

    monkeypatch.setenv("PROOFMESH_PASSWORD", "pw")
    Keystore(home).import_key("client", accounts[6].key, "pw")
    publish_circuit(chain, network.version, zk["circuit"])
    circuits = home.dir("inference") / "circuits"
    circuits.mkdir(parents=True, exist_ok=True)
    (circuits / zk["circuit"].dir.name).symlink_to(zk["circuit"].dir)   # as `inference circuit` builds it
    cdir = zk["circuit"].dir
    network.start_node(accounts[3], circuit_dir=cdir)
    network.start_node(accounts[4], circuit_dir=cdir)
    liar = network.start_node(accounts[5], circuit_dir=cdir, tamper=-0.5)
    bond = network.registry.service_bond(liar.account.address)
    (home.path / "in.json").write_text(json.dumps(zk["x"].tolist()))
    res = CliRunner().invoke(app, ["--home", str(home.path), "infer", str(network.version), str(home.path / "in.json"),
                                   "--verify", "redundant", "--k", "3", "--account", "client", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["circuit_receipts"] is True and liar.account.address not in out["agreeing"]
    settled = out["settled_by_proof"]
    assert settled and "error" not in settled and settled["a_wrong"] != settled["b_wrong"], settled
    assert network.registry.dispute_state(out["dispute"])["state"] == 2
    assert network.registry.service_bond(liar.account.address) == bond - settled["slashed"]


def test_committed_values_match_the_contracts_dequantisation():
    """What a node commits (rint(felt / 2**scale x 1e6) from exact float64) is within one unit
    of what settle_by_proof computes (felt x 1e6 / 2**scale, truncated toward zero), for large
    outputs too: the "+ 1" of the contract's tolerance is all the rounding there is."""
    from types import SimpleNamespace

    from proofmesh.inference.server import circuit_output
    from proofmesh.inference.zk import FIELD_P

    rng = np.random.default_rng(0)
    # exact while felt x 15625 fits a float64 significand (|felt| < 2**39): at scale 13 that
    # is |output| < 6.7e7, far beyond what the circuits here produce
    signed = [int(v) for v in rng.integers(-2**38, 2**38, 2000)] + [0, 1, -1, 2**38, -2**38, 5 * 2**6, -5 * 2**6]
    felts = [s % FIELD_P for s in signed]
    for scale in (0, 7, 13, 20):
        w = SimpleNamespace(outputs=felts, answer=np.zeros((1, len(felts)), np.float32))
        node = np.rint(circuit_output(w, scale).reshape(-1) * 10**6).astype(np.int64)
        chain_side = [(abs(s) * 10**6 >> scale) * (1 if s >= 0 else -1) for s in signed]
        assert max(abs(int(a) - b) for a, b in zip(node, chain_side)) <= 1
    # the float32 answer would not be: 2**30 + 1 at scale 7 is off by 7,812 units
    s = 2**30 + 1
    assert abs(int(np.rint(np.float64(np.float32(s / 2**7)) * 10**6)) - (s * 10**6 >> 7)) > 1000
