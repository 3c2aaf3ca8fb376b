"""The embedded chain: durability under SIGKILL, fast reopen, the process lock, RPC for
other processes, and event readers that survive reorgs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from proofmesh.chain.client import Chain, EventCursor, close_embedded, open_embedded
from proofmesh.chain.core import MESH, Token
from proofmesh.chain.embedded import ChainLockedError, EmbeddedChain, dev_accounts
from proofmesh.chain.rpcserver import RPCServer
from proofmesh.errors import ChainError

WRITER = textwrap.dedent("""
    import sys
    from web3 import Web3
    from proofmesh.chain.client import Chain, EmbeddedProvider, open_embedded
    from proofmesh.chain.embedded import dev_accounts
    sender, receiver = dev_accounts(2)
    chain = Chain(Web3(EmbeddedProvider(open_embedded(__import__("pathlib").Path(sys.argv[1]), 31337))), account=sender)
    for i in range(10_000):
        r = chain.send_eth(receiver.address, 1)
        print(r.tx_hash, chain.balance(receiver.address), flush=True)
""")


def test_committed_transactions_survive_sigkill(tmp_path: Path) -> None:
    directory = tmp_path / "chain"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(directory)], stdout=subprocess.PIPE, text=True)
    committed: list[tuple[str, int]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        tx_hash, balance = line.split()
        committed.append((tx_hash, int(balance)))
        if len(committed) >= 25:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    chain = EmbeddedChain.open(directory)
    try:
        for tx_hash, _ in committed:
            receipt = chain.rpc("eth_getTransactionReceipt", [tx_hash])
            assert receipt is not None and receipt["status"] == "0x1", tx_hash
        receiver = dev_accounts(2)[1].address
        balance = int(chain.rpc("eth_getBalance", [receiver, "latest"]), 16)
        # every reported transaction is there; at most the one in flight at the kill is extra
        assert committed[-1][1] <= balance <= committed[-1][1] + 1
    finally:
        chain.close()


def test_reopen_does_not_replay_history(tmp_path: Path) -> None:
    directory = tmp_path / "chain"
    sender, receiver = dev_accounts(2)
    chain = EmbeddedChain.open(directory)
    for nonce in range(300):
        tx = sender.sign_transaction({"to": receiver.address, "value": 1, "gas": 21000, "nonce": nonce,
                                      "chainId": 31337, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 1})
        chain.rpc("eth_sendRawTransaction", ["0x" + tx.raw_transaction.hex()])
    chain.close()
    t0 = time.perf_counter()
    reopened = EmbeddedChain.open(directory)
    elapsed = time.perf_counter() - t0
    try:
        assert int(reopened.rpc("eth_blockNumber"), 16) == 300
        assert int(reopened.rpc("eth_getTransactionCount", [sender.address, "latest"]), 16) == 300
        assert elapsed < 3.0, f"reopen took {elapsed:.2f}s"
    finally:
        reopened.close()


def test_one_owner_and_chain_id_guard(tmp_path: Path) -> None:
    directory = tmp_path / "chain"
    owner = EmbeddedChain.open(directory)
    try:
        probe = textwrap.dedent(f"""
            from proofmesh.chain.embedded import EmbeddedChain, ChainLockedError
            try:
                EmbeddedChain.open({str(directory)!r})
            except ChainLockedError as e:
                print("LOCKED", e.fix)
        """)
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
        assert out.startswith("LOCKED")
    finally:
        owner.close()
    with pytest.raises(ChainError, match="holds a chain with id 31337"):
        EmbeddedChain.open(directory, chain_id=99)


def test_other_processes_use_the_owners_rpc(home, accounts) -> None:
    emb = open_embedded(home.chain_dir, 31337)
    server = RPCServer(emb).start()
    try:
        script = textwrap.dedent(f"""
            from proofmesh.config import Home
            from proofmesh.chain.client import Chain
            from proofmesh.chain.core import Token
            from proofmesh.chain.embedded import dev_accounts
            a = dev_accounts(3)
            chain = Chain.connect(Home.resolve({str(home.path)!r}), a[1])
            Token(chain).transfer(a[2].address, 123)
            print(chain.backend, chain.rpc_url)
        """)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert server.url in out.stdout
        chain = Chain.connect(home, accounts[0])
        assert Token(chain).balance(accounts[2].address) == 1_000_000 * MESH + 123
    finally:
        server.stop()


def test_unreachable_rpc_is_a_clear_error() -> None:
    with pytest.raises(ChainError, match="cannot reach an Ethereum JSON-RPC node"):
        Chain.from_url("http://127.0.0.1:9", timeout=1)


def test_event_cursor_survives_reorg(anvil_chain, accounts) -> None:
    token = Token(anvil_chain)
    cursor = EventCursor(anvil_chain, "MeshToken", "Transfer", from_block=anvil_chain.block_number() + 1,
                         argument_filters={"receiver": accounts[7].address})
    snapshot = anvil_chain.w3.provider.make_request("evm_snapshot", [])["result"]
    token.transfer(accounts[7].address, 1, sender=accounts[1])
    token.transfer(accounts[7].address, 2, sender=accounts[1])
    removed, added = cursor.poll()
    assert removed == [] and [e["args"]["value"] for e in added] == [1, 2]
    # reorg: the two blocks vanish and a different history is mined at the same heights
    anvil_chain.w3.provider.make_request("evm_revert", [snapshot])
    token.transfer(accounts[7].address, 5, sender=accounts[1])
    anvil_chain.mine(2)
    removed, added = cursor.poll()
    assert [e["args"]["value"] for e in removed] == [1, 2]
    assert [e["args"]["value"] for e in added] == [5]


def test_rpc_router_answers_json_rpc(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from proofmesh.chain.rpcserver import rpc_router

    chain = EmbeddedChain.open(tmp_path / "chain")
    try:
        app = FastAPI()
        app.include_router(rpc_router(chain))
        r = TestClient(app).post("/rpc", json={"jsonrpc": "2.0", "id": 7, "method": "eth_chainId", "params": []})
        assert r.status_code == 200 and r.json() == {"jsonrpc": "2.0", "id": 7, "result": "0x7a69"}
    finally:
        chain.close()


def test_gas_is_estimated_in_the_next_blocks_context(any_chain) -> None:
    """A reveal right after its commit is estimable (and lands): estimates run with the next
    block's number, timestamp and the head as parent, as the transaction will, on both backends."""
    c = any_chain.contract("test/NextBlock", any_chain.deploy("test/NextBlock"))
    commit = any_chain.transact(c.functions.commit())
    any_chain.transact(c.functions.reveal())
    block = any_chain.w3.eth.get_block(commit.block_number)
    assert any_chain.call(c.functions.seed()) == bytes(block["hash"])
