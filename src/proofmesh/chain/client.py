"""``Chain``: the one web3.py client every domain uses, whatever the backend.

Backends (one interface):

* ``embedded`` (default) — the home's py-evm chain. If no other process owns it,
  it is opened in-process; if a node daemon owns it, the client talks to the URL
  the daemon published in ``<home>/chain/rpc.json``.
* ``rpc`` — any Ethereum JSON-RPC URL (a local anvil from ``proofmesh chain up``,
  a testnet, an L2). Writes wait for ``confirmations`` blocks and are re-checked
  against the canonical chain, so a reorg cannot leave a stale receipt behind.

A contract revert surfaces as :class:`ContractRevert` carrying the contract's own
reason string, never a web3 stack trace.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError, Web3RPCError
from web3.providers.base import BaseProvider

from proofmesh.chain.compiler import compile_contract
from proofmesh.chain.embedded import ChainLockedError, EmbeddedChain
from proofmesh.config import Home
from proofmesh.errors import ChainError, ConfigError, ContractRevert, ProofmeshError

_OPEN_EMBEDDED: dict[Path, EmbeddedChain] = {}
_OPEN_LOCK = threading.Lock()


class EmbeddedProvider(BaseProvider):
    """web3 provider that answers from an in-process :class:`EmbeddedChain`."""

    def __init__(self, chain: EmbeddedChain) -> None:
        super().__init__()
        self.chain = chain
        self._id = 0

    def make_request(self, method: Any, params: Any) -> Any:  # web3 RPCResponse
        self._id += 1
        return self.chain.handle({"jsonrpc": "2.0", "id": self._id, "method": method, "params": list(params)})

    def is_connected(self, show_traceback: bool = False) -> bool:
        return True


def open_embedded(directory: Path, chain_id: int) -> EmbeddedChain:
    """Open the embedded chain in ``directory`` once per process (the lock is per process)."""
    key = directory.resolve()
    with _OPEN_LOCK:
        chain = _OPEN_EMBEDDED.get(key)
        if chain is None:
            chain = EmbeddedChain.open(key, chain_id)
            _OPEN_EMBEDDED[key] = chain
        return chain


def close_embedded(directory: Path) -> None:
    """Close an embedded chain this process opened (no-op if it did not)."""
    with _OPEN_LOCK:
        chain = _OPEN_EMBEDDED.pop(directory.resolve(), None)
    if chain is not None:
        chain.close()


@dataclass
class TxResult:
    """A mined transaction: its receipt plus the decoded essentials."""

    tx_hash: str
    block_number: int
    gas_used: int
    status: int
    receipt: Any
    contract_address: str | None = None


class Chain:
    """A connection to one chain with one signing account and one address book."""

    def __init__(self, w3: Web3, *, account: LocalAccount | None = None, addresses: dict[str, str] | None = None,
                 home: Home | None = None, backend: str = "embedded", confirmations: int = 0,
                 embedded: EmbeddedChain | None = None, rpc_url: str | None = None) -> None:
        self.w3 = w3
        self.account = account
        self.home = home
        self.backend = backend
        self.confirmations = confirmations
        self.embedded = embedded
        self.rpc_url = rpc_url
        self.chain_id: int = w3.eth.chain_id
        self.addresses: dict[str, str] = dict(addresses or {})
        self._contracts: dict[str, Contract] = {}
        self._nonce_lock = threading.Lock()

    # ----------------------------------------------------------------- connecting
    @classmethod
    def connect(cls, home: Home, account: LocalAccount | None = None, *, backend: str | None = None,
                rpc_url: str | None = None) -> "Chain":
        """Connect to the home's chain with the backend its settings name."""
        settings = home.settings
        backend = backend or settings.backend
        if backend == "embedded":
            try:
                emb = open_embedded(home.chain_dir, settings.chain_id)
                w3 = Web3(EmbeddedProvider(emb))
                chain = cls(w3, account=account, home=home, backend="embedded", embedded=emb)
            except ChainLockedError:
                url = daemon_rpc_url(home.chain_dir)
                if url is None:
                    raise
                chain = cls.from_url(url, account=account, home=home, backend="embedded")
        elif backend == "rpc":
            url = rpc_url or settings.rpc_url
            if not url:
                raise ConfigError("backend is 'rpc' but no RPC URL is set",
                                  fix="set rpc_url in config.toml or PROOFMESH_RPC_URL, or run `proofmesh chain up`")
            chain = cls.from_url(url, account=account, home=home, backend="rpc",
                                 confirmations=settings.confirmations)
        else:
            raise ConfigError(f"unknown backend {backend!r}", fix="use 'embedded' or 'rpc'")
        chain.addresses = home.address_book(chain.chain_id)
        return chain

    @classmethod
    def from_url(cls, url: str, *, account: LocalAccount | None = None, home: Home | None = None,
                 backend: str = "rpc", confirmations: int = 0, timeout: float = 30.0) -> "Chain":
        """Connect to a JSON-RPC URL; a clear ChainError if nothing answers there."""
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
        try:
            w3.eth.chain_id
        except Exception as exc:
            raise ChainError(f"cannot reach an Ethereum JSON-RPC node at {url} ({type(exc).__name__})",
                             fix="check the URL, or start a local node with `proofmesh chain up`") from None
        return cls(w3, account=account, home=home, backend=backend, confirmations=confirmations, rpc_url=url)

    def with_account(self, account: LocalAccount) -> "Chain":
        """The same connection and address book, signing with ``account``."""
        other = Chain.__new__(Chain)
        other.__dict__.update(self.__dict__)
        other.account = account
        other._nonce_lock = threading.Lock()
        return other

    # ----------------------------------------------------------------- contracts
    def contract(self, name: str, address: str | None = None) -> Contract:
        """A web3 contract for ``name`` at its address-book (or the given) address."""
        if address is None:
            key = name
            if key not in self._contracts:
                if name not in self.addresses:
                    raise ChainError(f"{name} is not deployed on chain {self.chain_id}",
                                     fix="run `proofmesh chain deploy` (or `proofmesh init`) for this home")
                abi = compile_contract(name).abi
                self._contracts[key] = self.w3.eth.contract(address=Web3.to_checksum_address(self.addresses[name]), abi=abi)
            return self._contracts[key]
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=compile_contract(name).abi)

    def deploy(self, name: str, *args: Any, sender: LocalAccount | None = None) -> str:
        """Deploy contract ``name`` with constructor ``args``; returns its address."""
        compiled = compile_contract(name)
        factory = self.w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
        result = self.transact(factory.constructor(*args), sender=sender)
        assert result.contract_address is not None
        return result.contract_address

    # ----------------------------------------------------------------- writing
    def transact(self, fn: Any, *, sender: LocalAccount | None = None, value: int = 0,
                 gas: int | None = None) -> TxResult:
        """Sign and send ``fn`` (a contract function or constructor), wait for it.

        Raises :class:`ContractRevert` with the contract's reason if it would revert
        (checked by gas estimation before anything is sent) or did revert.
        """
        sender = sender or self.account
        if sender is None:
            raise ChainError("no account to sign with", fix="pass an account, or create one with `proofmesh account new`")
        contract_name, fn_name = self._describe(fn)
        tx, tx_hash, receipt = self._send(fn, sender, value, gas, contract_name, fn_name)
        if receipt["status"] != 1 and gas is None and receipt["gasUsed"] >= tx["gas"]:
            # It ran out of the gas estimated for it: another transaction mined first changed
            # the state so that this one took a costlier path (e.g. the attestation that
            # completes a quorum, and so finalizes, after estimating as an ordinary one).
            # A reverted transaction changed nothing: estimate again on the new state and
            # send it once more.
            tx, tx_hash, receipt = self._send(fn, sender, value, gas, contract_name, fn_name)
        if receipt["status"] != 1:
            reason = self._replay_reason(tx, receipt["blockNumber"])
            raise ContractRevert(reason, contract=contract_name, function=fn_name)
        return TxResult(tx_hash="0x" + bytes(tx_hash).hex(), block_number=receipt["blockNumber"],
                        gas_used=receipt["gasUsed"], status=receipt["status"], receipt=receipt,
                        contract_address=receipt.get("contractAddress"))

    def _send(self, fn: Any, sender: LocalAccount, value: int, gas: int | None, contract_name: str,
              fn_name: str) -> tuple[dict, Any, Any]:
        """Estimate (unless ``gas``), sign, send and wait: (the transaction, its hash, its receipt)."""
        params: dict[str, Any] = {"from": sender.address, "value": value, "chainId": self.chain_id}
        if gas is not None:
            params["gas"] = gas
        with self._nonce_lock:
            try:
                params["nonce"] = self.w3.eth.get_transaction_count(sender.address, "pending")
                if "gas" not in params:
                    # Pad the estimate: nodes estimate without the 63/64 call-gas rule's
                    # slack or refunds in some paths (seen on anvil), and a transaction
                    # given exactly the estimate can run out of gas. Unused gas is refunded.
                    # "pending": estimate in the next block's context (its number and
                    # time), where the transaction will run; "latest" would replay the head
                    # block's context and refuse e.g. a reveal due "in a later block".
                    estimate = fn.estimate_gas({"from": sender.address, "value": value},
                                               block_identifier="pending")
                    params["gas"] = min(estimate * 6 // 5 + 20_000, 30_000_000)
                tx = fn.build_transaction(params)
            except (ContractLogicError, ContractCustomError, ContractPanicError) as exc:
                raise ContractRevert(_reason(exc), contract=contract_name, function=fn_name) from None
            except Web3RPCError as exc:
                raise _rpc_error(exc, sender.address) from None
            signed = sender.sign_transaction(tx)
            try:
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            except Web3RPCError as exc:
                raise _rpc_error(exc, sender.address) from None
        return tx, tx_hash, self._wait(tx_hash)

    def send_eth(self, to: str, value: int, *, sender: LocalAccount | None = None) -> TxResult:
        """Send plain ETH (gas money) to ``to``."""
        sender = sender or self.account
        assert sender is not None
        with self._nonce_lock:
            tx = {"to": Web3.to_checksum_address(to), "value": value, "gas": 21000, "chainId": self.chain_id,
                  "nonce": self.w3.eth.get_transaction_count(sender.address, "pending"),
                  "maxFeePerGas": 2 * self._base_fee() + 10**9, "maxPriorityFeePerGas": 10**9}
            try:
                tx_hash = self.w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
            except Web3RPCError as exc:
                raise _rpc_error(exc, sender.address) from None
        receipt = self._wait(tx_hash)
        return TxResult("0x" + bytes(tx_hash).hex(), receipt["blockNumber"], receipt["gasUsed"], receipt["status"], receipt)

    def _base_fee(self) -> int:
        return int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))

    def _wait(self, tx_hash: Any, timeout: float = 120.0) -> Any:
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout, poll_latency=0.05)
        if self.confirmations <= 0:
            return receipt
        deadline = time.monotonic() + timeout
        while True:
            head = self.w3.eth.block_number
            if head >= receipt["blockNumber"] + self.confirmations:
                fresh = self.w3.eth.get_transaction_receipt(tx_hash)
                canonical = self.w3.eth.get_block(fresh["blockNumber"])["hash"]
                if fresh["blockHash"] == canonical:
                    return fresh
                receipt = fresh  # re-mined after a reorg: wait again from its new block
            if time.monotonic() > deadline:
                raise ChainError(f"transaction {bytes(tx_hash).hex()} not confirmed after {timeout:.0f}s",
                                 fix="check the node is producing blocks, or lower `confirmations`")
            time.sleep(0.2)

    def _replay_reason(self, tx: dict[str, Any], block_number: int) -> str:
        call = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
        try:
            self.w3.eth.call(call, block_number - 1)
        except (ContractLogicError, ContractCustomError, ContractPanicError) as exc:
            return _reason(exc)
        except Exception:
            pass
        return "transaction reverted (out of gas or no reason given)"

    def _describe(self, fn: Any) -> tuple[str | None, str | None]:
        """(contract name from the address book, function name) for error messages."""
        fn_name = getattr(fn, "fn_name", None) or "constructor"
        address = getattr(fn, "address", None)
        if address is None:
            return None, fn_name
        names = {Web3.to_checksum_address(a): n for n, a in self.addresses.items()}
        return names.get(Web3.to_checksum_address(address), address), fn_name

    # ----------------------------------------------------------------- reading
    def call(self, fn: ContractFunction, block: Any = "latest") -> Any:
        """Call a view function; reverts become ContractRevert."""
        try:
            return fn.call(block_identifier=block)
        except (ContractLogicError, ContractCustomError, ContractPanicError) as exc:
            contract_name, fn_name = self._describe(fn)
            raise ContractRevert(_reason(exc), contract=contract_name, function=fn_name) from None

    def events(self, contract: str, event: str, *, from_block: int = 0, to_block: int | str = "latest",
               argument_filters: dict[str, Any] | None = None, address: str | None = None) -> list[Any]:
        """Decoded logs of ``contract.event`` in a block range (see EventCursor for polling)."""
        c = self.contract(contract, address)
        ev = getattr(c.events, event)
        return list(ev().get_logs(from_block=from_block, to_block=to_block, argument_filters=argument_filters))

    def balance(self, address: str) -> int:
        """ETH balance (for gas)."""
        return self.w3.eth.get_balance(Web3.to_checksum_address(address))

    def block_number(self) -> int:
        return self.w3.eth.block_number

    def timestamp(self) -> int:
        """Timestamp of the latest block."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    # ----------------------------------------------------------------- dev chains
    def increase_time(self, seconds: int) -> None:
        """Mine a block ``seconds`` after the latest one (embedded and anvil only)."""
        self.advance_to(self.timestamp() + int(seconds))

    def advance_to(self, timestamp: int) -> None:
        """Mine a block whose timestamp is at least ``timestamp`` (dev chains only).

        Automining one block per transaction makes block time run ahead of the wall
        clock, so "wait N seconds" is measured from the latest block, not from now.
        """
        latest = self.timestamp()
        self.w3.provider.make_request("evm_setNextBlockTimestamp", [max(int(timestamp), latest + 1)])
        self.mine()

    def mine(self, blocks: int = 1) -> None:
        """Mine empty blocks (embedded and anvil only)."""
        for _ in range(blocks):
            self.w3.provider.make_request("evm_mine", [])

    def wait_past(self, block: int, *, timeout: float = 120.0) -> None:
        """Return once the chain has a block after ``block``: mined at once on a dev chain,
        waited for on a public network. Commit–reveal steps and seed draws need it."""
        deadline = time.monotonic() + timeout
        while self.block_number() <= block:
            try:
                self.mine()        # dev chains; a public network produces the block itself
            except ProofmeshError:
                pass
            if self.block_number() <= block:
                if time.monotonic() > deadline:
                    raise ChainError(f"no block after {block} within {timeout:.0f} s",
                                     fix="check that the RPC endpoint is producing blocks, then retry "
                                         "(a commitment stays valid until its window closes)")
                time.sleep(0.5)


class EventCursor:
    """Polls one event and survives reorgs.

    It reads only blocks at least ``confirmations`` deep, remembers the hash of every
    block it has read (a bounded window), and when one of those hashes is no longer
    canonical it rewinds to the fork point and reads again. ``poll()`` returns
    ``(removed, added)``: logs to undo (from blocks that were reorged out) and new
    logs, so a consumer's view always equals the canonical chain's.
    """

    def __init__(self, chain: Chain, contract: str, event: str, *, from_block: int = 0,
                 confirmations: int | None = None, window: int = 256,
                 argument_filters: dict[str, Any] | None = None) -> None:
        self.chain = chain
        self.contract = contract
        self.event = event
        self.next_block = from_block
        self.confirmations = chain.confirmations if confirmations is None else confirmations
        self.window = window
        self.argument_filters = argument_filters
        self._seen: dict[int, tuple[bytes, list[Any]]] = {}

    def poll(self) -> tuple[list[Any], list[Any]]:
        removed: list[Any] = []
        fork = self._find_fork()
        if fork is not None:
            for n in sorted(b for b in self._seen if b >= fork):
                removed.extend(self._seen.pop(n)[1])
            self.next_block = fork
        head = self.chain.block_number() - self.confirmations
        if head < self.next_block:
            return removed, []
        logs = self.chain.events(self.contract, self.event, from_block=self.next_block, to_block=head,
                                 argument_filters=self.argument_filters)
        by_block: dict[int, list[Any]] = {}
        for log in logs:
            by_block.setdefault(log["blockNumber"], []).append(log)
        for n in range(max(self.next_block, head - self.window + 1), head + 1):
            self._seen[n] = (bytes(self.chain.w3.eth.get_block(n)["hash"]), by_block.get(n, []))
        for n in [b for b in self._seen if b <= head - self.window]:
            del self._seen[n]
        self.next_block = head + 1
        return removed, logs

    def _find_fork(self) -> int | None:
        fork = None
        for n in sorted(self._seen, reverse=True):
            try:
                current = bytes(self.chain.w3.eth.get_block(n)["hash"])
            except Exception:
                current = b""
            if current == self._seen[n][0]:
                break
            fork = n
        return fork


# --------------------------------------------------------------------------- helpers

def daemon_rpc_url(chain_dir: Path) -> str | None:
    """URL published by the process that owns the embedded chain, if any."""
    p = chain_dir / "rpc.json"
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())["url"]
    except (ValueError, KeyError):
        return None


def _reason(exc: Exception) -> str:
    msg = getattr(exc, "message", None) or str(exc)
    if isinstance(msg, tuple):
        msg = msg[0]
    for prefix in ("execution reverted: ", "execution reverted"):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return msg or "reverted without a reason"


def _rpc_error(exc: Web3RPCError, sender: str) -> ChainError:
    msg = getattr(exc, "message", str(exc))
    if "insufficient funds" in msg.lower():
        return ChainError(f"{sender} cannot pay for gas: {msg}", fix="send it some ETH for gas")
    return ChainError(f"the node rejected the transaction: {msg}")


def gas_report(results: Iterable[TxResult]) -> dict[str, int]:
    """Total and mean gas of some transactions (used by benches)."""
    gas = [r.gas_used for r in results]
    return {"count": len(gas), "total": sum(gas), "mean": sum(gas) // max(1, len(gas))}


Callback = Callable[[str], None]
