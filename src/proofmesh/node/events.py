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

from eth_abi import decode as abi_decode
from eth_utils import event_abi_to_log_topic, to_checksum_address
from web3 import Web3

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
        self._decoders: dict[str, tuple[str, dict[bytes, _EventDecoder]]] = {}
        for name, address in chain.addresses.items():
            try:
                abi = compile_contract(name).abi
            except Exception:  # an address-book entry whose source this checkout lacks
                continue
            topics = {event_abi_to_log_topic(e): _EventDecoder(e) for e in abi if e.get("type") == "event"}
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
                new.extend(self._decode(self._get_logs(start, end)))
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
        # Counting means reading every block, so the history before the first poll is
        # not counted (a long chain would cost one get_block per block at start-up): the
        # figure is "transactions in blocks mined while this node was watching", exact
        # from then on, capped at _TX_SCAN_MAX blocks per poll.
        if self._tx_counted_upto < 0:
            self._tx_counted_upto = head
            return
        start = max(self._tx_counted_upto + 1, head - _TX_SCAN_MAX + 1)
        for n in range(start, head + 1):
            self.transactions += len(self.chain.w3.eth.get_block(n)["transactions"])
        self._tx_counted_upto = head

    def _get_logs(self, start: int, end: int) -> list[dict[str, Any]]:
        # Raw JSON-RPC instead of w3.eth.get_logs: web3's result formatters cost more than
        # the query itself (measured ~4 ms per log), and the decoder below wants hex anyway.
        resp = self.chain.w3.provider.make_request(
            "eth_getLogs", [{"fromBlock": hex(start), "toBlock": hex(end), "address": list(self._decoders)}])
        if "error" in resp:
            raise RuntimeError(f"eth_getLogs failed: {resp['error']}")
        return resp["result"]

    def _decode(self, logs: Iterable[dict[str, Any]]) -> list[Event]:
        out = []
        for log in logs:
            entry = self._decoders.get(to_checksum_address(log["address"]))
            if entry is None or not log["topics"]:
                continue
            name, topics = entry
            decoder = topics.get(bytes.fromhex(log["topics"][0][2:]))
            if decoder is None:
                continue
            try:
                args = decoder.decode(log["topics"][1:], log["data"])
            except Exception:  # an event this ABI version cannot decode: skip, never crash the node
                continue
            out.append(Event(contract=name, event=decoder.name, args=args, block=int(log["blockNumber"], 16),
                             tx=log["transactionHash"], log_index=int(log["logIndex"], 16)))
        return out


class _EventDecoder:
    """Decodes one event's topics and data with eth_abi directly (no web3 formatters)."""

    def __init__(self, abi: dict[str, Any]) -> None:
        self.name = abi["name"]
        self.indexed = [(i["name"], _abi_type(i)) for i in abi["inputs"] if i.get("indexed")]
        self.plain = [(i["name"], _abi_type(i)) for i in abi["inputs"] if not i.get("indexed")]
        self.order = [i["name"] for i in abi["inputs"]]

    def decode(self, topics: list[str], data: str) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for (name, typ), topic in zip(self.indexed, topics):
            raw = bytes.fromhex(topic[2:])
            # an indexed dynamic value (string, bytes, array) is stored as its hash only
            args[name] = "0x" + raw.hex() if _is_dynamic(typ) else _plain(abi_decode([typ], raw)[0], typ)
        if self.plain:
            values = abi_decode([t for _, t in self.plain], bytes.fromhex(data[2:]))
            for (name, typ), v in zip(self.plain, values):
                args[name] = _plain(v, typ)
        return {k: args[k] for k in self.order if k in args}


def _abi_type(inp: dict[str, Any]) -> str:
    t = inp["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in inp["components"]) + ")" + t[5:]
    return t


def _is_dynamic(typ: str) -> bool:
    return typ in ("string", "bytes") or typ.endswith("]") or typ.startswith("(")


def _plain(value: Any, typ: str = "") -> Any:
    """ABI values to JSON-friendly ones: bytes as 0x hex, addresses checksummed, ints exact."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, str) and typ.startswith("address"):
        return to_checksum_address(value)
    if isinstance(value, (list, tuple)):
        inner = typ[:typ.rindex("[")] if typ.endswith("]") else ""
        return [_plain(v, inner) for v in value]
    return value
