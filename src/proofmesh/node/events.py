"""An in-memory index of every proofmesh contract event, kept current by polling.

The explorer and ``/metrics`` read the network's history from chain events. Asking
the node for each event type of each contract on every page load would cost dozens
of ``eth_getLogs`` calls; instead one poller asks for the logs of *all* address-book
contracts in one call per block range, decodes each with its contract's ABI, and
keeps them in order. It also counts transactions per block (for ``/metrics``).

Reorgs: the index remembers the hash of the last block it read; if that block is no
longer canonical it drops everything and reads again from the start, which on the
dev chains this is used on (embedded, anvil) costs well under a second, and on a
public chain the node's ``confirmations`` setting keeps it behind the unstable tip.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Iterable

from eth_utils import event_abi_to_log_topic
from web3 import Web3
from web3._utils.events import get_event_data

from proofmesh.chain.compiler import compile_contract

_CHUNK = 5_000          # blocks per eth_getLogs call (public RPCs cap ranges)
_TX_SCAN_MAX = 2_000    # blocks whose transactions are counted in one poll


@dataclass(frozen=True)
class Event:
    """One decoded contract event."""

    contract: str
    event: str
    args: dict[str, Any]
    block: int
    tx: str
    log_index: int

    def as_dict(self) -> dict[str, Any]:
        return {"contract": self.contract, "event": self.event, "args": self.args, "block": self.block,
                "tx": self.tx, "log_index": self.log_index}


class EventIndex:
    """Decoded events of every contract in ``chain.addresses``, oldest first."""

    def __init__(self, chain: Any, *, confirmations: int | None = None) -> None:
        self.chain = chain
        self.confirmations = chain.confirmations if confirmations is None else confirmations
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._by_name: dict[tuple[str, str], list[Event]] = {}
        self._decoders: dict[str, tuple[str, dict[bytes, dict[str, Any]]]] = {}
        for name, address in chain.addresses.items():
            try:
                abi = compile_contract(name).abi
            except Exception:  # an address-book entry whose source this checkout lacks
                continue
            topics = {event_abi_to_log_topic(e): e for e in abi if e.get("type") == "event"}
            self._decoders[Web3.to_checksum_address(address)] = (name, topics)
        self.next_block = 0
        self.head = -1
        self.transactions = 0
        self._tx_counted_upto = -1
        self._last_hash: bytes | None = None

    # ------------------------------------------------------------------ reading
    @property
    def contracts(self) -> list[str]:
        return sorted(name for name, _ in self._decoders.values())

    def has(self, contract: str) -> bool:
        return any(name == contract for name, _ in self._decoders.values())

    def all(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def of(self, contract: str, *events: str) -> list[Event]:
        """Events of ``contract`` named ``events`` (all of its events if none given), oldest first."""
        with self._lock:
            if events:
                out: list[Event] = []
                for e in events:
                    out.extend(self._by_name.get((contract, e), []))
                return sorted(out, key=lambda ev: (ev.block, ev.log_index))
            return [ev for ev in self._events if ev.contract == contract]

    # ------------------------------------------------------------------ polling
    def poll(self) -> int:
        """Read new blocks; returns the number of new events."""
        w3 = self.chain.w3
        head = w3.eth.block_number - self.confirmations
        if head < 0:
            return 0
        if self._last_hash is not None and self.head >= 0:
            try:
                current = bytes(w3.eth.get_block(self.head)["hash"])
            except Exception:
                current = b""
            if current != self._last_hash:
                self._reset()
        added = 0
        if head >= self.next_block and self._decoders:
            start = self.next_block
            new: list[Event] = []
            while start <= head:
                end = min(head, start + _CHUNK - 1)
                logs = w3.eth.get_logs({"fromBlock": start, "toBlock": end, "address": list(self._decoders)})
                new.extend(self._decode(logs))
                start = end + 1
            new.sort(key=lambda ev: (ev.block, ev.log_index))
            with self._lock:
                self._events.extend(new)
                for ev in new:
                    self._by_name.setdefault((ev.contract, ev.event), []).append(ev)
            added = len(new)
        if head > self.head:
            self._count_transactions(head)
            self.head = head
            self.next_block = head + 1
            self._last_hash = bytes(w3.eth.get_block(head)["hash"])
        return added

    def _reset(self) -> None:
        with self._lock:
            self._events.clear()
            self._by_name.clear()
        self.next_block = 0
        self.head = -1
        self.transactions = 0
        self._tx_counted_upto = -1
        self._last_hash = None

    def _count_transactions(self, head: int) -> None:
        # Blocks are read one by one, so on the first poll of a long history only the
        # last _TX_SCAN_MAX blocks are counted: the gauge is "transactions indexed",
        # exact from then on, not the chain's total since genesis.
        start = max(self._tx_counted_upto + 1, head - _TX_SCAN_MAX + 1)
        for n in range(start, head + 1):
            self.transactions += len(self.chain.w3.eth.get_block(n)["transactions"])
        self._tx_counted_upto = head

    def _decode(self, logs: Iterable[Any]) -> list[Event]:
        out = []
        codec = self.chain.w3.codec
        for log in logs:
            entry = self._decoders.get(Web3.to_checksum_address(log["address"]))
            if entry is None or not log["topics"]:
                continue
            name, topics = entry
            abi = topics.get(bytes(log["topics"][0]))
            if abi is None:
                continue
            try:
                data = get_event_data(codec, abi, log)
            except Exception:  # an event this ABI version cannot decode: skip, never crash the node
                continue
            out.append(Event(contract=name, event=data["event"], args=_plain(dict(data["args"])),
                             block=int(log["blockNumber"]), tx="0x" + bytes(log["transactionHash"]).hex(),
                             log_index=int(log["logIndex"])))
        return out


def _plain(value: Any) -> Any:
    """ABI values to JSON-friendly ones (bytes as 0x hex; ints kept exact)."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
