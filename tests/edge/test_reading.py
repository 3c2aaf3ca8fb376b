"""Reading encoding, EIP-712 digest, fast verification and the epoch tree (no chain)."""

from __future__ import annotations

import os

import coincurve
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from proofmesh.edge.epoch_tree import EpochCommitment, PositionalTree, positional_root
from proofmesh.crypto.merkle import MerkleTree
from proofmesh.edge.reading import (READING_TYPES, ReadingDomain, decode_batch, encode_batch, make_reading,
                                    run_leaf, runs_root, split_batch)
from proofmesh.edge.verifier import (BAD_SIGNATURE, MALLEABLE, OK, PAYLOAD_MISMATCH, VerifierPool, verify_batch,
                                     verify_span)
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


def test_native_kernel_agrees_with_reference_on_good_and_bad_records():
    """The gateway's numba/libsecp256k1 kernel and the pure-Python reference give the same
    status and signer for every record, valid or not, single-threaded and on the pool."""
    dom = ReadingDomain(31337, CONTRACT)
    keys = [_key() for _ in range(3)]
    recs = []
    for i in range(300):
        pk, dev = keys[i % 3]
        # payloads of 0 … 300 bytes cross keccak's 136-byte block boundary
        r = make_reading(pk, dom, device=dev, seq=i + 1, nonce=os.urandom(32), timestamp=1_700_000_000 + i,
                         payload=os.urandom(i % 301 if i % 5 else 136), model_version=os.urandom(32))
        raw = bytearray(r.encode())
        kind = i % 7
        if kind == 1:
            raw[-1 if len(r.payload) else 68] ^= 1                      # payload / hash mismatch
        elif kind == 2:
            raw[196:228] = (0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
                            - int.from_bytes(r.s, "big")).to_bytes(32, "big")   # high s
        elif kind == 3:
            raw[228] = 29                                                # bad v
        elif kind == 4:
            raw[228] = 55 - raw[228]                                     # other parity: another signer
        elif kind == 5:
            raw[164:196] = b"\xff" * 32                                  # r >= n: unparseable
        elif kind == 6:
            raw[30] ^= 1                                                 # nonce changed after signing
        recs.append(bytes(raw))
    body = encode_batch(recs)
    offs = split_batch(body)
    ref = verify_span(dom.prefix, body, offs)
    assert verify_batch(dom.prefix, body, offs).as_bytes() == ref
    pool = VerifierPool(2)
    try:
        verdicts, futs = pool.submit(dom.prefix, body, offs)
        assert len(futs) > 1
        for f in futs:
            f.result()
        assert verdicts.as_bytes() == ref
    finally:
        pool.close()
    status = ref[::21]
    assert {status[i] for i in range(0, 300, 7)} == {OK}
    assert {status[i] for i in range(1, 300, 7)} == {PAYLOAD_MISMATCH}
    assert {status[i] for i in range(2, 300, 7)} == {MALLEABLE}
    assert {status[i] for i in range(3, 300, 7)} == {BAD_SIGNATURE}
    assert {status[i] for i in range(5, 300, 7)} == {BAD_SIGNATURE}
    for i in range(300):
        signer = ref[21 * i + 1:21 * i + 21]
        assert (signer == keys[i % 3][1]) == (i % 7 == 0)


def test_runs_root_matches_merkle_tree():
    for n in (1, 2, 3, 8, 129):
        runs = [(os.urandom(20), 7 + i % 2, i, i + i % 3) for i in range(n)]
        assert runs_root(runs) == MerkleTree([run_leaf(*r) for r in runs]).root


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
