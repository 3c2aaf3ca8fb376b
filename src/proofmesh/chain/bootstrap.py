"""Bring a home to a usable state: a key, gas money on dev chains, deployed contracts.

Used by ``proofmesh init`` and the demo. On a dev chain (the embedded chain, or an
anvil) the well-known dev account 0 acts as the faucet for ETH; the home's own key
deploys the contracts, so it holds the genesis MESH and is the timelock's admin.
"""

from __future__ import annotations

from typing import Any, Callable

from proofmesh.chain.client import Chain
from proofmesh.chain.core import Token, from_wei
from proofmesh.chain.deploy import DeployParams, deploy_all
from proofmesh.chain.embedded import dev_accounts
from proofmesh.config import Home

DEV_CHAIN_IDS = {31337, 1337}
FAUCET_ETH = 100 * 10**18


def is_dev_chain(chain: Chain) -> bool:
    """The embedded chain, or a local anvil/hardhat (dev chain ids)."""
    return chain.backend == "embedded" or chain.chain_id in DEV_CHAIN_IDS


def fund_from_dev(chain: Chain, address: str, eth: int = FAUCET_ETH) -> None:
    """Give ``address`` gas money from dev account 0 if it has less than half of ``eth``."""
    faucet = dev_accounts(1)[0]
    if address.lower() == faucet.address.lower() or chain.balance(address) >= eth // 2:
        return
    chain.send_eth(address, eth, sender=faucet)


def bootstrap_home(home: Home, account_name: str, password: str, *, deploy: bool = True,
                   params: DeployParams | None = None,
                   progress: Callable[[str, str], None] | None = None) -> dict[str, Any]:
    """Create the key if needed, connect, fund (dev chains) and deploy if needed."""
    from proofmesh.crypto.keys import Keystore

    ks = Keystore(home)
    acct = ks.load(account_name, password) if ks.exists(account_name) else ks.create(account_name, password)
    chain = Chain.connect(home, acct)
    deployed_now = False
    if is_dev_chain(chain):
        fund_from_dev(chain, acct.address)
    if deploy and not chain.addresses:
        deploy_all(chain, params, progress=progress)
        deployed_now = True
    summary: dict[str, Any] = {"home": str(home.path), "account": account_name, "address": acct.address,
                               "backend": chain.backend, "chain_id": chain.chain_id,
                               "contracts": len(chain.addresses), "deployed_now": deployed_now}
    if chain.addresses:
        summary["mesh"] = from_wei(Token(chain).balance(acct.address))
    return summary
