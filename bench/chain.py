"""Chain benchmark: the embedded py-evm+LMDB backend vs anvil, same workload, one run.

Prints, for each backend:
  * transactions/s through proofmesh's ``Chain.transact`` (web3: estimate, sign, send,
    wait for the receipt) on MESH transfers — what every CLI command and domain pays;
  * transactions/s of pre-signed raw ETH transfers (``eth_sendRawTransaction`` only),
    the backend's own ceiling;
  * gas of each core operation (identical on both: same EVM semantics);
and for the embedded backend the time to reopen a chain of ``--reopen-txs`` transactions
(the issue's "10,000 transactions reopen in seconds").

    python bench/chain.py                 # defaults: 200 web3 txs, 500 raw, reopen 10,000
    python bench/chain.py --quick         # small numbers for a smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from web3 import Web3

from proofmesh.chain.anvil import start_anvil
from proofmesh.chain.client import Chain, EmbeddedProvider, close_embedded, open_embedded
from proofmesh.chain.core import MESH, GovernanceClient, Registry, Token
from proofmesh.chain.deploy import DeployParams, deploy_all
from proofmesh.chain.embedded import EmbeddedChain, dev_accounts
from proofmesh.crypto.eip712 import Domain, sign_typed

os.environ.setdefault("PROOFMESH_KDF", "fast")


def core_gas(chain: Chain, accts: list) -> dict[str, int]:
    """Gas of each core operation."""
    me, node, domain, payee = accts[0], accts[1], accts[2], accts[3]
    token, reg = Token(chain), Registry(chain)
    gas: dict[str, int] = {}
    gas["MeshToken.transfer"] = token.transfer(node.address, 10_000 * MESH).gas_used
    gas["MeshToken.approve"] = token.approve(reg.c.address, 10**30, sender=node).gas_used
    gas["NodeRegistry.register"] = chain.transact(reg.c.functions.register("http://127.0.0.1:1", 3), sender=node).gas_used
    gas["NodeRegistry.stake"] = chain.transact(reg.c.functions.stake(5_000 * MESH), sender=node).gas_used
    GovernanceClient(chain).apply_now(reg.c.functions.set_domain(domain.address, True))
    gas["NodeRegistry.lock_bond"] = chain.transact(reg.c.functions.lock_bond(node.address, 100 * MESH), sender=domain).gas_used
    gas["NodeRegistry.slash"] = chain.transact(reg.c.functions.slash(node.address, 50 * MESH, payee.address), sender=domain).gas_used
    gas["NodeRegistry.release_bond"] = chain.transact(reg.c.functions.release_bond(node.address, 50 * MESH), sender=domain).gas_used
    gas["NodeRegistry.request_unstake"] = chain.transact(reg.c.functions.request_unstake(100 * MESH), sender=node).gas_used
    chain.increase_time(chain.call(reg.c.functions.unbonding_period()))
    gas["NodeRegistry.withdraw"] = chain.transact(reg.c.functions.withdraw(), sender=node).gas_used
    E = chain.contract("Emission")
    gas["Emission.distribute (1 epoch)"] = chain.transact(E.functions.distribute()).gas_used
    dom = Domain("MeshToken", "1", chain.chain_id, token.c.address)
    types = {"TransferWithAuthorization": [{"name": n, "type": t} for n, t in [
        ("from", "address"), ("to", "address"), ("value", "uint256"), ("validAfter", "uint256"),
        ("validBefore", "uint256"), ("nonce", "bytes32")]]}
    nonce, before = os.urandom(32), chain.timestamp() + 3600
    sig = sign_typed(node, dom, "TransferWithAuthorization", types,
                     {"from": node.address, "to": payee.address, "value": MESH, "validAfter": 0,
                      "validBefore": before, "nonce": nonce})
    gas["MeshToken.transferWithAuthorization"] = chain.transact(token.c.functions.transferWithAuthorization(
        node.address, payee.address, MESH, 0, before, nonce, sig[64], sig[:32], sig[32:64]), sender=payee).gas_used
    return gas


def web3_tps(chain: Chain, accts: list, n: int) -> float:
    token = Token(chain)
    t0 = time.perf_counter()
    for _ in range(n):
        chain.transact(token.c.functions.transfer(accts[4].address, 1))
    return n / (time.perf_counter() - t0)


def raw_tps(send, sender, receiver, start_nonce: int, n: int, chain_id: int) -> float:
    signed = [sender.sign_transaction({"to": receiver, "value": 1, "gas": 21000, "nonce": start_nonce + i,
                                       "chainId": chain_id, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 1})
              for i in range(n)]
    t0 = time.perf_counter()
    for tx in signed:
        send("0x" + tx.raw_transaction.hex())
    return n / (time.perf_counter() - t0)


def reopen_time(n_txs: int, workdir: Path) -> tuple[float, float]:
    """Build a chain of n_txs raw transfers, close it, time the reopen (and the build)."""
    directory = workdir / "reopen"
    sender, receiver = dev_accounts(2)
    chain = EmbeddedChain.open(directory)
    t0 = time.perf_counter()
    raw_tps(lambda raw: chain.rpc("eth_sendRawTransaction", [raw]), sender, receiver.address, 0, n_txs, 31337)
    build = time.perf_counter() - t0
    chain.close()
    t0 = time.perf_counter()
    reopened = EmbeddedChain.open(directory)
    elapsed = time.perf_counter() - t0
    assert int(reopened.rpc("eth_blockNumber"), 16) == n_txs
    reopened.close()
    return elapsed, build


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--web3-txs", type=int, default=200)
    ap.add_argument("--raw-txs", type=int, default=500)
    ap.add_argument("--reopen-txs", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.web3_txs, args.raw_txs, args.reopen_txs = 30, 60, 300
    accts = dev_accounts()
    workdir = Path(tempfile.mkdtemp(prefix="pm-bench-chain-"))
    results: dict[str, dict] = {}
    try:
        # embedded
        emb = open_embedded(workdir / "embedded", 31337)
        chain = Chain(Web3(EmbeddedProvider(emb)), account=accts[0])
        deploy_all(chain, DeployParams(), specs=[])
        gas = core_gas(chain, accts)
        results["embedded"] = {"gas": gas, "web3_tps": web3_tps(chain, accts, args.web3_txs),
                               "raw_tps": raw_tps(lambda r: emb.rpc("eth_sendRawTransaction", [r]), accts[5],
                                                  accts[6].address, 0, args.raw_txs, 31337)}
        close_embedded(workdir / "embedded")
        # anvil
        proc = start_anvil()
        try:
            chain = Chain.from_url(proc.url, account=accts[0])
            deploy_all(chain, DeployParams(), specs=[])
            gas = core_gas(chain, accts)
            w3 = chain.w3
            results["anvil"] = {"gas": gas, "web3_tps": web3_tps(chain, accts, args.web3_txs),
                                "raw_tps": raw_tps(lambda r: w3.eth.send_raw_transaction(r), accts[5], accts[6].address,
                                                   w3.eth.get_transaction_count(accts[5].address), args.raw_txs, 31337)}
        finally:
            proc.stop()
        reopen, build = reopen_time(args.reopen_txs, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n{'':34}{'embedded':>14}{'anvil':>14}")
    print(f"{'tx/s via Chain.transact (web3)':34}{results['embedded']['web3_tps']:>14.1f}{results['anvil']['web3_tps']:>14.1f}")
    print(f"{'tx/s raw sendRawTransaction':34}{results['embedded']['raw_tps']:>14.1f}{results['anvil']['raw_tps']:>14.1f}")
    print("\ngas per operation")
    for op, g in results["embedded"]["gas"].items():
        print(f"  {op:40}{g:>10}{results['anvil']['gas'][op]:>10}")
    print(f"\nembedded: reopen a chain of {args.reopen_txs} transactions: {reopen:.2f} s "
          f"(building it took {build:.1f} s, {args.reopen_txs / build:.0f} tx/s)")


if __name__ == "__main__":
    main()
