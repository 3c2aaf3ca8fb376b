"""EIP-712 signatures made in Python are recovered identically by a contract built on
snekmate's eip712_domain_separator + ecdsa (what every proofmesh contract uses), and the
contract refuses what recover_hash refuses — on the embedded chain and on anvil."""

from __future__ import annotations

import random

import pytest
from eth_account import Account
from hypothesis import HealthCheck, given, settings, strategies as st

from proofmesh.crypto.eip712 import SECP256K1_N, Domain, TypedStruct, recover_hash
from proofmesh.errors import ContractRevert, VerificationError

FIELDS = [{"name": "device", "type": "address"}, {"name": "reading", "type": "int256"},
          {"name": "nonce", "type": "uint64"}, {"name": "data", "type": "bytes32"},
          {"name": "unit", "type": "string"}]


@pytest.fixture
def verifier(any_chain):
    address = any_chain.deploy("test/TypedSigVerifier", "proofmesh test", "1")
    c = any_chain.contract("test/TypedSigVerifier", address)
    return any_chain, c, TypedStruct(Domain("proofmesh test", "1", any_chain.chain_id, address), "Reading", FIELDS)


def _args(m):
    return m["device"], m["reading"], m["nonce"], m["data"], m["unit"]


messages = st.fixed_dictionaries({
    "reading": st.integers(-(2**255), 2**255 - 1), "nonce": st.integers(0, 2**64 - 1),
    "data": st.binary(min_size=32, max_size=32), "unit": st.text(max_size=16).filter(lambda s: len(s.encode()) <= 64)})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msg=messages, seed=st.integers(0, 2**32 - 1))
def test_contract_and_python_agree(verifier, msg, seed):
    chain, c, reading = verifier
    signer = Account.from_key(random.Random(seed).randbytes(32))
    msg = {**msg, "device": signer.address}
    sig = reading.sign(signer, msg)
    assert chain.call(c.functions.digest(*_args(msg))) == reading.hash(msg)
    assert chain.call(c.functions.signer_of(*_args(msg), sig)) == reading.recover(msg, sig) == signer.address
    # replay with another nonce: both sides recover someone else
    other = {**msg, "nonce": (msg["nonce"] + 1) % 2**64}
    assert chain.call(c.functions.signer_of(*_args(other), sig)) == reading.recover(other, sig) != signer.address


def test_both_refuse_malleable_and_bad_v(verifier, accounts):
    chain, c, reading = verifier
    msg = {"device": accounts[1].address, "reading": -7, "nonce": 3, "data": b"\x05" * 32, "unit": "kWh"}
    sig = reading.sign(accounts[1], msg)
    s = int.from_bytes(sig[32:64], "big")
    twin = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    for bad in (twin, sig[:64] + b"\x1d", sig[:64] + b"\x00"):
        with pytest.raises(VerificationError):
            recover_hash(reading.hash(msg), bad)
        with pytest.raises(ContractRevert, match="ecdsa: invalid signature"):
            chain.call(c.functions.signer_of(*_args(msg), bad))


def test_other_contract_domain_does_not_verify(verifier, any_chain, accounts):
    """A signature made for one verifying contract names someone else on another."""
    chain, c, reading = verifier
    other_address = any_chain.deploy("test/TypedSigVerifier", "proofmesh test", "1")
    other = any_chain.contract("test/TypedSigVerifier", other_address)
    msg = {"device": accounts[2].address, "reading": 1, "nonce": 0, "data": bytes(32), "unit": ""}
    sig = reading.sign(accounts[2], msg)
    assert chain.call(c.functions.signer_of(*_args(msg), sig)) == accounts[2].address
    assert chain.call(other.functions.signer_of(*_args(msg), sig)) != accounts[2].address
