"""Batched zk circuits under EIP-170: ezkl's shared reusable verifier + a per-circuit VK
artifact (VKA) behind a Halo2VkaBinding, on the embedded py-evm chain, which enforces
the 24,576-byte code limit. A valid batched proof settles its receipt, a bit-flipped
one reverts, a VKA for other weights is refused (by clients/nodes, and on chain a proof
does not verify against it), and later circuits reuse the one shared verifier.

Two ezkl circuits (setup ~seconds each): the test MLP at B=16, and an MLP with other
weights at B=1 (its VKA is the "other weights" one); one B=16 proof."""

from __future__ import annotations


import numpy as np
import pytest

from proofmesh.chain.core import Registry
from proofmesh.errors import ChainError, ContractRevert, ProofmeshError, VerificationError
from proofmesh.inference import reusable
from proofmesh.inference.publish import publish_circuit, publish_model
from proofmesh.inference.receipt import COMMIT_ZK, Receipt, instances_hash
from proofmesh.inference.server import StartupRefused
from proofmesh.inference.zk import Circuit

pytestmark = pytest.mark.slow
B = 16


@pytest.fixture(scope="module")
def zkr(tmp_path_factory, mlp_onnx, ezkl_home):
    from proofmesh.inference.model import export_mlp

    work = tmp_path_factory.mktemp("zkr")
    batched = Circuit.build(mlp_onnx, work / "circuits", batch=B, dev=True)
    other_onnx = export_mlp(work / "other.onnx", seed=7)
    other = Circuit.build(other_onnx, work / "circuits", batch=1, dev=True)
    x = np.random.default_rng(3).random((B, 4), dtype=np.float32)
    proof = batched.prove(batched.witness(x, work / "w"), work / "proof.json")
    yield {"batched": batched, "other": other, "other_onnx": other_onnx, "proof": proof,
           "work": work}


def _code_len(chain, addr) -> int:
    return len(chain.w3.eth.get_code(addr))


def test_batched_proof_verifies_under_eip170(network, accounts, zkr):
    chain, reg = network.chain, network.registry
    # the embedded chain enforces EIP-170: one byte over the limit does not deploy
    too_big = bytes([0x62]) + (reusable.EIP170_LIMIT + 1).to_bytes(3, "big") + bytes.fromhex("6000f3")
    with pytest.raises((ContractRevert, ChainError, ProofmeshError)):
        chain.transact(chain.w3.eth.contract(abi=[], bytecode=too_big).constructor(), gas=10_000_000)

    c, p = zkr["batched"], zkr["proof"]
    assert len(p.instances) == 1 + 3 * B
    binding = publish_circuit(chain, network.version, c, verifier="reusable")
    abi, _ = reusable.binding_artifact()
    b = chain.w3.eth.contract(address=binding, abi=abi)
    shared, vka = chain.call(b.functions.verifier()), chain.call(b.functions.vka())
    for addr in (binding, shared, vka):
        assert 0 < _code_len(chain, addr) < reusable.EIP170_LIMIT
    rec = reg.check_circuit(network.version, c)
    assert rec.verifier == binding and rec.batch == B and rec.vk_hash == c.vk_hash

    assert b.functions.verifyProof(p.proof, p.instances).call() is True
    flipped = bytearray(p.proof)
    flipped[200] ^= 1
    with pytest.raises(Exception):
        b.functions.verifyProof(bytes(flipped), p.instances).call()

    node = accounts[3]
    network.start_node(node, circuit_dir=c.dir)       # the node's startup check accepts the binding
    rc = Receipt(network.version, p.instances[0].to_bytes(32, "big"), instances_hash(p.instances[1:]), 1, 0,
                 COMMIT_ZK).signed(node, reg.domain)
    with pytest.raises(ContractRevert, match="invalid proof"):
        reg.submit_proof(rc, bytes(flipped), p.instances, sender=accounts[6])
    gas = reg.submit_proof(rc, p.proof, p.instances, sender=accounts[6]).gas_used
    assert reg.is_fulfilled(rc.digest(reg.domain))
    assert gas < 30_000_000 // 10

    # a second circuit (another model, batch 1) reuses the chain's shared verifier: only its
    # VKA and binding are new
    v2 = publish_model(chain, "mlp-other", zkr["other_onnx"]).version
    b2 = publish_circuit(chain, v2, zkr["other"], verifier="reusable")
    assert chain.call(chain.w3.eth.contract(address=b2, abi=abi).functions.verifier()) == shared
    assert reg.check_circuit(v2, zkr["other"]).verifier == b2


def test_vka_for_other_weights_is_refused(network, accounts, zkr):
    chain, reg = network.chain, network.registry
    c, other, p = zkr["batched"], zkr["other"], zkr["proof"]
    # a binding made for another model's key is refused at registration (it names that key)
    bound = reusable.deploy_bound_verifier(chain, other)
    with pytest.raises(ContractRevert, match="VK artifact is for another verifying key"):
        reg.register_circuit(network.version, c.settings_hash, c.vk_hash, c.srs_hash, bound.binding, True, B)
    # a dishonest owner's binding that names this key over the other model's VKA registers
    # (the chain cannot derive a VKA from a key), but nodes and clients refuse it
    abi, creation = reusable.binding_artifact()
    liar = chain.transact(chain.w3.eth.contract(abi=abi, bytecode=creation)
                          .constructor(bound.verifier, bound.vka, c.vk_hash)).contract_address
    reg.register_circuit(network.version, c.settings_hash, c.vk_hash, c.srs_hash, liar, True, B)
    with pytest.raises(VerificationError, match="other weights"):
        reg.check_circuit(network.version, c)
    with pytest.raises(StartupRefused, match="other weights"):
        network.start_node(accounts[3], circuit_dir=c.dir)
    # and on chain the real proof does not verify against that VKA
    Registry(chain).register("http://127.0.0.1:1", 4, sender=accounts[4])     # an inference node signs
    rc = Receipt(network.version, p.instances[0].to_bytes(32, "big"), instances_hash(p.instances[1:]), 1, 0,
                 COMMIT_ZK).signed(accounts[4], reg.domain)
    with pytest.raises(ContractRevert, match="invalid proof"):
        reg.submit_proof(rc, p.proof, p.instances, sender=accounts[6])

    # a binding over a contract that is not a VKA is refused at construction
    with pytest.raises(ContractRevert, match="not a VKA data contract"):
        chain.transact(chain.w3.eth.contract(abi=abi, bytecode=creation).constructor(bound.verifier, bound.verifier,
                                                                                     c.vk_hash))
