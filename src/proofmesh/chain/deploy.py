"""Deploy the core contracts and every domain's contracts, then hand them to governance.

Order: Governance (the timelock, also the treasury) → MeshToken → NodeRegistry →
Emission → each domain's ``CONTRACTS`` (from ``proofmesh.<domain>.deployment``).
While the deployer still owns everything it wires the network (Emission becomes
the token's minter, domain contracts may bond/slash and pay from their pools);
then ownership of every ownable contract moves to Governance, so from then on a
parameter changes only through the timelock. The address book is written last:
a failed deployment leaves the home's book unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from proofmesh.chain.client import Chain
from proofmesh.errors import ChainError
from proofmesh.plugins import import_optional

MESH = 10**18

# Domain packages whose ``deployment`` module (if present) lists contracts to deploy.
DOMAIN_MODULES = [
    "proofmesh.payments.deployment",
    "proofmesh.data.deployment",
    "proofmesh.models.deployment",
    "proofmesh.compute.deployment",
    "proofmesh.inference.deployment",
    "proofmesh.edge.deployment",
    "proofmesh.agents.deployment",
]

# Role bits of NodeRegistry and pool ids of Emission (mirrors of the contracts).
ROLES = {"data": 1, "compute": 2, "inference": 4, "gateway": 8, "tools": 16, "evaluator": 32}
POOLS = {"data": 0, "compute": 1, "inference": 2, "edge": 3, "agents": 4, "evaluation": 5}


@dataclass
class ContractSpec:
    """How to deploy and wire one domain contract.

    ``args`` builds the constructor arguments from the address book so far (and the
    deploy parameters); ``domain`` lets it lock bonds and slash in NodeRegistry;
    ``pools`` lets it pay rewards from those Emission pools; ``after`` runs extra
    wiring while the deployer still owns everything.
    """

    name: str
    args: Callable[[dict[str, str]], list[Any]] = lambda book: []
    domain: bool = False
    pools: list[int] = field(default_factory=list)
    after: Callable[[Chain, dict[str, str]], None] | None = None


@dataclass
class DeployParams:
    """Economic and governance parameters of a new deployment."""

    cap: int = 1_000_000_000 * MESH
    genesis_amount: int = 400_000_000 * MESH
    unbonding_period: int = 14 * 86400
    max_challenge_window: int = 7 * 86400
    slash_burn_bps: int = 5_000
    min_stake: int = 100 * MESH
    epoch_length: int = 86400
    initial_emission: int = 1_000_000 * MESH
    decay_bps: int = 50
    pool_weights: tuple[int, ...] = (25, 20, 20, 15, 10, 10)
    timelock_delay: int = 2 * 86400
    admin: str | None = None            # proposer/executor/admin of the timelock (default: deployer)
    genesis_holder: str | None = None   # receives the genesis allocation (default: deployer)


def load_domain_specs() -> list[ContractSpec]:
    """Contract specs of every domain that ships a ``deployment`` module."""
    specs: list[ContractSpec] = []
    for module_name in DOMAIN_MODULES:
        module = import_optional(module_name)
        if module is not None:  # a domain without a deployment module ships no contracts
            specs.extend(module.CONTRACTS)
    return specs


def deploy_all(chain: Chain, params: DeployParams | None = None, *,
               specs: list[ContractSpec] | None = None,
               progress: Callable[[str, str], None] | None = None) -> dict[str, str]:
    """Deploy and wire everything; returns the address book (also set on ``chain``)."""
    params = params or DeployParams()
    if chain.account is None:
        raise ChainError("deploying needs a signing account", fix="create one with `proofmesh account new`")
    me = chain.account.address
    admin = params.admin or me
    book: dict[str, str] = {}
    report = progress or (lambda name, address: None)

    def deploy(name: str, *args: Any) -> str:
        address = chain.deploy(name, *args)
        book[name] = address
        chain.addresses[name] = address
        report(name, address)
        return address

    governance = deploy("Governance", params.timelock_delay, [admin], [admin], admin)
    token = deploy("MeshToken", params.cap, params.genesis_holder or me, params.genesis_amount)
    registry = deploy("NodeRegistry", token, governance, params.unbonding_period,
                      params.max_challenge_window, params.slash_burn_bps, params.min_stake)
    emission = deploy("Emission", token, params.epoch_length, params.initial_emission,
                      params.decay_bps, list(params.pool_weights))
    chain.transact(chain.contract("MeshToken").functions.set_minter(emission))

    R = chain.contract("NodeRegistry")
    E = chain.contract("Emission")
    for spec in (load_domain_specs() if specs is None else specs):
        address = deploy(spec.name, *spec.args(book))
        if spec.domain:
            chain.transact(R.functions.set_domain(address, True))
        for pool in spec.pools:
            chain.transact(E.functions.set_pool_payer(address, pool, True))
        if spec.after is not None:
            spec.after(chain, book)

    for name, address in book.items():
        if name == "Governance":
            continue
        c = chain.contract(name)
        if any(f.get("name") == "transfer_ownership" for f in c.abi):
            if chain.call(c.functions.owner()) == me:
                chain.transact(c.functions.transfer_ownership(governance))
    if chain.home is not None:
        chain.home.save_address_book(chain.chain_id, book)
    return book
