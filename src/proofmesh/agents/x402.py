"""x402 for MCP: how a tool asks to be paid and how an agent pays.

Convention (after the x402 MCP transport): an unpaid ``tools/call`` is answered with a
JSON-RPC error, code ``402``, whose ``data`` lists the accepted payment requirements.
The agent retries the same call with a payment payload in the request's
``_meta["x402/payment"]``; the provider answers with the result and
``_meta["x402/payment-response"]`` carrying its signed :class:`~proofmesh.agents.receipts.Receipt`.

Two schemes:

- ``exact`` — an EIP-3009 ``TransferWithAuthorization`` of MESH for this one call,
  executed on chain by the provider (through ``ToolRegistry.settle_exact``) after the
  tool ran and before the result is released: a transaction per call.
- ``voucher`` — a cumulative EIP-712 voucher over the (agent, provider) payment
  channel (:mod:`proofmesh.payments`): verified locally, settled later in one
  transaction for any number of calls. A payer-signed ``Usage`` report rides along so
  the provider can feed reputation when it redeems.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_utils import to_checksum_address

from proofmesh.crypto.eip712 import Domain, TypedStruct
from proofmesh.errors import InputError, ProofmeshError, VerificationError

X402_VERSION = 1
PAYMENT_REQUIRED = 402
META_PAYMENT = "x402/payment"
META_RESPONSE = "x402/payment-response"
SCHEME_EXACT = "exact"
SCHEME_VOUCHER = "voucher"
SCHEME_BITS = {SCHEME_EXACT: 1, SCHEME_VOUCHER: 2}
FLAG_DETERMINISTIC = 4    # in ToolRegistry's `schemes`: the provider declares the tool deterministic

TOKEN_DOMAIN_NAME = "MeshToken"
TOKEN_DOMAIN_VERSION = "1"
AUTHORIZATION_TYPES: dict[str, list[dict[str, str]]] = {
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ]
}


class PaymentRequired(ProofmeshError):
    """A provider refused a call until it is paid (or the payment was not acceptable)."""

    def __init__(self, message: str, requirements: list["Requirement"] | None = None, *,
                 fix: str | None = None) -> None:
        super().__init__(message, fix=fix or "pay with one of the accepted schemes")
        self.requirements = requirements or []


def schemes_from_bits(bits: int) -> list[str]:
    return [s for s, b in SCHEME_BITS.items() if bits & b]


def schemes_to_bits(schemes: list[str] | tuple[str, ...]) -> int:
    bits = 0
    for s in schemes:
        if s not in SCHEME_BITS:
            raise InputError(f"unknown payment scheme {s!r}", fix=f"use {sorted(SCHEME_BITS)}")
        bits |= SCHEME_BITS[s]
    if not bits:
        raise InputError("no payment scheme given", fix="accept exact and/or voucher")
    return bits


@dataclass(frozen=True)
class Requirement:
    """One way to pay for one call (an entry of x402's ``accepts``)."""

    scheme: str
    chain_id: int
    amount: int           # MESH wei per call
    pay_to: str           # the provider
    asset: str            # MeshToken address
    tool: str             # tool name
    tool_id: bytes
    contract: str         # exact: MeshToken (EIP-3009); voucher: PaymentChannels
    registry: str         # ToolRegistry (receipt domain)
    max_timeout_s: int = 300

    def to_json(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "network": f"eip155:{self.chain_id}", "amount": str(self.amount),
                "payTo": self.pay_to, "asset": self.asset, "resource": f"mcp:tool/{self.tool}",
                "maxTimeoutSeconds": self.max_timeout_s,
                "extra": {"toolId": "0x" + self.tool_id.hex(), "contract": self.contract,
                          "registry": self.registry,
                          **({"name": TOKEN_DOMAIN_NAME, "version": TOKEN_DOMAIN_VERSION}
                             if self.scheme == SCHEME_EXACT else {})}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Requirement":
        try:
            network = str(d["network"])
            if not network.startswith("eip155:"):
                raise ValueError(f"network {network!r} is not an EVM chain")
            extra = d.get("extra") or {}
            return cls(scheme=str(d["scheme"]), chain_id=int(network.split(":", 1)[1]), amount=int(d["amount"]),
                       pay_to=to_checksum_address(d["payTo"]), asset=to_checksum_address(d["asset"]),
                       tool=str(d["resource"]).removeprefix("mcp:tool/"),
                       tool_id=bytes.fromhex(str(extra["toolId"]).removeprefix("0x")),
                       contract=to_checksum_address(extra["contract"]),
                       registry=to_checksum_address(extra["registry"]),
                       max_timeout_s=int(d.get("maxTimeoutSeconds", 300)))
        except (KeyError, TypeError, ValueError) as exc:
            raise VerificationError(f"malformed payment requirement: {exc}",
                                    fix="the provider speaks a different x402 dialect") from exc


def payment_required_data(requirements: list[Requirement], error: str) -> dict[str, Any]:
    """``data`` of the 402 error."""
    return {"x402Version": X402_VERSION, "error": error, "accepts": [r.to_json() for r in requirements]}


# ----------------------------------------------------------------------------- exact (EIP-3009)

@lru_cache(maxsize=16)
def _auth_struct(domain: Domain) -> TypedStruct:
    return TypedStruct(domain, "TransferWithAuthorization", AUTHORIZATION_TYPES["TransferWithAuthorization"])


def token_domain(chain_id: int, token: str) -> Domain:
    return Domain(TOKEN_DOMAIN_NAME, TOKEN_DOMAIN_VERSION, int(chain_id), to_checksum_address(token))


@dataclass(frozen=True)
class Authorization:
    """An EIP-3009 ``TransferWithAuthorization`` signed by the payer."""

    sender: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes
    signature: bytes = b""

    def message(self) -> dict[str, Any]:
        return {"from": self.sender, "to": self.to, "value": int(self.value), "validAfter": int(self.valid_after),
                "validBefore": int(self.valid_before), "nonce": self.nonce}

    @classmethod
    def create(cls, account, domain: Domain, to: str, value: int, *, timeout_s: int = 300,
               now: int | None = None) -> "Authorization":
        """Sign a fresh authorization (random nonce) valid from a minute ago for ``timeout_s``."""
        now = int(time.time()) if now is None else now
        a = cls(account.address, to_checksum_address(to), int(value), max(0, now - 60), now + timeout_s,
                os.urandom(32))
        sig = _auth_struct(domain).sign(account, a.message())
        return cls(a.sender, a.to, a.value, a.valid_after, a.valid_before, a.nonce, sig)

    def signer(self, domain: Domain) -> str:
        if len(self.signature) != 65:
            raise VerificationError("authorization signature must be 65 bytes", fix="sign with the payer key")
        try:
            return _auth_struct(domain).recover(self.message(), self.signature)
        except Exception as exc:
            raise VerificationError(f"authorization signature does not recover: {exc}",
                                    fix="re-sign the authorization") from exc

    def vrs(self) -> tuple[int, bytes, bytes]:
        v = self.signature[64]
        return (v if v >= 27 else v + 27), self.signature[:32], self.signature[32:64]

    def to_json(self) -> dict[str, Any]:
        return {"authorization": {"from": self.sender, "to": self.to, "value": str(self.value),
                                  "validAfter": str(self.valid_after), "validBefore": str(self.valid_before),
                                  "nonce": "0x" + self.nonce.hex()},
                "signature": "0x" + self.signature.hex()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Authorization":
        try:
            a = d["authorization"]
            nonce = bytes.fromhex(str(a["nonce"]).removeprefix("0x"))
            if len(nonce) != 32:
                raise ValueError("nonce must be 32 bytes")
            return cls(to_checksum_address(a["from"]), to_checksum_address(a["to"]), int(a["value"]),
                       int(a["validAfter"]), int(a["validBefore"]), nonce,
                       bytes.fromhex(str(d["signature"]).removeprefix("0x")))
        except (KeyError, TypeError, ValueError) as exc:
            raise VerificationError(f"malformed exact payment: {exc}",
                                    fix="send authorization {from,to,value,validAfter,validBefore,nonce} "
                                        "and signature") from exc


def payment_payload(scheme: str, chain_id: int, payload: dict[str, Any]) -> dict[str, Any]:
    """The value of ``_meta["x402/payment"]``."""
    return {"x402Version": X402_VERSION, "scheme": scheme, "network": f"eip155:{chain_id}", "payload": payload}
