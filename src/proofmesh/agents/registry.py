"""Typed client of the ``ToolRegistry`` contract: publish tools, list and rank them,
settle ``exact`` payments, report usage, prove faults."""

from __future__ import annotations

import os
from dataclasses import dataclass

from eth_utils import keccak, to_checksum_address
from web3.logs import DISCARD

from proofmesh.agents.receipts import Receipt, Usage, registry_domain
from proofmesh.agents.schema import check_tool_name
from proofmesh.agents.x402 import FLAG_DETERMINISTIC, Authorization, schemes_from_bits
from proofmesh.errors import InputError

CONTRACT = "ToolRegistry"
PROVE_GAS = 600_000    # prove_fault: two ecrecovers, a slash in NodeRegistry, a refund (~200k used)


@dataclass(frozen=True)
class ToolRecord:
    """A tool as the chain knows it, with its reputation."""

    tool_id: bytes
    provider: str
    name: str
    schema_cid: str
    endpoint: str
    price: int
    schemes: list[str]
    active: bool
    calls: int
    failures: int
    disputes: int
    paid: int
    payers: int
    score: int
    deterministic: bool = False     # inconsistent receipts of this tool are slashable

    def to_json(self) -> dict:
        return {"tool_id": "0x" + self.tool_id.hex(), "provider": self.provider, "name": self.name,
                "schema_cid": self.schema_cid, "endpoint": self.endpoint, "price": str(self.price),
                "schemes": self.schemes, "active": self.active, "calls": self.calls, "failures": self.failures,
                "disputes": self.disputes, "paid": str(self.paid), "payers": self.payers, "score": str(self.score),
                "deterministic": self.deterministic}


def tool_id_of(provider: str, name: str) -> bytes:
    """keccak256(abi.encode(provider, keccak256(name))) — the contract's tool id."""
    from eth_abi import encode
    return keccak(encode(["address", "bytes32"], [to_checksum_address(provider), keccak(name.encode())]))


class ToolRegistry:
    """Client of the ToolRegistry contract on one chain."""

    def __init__(self, chain) -> None:
        self.chain = chain
        self.contract = chain.contract(CONTRACT)
        self.address = to_checksum_address(self.contract.address)
        self.domain = registry_domain(chain.chain_id, self.address)

    # --- writes ---------------------------------------------------------------
    def register(self, name: str, schema_cid: str, endpoint: str, price: int, schemes_bits: int,
                 sender=None) -> bytes:
        """Register a tool of ``sender`` (a staked TOOL_PROVIDER node); returns its id."""
        check_tool_name(name)
        if price < 0:
            raise InputError("price must be >= 0", fix="pass a price in MESH")
        sender = sender or self.chain.account
        self.chain.transact(self.contract.functions.register_tool(name, schema_cid, endpoint, int(price),
                                                                  schemes_bits), sender=sender)
        return tool_id_of(sender.address, name)

    def update(self, tool_id: bytes, schema_cid: str, endpoint: str, price: int, schemes_bits: int,
               sender=None) -> None:
        self.chain.transact(self.contract.functions.update_tool(tool_id, schema_cid, endpoint, int(price),
                                                                schemes_bits), sender=sender)

    def retire(self, tool_id: bytes, sender=None) -> None:
        self.chain.transact(self.contract.functions.retire_tool(tool_id), sender=sender)

    def settle_exact(self, tool_id: bytes, auth: Authorization, sender=None):
        """Execute an EIP-3009 payment for a served call (the provider submits); returns the receipt."""
        v, r, s = auth.vrs()
        return self.chain.transact(self.contract.functions.settle_exact(
            tool_id, auth.sender, int(auth.value), int(auth.valid_after), int(auth.valid_before), auth.nonce,
            v, r, s), sender=sender)

    def report_usage(self, usage: Usage, sender=None):
        return self.chain.transact(self.contract.functions.report_usage(*usage.as_args()), sender=sender)

    def release_bond(self, tool_id: bytes, sender=None):
        """Release a retired tool's bond after its dispute window."""
        return self.chain.transact(self.contract.functions.release_tool_bond(tool_id), sender=sender)

    # --- disputes (commit, then reveal a fault proof in a later block) ---------
    def commit_dispute(self, a: Receipt, b: Receipt, salt: bytes | None = None, sender=None) -> bytes:
        """Lock the dispute bond behind a commitment to the proof ``(a, b)``; returns the salt
        to reveal it with :meth:`prove_fault` in a later block."""
        sender = sender or self.chain.account
        if a.tool_id != b.tool_id:
            raise InputError("the two receipts are for different tools",
                             fix="a fault proof needs two receipts of one tool")
        salt = salt if salt is not None else os.urandom(32)
        commitment = self.chain.call(self.contract.functions.dispute_commitment(
            sender.address, a.tool_id, a.digest(self.domain), b.digest(self.domain), salt))
        bond = self.chain.call(self.contract.functions.dispute_bond())
        token = self.chain.contract("MeshToken")
        if self.chain.call(token.functions.allowance(sender.address, self.address)) < bond:
            self.chain.transact(token.functions.approve(self.address, bond), sender=sender)
        self.chain.transact(self.contract.functions.commit_dispute(commitment), sender=sender)
        return salt

    def prove_fault(self, a: Receipt, b: Receipt, salt: bytes, sender=None) -> bool:
        """Reveal the committed proof; True if the chain found a fault (see FaultProven /
        DisputeRejected events), False if it burned the dispute bond or refunded it."""
        # Fixed gas: a node estimating in the commitment's own block would see "reveal in a later
        # block"; the transaction itself always lands in a later one.
        rcpt = self.chain.transact(self.contract.functions.prove_fault(a.tool_id, a.as_struct(), b.as_struct(),
                                                                       salt), sender=sender, gas=PROVE_GAS)
        return bool(self.contract.events.FaultProven().process_receipt(rcpt.receipt, errors=DISCARD))

    def expire_dispute(self, commitment: bytes, sender=None):
        return self.chain.transact(self.contract.functions.expire_dispute(commitment), sender=sender)

    # --- views ----------------------------------------------------------------
    def usage_seq(self, tool_id: bytes, payer: str) -> tuple[int, int, int, int]:
        """(seq, calls, failures, paid) of the last accepted usage report."""
        seq, calls, failures, paid, _credited, _ = self.chain.call(self.contract.functions.usage(
            tool_id, to_checksum_address(payer)))
        return seq, calls, failures, paid

    def settled_total(self, payer: str, provider: str) -> int:
        return self.chain.call(self.contract.functions.settled_total(to_checksum_address(payer),
                                                                     to_checksum_address(provider)))

    def get(self, tool_id: bytes) -> ToolRecord:
        f = self.contract.functions
        provider, name, schema_cid, endpoint, price, schemes, active, _bond, _at = self.chain.call(f.tools(tool_id))
        if int(provider, 16) == 0:
            raise InputError(f"no tool with id 0x{tool_id.hex()}", fix="list tools with `proofmesh agents tools`")
        calls, failures, disputes, paid, payers, _weighted = self.chain.call(f.reputation(tool_id))
        score = self.chain.call(f.score(tool_id))
        return ToolRecord(bytes(tool_id), to_checksum_address(provider), name, schema_cid, endpoint, price,
                          schemes_from_bits(schemes), active, calls, failures, disputes, paid, payers, score,
                          bool(schemes & FLAG_DETERMINISTIC))

    def all(self) -> list[ToolRecord]:
        n = self.chain.call(self.contract.functions.tool_count())
        return [self.get(bytes(self.chain.call(self.contract.functions.tool_at(i)))) for i in range(n)]

    def search(self, text: str | None = None, *, name: str | None = None,
               include_retired: bool = False) -> list[ToolRecord]:
        """Active tools matching ``name`` exactly and/or ``text`` (in the name), best reputation first.

        A tool whose provider is no longer an active node (unstaked below the minimum) is
        left out like a retired one: nobody should pay a node that has nothing at stake.
        """
        out = []
        nodes = self.chain.contract("NodeRegistry")
        active: dict[str, bool] = {}
        for t in self.all():
            if not include_retired:
                if not t.active:
                    continue
                if t.provider not in active:
                    active[t.provider] = bool(self.chain.call(nodes.functions.is_active(t.provider)))
                if not active[t.provider]:
                    continue
            if name is not None and t.name != name:
                continue
            if text and text.lower() not in t.name.lower():
                continue
            out.append(t)
        # Score first; among equals (e.g. new tools, score 0) prefer more distinct payers, then cheaper.
        out.sort(key=lambda t: (-t.score, -t.payers, t.price, t.provider))
        return out
