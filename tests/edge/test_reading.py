"""Reading encoding, EIP-712 digest, fast verification and the epoch tree (no chain)."""

from __future__ import annotations

import os

import coincurve
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from proofmesh.edge.epoch_tree import EpochCommitment, PositionalTree, positional_root
from proofmesh.edge.reading import (READING_TYPES, ReadingDomain, decode_batch, encode_batch, make_reading,
                                    split_batch)
from proofmesh.edge.verifier import MALLEABLE, OK, PAYLOAD_MISMATCH, verify_span
from proofmesh.errors import InputError

CONTRACT = "0x" + "ab" * 20


def _key():
    pk = coincurve.PrivateKey(os.urandom(32))
    return pk, bytes.fromhex(Account.from_key(pk.secret).address[2:])


def test_digest_matches_eth_account_and_signature_recovers():
    pk, dev = _key()
    dom = ReadingDomain(31337, CONTRACT)
    r = make_reading(pk, dom, device=dev, seq=7, nonce=b"\x01" * 32, timestamp=1_700_000_000, payload=b"[1,2]",
                     model_version=b"\x02" * 32, output_hash=b"\x03" * 32)
    msg = {"device": "0x" + dev.hex(), "seq": 7, "nonce": b"\x01" * 32, "timestamp": 1_700_000_000,
           "payloadHash": r.payload_hash, "modelVersion": b"\x02" * 32, "outputHash": b"\x03" * 32}
    signable = encode_typed_data(dom.eip712_domain(), READING_TYPES, msg)
    assert Account.recover_message(signable, signature=r.signature) == Account.from_key(pk.secret).address


def test_batch_roundtrip_and_verification_codes():
    pk, dev = _key()
    dom = ReadingDomain(31337, CONTRACT)
    good = make_reading(pk, dom, device=dev, seq=1, nonce=b"\x01" * 32, timestamp=10, payload=b"x")
    body = encode_batch([good, good])
    assert decode_batch(body)[0] == good
    offs = split_batch(body)
    res = verify_span(dom.prefix, body, offs)
    assert res[0] == OK and res[1:21] == dev
    # tamper: payload changed -> payload mismatch; seq changed -> another signer
    bad_payload = bytearray(good.encode()); bad_payload[-1] ^= 1
    bad_seq = bytearray(good.encode()); bad_seq[27] ^= 1
    high_s = bytearray(good.encode())
    s = int.from_bytes(good.s, "big")
    high_s[196:228] = (0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141 - s).to_bytes(32, "big")
    body = encode_batch([bytes(bad_payload), bytes(bad_seq), bytes(high_s)])
    res = verify_span(dom.prefix, body, split_batch(body))
    assert res[0] == PAYLOAD_MISMATCH
    assert res[21] == OK and res[22:42] != dev       # recovers, but to a stranger: the gateway rejects it
    assert res[42] == MALLEABLE


@pytest.mark.parametrize("blob", [b"", b"XXXX\x01\x00\x00\x00\x01", encode_batch([])[:-1] + b"\x05"])
def test_malformed_batches_rejected(blob):
    with pytest.raises(InputError):
        split_batch(blob + (b"" if blob else b""))


def test_positional_tree_proofs_and_credits():
    hs = [os.urandom(32) for _ in range(5)]
    t = PositionalTree(hs)
    assert t.depth == 3
    for i, h in enumerate(hs):
        assert positional_root(h, i, t.proof(i)) == t.root
    assert positional_root(bytes(32), 6, t.proof(6)) == t.root   # padding slots are provably empty
    pk, dev = _key()
    dom = ReadingDomain(1, CONTRACT)
    rs = [(make_reading(pk, dom, device=dev, seq=s, nonce=b"\x00" * 32, timestamp=ts, payload=b"p"), iv)
          for s, ts, iv in [(1, 100, 10), (2, 105, 10), (3, 112, 11), (4, 131, 11), (5, 135, 13)]]
    c = EpochCommitment.build(0, rs, 10)
    # seq 4 carries interval 11's beacon but was made in interval 13: stored, not credited
    assert [lf.credit for lf in c.leaves] == [1, 1, 2, 2, 3]
    assert c.counts == {dev: 3}
