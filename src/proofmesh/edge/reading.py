"""A device reading: its EIP-712 type, the fast digest, signing, recovery and wire format.

A reading is what a device signs for every measurement (or on-device inference):

    Reading(address device, uint64 seq, bytes32 nonce, uint64 timestamp,
            bytes32 payloadHash, bytes32 modelVersion, bytes32 outputHash)

under the EIP-712 domain ("proofmesh EdgeEpochs", "1", chain id, EdgeEpochs address) —
the contract that re-checks signatures in challenges. ``nonce`` is the gateway's beacon
for the current interval, so a reading cannot be made in advance; ``seq`` stops replays.

Every field is static, so the struct hash is ``keccak(TYPEHASH ‖ 7 padded words)``; this
module builds those bytes by concatenation with the domain separator precomputed
(:class:`ReadingDomain`), instead of a generic typed-data encoder (~100x the cost).

Wire format (big-endian), used between device and gateway and in the gateway's log::

    batch  = b"PMRB" ‖ version u8 (1) ‖ count u32 ‖ record*
    record = device 20 ‖ seq 8 ‖ nonce 32 ‖ timestamp 8 ‖ payloadHash 32 ‖
             modelVersion 32 ‖ outputHash 32 ‖ r 32 ‖ s 32 ‖ v 1 ‖ payload_len 2 ‖ payload
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import coincurve

from proofmesh.crypto.keccak import keccak256
from proofmesh.errors import InputError

READING_TYPE = ("Reading(address device,uint64 seq,bytes32 nonce,uint64 timestamp,"
                "bytes32 payloadHash,bytes32 modelVersion,bytes32 outputHash)")
RECEIPT_TYPE = "Receipt(bytes32 runsRoot)"
READING_TYPEHASH = keccak256(READING_TYPE.encode())
RECEIPT_TYPEHASH = keccak256(RECEIPT_TYPE.encode())
DOMAIN_TYPEHASH = keccak256(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
DOMAIN_NAME = "proofmesh EdgeEpochs"
DOMAIN_VERSION = "1"

# EIP-712 field types, for eth_account cross-checks and generic tools.
READING_TYPES = {"Reading": [
    {"name": "device", "type": "address"}, {"name": "seq", "type": "uint64"},
    {"name": "nonce", "type": "bytes32"}, {"name": "timestamp", "type": "uint64"},
    {"name": "payloadHash", "type": "bytes32"}, {"name": "modelVersion", "type": "bytes32"},
    {"name": "outputHash", "type": "bytes32"}]}
RECEIPT_TYPES = {"Receipt": [{"name": "runsRoot", "type": "bytes32"}]}

MAGIC = b"PMRB"
VERSION = 1
HEAD = struct.Struct(">4sBI")
RECORD = struct.Struct(">20sQ32sQ32s32s32s32s32sBH")   # fixed part of a record
RECORD_FIXED = RECORD.size                            # 231 bytes
MAX_PAYLOAD = 4096
MAX_BATCH = 100_000
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HALF_N = SECP256K1_N // 2
_Z12 = bytes(12)
_Z24 = bytes(24)


@dataclass(frozen=True)
class Reading:
    """One signed reading. ``device`` is the 20-byte device ID; hashes are 32 bytes."""

    device: bytes
    seq: int
    nonce: bytes
    timestamp: int
    payload_hash: bytes
    model_version: bytes
    output_hash: bytes
    r: bytes
    s: bytes
    v: int
    payload: bytes = b""

    @property
    def signature(self) -> bytes:
        """65 bytes r ‖ s ‖ v (v = 27/28)."""
        return self.r + self.s + bytes([self.v])

    def encode(self) -> bytes:
        """The wire record."""
        return RECORD.pack(self.device, self.seq, self.nonce, self.timestamp, self.payload_hash,
                           self.model_version, self.output_hash, self.r, self.s, self.v,
                           len(self.payload)) + self.payload

    def to_json(self) -> dict:
        """JSON-friendly form (hex strings)."""
        return {"device": "0x" + self.device.hex(), "seq": self.seq, "nonce": "0x" + self.nonce.hex(),
                "timestamp": self.timestamp, "payloadHash": "0x" + self.payload_hash.hex(),
                "modelVersion": "0x" + self.model_version.hex(), "outputHash": "0x" + self.output_hash.hex(),
                "signature": "0x" + self.signature.hex(), "payload": "0x" + self.payload.hex()}


def struct_bytes(device: bytes, seq: int, nonce: bytes, timestamp: int, payload_hash: bytes,
                 model_version: bytes, output_hash: bytes) -> bytes:
    """ABI encoding of ``(TYPEHASH, fields…)`` whose keccak is the EIP-712 struct hash."""
    return b"".join((READING_TYPEHASH, _Z12, device, _Z24, seq.to_bytes(8, "big"), nonce, _Z24,
                     timestamp.to_bytes(8, "big"), payload_hash, model_version, output_hash))


class ReadingDomain:
    """The EIP-712 domain of readings and receipts, with its separator precomputed."""

    def __init__(self, chain_id: int, verifying_contract: str | bytes) -> None:
        if isinstance(verifying_contract, str):
            verifying_contract = bytes.fromhex(verifying_contract.removeprefix("0x"))
        if len(verifying_contract) != 20:
            raise InputError("verifying contract must be a 20-byte address",
                             fix="pass the EdgeEpochs address from the address book")
        self.chain_id = chain_id
        self.verifying_contract = verifying_contract
        self.separator = keccak256(b"".join((
            DOMAIN_TYPEHASH, keccak256(DOMAIN_NAME.encode()), keccak256(DOMAIN_VERSION.encode()),
            chain_id.to_bytes(32, "big"), _Z12, verifying_contract)))
        self.prefix = b"\x19\x01" + self.separator

    def reading_digest(self, device: bytes, seq: int, nonce: bytes, timestamp: int, payload_hash: bytes,
                       model_version: bytes, output_hash: bytes) -> bytes:
        """The 32-byte digest a device signs."""
        return keccak256(self.prefix + keccak256(struct_bytes(device, seq, nonce, timestamp, payload_hash,
                                                              model_version, output_hash)))

    def receipt_digest(self, runs_root: bytes) -> bytes:
        """The digest a gateway signs for one batch: ``Receipt(runsRoot)``."""
        return keccak256(self.prefix + keccak256(RECEIPT_TYPEHASH + runs_root))

    def eip712_domain(self) -> dict:
        """The domain as an eth_account ``domain_data`` dict."""
        return {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": self.chain_id,
                "verifyingContract": "0x" + self.verifying_contract.hex()}


def run_leaf(device: bytes, epoch: int, first_seq: int, last_seq: int) -> bytes:
    """OpenZeppelin leaf of a receipt run ``(address, uint64, uint64, uint64)``."""
    return keccak256(keccak256(b"".join((_Z12, device, _Z24, epoch.to_bytes(8, "big"), _Z24,
                                         first_seq.to_bytes(8, "big"), _Z24, last_seq.to_bytes(8, "big")))))


def runs_root(runs: Sequence[tuple[bytes, int, int, int]]) -> bytes:
    """Root of the receipt tree over ``runs`` — ``MerkleTree([run_leaf(*r) for r in runs]).root``
    (sorted leaves, sorted pairs) — with the leaves hashed in numba: the gateway builds one
    per batch, with a run per device."""
    import numpy as np

    from proofmesh.crypto.merkle import MerkleTree
    from proofmesh.edge._verify_numba import run_leaves

    n = len(runs)
    if n == 0:
        raise InputError("a receipt needs at least one run", fix="sign receipts only for batches with accepted readings")
    devices, epochs, firsts, lasts = zip(*runs)
    leaves = np.empty((n, 32), np.uint8)
    run_leaves(np.frombuffer(b"".join(devices), np.uint8).reshape(n, 20), np.array(epochs, np.uint64),
               np.array(firsts, np.uint64), np.array(lasts, np.uint64), leaves)
    return MerkleTree(leaves).root


def sign_digest(private_key: coincurve.PrivateKey, digest: bytes) -> tuple[bytes, bytes, int]:
    """(r, s, v) with v = 27/28; libsecp256k1 always produces low-s signatures."""
    sig = private_key.sign_recoverable(digest, hasher=None)
    return sig[:32], sig[32:64], sig[64] + 27


def address_of(public_key: coincurve.PublicKey) -> bytes:
    """The 20-byte Ethereum address of a public key."""
    return keccak256(public_key.format(compressed=False)[1:])[12:]


def make_reading(private_key: coincurve.PrivateKey, domain: ReadingDomain, *, device: bytes, seq: int,
                 nonce: bytes, timestamp: int, payload: bytes, model_version: bytes = bytes(32),
                 output_hash: bytes = bytes(32)) -> Reading:
    """Sign a reading over ``payload`` (its keccak is the payload hash)."""
    if len(payload) > MAX_PAYLOAD:
        raise InputError(f"payload is {len(payload)} bytes, more than {MAX_PAYLOAD}",
                         fix="send a digest or split the measurement")
    payload_hash = keccak256(payload)
    digest = domain.reading_digest(device, seq, nonce, timestamp, payload_hash, model_version, output_hash)
    r, s, v = sign_digest(private_key, digest)
    return Reading(device, seq, nonce, timestamp, payload_hash, model_version, output_hash, r, s, v, payload)


def encode_batch(readings: Iterable[Reading | bytes]) -> bytes:
    """A wire batch of readings (or already-encoded records)."""
    recs = [r if isinstance(r, (bytes, bytearray)) else r.encode() for r in readings]
    return HEAD.pack(MAGIC, VERSION, len(recs)) + b"".join(recs)


def split_batch(body: bytes) -> list[int]:
    """Record start offsets of a wire batch, plus the end offset; raises on a malformed batch."""
    if len(body) < HEAD.size:
        raise InputError("batch shorter than its header", fix="send b'PMRB' ‖ version ‖ count ‖ records")
    magic, version, count = HEAD.unpack_from(body, 0)
    if magic != MAGIC or version != VERSION:
        raise InputError(f"not a proofmesh reading batch (magic {magic!r}, version {version})",
                         fix="encode batches with proofmesh.edge.reading.encode_batch")
    if count > MAX_BATCH:
        raise InputError(f"batch of {count} readings exceeds {MAX_BATCH}", fix="send smaller batches")
    offsets = []
    off = HEAD.size
    n = len(body)
    for _ in range(count):
        if off + RECORD_FIXED > n:
            raise InputError("batch truncated inside a record", fix="resend the whole batch")
        offsets.append(off)
        plen = int.from_bytes(body[off + RECORD_FIXED - 2:off + RECORD_FIXED], "big")
        if plen > MAX_PAYLOAD:
            raise InputError(f"payload of {plen} bytes exceeds {MAX_PAYLOAD}", fix="send smaller payloads")
        off += RECORD_FIXED + plen
    if off != n:
        raise InputError(f"{n - off} trailing bytes after {count} records", fix="set the count field right")
    offsets.append(off)
    return offsets


def decode_record(buf: bytes, off: int = 0) -> Reading:
    """Parse one wire record at ``off``."""
    (device, seq, nonce, ts, ph, mv, oh, r, s, v, plen) = RECORD.unpack_from(buf, off)
    start = off + RECORD_FIXED
    return Reading(device, seq, nonce, ts, ph, mv, oh, r, s, v, bytes(buf[start:start + plen]))


def decode_batch(body: bytes) -> list[Reading]:
    """All readings of a wire batch."""
    offs = split_batch(body)
    return [decode_record(body, o) for o in offs[:-1]]


def iter_records(body: bytes, offsets: list[int]) -> Iterator[tuple[int, int]]:
    """(start, end) of each record given :func:`split_batch` offsets."""
    for i in range(len(offsets) - 1):
        yield offsets[i], offsets[i + 1]
