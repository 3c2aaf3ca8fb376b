"""The payment voucher: an EIP-712 promise by a channel's payer to owe ``cumulative``.

A voucher is cumulative (it states everything owed on the channel so far, not one
payment), so only the latest one matters and the payee redeems it in a single
transaction. Its nonce strictly increases, so an older or replayed voucher is
refused on chain. The domain binds the chain id and the PaymentChannels contract,
so a voucher cannot be replayed on another chain or another deployment; the channel
id binds the (payer, payee) pair and its generation, so it cannot be replayed on a
re-opened channel either.

An optional ``condition`` (with the ``oracle`` contract that judges it) makes the
payment redeemable only once ``oracle.is_fulfilled(condition)`` is true on chain,
e.g. "the zk proof of receipt X was delivered".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from coincurve import PrivateKey
from eth_utils import to_checksum_address

from proofmesh.crypto.eip712 import Domain, TypedStruct, recover_hash
from proofmesh.errors import InputError, VerificationError

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ZERO_BYTES32 = b"\x00" * 32

DOMAIN_NAME = "proofmesh PaymentChannels"
DOMAIN_VERSION = "1"

VOUCHER_TYPES: dict[str, list[dict[str, str]]] = {
    "Voucher": [
        {"name": "channel", "type": "bytes32"},
        {"name": "cumulative", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "oracle", "type": "address"},
        {"name": "condition", "type": "bytes32"},
    ]
}


def voucher_domain(chain_id: int, contract: str) -> Domain:
    """The EIP-712 domain of a PaymentChannels deployment."""
    return Domain(DOMAIN_NAME, DOMAIN_VERSION, int(chain_id), to_checksum_address(contract))


@lru_cache(maxsize=64)
def _struct(domain: Domain) -> TypedStruct:
    # type hash and domain separator computed once per deployment: signing and
    # recovering a voucher then costs one keccak + one libsecp256k1 call
    return TypedStruct(domain, "Voucher", VOUCHER_TYPES["Voucher"])


@lru_cache(maxsize=4096)
def checksum(address: str) -> str:
    """EIP-55 form of ``address`` (ValueError if it is not one), cached: every voucher
    carries the same few addresses, and eth_utils' checksum costs ~40 µs per call."""
    return to_checksum_address(address)


@lru_cache(maxsize=4096)
def address_bytes(address: str) -> bytes:
    """The 20 bytes of an address already in EIP-55 form (cached: the same few recur)."""
    return bytes.fromhex(address[2:])


@lru_cache(maxsize=32)
def _private_key(key: bytes) -> PrivateKey:
    # Building the libsecp256k1 key object costs more than the signature itself.
    return PrivateKey(key)


def _b32(value: bytes | str, name: str) -> bytes:
    if isinstance(value, str):
        value = bytes.fromhex(value.removeprefix("0x"))
    if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
        raise InputError(f"voucher field {name!r} must be 32 bytes", fix="pass a bytes32 (64 hex digits)")
    return bytes(value)


@dataclass(frozen=True)
class Voucher:
    """A signed (or to-be-signed) cumulative payment promise."""

    channel: bytes
    cumulative: int
    nonce: int
    oracle: str = ZERO_ADDRESS
    condition: bytes = ZERO_BYTES32
    signature: bytes = field(default=b"", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel", _b32(self.channel, "channel"))
        object.__setattr__(self, "condition", _b32(self.condition, "condition"))
        object.__setattr__(self, "oracle", checksum(self.oracle))
        if not (0 <= int(self.cumulative) < 2**256) or not (0 < int(self.nonce) < 2**256):
            raise InputError("voucher cumulative must be a uint256 and nonce a positive uint256",
                             fix="use non-negative integers; the first nonce is 1")
        if self.condition != ZERO_BYTES32 and self.oracle == ZERO_ADDRESS:
            raise InputError("a conditional voucher needs an oracle contract",
                             fix="pass oracle=<address of the contract that judges the condition>")

    @property
    def conditional(self) -> bool:
        return self.condition != ZERO_BYTES32

    def message(self) -> dict:
        return {"channel": self.channel, "cumulative": int(self.cumulative), "nonce": int(self.nonce),
                "oracle": self.oracle, "condition": self.condition}

    def digest(self, domain: Domain) -> bytes:
        """The 32-byte EIP-712 digest (equals ``PaymentChannels.voucher_digest``)."""
        # the oracle as 20 bytes: the address encoder's hex validation is the costliest step
        return _struct(domain).hash({**self.message(), "oracle": address_bytes(self.oracle)})

    def as_args(self) -> tuple:
        """Arguments of ``PaymentChannels.redeem`` / one ``redeem_batch`` element."""
        return (self.channel, int(self.cumulative), int(self.nonce), self.oracle, self.condition,
                self.signature)

    def to_json(self) -> dict:
        return {"channel": "0x" + self.channel.hex(), "cumulative": str(self.cumulative),
                "nonce": int(self.nonce), "oracle": self.oracle,
                "condition": "0x" + self.condition.hex(), "signature": "0x" + self.signature.hex()}

    @classmethod
    def from_json(cls, data: dict) -> "Voucher":
        try:
            return cls(channel=data["channel"], cumulative=int(data["cumulative"]), nonce=int(data["nonce"]),
                       oracle=data.get("oracle", ZERO_ADDRESS),
                       condition=data.get("condition", "0x" + "00" * 32),
                       signature=bytes.fromhex(str(data.get("signature", "")).removeprefix("0x")))
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"malformed voucher: {exc}",
                             fix="send channel, cumulative, nonce, oracle, condition, signature") from exc


def sign_voucher(account, domain: Domain, voucher: Voucher) -> Voucher:
    """Return ``voucher`` signed by ``account`` (the channel's payer)."""
    raw = _private_key(bytes(account.key)).sign_recoverable(voucher.digest(domain), hasher=None)
    sig = raw[:64] + bytes([raw[64] + 27])
    return Voucher(voucher.channel, voucher.cumulative, voucher.nonce, voucher.oracle, voucher.condition, sig)


def recover_voucher(domain: Domain, voucher: Voucher) -> str:
    """The checksum address that signed ``voucher``; raises VerificationError if unsigned/invalid."""
    if len(voucher.signature) != 65:
        raise VerificationError("voucher signature must be 65 bytes (r||s||v)",
                                fix="sign the voucher with sign_voucher()")
    return checksum("0x" + recover_voucher_bytes(domain, voucher).hex())


def recover_voucher_bytes(domain: Domain, voucher: Voucher) -> bytes:
    """The 20-byte signer of ``voucher`` (no EIP-55 formatting: the payee's hot path
    compares bytes); raises VerificationError if unsigned/invalid."""
    if len(voucher.signature) != 65:
        raise VerificationError("voucher signature must be 65 bytes (r||s||v)",
                                fix="sign the voucher with sign_voucher()")
    try:
        return recover_hash(voucher.digest(domain), voucher.signature)
    except Exception as exc:  # a malformed signature is a verification failure, not a crash
        raise VerificationError(f"voucher signature does not recover: {exc}",
                                fix="re-sign the voucher") from exc
