"""The embedded chain: py-evm with its state persisted in LMDB.

Why hand-written: eth-tester (web3's in-process EVM) keeps its chain in memory and
rebuilds it from genesis; here the chain must survive ``kill -9`` and reopen a
10,000-transaction history in seconds. py-evm's database is pluggable, and a chain
object constructed over an existing database resumes at its canonical head, so
persistence is an LMDB-backed ``AtomicDatabaseAPI`` plus reopening instead of
replaying (FACTS.md).

Every transaction is mined into its own block at once (automine), then LMDB is
synced: a transaction whose hash was returned is committed. A py-evm write batch is
one LMDB transaction, and the canonical-head pointer is written after the block's
state, so a kill at any point leaves the previous head intact.

``EmbeddedChain.rpc(method, params)`` answers the Ethereum JSON-RPC methods web3.py
uses; the same dispatcher serves in-process callers (``EmbeddedProvider``) and other
processes over HTTP (``proofmesh.chain.rpcserver``).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import lmdb
from eth.abc import AtomicWriteBatchAPI
from eth.chains.base import MiningChain
from eth.consensus import ConsensusApplier, NoProofConsensus
from eth.db.atomic import AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB
from eth.exceptions import BlockNotFound, CanonicalHeadNotFound, HeaderNotFound, TransactionNotFound
from eth.vm.forks import PragueVM
from eth.vm.spoof import SpoofTransaction
from eth_account import Account
from eth_utils import to_canonical_address, to_checksum_address
from eth_utils.exceptions import ValidationError

from proofmesh.errors import ChainError

# The same ten dev accounts anvil funds (mnemonic "test test ... junk"), so tests
# and the demo see identical accounts on both backends.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_ACCOUNTS = 10
DEV_BALANCE = 10_000 * 10**18
GAS_LIMIT = 30_000_000
_META_KEYS = {"time_offset": b"proofmesh:time_offset", "logs_upto": b"proofmesh:logs_upto"}
_ZERO_ADDRESS = b"\x00" * 20


def dev_accounts(n: int = DEV_ACCOUNTS) -> list:
    """The dev accounts (LocalAccount) derived from the well-known test mnemonic."""
    Account.enable_unaudited_hdwallet_features()
    return [Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(n)]


class ChainLockedError(ChainError):
    """Another process owns this embedded chain."""


class RPCError(Exception):
    """A JSON-RPC error answer (code, message, optional data)."""

    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


# ---------------------------------------------------------------------------- storage

class LMDBAtomicDB(BaseAtomicDB):
    """py-evm ``AtomicDatabaseAPI`` over one LMDB environment.

    Each ``atomic_batch`` commits in a single LMDB write transaction. LMDB runs with
    ``sync=False`` and the chain calls :meth:`sync` once per mined block, which makes
    the block durable against power loss too; against a killed process every
    committed LMDB transaction is already safe (it is in the OS page cache).
    """

    def __init__(self, path: Path, map_size: int = 1 << 36) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(str(path), map_size=map_size, sync=False, metasync=False,
                             max_dbs=4, readahead=False)
        self.logs_db = self.env.open_db(b"logs")

    def __getitem__(self, key: bytes) -> bytes:
        with self.env.begin(buffers=False) as txn:
            value = txn.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(key, value)

    def __delitem__(self, key: bytes) -> None:
        with self.env.begin(write=True) as txn:
            if not txn.delete(key):
                raise KeyError(key)

    def _exists(self, key: bytes) -> bool:
        with self.env.begin() as txn:
            return txn.get(key) is not None

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        batch = AtomicDBWriteBatch(self)
        try:
            yield batch
            diff = batch._diff()
            with self.env.begin(write=True) as txn:
                for key, value in diff.pending_items():
                    txn.put(key, value)
                for key in diff.deleted_keys():
                    txn.delete(key)
        finally:
            batch._track_diff = None
            batch._write_target_db = None

    def sync(self) -> None:
        self.env.sync(True)

    def close(self) -> None:
        self.env.close()


class _ProofmeshChain(MiningChain):
    """A post-merge chain with a constant gas limit and no proof-of-work."""

    vm_configuration = ConsensusApplier(NoProofConsensus).amend_vm_configuration(((0, PragueVM),))
    chain_id = 31337

    def create_header_from_parent(self, parent_header, **header_params):  # type: ignore[override]
        header_params["gas_limit"] = parent_header.gas_limit
        return super().create_header_from_parent(parent_header, **header_params)


# ------------------------------------------------------------------------------ chain

class EmbeddedChain:
    """A single-process, disk-persisted EVM chain with automine.

    Open it with :meth:`open`; it takes an exclusive lock on ``<dir>/LOCK`` so only
    one process writes. Other processes reach it through the JSON-RPC server that
    the owner runs (see ``proofmesh.chain.rpcserver``).
    """

    def __init__(self, directory: Path, chain_id: int, db: LMDBAtomicDB, lock_fd: int) -> None:
        self.directory = directory
        self.chain_id = chain_id
        self.db = db
        self._lock_fd = lock_fd
        self._mutex = threading.RLock()
        chain_class = type("ProofmeshChain", (_ProofmeshChain,), {"chain_id": chain_id})
        if _has_genesis(db):
            self.chain = chain_class(db)
        else:
            self.chain = chain_class.from_genesis(db, _genesis_params(), _genesis_state())
            db.sync()
        self._time_offset = int(self._meta("time_offset") or 0)
        self._index_missing_logs()
        self._methods: dict[str, Callable[..., Any]] = {
            name[4:]: getattr(self, name) for name in dir(self) if name.startswith("rpc_")
        }

    # -- lifecycle -------------------------------------------------------------------
    @classmethod
    def open(cls, directory: str | Path, chain_id: int = 31337) -> "EmbeddedChain":
        """Open (or create) the chain in ``directory``; raises ChainLockedError if owned."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = _read_owner(directory)
            raise ChainLockedError(
                f"the embedded chain in {directory} is owned by another process{owner}",
                fix="stop that process, or let the CLI reach it over RPC (start it with `proofmesh node start`)",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid()}).encode())
        info_file = directory / "chain.json"
        if info_file.exists():
            stored = json.loads(info_file.read_text())["chain_id"]
            if stored != chain_id:
                os.close(fd)
                raise ChainError(f"{directory} holds a chain with id {stored}, not {chain_id}",
                                 fix=f"use chain id {stored}, or a new home for chain id {chain_id}")
        else:
            info_file.write_text(json.dumps({"chain_id": chain_id}))
        try:
            db = LMDBAtomicDB(directory / "db")
            return cls(directory, chain_id, db, fd)
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        with self._mutex:
            self.db.sync()
            self.db.close()
            with _ignore(OSError):
                os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)

    def set_rpc_url(self, url: str | None) -> None:
        """Publish (or clear) the URL where this process serves the chain's JSON-RPC."""
        p = self.directory / "rpc.json"
        if url is None:
            with _ignore(FileNotFoundError):
                p.unlink()
        else:
            p.write_text(json.dumps({"url": url, "pid": os.getpid()}))

    # -- JSON-RPC --------------------------------------------------------------------
    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        """Answer one JSON-RPC call; raises RPCError for an error answer."""
        fn = self._methods.get(method)
        if fn is None:
            raise RPCError(-32601, f"method {method} is not supported by the embedded chain")
        with self._mutex:
            try:
                return fn(*(params or []))
            except RPCError:
                raise
            except TypeError as exc:
                raise RPCError(-32602, f"invalid params for {method}: {exc}") from exc

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer a JSON-RPC request object."""
        rid = request.get("id")
        try:
            result = self.rpc(request["method"], request.get("params") or [])
            return {"jsonrpc": "2.0", "id": rid, "result": result}
        except RPCError as err:
            return {"jsonrpc": "2.0", "id": rid, "error": err.to_json()}

    # -- metadata ----------------------------------------------------------------------
    def _meta(self, name: str) -> str | None:
        try:
            return self.db[_META_KEYS[name]].decode()
        except KeyError:
            return None

    def _set_meta(self, name: str, value: str) -> None:
        self.db[_META_KEYS[name]] = value.encode()

    def now(self) -> int:
        return int(time.time()) + self._time_offset

    # -- mining ------------------------------------------------------------------------
    def _head(self):
        return self.chain.get_canonical_head()

    def _prepare_pending(self) -> None:
        parent = self._head()
        ts = max(parent.timestamp + 1, self.now())
        if self.chain.header.timestamp != ts:
            self.chain.header = self.chain.header.copy(timestamp=ts)

    def _mine(self) -> Any:
        block = self.chain.mine_block(mix_hash=os.urandom(32))
        self._index_logs(block)
        self.db.sync()
        return block

    def _apply(self, tx: Any) -> None:
        self._prepare_pending()
        try:
            self.chain.apply_transaction(tx)
        except ValidationError as exc:
            self.chain.header = self.chain.create_header_from_parent(self._head())
            raise RPCError(-32000, _validation_message(str(exc))) from exc
        self._mine()

    # -- log index: block number -> JSON list of that block's logs ------------------------
    def _index_logs(self, block: Any) -> None:
        logs = []
        receipts = block.get_receipts(self.chain.chaindb)
        for tx_index, (tx, receipt) in enumerate(zip(block.transactions, receipts)):
            for log in receipt.logs:
                logs.append([to_checksum_address(log.address), ["0x" + t.to_bytes(32, "big").hex() for t in log.topics],
                             "0x" + log.data.hex(), "0x" + tx.hash.hex(), tx_index])
        with self.db.env.begin(write=True) as txn:
            if logs:
                txn.put(block.number.to_bytes(8, "big"), json.dumps(logs).encode(), db=self.db.logs_db)
            txn.put(_META_KEYS["logs_upto"], str(block.number).encode())

    def _index_missing_logs(self) -> None:
        upto = int(self._meta("logs_upto") or 0)
        head = self._head().block_number
        for n in range(upto + 1, head + 1):
            self._index_logs(self.chain.get_canonical_block_by_number(n))

    # -- helpers -------------------------------------------------------------------------
    def _block(self, tag: Any):
        head = self._head().block_number
        if tag in (None, "latest", "pending", "safe", "finalized"):
            n = head
        elif tag == "earliest":
            n = 0
        elif isinstance(tag, dict):  # EIP-1898
            if "blockHash" in tag:
                return self.chain.get_block_by_hash(_b(tag["blockHash"]))
            n = _int(tag["blockNumber"])
        else:
            n = _int(tag)
        if n > head:
            raise RPCError(-32000, f"block {n} not found (head is {head})")
        return self.chain.get_canonical_block_by_number(n)

    def _tag_number(self, tag: Any, *, default: int) -> int:
        if tag is None or tag in ("latest", "pending", "safe", "finalized"):
            return default
        if tag == "earliest":
            return 0
        return _int(tag)

    def _state(self, tag: Any):
        return self.chain.get_vm(self._block(tag).header).state

    def _spoof(self, tx: dict[str, Any], header: Any) -> SpoofTransaction:
        sender = to_canonical_address(tx["from"]) if tx.get("from") else _ZERO_ADDRESS
        state = self.chain.get_vm(header).state
        nonce = state.get_nonce(sender)
        gas = _int(tx.get("gas", hex(header.gas_limit)))
        to = to_canonical_address(tx["to"]) if tx.get("to") else b""
        data = _b(tx.get("data") or tx.get("input") or "0x")
        unsigned = self.chain.get_vm(header).create_unsigned_transaction(
            nonce=nonce, gas_price=0, gas=gas, to=to, value=_int(tx.get("value", "0x0")), data=data)
        return SpoofTransaction(unsigned, from_=sender)

    # ================================================================= RPC methods
    def rpc_web3_clientVersion(self) -> str:
        return "proofmesh-embedded/py-evm"

    def rpc_eth_chainId(self) -> str:
        return hex(self.chain_id)

    def rpc_net_version(self) -> str:
        return str(self.chain_id)

    def rpc_net_listening(self) -> bool:
        return True

    def rpc_eth_syncing(self) -> bool:
        return False

    def rpc_eth_accounts(self) -> list[str]:
        return []

    def rpc_eth_blockNumber(self) -> str:
        return hex(self._head().block_number)

    def rpc_eth_gasPrice(self) -> str:
        return hex(self.chain.header.base_fee_per_gas + 10**9)

    def rpc_eth_maxPriorityFeePerGas(self) -> str:
        return hex(10**9)

    def rpc_eth_feeHistory(self, count: Any, newest: Any, percentiles: list | None = None) -> dict[str, Any]:
        head = self._block(newest).number
        n = max(1, min(_int(count), head + 1))
        blocks = [self.chain.get_canonical_block_by_number(i) for i in range(head - n + 1, head + 1)]
        return {"oldestBlock": hex(head - n + 1),
                "baseFeePerGas": [hex(b.header.base_fee_per_gas) for b in blocks] + [hex(self.chain.header.base_fee_per_gas)],
                "gasUsedRatio": [b.header.gas_used / b.header.gas_limit for b in blocks],
                "reward": [[hex(10**9) for _ in (percentiles or [])] for _ in blocks]}

    def rpc_eth_getBalance(self, address: str, tag: Any = "latest") -> str:
        return hex(self._state(tag).get_balance(to_canonical_address(address)))

    def rpc_eth_getTransactionCount(self, address: str, tag: Any = "latest") -> str:
        return hex(self._state(tag).get_nonce(to_canonical_address(address)))

    def rpc_eth_getCode(self, address: str, tag: Any = "latest") -> str:
        return "0x" + self._state(tag).get_code(to_canonical_address(address)).hex()

    def rpc_eth_getStorageAt(self, address: str, slot: str, tag: Any = "latest") -> str:
        value = self._state(tag).get_storage(to_canonical_address(address), _int(slot))
        return "0x" + value.to_bytes(32, "big").hex()

    def _readonly_header(self, tag: Any) -> Any:
        # Read-only execution pays no gas: a zero base fee lets a 0-price call from any
        # account (even an empty one) run, as geth's eth_call does.
        return self._block(tag).header.copy(base_fee_per_gas=0)

    def rpc_eth_call(self, tx: dict[str, Any], tag: Any = "latest", *_overrides: Any) -> str:
        header = self._readonly_header(tag)
        computation = _execute_readonly(self.chain.get_vm(header).state, self._spoof(tx, header))
        if computation.is_error:
            raise _revert_error(computation)
        return "0x" + computation.output.hex()

    def rpc_eth_estimateGas(self, tx: dict[str, Any], tag: Any = "latest", *_overrides: Any) -> str:
        # py-evm's estimator binary-searches (~13 executions). Instead: run once with
        # the full gas limit (this also yields the revert reason), then confirm a
        # padded guess with one more run; binary search only if the guess fails.
        header = self._readonly_header(tag)
        if tag in (None, "latest", "pending"):
            # Estimate in the context the transaction will run in: the next block (its
            # number, timestamp and the head as parent), so time- and block-dependent code
            # (epochs, deadlines, "reveal in a later block") costs and passes as it will.
            head = self._head()
            header = self.chain.create_header_from_parent(
                head, timestamp=max(head.timestamp + 1, self.now())).copy(base_fee_per_gas=0)
        state_at = lambda: self.chain.get_vm(header).state  # noqa: E731  (fresh state per run)
        probe = dict(tx, gas=hex(_int(tx["gas"])) if tx.get("gas") else hex(header.gas_limit))
        spoof = self._spoof(probe, header)
        computation = _execute_readonly(state_at(), spoof)
        if computation.is_error:
            raise _revert_error(computation)
        used = spoof.gas - computation.get_gas_remaining()
        guess = min(spoof.gas, used * 6 // 5 + 10_000)
        if not _execute_readonly(state_at(), self._spoof(dict(tx, gas=hex(guess)), header)).is_error:
            return hex(guess)
        try:
            return hex(self.chain.estimate_gas(spoof, header))
        except Exception as exc:  # py-evm raises its own VMError subclasses
            raise RPCError(-32000, f"gas estimation failed: {exc}") from exc

    def rpc_eth_sendRawTransaction(self, raw: str) -> str:
        data = _b(raw)
        try:
            tx = self.chain.get_vm().get_transaction_builder().decode(data)
        except Exception as exc:
            raise RPCError(-32602, f"cannot decode transaction: {exc}") from exc
        if getattr(tx, "chain_id", self.chain_id) not in (None, self.chain_id):
            raise RPCError(-32000, f"transaction chain id {tx.chain_id} does not match chain id {self.chain_id}")
        self._apply(tx)
        return "0x" + tx.hash.hex()

    def rpc_eth_getTransactionReceipt(self, tx_hash: str) -> dict[str, Any] | None:
        try:
            block_number, index = self.chain.chaindb.get_transaction_index(_b(tx_hash))
        except (TransactionNotFound, KeyError):
            return None
        block = self.chain.get_canonical_block_by_number(block_number)
        return _receipt_json(self.chain, block, index)

    def rpc_eth_getTransactionByHash(self, tx_hash: str) -> dict[str, Any] | None:
        try:
            block_number, index = self.chain.chaindb.get_transaction_index(_b(tx_hash))
        except (TransactionNotFound, KeyError):
            return None
        block = self.chain.get_canonical_block_by_number(block_number)
        return _tx_json(block, index, self.chain_id)

    def rpc_eth_getBlockByNumber(self, tag: Any, full: bool = False) -> dict[str, Any] | None:
        try:
            block = self._block(tag)
        except RPCError:
            return None
        return _block_json(block, full, self.chain_id)

    def rpc_eth_getBlockByHash(self, block_hash: str, full: bool = False) -> dict[str, Any] | None:
        try:
            block = self.chain.get_block_by_hash(_b(block_hash))
        except (BlockNotFound, HeaderNotFound):
            return None
        return _block_json(block, full, self.chain_id)

    def rpc_eth_getLogs(self, flt: dict[str, Any]) -> list[dict[str, Any]]:
        head = self._head().block_number
        if "blockHash" in flt:
            b = self.chain.get_block_by_hash(_b(flt["blockHash"]))
            start = end = b.number
        else:
            start = self._tag_number(flt.get("fromBlock"), default=head)
            end = self._tag_number(flt.get("toBlock"), default=head)
            if start > head:
                return []  # like geth: a range past the head is empty, not an error
            end = min(end, head)
        addresses = flt.get("address")
        if isinstance(addresses, str):
            addresses = [addresses]
        addr_set = {to_checksum_address(a) for a in addresses} if addresses else None
        topic_filter = flt.get("topics") or []
        out: list[dict[str, Any]] = []
        hashes: dict[int, str] = {}
        with self.db.env.begin(db=self.db.logs_db) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(start.to_bytes(8, "big")):
                return out
            for key, value in cursor:
                number = int.from_bytes(key, "big")
                if number > end:
                    break
                log_index = 0
                for address, topics, data, tx_hash, tx_index in json.loads(value):
                    this_index = log_index
                    log_index += 1
                    if addr_set is not None and address not in addr_set:
                        continue
                    if not _topics_match(topics, topic_filter):
                        continue
                    if number not in hashes:
                        hashes[number] = "0x" + self.chain.get_canonical_block_header_by_number(number).hash.hex()
                    out.append({"address": address, "topics": topics, "data": data, "blockNumber": hex(number),
                                "blockHash": hashes[number], "transactionHash": tx_hash,
                                "transactionIndex": hex(tx_index), "logIndex": hex(this_index), "removed": False})
        return out

    # -- dev methods (same names as anvil/hardhat) ------------------------------------------
    def rpc_evm_increaseTime(self, seconds: Any) -> str:
        self._time_offset += _int(seconds)
        self._set_meta("time_offset", str(self._time_offset))
        return hex(self._time_offset)

    def rpc_evm_setNextBlockTimestamp(self, timestamp: Any) -> None:
        ts = _int(timestamp)
        if ts <= self._head().timestamp:
            raise RPCError(-32000, f"timestamp {ts} is not after the latest block's {self._head().timestamp}")
        self._time_offset = ts - int(time.time())
        self._set_meta("time_offset", str(self._time_offset))

    def rpc_evm_mine(self, *_args: Any) -> str:
        self._prepare_pending()
        self._mine()
        return "0x0"

    def rpc_anvil_mine(self, blocks: Any = 1, *_args: Any) -> None:
        for _ in range(_int(blocks) if blocks is not None else 1):
            self.rpc_evm_mine()


# ------------------------------------------------------------------------ formatting

def _execute_readonly(state: Any, tx: SpoofTransaction) -> Any:
    snapshot = state.snapshot()
    try:
        return state.apply_transaction(tx)
    finally:
        state.revert(snapshot)


def _revert_error(computation: Any) -> RPCError:
    from eth.exceptions import Revert

    err = computation.error
    if isinstance(err, Revert):
        data = err.args[0] if err.args and isinstance(err.args[0], bytes) else b""
        reason = _decode_reason(data)
        msg = f"execution reverted: {reason}" if reason else "execution reverted"
        return RPCError(3, msg, "0x" + data.hex())
    return RPCError(-32000, f"execution failed: {type(err).__name__} {err}")


def _decode_reason(data: bytes) -> str:
    if data[:4] == bytes.fromhex("08c379a0") and len(data) >= 68:
        length = int.from_bytes(data[36:68], "big")
        return data[68:68 + length].decode("utf-8", "replace")
    return ""


def _validation_message(msg: str) -> str:
    low = msg.lower()
    if "nonce" in low:
        return f"nonce too low or too high: {msg}"
    if "balance" in low or "funds" in low:
        return f"insufficient funds for gas * price + value: {msg}"
    return msg


def _topics_match(topics: list[str], flt: list[Any]) -> bool:
    for i, want in enumerate(flt):
        if want is None:
            continue
        if i >= len(topics):
            return False
        options = want if isinstance(want, list) else [want]
        if topics[i].lower() not in {o.lower() for o in options}:
            return False
    return True


def _receipt_json(chain: Any, block: Any, index: int) -> dict[str, Any]:
    receipts = block.get_receipts(chain.chaindb)
    receipt = receipts[index]
    tx = block.transactions[index]
    prev_cumulative = receipts[index - 1].gas_used if index > 0 else 0
    contract_address = None
    if not tx.to:
        from eth._utils.address import generate_contract_address

        contract_address = to_checksum_address(generate_contract_address(tx.sender, tx.nonce))
    base_fee = block.header.base_fee_per_gas
    logs = []
    # Logs in earlier transactions of the block come first in the block's numbering.
    first_log_index = sum(len(r.logs) for r in receipts[:index])
    for i, log in enumerate(receipt.logs):
        logs.append({"address": to_checksum_address(log.address),
                     "topics": ["0x" + t.to_bytes(32, "big").hex() for t in log.topics],
                     "data": "0x" + log.data.hex(), "blockNumber": hex(block.number),
                     "blockHash": "0x" + block.hash.hex(), "transactionHash": "0x" + tx.hash.hex(),
                     "transactionIndex": hex(index), "logIndex": hex(first_log_index + i), "removed": False})
    return {
        "transactionHash": "0x" + tx.hash.hex(), "transactionIndex": hex(index),
        "blockHash": "0x" + block.hash.hex(), "blockNumber": hex(block.number),
        "from": to_checksum_address(tx.sender), "to": to_checksum_address(tx.to) if tx.to else None,
        "cumulativeGasUsed": hex(receipt.gas_used), "gasUsed": hex(receipt.gas_used - prev_cumulative),
        "contractAddress": contract_address, "logs": logs,
        "logsBloom": "0x" + receipt.bloom.to_bytes(256, "big").hex(),
        "status": "0x1" if receipt.state_root == b"\x01" else "0x0",
        "effectiveGasPrice": hex(_effective_gas_price(tx, base_fee)), "type": hex(getattr(tx, "type_id", None) or 0),
    }


def _effective_gas_price(tx: Any, base_fee: int) -> int:
    if hasattr(tx, "max_fee_per_gas"):
        return min(tx.max_fee_per_gas, base_fee + tx.max_priority_fee_per_gas)
    return tx.gas_price


def _tx_json(block: Any, index: int, chain_id: int) -> dict[str, Any]:
    tx = block.transactions[index]
    out = {
        "hash": "0x" + tx.hash.hex(), "nonce": hex(tx.nonce), "blockHash": "0x" + block.hash.hex(),
        "blockNumber": hex(block.number), "transactionIndex": hex(index),
        "from": to_checksum_address(tx.sender), "to": to_checksum_address(tx.to) if tx.to else None,
        "value": hex(tx.value), "gas": hex(tx.gas), "input": "0x" + tx.data.hex(),
        "v": hex(tx.y_parity if hasattr(tx, "y_parity") else tx.v), "r": hex(tx.r), "s": hex(tx.s),
        "type": hex(getattr(tx, "type_id", None) or 0), "chainId": hex(chain_id),
        "gasPrice": hex(_effective_gas_price(tx, block.header.base_fee_per_gas)),
    }
    if hasattr(tx, "max_fee_per_gas"):
        out["maxFeePerGas"] = hex(tx.max_fee_per_gas)
        out["maxPriorityFeePerGas"] = hex(tx.max_priority_fee_per_gas)
        out["accessList"] = []
    return out


def _block_json(block: Any, full: bool, chain_id: int) -> dict[str, Any]:
    h = block.header
    return {
        "number": hex(h.block_number), "hash": "0x" + h.hash.hex(), "parentHash": "0x" + h.parent_hash.hex(),
        "nonce": "0x" + h.nonce.hex(), "sha3Uncles": "0x" + h.uncles_hash.hex(),
        "logsBloom": "0x" + h.bloom.to_bytes(256, "big").hex(), "transactionsRoot": "0x" + h.transaction_root.hex(),
        "stateRoot": "0x" + h.state_root.hex(), "receiptsRoot": "0x" + h.receipt_root.hex(),
        "miner": to_checksum_address(h.coinbase), "difficulty": hex(h.difficulty), "totalDifficulty": "0x0",
        "extraData": "0x" + h.extra_data.hex(), "size": hex(len(h.extra_data) + 500), "gasLimit": hex(h.gas_limit),
        "gasUsed": hex(h.gas_used), "timestamp": hex(h.timestamp), "mixHash": "0x" + h.mix_hash.hex(),
        "baseFeePerGas": hex(h.base_fee_per_gas),
        "transactions": [_tx_json(block, i, chain_id) for i in range(len(block.transactions))] if full
        else ["0x" + tx.hash.hex() for tx in block.transactions],
        "uncles": [],
    }


def _genesis_params() -> dict[str, Any]:
    return {"coinbase": _ZERO_ADDRESS, "difficulty": 0, "extra_data": b"proofmesh", "gas_limit": GAS_LIMIT,
            "mix_hash": b"\x00" * 32, "nonce": b"\x00" * 8, "timestamp": int(time.time())}


def _genesis_state() -> dict[bytes, dict[str, Any]]:
    return {to_canonical_address(a.address): {"balance": DEV_BALANCE, "nonce": 0, "code": b"", "storage": {}}
            for a in dev_accounts()}


def _has_genesis(db: LMDBAtomicDB) -> bool:
    from eth.db.chain import ChainDB

    try:
        ChainDB(db).get_canonical_head()
        return True
    except (CanonicalHeadNotFound, HeaderNotFound, KeyError):
        return False


def _read_owner(directory: Path) -> str:
    try:
        return f" (pid {json.loads((directory / 'LOCK').read_text())['pid']})"
    except Exception:
        return ""


def _b(hexstr: str) -> bytes:
    return bytes.fromhex(hexstr[2:] if hexstr.startswith(("0x", "0X")) else hexstr)


def _int(v: Any) -> int:
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        return int(v, 16) if v.startswith(("0x", "0X")) else int(v)
    raise RPCError(-32602, f"expected a quantity, got {v!r}")


@contextmanager
def _ignore(*exc: type[BaseException]) -> Iterator[None]:
    try:
        yield
    except exc:
        pass
