"""Contracts of the compute capability, deployed after models (JobMarket needs ModelRegistry).

JobMarket locks, releases and slashes worker bonds (a NodeRegistry domain) and
registers results as versions on the poster's behalf (a ModelRegistry registrar).
OptimisticVerifier runs the challenge/bisection/audit game and locks challenger
bonds (also a domain). The referee starts as the deployer (the timelock's admin on
a dev chain); on a real network governance appoints it with ``set_referee``.
"""

from __future__ import annotations

from proofmesh.chain.deploy import ContractSpec


def _wire_market(chain, book: dict[str, str]) -> None:
    market = chain.contract("JobMarket")
    chain.transact(market.functions.set_referee(chain.account.address))
    chain.transact(chain.contract("ModelRegistry").functions.set_registrar(book["JobMarket"], True))


def _wire_verifier(chain, book: dict[str, str]) -> None:
    chain.transact(chain.contract("JobMarket").functions.set_verifier(book["OptimisticVerifier"]))


CONTRACTS = [
    # Governance is a placeholder referee (non-zero) until _wire_market appoints the deployer.
    ContractSpec(name="JobMarket",
                 args=lambda book: [book["MeshToken"], book["NodeRegistry"], book["ModelRegistry"],
                                    book["Governance"]],
                 domain=True, after=_wire_market),
    ContractSpec(name="OptimisticVerifier",
                 args=lambda book: [book["JobMarket"], book["NodeRegistry"]],
                 domain=True, after=_wire_verifier),
]
