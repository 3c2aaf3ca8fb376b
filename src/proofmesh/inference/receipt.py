"""Inference receipts: what a node signs for every answer, and how inputs/outputs are hashed.

A receipt is EIP-712 typed data in the InferenceRegistry's domain (chain id + contract):
``Receipt(uint256 version, bytes32 input_hash, bytes32 output_hash, uint256 nonce,
uint256 price, uint8 commitment)``. The request nonce is chosen by the client, so each
receipt is unique to one request. Two commitment kinds, matching the contract:

* ``VALUES`` (0): ``input_hash`` = :func:`input_hash` (keccak of the canonical input
  tensors: name, dtype, shape, blake3 of the little-endian bytes); ``output_hash`` =
  :func:`values_hash`: the outputs in fixed point x 1e6 as packed 8-byte big-endian
  int64s, keccak256'd in chunks of 64 under a Merkle root (:mod:`proofmesh.inference.values`). Two such receipts for the same input whose outputs differ beyond the
  version's tolerance are a fraud proof.
* ``ZK`` (1): ``input_hash`` = the circuit's Poseidon hash of the quantised input (its
  first public instance), ``output_hash`` = keccak256(abi.encode(uint256[] output
  instances)); a proof for the registered circuit settles it on chain.
* ``CIRCUIT`` (2): a ``VALUES`` receipt for a version with a zk circuit, whose
  ``input_hash`` is :func:`circuit_input_hash` (keccak of the raw input hash and the
  circuit's Poseidon input instance) and whose values are the circuit's dequantised
  output: a dispute between two of them is settled by an ezkl proof, without a vote.
  The EIP-712 type is unchanged (the kind is the signed ``commitment`` field).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

import numpy as np
from eth_utils import to_checksum_address

from blake3 import blake3 as _blake3

from proofmesh.crypto.eip712 import Domain, TypedStruct, checksum_address, recover_hash
from proofmesh.crypto.keccak import keccak256
from proofmesh.errors import InputError, VerificationError
from proofmesh.inference.values import _commit, packed_values, values_hash  # noqa: F401  (receipt API)

COMMIT_VALUES = 0
COMMIT_ZK = 1
COMMIT_CIRCUIT = 2
FIXED_POINT = 10**6            # outputs are committed as round(y * 1e6)
DOMAIN_NAME = "proofmesh Inference"
DOMAIN_VERSION = "1"

RECEIPT_FIELDS = [
    {"name": "version", "type": "uint256"},
    {"name": "input_hash", "type": "bytes32"},
    {"name": "output_hash", "type": "bytes32"},
    {"name": "nonce", "type": "uint256"},
    {"name": "price", "type": "uint256"},
    {"name": "commitment", "type": "uint8"},
]


def receipt_domain(chain_id: int, registry: str) -> Domain:
    """The EIP-712 domain of receipts: the InferenceRegistry on this chain."""
    return Domain(DOMAIN_NAME, DOMAIN_VERSION, int(chain_id), to_checksum_address(registry))


@lru_cache(maxsize=16)
def _struct(domain: Domain) -> TypedStruct:
    # precompiled type hash + domain separator: a receipt costs one keccak and one
    # libsecp256k1 signature (coincurve), the per-request overhead of a node
    return TypedStruct(domain, "Receipt", RECEIPT_FIELDS)


def input_hash(inputs: Mapping[str, np.ndarray]) -> bytes:
    """keccak256 over each input (sorted by name): name, dtype, shape, blake3 of the raw
    little-endian bytes.

    The tensor bytes go through blake3 (a 256-bit cryptographic hash, ~10x keccak's
    speed here: 64 KB in ~0.06 ms instead of ~0.3-0.7 ms), because hashing a batch-32 input
    with keccak alone was half of the node's whole per-request budget. Only nodes, routers
    and committee members compute this hash; the contract only compares it."""
    h = bytearray()
    for name in sorted(inputs):
        a = np.ascontiguousarray(inputs[name])
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        h += _tensor_head(name, a.dtype, a.shape)
        h += _blake3(a.reshape(-1).view(np.uint8)).digest()    # (a memoryview cast fails on empty tensors)
    return keccak256(bytes(h))


@lru_cache(maxsize=256)
def _tensor_head(name: str, dtype: np.dtype, shape: tuple) -> bytes:
    # name, little-endian dtype string, shape: the same few per served model, so cached
    return (name.encode() + b"\x00" + dtype.newbyteorder("<").str.encode() + b"\x00"
            + b"".join(int(d).to_bytes(8, "little") for d in shape) + b"\x00")


def circuit_input_hash(raw_input_hash: bytes, poseidon: int) -> bytes:
    """``input_hash`` of a CIRCUIT receipt: keccak256(raw input hash ++ Poseidon input
    instance as 32 bytes big-endian), the preimage InferenceDisputes.settle_by_proof checks."""
    if len(raw_input_hash) != 32 or not 0 <= int(poseidon) < 2**256:
        raise InputError("circuit input hash needs a 32-byte input hash and a field element",
                         fix="pass input_hash(inputs) and the witness's Poseidon hash")
    return keccak256(bytes(raw_input_hash) + int(poseidon).to_bytes(32, "big"))


def _flat_outputs(outputs: list[np.ndarray]) -> np.ndarray:
    """Outputs flattened in model order as one float64 array (what fixed point is taken of)."""
    if not outputs:
        return np.zeros(0, dtype=np.float64)
    return np.concatenate([np.asarray(o, dtype=np.float64).reshape(-1) for o in outputs])


def output_array(outputs: list[np.ndarray]) -> np.ndarray:
    """Outputs flattened (in model order) to fixed-point int64 (x 1e6): what
    :func:`values_hash` commits to, without a Python int per element."""
    return np.rint(_flat_outputs(outputs) * FIXED_POINT).astype(np.int64)


def output_values(outputs: list[np.ndarray]) -> list[int]:
    """Outputs flattened (in model order) to fixed-point integers (x 1e6)."""
    return output_array(outputs).tolist()


def _array_head(n: int) -> bytes:
    # abi.encode of one dynamic array: offset to the data (0x20), then the length
    return (32).to_bytes(32, "big") + n.to_bytes(32, "big")


def instances_hash(outputs: list[int]) -> bytes:
    """keccak256(abi.encode(uint256[] output instances)) for ZK receipts."""
    if any(not 0 <= int(o) < 2**256 for o in outputs):
        raise InputError("instances must be uint256", fix="pass field elements as non-negative integers")
    return keccak256(_array_head(len(outputs)) + b"".join(int(o).to_bytes(32, "big") for o in outputs))


def _reference_values_hash(values: list[int]) -> bytes:
    """Reference encoding with eth_abi's packed encoder (tests check the fast paths against it)."""
    from eth_abi.packed import encode_packed

    return _commit(encode_packed(["int64"] * len(values), [int(v) for v in values]))


def _struct_words(type_hash: bytes, version: int, input_hash: bytes, output_hash: bytes, nonce: int, price: int,
                  commitment: int) -> bytes:
    """The Receipt struct's encoding: its fields are all static 32-byte words, packed directly
    (a node signs one receipt per request; the generic EIP-712 encoder cost ~4x more)."""
    if not 0 <= int(commitment) < 256:
        raise InputError("receipt commitment must be a uint8", fix="use 0 (values), 1 (zk) or 2 (circuit values)")
    try:
        return b"".join((type_hash, int(version).to_bytes(32, "big"), _word(input_hash), _word(output_hash),
                         int(nonce).to_bytes(32, "big"), int(price).to_bytes(32, "big"),
                         int(commitment).to_bytes(32, "big")))
    except OverflowError:
        raise InputError("receipt field out of range", fix="version, nonce, price are uint256, "
                         "commitment uint8") from None


def _word(b: bytes) -> bytes:
    if len(b) != 32:
        raise InputError(f"receipt hash field must be 32 bytes, got {len(b)}", fix="send 0x + 64 hex digits")
    return bytes(b)


@dataclass(frozen=True)
class Receipt:
    """A signed statement by a node: this version on this input gave this output."""

    version: int
    input_hash: bytes
    output_hash: bytes
    nonce: int
    price: int
    commitment: int = COMMIT_VALUES
    signature: bytes = b""

    def message(self) -> dict:
        return {"version": int(self.version), "input_hash": self.input_hash, "output_hash": self.output_hash,
                "nonce": int(self.nonce), "price": int(self.price), "commitment": int(self.commitment)}

    def as_tuple(self) -> tuple:
        """The contract's ``Receipt`` struct argument."""
        return (int(self.version), self.input_hash, self.output_hash, int(self.nonce), int(self.price),
                int(self.commitment))

    def digest(self, domain: Domain) -> bytes:
        words = _struct_words(_struct(domain).type_hash, self.version, self.input_hash, self.output_hash,
                              self.nonce, self.price, self.commitment)
        return keccak256(b"\x19\x01" + domain.separator + keccak256(words))

    def signed(self, account, domain: Domain) -> "Receipt":
        sig = _struct(domain).sign(account, self.message())
        return Receipt(self.version, self.input_hash, self.output_hash, self.nonce, self.price,
                       self.commitment, sig)

    def signed_with(self, key, domain: Domain) -> "Receipt":
        """Sign with a cached ``coincurve.PrivateKey`` (a node's hot path: building the key
        from the account on every request cost more than the signature itself). Same
        bytes as :meth:`signed` (RFC 6979 nonces, low s, v in {27, 28})."""
        sig = key.sign_recoverable(self.digest(domain), hasher=None)
        return Receipt(self.version, self.input_hash, self.output_hash, self.nonce, self.price,
                       self.commitment, sig[:64] + bytes([sig[64] + 27]))

    def signer(self, domain: Domain) -> str:
        """Checksum address of the signing node; VerificationError if the signature is bad."""
        if len(self.signature) != 65:
            raise VerificationError("receipt signature must be 65 bytes", fix="ask the node for a signed receipt")
        return checksum_address(recover_hash(self.digest(domain), self.signature))

    def to_json(self) -> dict:
        return {"version": int(self.version), "input_hash": "0x" + self.input_hash.hex(),
                "output_hash": "0x" + self.output_hash.hex(), "nonce": str(self.nonce), "price": str(self.price),
                "commitment": int(self.commitment), "signature": "0x" + self.signature.hex()}

    @classmethod
    def from_json(cls, d: Mapping) -> "Receipt":
        try:
            return cls(int(d["version"]), bytes.fromhex(d["input_hash"].removeprefix("0x")),
                       bytes.fromhex(d["output_hash"].removeprefix("0x")), int(d["nonce"]), int(d["price"]),
                       int(d["commitment"]), bytes.fromhex(str(d.get("signature", "")).removeprefix("0x")))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise InputError(f"malformed receipt: {exc}", fix="a receipt has version, input_hash, output_hash, "
                             "nonce, price, commitment, signature") from exc


class ValuesSealer:
    """Signs value receipts (``VALUES``, or ``CIRCUIT`` for a circuit's output) for one node
    key in one domain: outputs in, the fixed-point values and the signed :class:`Receipt`
    out, in one native call (:mod:`proofmesh.inference._receipt_numba`; the node's
    per-request hot path).

    Equal to ``Receipt(version, input_hash, values_hash(values), nonce, price,
    commitment).signed_with(key, domain)`` with ``values = output_array(outputs)``, byte
    for byte; unlike that path, it refuses outputs that fixed point cannot hold (NaN,
    infinities, |y| >= 9.2e12) instead of committing garbage. Thread-safe: every call has its
    own buffers. The kernel is compiled (or loaded from numba's cache) when the sealer is made.
    """

    def __init__(self, secret: bytes, domain: Domain) -> None:
        from coincurve._libsecp256k1 import ffi, lib
        from coincurve.context import GLOBAL_CONTEXT

        from proofmesh.inference import _receipt_numba

        if len(secret) != 32:
            raise InputError("a node key is 32 bytes", fix="pass the account's private key bytes")
        self._kernel = _receipt_numba.seal_values
        self._codes = _receipt_numba
        self._secret = np.frombuffer(bytes(secret), np.uint8).copy()
        # signing reads the context only (libsecp256k1 >= 0.2 contexts are immutable after
        # randomisation), so coincurve's global one serves every thread
        self._ctx = int(ffi.cast("uintptr_t", GLOBAL_CONTEXT.ctx))
        self._fns = np.array([int(ffi.cast("uintptr_t", ffi.addressof(lib, name))) for name in (
            "secp256k1_ecdsa_sign_recoverable", "secp256k1_ecdsa_recoverable_signature_serialize_compact")],
            dtype=np.uint64)
        self._type_hash = _struct(domain).type_hash
        self._separator = np.frombuffer(domain.separator, np.uint8)
        for dtype in (np.float32, np.float64):     # compile / load now, not on a request
            self.seal(0, bytes(32), 0, 0, [np.zeros(1, dtype)])

    def seal(self, version: int, input_hash: bytes, nonce: int, price: int, outputs: "list[np.ndarray]",
             commitment: int = COMMIT_VALUES) -> tuple[np.ndarray, Receipt]:
        """(fixed-point values, signed receipt) for ``outputs`` in model order."""
        if len(outputs) == 1 and outputs[0].dtype in (np.float32, np.float64):
            y = outputs[0].reshape(-1)
        else:
            y = _flat_outputs(outputs)
        # the output-hash word is left zero: the kernel writes it
        head = _struct_words(self._type_hash, version, input_hash, bytes(32), nonce, price, commitment)
        values = np.empty(y.size, np.int64)
        out = np.empty(97, np.uint8)
        code = self._kernel(np.ascontiguousarray(y), values, np.frombuffer(head, np.uint8), self._separator,
                            self._fns, self._ctx, self._secret, out)
        if code != self._codes.OK:
            if code == self._codes.SIGN_FAILED:
                raise VerificationError("libsecp256k1 refused to sign the receipt", fix="check the node key")
            raise InputError("the model's output is " + ("NaN or infinite" if code == self._codes.NOT_FINITE
                                                        else "too large for fixed point (|y| >= 9.2e12)"),
                             fix="check the input: the output cannot be committed in a receipt")
        sealed = out.tobytes()
        return values, Receipt(int(version), bytes(input_hash), sealed[:32], int(nonce), int(price),
                               int(commitment), sealed[32:])
