"""ZK inference with ezkl on a real EVM: the node's answer is the circuit's output, its
proof verifies locally and in the generated verifier contract, a bit-flipped proof is
rejected, proofs settle payments through epoch roots, and challenges slash a node
that cannot prove its receipt.

ezkl setup/prove cost seconds, so one module-scoped circuit (the smallest MLP, batch 1)
and one proof are shared."""

from __future__ import annotations


import numpy as np
import pytest

from proofmesh.chain.core import Registry, Token
from proofmesh.errors import ContractRevert, VerificationError
from proofmesh.inference.publish import publish_circuit
from proofmesh.inference.receipt import COMMIT_ZK, Receipt, instances_hash
from proofmesh.inference.router import Router
from proofmesh.inference.zk import ZkProof
from tests.inference.conftest import advance_to

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def zk(tmp_path_factory, mlp_circuit, ezkl_home):
    work = tmp_path_factory.mktemp("zk")
    circuit = mlp_circuit
    x = np.random.default_rng(5).random((1, 4), dtype=np.float32)
    w = circuit.witness(x, work / "w")
    proof = circuit.prove(w, work / "proof.json")
    yield {"circuit": circuit, "x": x, "witness": w, "proof": proof, "work": work}


def test_proof_binds_input_and_output(zk, mlp_onnx):
    c, w, p = zk["circuit"], zk["witness"], zk["proof"]
    assert p.instances[0] == w.input_hash and p.instances[1:] == w.outputs
    assert c.verify(p.path)
    # the answer is the circuit's dequantised output: close to onnxruntime's float output
    import onnxruntime as ort
    direct = ort.InferenceSession(str(mlp_onnx)).run(None, {"x": zk["x"]})[0]
    assert np.allclose(w.answer, direct, atol=0.05)
    flipped = bytearray(p.proof)
    flipped[100] ^= 1
    with pytest.raises(VerificationError):
        c.verify_proof(ZkProof(bytes(flipped), p.instances), zk["work"])
    with pytest.raises(VerificationError):
        c.verify_proof(ZkProof(p.proof, [p.instances[0], *[v + 1 for v in p.instances[1:]]]), zk["work"])


def test_verifier_contract_accepts_valid_and_rejects_bit_flip(network, zk):
    chain = network.chain
    verifier = publish_circuit(chain, network.version, zk["circuit"])
    abi, _ = zk["circuit"].verifier_artifact()
    v = chain.w3.eth.contract(address=verifier, abi=abi)
    p = zk["proof"]
    assert v.functions.verifyProof(p.proof, p.instances).call() is True
    gas = v.functions.verifyProof(p.proof, p.instances).estimate_gas()
    assert 200_000 < gas < 2_000_000
    flipped = bytearray(p.proof)
    flipped[200] ^= 1
    with pytest.raises(Exception):
        assert v.functions.verifyProof(bytes(flipped), p.instances).call() is not True
    wrong = [p.instances[0] ^ 1, *p.instances[1:]]
    with pytest.raises(Exception):
        assert v.functions.verifyProof(p.proof, wrong).call() is not True
    rec = network.registry.circuit(network.version)
    assert rec.registered and rec.dev_srs and rec.verifier == verifier and rec.batch == 1
    assert rec.vk_hash == zk["circuit"].vk_hash


def test_zk_request_end_to_end_with_conditional_payment(network, accounts, zk):
    """Answer first, proof later; the payment is redeemable once the proof settles."""
    from proofmesh.payments import PaymentChannels, Wallet

    chain, reg = network.chain, network.registry
    publish_circuit(chain, network.version, zk["circuit"])
    price = 10**16
    node = network.start_node(accounts[3], price=price, circuit_dir=zk["circuit"].dir)
    payer = accounts[6]
    wallet = Wallet(PaymentChannels(chain), payer)
    router = Router(chain, network.version, account=payer, wallet=wallet, deposit=10 * price)
    router.discover()
    ans = router.infer(zk["x"].tolist(), verify="zk")
    assert ans.receipt.commitment == COMMIT_ZK and ans.node == accounts[3].address
    assert np.allclose(ans.output, zk["witness"].answer)          # same circuit, same input
    proof = router.fetch_proof(ans, circuit=zk["circuit"], workdir=zk["work"] / "client")
    assert proof.instances[0] == int.from_bytes(ans.receipt.input_hash, "big")

    # the node holds a voucher conditional on this receipt: not redeemable yet
    ledger = node.node.ledger
    cv = next(v for b in ledger._books.values() for v, _ in b.conditional.values())
    with pytest.raises(ContractRevert, match="condition not fulfilled"):
        PaymentChannels(chain).redeem(cv, sender=accounts[3])
    # the node commits its epoch root; unchallenged past the window, the receipt is proven
    epoch = node.node.commit_epoch()
    status, body = node.node.proof(ans.receipt_digest)
    assert status == 200 and body["epoch"]["id"] == epoch
    with pytest.raises(ContractRevert, match="still challengeable"):
        reg.settle_from_epoch(epoch, ans.receipt, proof.proof_hash,
                              [bytes.fromhex(h[2:]) for h in body["epoch"]["merkle_proof"]], sender=accounts[3])
    advance_to(chain, chain.timestamp() + chain.call(reg.c.functions.challenge_window()) + 1)
    with pytest.raises(ContractRevert, match="not in epoch root"):
        reg.settle_from_epoch(epoch, ans.receipt, b"\x01" * 32, [], sender=accounts[3])
    # another node cannot vouch for this receipt in its own epoch
    other = network.start_node(accounts[4])
    from proofmesh.crypto.merkle import MerkleTree, leaf_hash
    fake_leaf = leaf_hash(["bytes32", "bytes32"], [ans.receipt_digest, proof.proof_hash])
    e2 = reg.commit_epoch(MerkleTree([fake_leaf]).root, 1, sender=other.account)
    advance_to(chain, chain.timestamp() + chain.call(reg.c.functions.challenge_window()) + 1)
    with pytest.raises(ContractRevert, match="not signed by the epoch's node"):
        reg.settle_from_epoch(e2, ans.receipt, proof.proof_hash, MerkleTree([fake_leaf]).proof(0), sender=accounts[4])
    reg.settle_from_epoch(epoch, ans.receipt, proof.proof_hash,
                          [bytes.fromhex(h[2:]) for h in body["epoch"]["merkle_proof"]], sender=accounts[3])
    assert reg.is_fulfilled(ans.receipt_digest)
    before = Token(chain).balance(accounts[3].address)
    assert ledger.settle(sender=accounts[3]) == price
    assert Token(chain).balance(accounts[3].address) - before == price


def test_receipt_proven_on_chain_and_challenges(network, accounts, zk):
    chain, reg = network.chain, network.registry
    publish_circuit(chain, network.version, zk["circuit"])
    node = accounts[3]
    network.start_node(node, circuit_dir=zk["circuit"].dir)
    p = zk["proof"]
    good = Receipt(network.version, p.instances[0].to_bytes(32, "big"), instances_hash(p.instances[1:]),
                   nonce=1, price=0, commitment=COMMIT_ZK).signed(node, reg.domain)
    # a proof for another output does not settle the receipt
    lie = Receipt(network.version, good.input_hash, instances_hash([v + 1 for v in p.instances[1:]]),
                  nonce=2, price=0, commitment=COMMIT_ZK).signed(node, reg.domain)
    with pytest.raises(ContractRevert, match="another output"):
        reg.submit_proof(lie, p.proof, p.instances, sender=accounts[6])
    flipped = bytearray(p.proof)
    flipped[300] ^= 1
    with pytest.raises(ContractRevert, match="invalid proof"):
        reg.submit_proof(good, bytes(flipped), p.instances, sender=accounts[6])

    # challenge of an honest receipt: the node answers with its proof and earns the deposit
    token = Token(chain)
    node_before = token.balance(node.address)
    cid = reg.challenge(good, sender=accounts[6])
    reg.answer_challenge(cid, p.proof, p.instances, sender=node)
    assert reg.challenge_state(cid)["state"] == 2 and reg.is_fulfilled(good.digest(reg.domain))
    assert token.balance(node.address) - node_before == chain.call(reg.c.functions.challenge_deposit())
    with pytest.raises(ContractRevert, match="already proven"):
        reg.challenge(good, sender=accounts[6])

    # challenge of a receipt the node cannot prove: it is slashed after the deadline
    stake_before = Registry(chain).info(node.address).stake
    challenger_before = token.balance(accounts[7].address)
    cid2 = reg.challenge(lie, sender=accounts[7])
    with pytest.raises(ContractRevert, match="still answerable"):
        reg.expire_challenge(cid2, sender=accounts[7])
    with pytest.raises(ContractRevert, match="another output"):
        reg.answer_challenge(cid2, p.proof, p.instances, sender=node)
    advance_to(chain, reg.challenge_state(cid2)["deadline"] + 1)
    reg.expire_challenge(cid2, sender=accounts[7])
    assert reg.challenge_state(cid2)["state"] == 3
    assert Registry(chain).info(node.address).stake < stake_before
    assert token.balance(accounts[7].address) > challenger_before      # deposit back + slash reward
    with pytest.raises(ContractRevert, match="cannot challenge itself"):
        reg.challenge(Receipt(network.version, good.input_hash, good.output_hash, 3, 0, COMMIT_ZK)
                      .signed(node, reg.domain), sender=node)
