"""EIP-712 messages of the tool network, all in the ``ToolRegistry`` domain
(chain id + registry address), so none can be replayed on another chain or deployment.

- ``Receipt`` — signed by the *provider* for every paid call: which tool, the hash of
  the arguments, the hash of the result, who paid, how much, and the payment's nonce.
  The agent checks it before trusting the result, and it is the evidence of a dispute.
- ``Usage`` — signed by the *payer*: its cumulative calls, failures and value paid for
  one tool, with a strictly increasing ``seq``. Providers submit the latest one when
  they redeem; the contract applies only the increase, so a replay changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import lru_cache

from eth_utils import to_checksum_address

from coincurve import PrivateKey

from proofmesh.crypto.eip712 import Domain, TypedStruct, recover_hash
from proofmesh.errors import InputError, VerificationError

DOMAIN_NAME = "ToolRegistry"
DOMAIN_VERSION = "1"

RECEIPT_TYPES: dict[str, list[dict[str, str]]] = {
    "Receipt": [
        {"name": "toolId", "type": "bytes32"},
        {"name": "argsHash", "type": "bytes32"},
        {"name": "resultHash", "type": "bytes32"},
        {"name": "payer", "type": "address"},
        {"name": "payment", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
    ]
}
USAGE_TYPES: dict[str, list[dict[str, str]]] = {
    "Usage": [
        {"name": "toolId", "type": "bytes32"},
        {"name": "payer", "type": "address"},
        {"name": "calls", "type": "uint256"},
        {"name": "failures", "type": "uint256"},
        {"name": "paid", "type": "uint256"},
        {"name": "seq", "type": "uint256"},
    ]
}


@lru_cache(maxsize=64)
def _struct(domain: Domain, primary_type: str) -> TypedStruct:
    # Type hash and domain separator computed once per (domain, type): receipts are hot.
    types = RECEIPT_TYPES if primary_type == "Receipt" else USAGE_TYPES
    return TypedStruct(domain, primary_type, types[primary_type])


@lru_cache(maxsize=32)
def _private_key(key: bytes) -> PrivateKey:
    return PrivateKey(key)


def sign_digest(account, digest: bytes) -> bytes:
    """65-byte r||s||v signature, as :func:`proofmesh.crypto.eip712.sign_hash`, but with the
    libsecp256k1 key object cached per account: building it costs more than signing."""
    sig = _private_key(bytes(account.key)).sign_recoverable(digest, hasher=None)
    return sig[:64] + bytes([sig[64] + 27])


def registry_domain(chain_id: int, registry: str) -> Domain:
    """The EIP-712 domain of a ToolRegistry deployment."""
    return Domain(DOMAIN_NAME, DOMAIN_VERSION, int(chain_id), to_checksum_address(registry))


def _b32(value: bytes | str, name: str) -> bytes:
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value.removeprefix("0x"))
        except ValueError as exc:
            raise InputError(f"{name} is not hex", fix="pass 64 hex digits") from exc
    if len(value) != 32:
        raise InputError(f"{name} must be 32 bytes, got {len(value)}", fix="pass a bytes32")
    return bytes(value)


_HEX40 = re.compile(r"^0x[0-9a-fA-F]{40}$")


@lru_cache(maxsize=4096)
def _address_bytes(address: str) -> bytes:
    if not _HEX40.match(address):
        raise InputError(f"not an address: {address!r:.60}", fix="give a 0x-prefixed 20-byte hex address")
    return bytes.fromhex(address[2:])


def _address(value: str) -> str:
    # Format check only: EIP-55 normalisation costs more than the signature check it precedes,
    # and the address is hashed as 20 bytes anyway.
    if not isinstance(value, str) or not _HEX40.match(value):
        raise ValueError(f"not an address: {value!r:.60}")
    return value


def _sig(value: bytes | str) -> bytes:
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value.removeprefix("0x"))
        except ValueError as exc:
            raise VerificationError("signature is not hex", fix="send a 65-byte hex signature") from exc
    return bytes(value)


@dataclass(frozen=True)
class Receipt:
    """A provider's signed statement that it served one paid call and what it returned."""

    tool_id: bytes
    args_hash: bytes
    result_hash: bytes
    payer: str
    payment: int
    nonce: int
    signature: bytes = b""

    def message(self) -> dict:
        return {"toolId": self.tool_id, "argsHash": self.args_hash, "resultHash": self.result_hash,
                "payer": self.payer, "payment": int(self.payment), "nonce": int(self.nonce)}

    def _hashed(self, domain: Domain) -> bytes:
        # payer as 20 bytes (format-checked by from_json / the signer): skips hex validation
        return _struct(domain, "Receipt").hash({**self.message(), "payer": _address_bytes(self.payer)})

    def signed(self, account, domain: Domain) -> "Receipt":
        sig = sign_digest(account, self._hashed(domain))
        return Receipt(self.tool_id, self.args_hash, self.result_hash, self.payer, self.payment, self.nonce, sig)

    def signer(self, domain: Domain) -> str:
        if len(self.signature) != 65:
            raise VerificationError("receipt signature must be 65 bytes", fix="the provider must sign receipts")
        try:
            return _struct(domain, "Receipt").recover(self.message(), self.signature)
        except Exception as exc:
            raise VerificationError(f"receipt signature does not recover: {exc}",
                                    fix="do not trust this result; use another provider") from exc

    def digest(self, domain: Domain) -> bytes:
        return self._hashed(domain)

    def signed_by(self, domain: Domain, address: str) -> bool:
        """Whether ``address`` signed this receipt (bytes compared: no EIP-55 work on the hot path)."""
        if len(self.signature) != 65:
            raise VerificationError("receipt signature must be 65 bytes", fix="the provider must sign receipts")
        try:
            raw = recover_hash(self.digest(domain), self.signature)
        except Exception as exc:
            raise VerificationError(f"receipt signature does not recover: {exc}",
                                    fix="do not trust this result; use another provider") from exc
        return raw.hex() == address[2:].lower()

    def as_struct(self) -> tuple:
        """The ``SignedReceipt`` tuple of ``ToolRegistry.prove_fault``."""
        return (self.args_hash, self.result_hash, self.payer, int(self.payment), int(self.nonce), self.signature)

    def to_json(self) -> dict:
        return {"toolId": "0x" + self.tool_id.hex(), "argsHash": "0x" + self.args_hash.hex(),
                "resultHash": "0x" + self.result_hash.hex(), "payer": self.payer,
                "payment": str(self.payment), "nonce": str(self.nonce), "signature": "0x" + self.signature.hex()}

    @classmethod
    def from_json(cls, d: dict) -> "Receipt":
        try:
            return cls(_b32(d["toolId"], "toolId"), _b32(d["argsHash"], "argsHash"),
                       _b32(d["resultHash"], "resultHash"), _address(d["payer"]),
                       int(d["payment"]), int(d["nonce"]), _sig(d.get("signature", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise VerificationError(f"malformed receipt: {exc}", fix="the provider sent a bad receipt") from exc


@dataclass(frozen=True)
class Usage:
    """A payer's signed cumulative record of its calls to one tool."""

    tool_id: bytes
    payer: str
    calls: int
    failures: int
    paid: int
    seq: int
    signature: bytes = b""

    def message(self) -> dict:
        return {"toolId": self.tool_id, "payer": self.payer, "calls": int(self.calls),
                "failures": int(self.failures), "paid": int(self.paid), "seq": int(self.seq)}

    def signed(self, account, domain: Domain) -> "Usage":
        sig = sign_digest(account, _struct(domain, "Usage").hash(self.message()))
        return Usage(self.tool_id, self.payer, self.calls, self.failures, self.paid, self.seq, sig)

    def signer(self, domain: Domain) -> str:
        if len(self.signature) != 65:
            raise VerificationError("usage signature must be 65 bytes", fix="sign usage reports with the payer key")
        try:
            return _struct(domain, "Usage").recover(self.message(), self.signature)
        except Exception as exc:
            raise VerificationError(f"usage signature does not recover: {exc}", fix="re-sign the report") from exc

    def as_args(self) -> tuple:
        """Arguments of ``ToolRegistry.report_usage``."""
        return (self.tool_id, self.payer, int(self.calls), int(self.failures), int(self.paid), int(self.seq),
                self.signature)

    def to_json(self) -> dict:
        d = asdict(self)
        return {"toolId": "0x" + self.tool_id.hex(), "payer": self.payer, "calls": d["calls"],
                "failures": d["failures"], "paid": str(self.paid), "seq": d["seq"],
                "signature": "0x" + self.signature.hex()}

    @classmethod
    def from_json(cls, d: dict) -> "Usage":
        try:
            return cls(_b32(d["toolId"], "toolId"), _address(d["payer"]), int(d["calls"]),
                       int(d["failures"]), int(d["paid"]), int(d["seq"]), _sig(d.get("signature", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise VerificationError(f"malformed usage report: {exc}", fix="send toolId, payer, calls, failures, "
                                    "paid, seq, signature") from exc
