"""EIP-712 evaluation attestations: what an evaluator signs for ModelEvaluation.attest.

The signed message names the evaluation request, the version, the eval-set root (not
just its id: a signature is about the exact data), the metric, the fixed-point value
and a deadline; the domain names the chain id and the ModelEvaluation contract. The
contract accepts one attestation per (request, signer), so a signature counts once, for
one request, on one chain, for one contract, until its deadline. There is no
per-evaluator nonce: an evaluator drawn for several requests signs them in any order,
and an attestation it never submits blocks nothing else (audit L3).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from proofmesh.crypto.eip712 import Domain, recover_typed, sign_typed
from proofmesh.errors import InputError

DOMAIN_NAME = "proofmesh ModelEvaluation"
DOMAIN_VERSION = "1"
VALUE_SCALE = 10**6          # fixed-point: 6 decimals

ATTESTATION_TYPES = {
    "Attestation": [
        {"name": "requestId", "type": "uint256"},
        {"name": "version", "type": "uint256"},
        {"name": "evalSetRoot", "type": "bytes32"},
        {"name": "metric", "type": "bytes32"},
        {"name": "value", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
}


def metric_id(name: str) -> bytes:
    """A metric name as the contract's bytes32 (UTF-8, left-aligned, zero-padded)."""
    raw = name.strip().lower().encode()
    if not raw or len(raw) > 32:
        raise InputError(f"metric name {name!r} must be 1-32 bytes", fix="e.g. accuracy or perplexity")
    return raw.ljust(32, b"\0")


def metric_name(raw: bytes) -> str:
    """Inverse of :func:`metric_id`."""
    return bytes(raw).rstrip(b"\0").decode(errors="replace")


def to_fixed(value: float) -> int:
    """A metric value as the contract's fixed-point integer (6 decimals, non-negative)."""
    if value != value or value < 0 or value == float("inf"):
        raise InputError(f"metric value {value!r} cannot be attested", fix="metrics must be finite and >= 0")
    return int(round(value * VALUE_SCALE))


def from_fixed(value: int) -> float:
    return value / VALUE_SCALE


@dataclass(frozen=True)
class Attestation:
    """One evaluator's signed measurement."""

    request_id: int
    version: int
    eval_set_root: bytes
    metric: bytes
    value: int
    deadline: int
    signature: bytes = b""

    def message(self) -> dict:
        return {"requestId": self.request_id, "version": self.version, "evalSetRoot": self.eval_set_root,
                "metric": self.metric, "value": self.value, "deadline": self.deadline}


def domain(chain_id: int, evaluation_address: str) -> Domain:
    return Domain(DOMAIN_NAME, DOMAIN_VERSION, chain_id, evaluation_address)


def sign(account, chain_id: int, evaluation_address: str, att: Attestation) -> Attestation:
    """Sign ``att`` with ``account`` (an eth-account LocalAccount)."""
    sig = sign_typed(account, domain(chain_id, evaluation_address), "Attestation", ATTESTATION_TYPES, att.message())
    return replace(att, signature=sig)


def signer_of(chain_id: int, evaluation_address: str, att: Attestation) -> str:
    """The address that signed ``att`` (checksum)."""
    return recover_typed(domain(chain_id, evaluation_address), "Attestation", ATTESTATION_TYPES,
                         att.message(), att.signature)
