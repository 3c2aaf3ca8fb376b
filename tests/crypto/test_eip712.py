"""EIP-712: our hashes equal eth_account's reference, signatures recover, attacks fail."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings, strategies as st

from proofmesh.crypto.eip712 import (SECP256K1_N, Domain, TypedStruct, checksum_address, recover_hash,
                                     recover_typed, sign_typed, typed_hash)
from proofmesh.errors import InputError, VerificationError

ALICE = Account.from_key(b"\x11" * 32)
BOB = Account.from_key(b"\x22" * 32)
CONTRACT = "0x" + "c0" * 20
DOMAIN = Domain("ProofmeshEdge", "1", 31337, CONTRACT)
READING = [{"name": "device", "type": "address"}, {"name": "sensor", "type": "bytes32"},
           {"name": "value", "type": "int256"}, {"name": "nonce", "type": "uint64"},
           {"name": "ok", "type": "bool"}, {"name": "unit", "type": "string"},
           {"name": "blob", "type": "bytes"}, {"name": "tag", "type": "bytes4"}]
TYPES = {"Reading": READING}
MSG = {"device": ALICE.address, "sensor": b"\x01" * 32, "value": -5, "nonce": 1, "ok": True,
       "unit": "°C", "blob": b"\x00\xff", "tag": b"abcd"}


def _reference_hash(domain, primary, types, message):
    full = {"types": {**types, "EIP712Domain": [
        {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}]},
        "primaryType": primary, "domain": domain.as_dict(), "message": message}
    return Account.sign_typed_data(ALICE.key, full_message=full), encode_typed_data(full_message=full)


def test_matches_eth_account_signature_exactly():
    ref, _ = _reference_hash(DOMAIN, "Reading", TYPES, MSG)
    assert typed_hash(DOMAIN, "Reading", TYPES, MSG) == ref.message_hash
    sig = sign_typed(ALICE, DOMAIN, "Reading", TYPES, MSG)
    assert sig == bytes(ref.signature)  # RFC 6979: deterministic, identical bytes
    assert sig[64] in (27, 28)
    assert recover_typed(DOMAIN, "Reading", TYPES, MSG, sig) == ALICE.address


def test_nested_types_generic_path():
    types = {"Mail": [{"name": "from", "type": "Person"}, {"name": "to", "type": "Person[]"},
                      {"name": "contents", "type": "string"}],
             "Person": [{"name": "name", "type": "string"}, {"name": "wallet", "type": "address"}]}
    msg = {"from": {"name": "Cow", "wallet": ALICE.address},
           "to": [{"name": "Bob", "wallet": BOB.address}], "contents": "Hello, Bob!"}
    ref, _ = _reference_hash(DOMAIN, "Mail", types, msg)
    assert typed_hash(DOMAIN, "Mail", types, msg) == ref.message_hash
    sig = sign_typed(BOB, DOMAIN, "Mail", types, msg)
    assert recover_typed(DOMAIN, "Mail", types, msg, sig) == BOB.address
    with pytest.raises(InputError, match="atomic"):
        TypedStruct(DOMAIN, "Mail", types["Mail"])


addresses = st.binary(min_size=20, max_size=20).map(checksum_address)
messages = st.fixed_dictionaries({
    "device": addresses, "sensor": st.binary(min_size=32, max_size=32),
    "value": st.integers(-(2**255), 2**255 - 1), "nonce": st.integers(0, 2**64 - 1),
    "ok": st.booleans(), "unit": st.text(max_size=20), "blob": st.binary(max_size=100),
    "tag": st.binary(min_size=4, max_size=4)})
domains = st.builds(Domain, name=st.text(max_size=12), version=st.sampled_from(["1", "2"]),
                    chain_id=st.integers(1, 2**64), verifying_contract=addresses)


@settings(max_examples=80, deadline=None)
@given(domain=domains, msg=messages)
def test_fast_path_equals_generic_path(domain, msg):
    fast = TypedStruct(domain, "Reading", READING)
    assert fast.hash(msg) == typed_hash(domain, "Reading", TYPES, msg)


def test_fast_path_sign_and_recover():
    fast = TypedStruct(DOMAIN, "Reading", READING)
    sig = fast.sign(ALICE, MSG)
    assert sig == sign_typed(ALICE, DOMAIN, "Reading", TYPES, MSG)
    assert fast.recover(MSG, sig) == ALICE.address
    assert fast.recover_bytes(MSG, sig) == bytes.fromhex(ALICE.address[2:])


def test_replay_on_other_chain_contract_or_nonce_recovers_someone_else():
    """A signature only names its signer for the exact chain, contract and nonce."""
    sig = sign_typed(ALICE, DOMAIN, "Reading", TYPES, MSG)
    other_chain = Domain(DOMAIN.name, DOMAIN.version, 1, CONTRACT)
    other_contract = Domain(DOMAIN.name, DOMAIN.version, DOMAIN.chain_id, "0x" + "c1" * 20)
    other_name = Domain("Other", DOMAIN.version, DOMAIN.chain_id, CONTRACT)
    for d in (other_chain, other_contract, other_name):
        assert recover_typed(d, "Reading", TYPES, MSG, sig) != ALICE.address
    assert recover_typed(DOMAIN, "Reading", TYPES, {**MSG, "nonce": 2}, sig) != ALICE.address
    assert recover_typed(DOMAIN, "Reading", TYPES, {**MSG, "value": 6}, sig) != ALICE.address


def test_forged_signer_and_malformed_signatures():
    fast = TypedStruct(DOMAIN, "Reading", READING)
    sig = fast.sign(ALICE, MSG)
    # BOB signing ALICE's reading does not make it ALICE's
    assert fast.recover(MSG, fast.sign(BOB, MSG)) == BOB.address
    h = fast.hash(MSG)
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    # the malleable twin (n - s, flipped v) is a valid ECDSA signature of the same hash…
    twin = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    with pytest.raises(VerificationError, match="malleable"):
        recover_hash(h, twin)                      # …and is refused, as OpenZeppelin does
    for bad_v in (0, 1, 26, 29, 255):
        with pytest.raises(VerificationError, match="v="):
            recover_hash(h, sig[:64] + bytes([bad_v]))
    with pytest.raises(VerificationError):
        recover_hash(h, sig[:64])
    with pytest.raises(VerificationError, match="out of range"):
        recover_hash(h, bytes(32) + sig[32:])
    with pytest.raises(VerificationError, match="out of range"):
        recover_hash(h, r + SECP256K1_N.to_bytes(32, "big") + bytes([v]))


def test_bad_input_is_clear():
    fast = TypedStruct(DOMAIN, "Reading", READING)
    with pytest.raises(InputError, match="missing field 'nonce'"):
        fast.hash({k: v for k, v in MSG.items() if k != "nonce"})
    with pytest.raises(InputError, match="nonce must be a uint64"):
        fast.hash({**MSG, "nonce": 2**64})
    with pytest.raises(InputError, match="not an address"):
        fast.hash({**MSG, "device": "0x1234"})
    with pytest.raises(InputError, match="chain_id"):
        Domain("x", "1", 0, CONTRACT)
    with pytest.raises(InputError, match="verifying_contract"):
        Domain("x", "1", 1, "nope")
    with pytest.raises(InputError, match="primary type"):
        typed_hash(DOMAIN, "Nope", TYPES, MSG)
    with pytest.raises(InputError, match="cannot encode"):
        typed_hash(DOMAIN, "Reading", TYPES, {**MSG, "value": "many"})


def test_domain_separator_matches_eth_account():
    _, signable = _reference_hash(DOMAIN, "Reading", TYPES, MSG)
    assert signable.header == DOMAIN.separator
    assert DOMAIN.verifying_contract == checksum_address(bytes.fromhex("c0" * 20))


def test_direct_libsecp256k1_path_matches_coincurve_api():
    from proofmesh.crypto import eip712
    fast = TypedStruct(DOMAIN, "Reading", READING)
    for acct in (ALICE, BOB):
        sig = fast.sign(acct, MSG)
        h = fast.hash(MSG)
        assert eip712._recover_pubkey(sig[:64], sig[64] - 27, h) == \
            eip712._recover_pubkey_coincurve(sig[:64], sig[64] - 27, h)
