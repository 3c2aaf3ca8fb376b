"""Helpers for the compute tests: staked workers, a registered base model, token books."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from proofmesh.chain.core import MESH, Registry, Token
from proofmesh.compute.market import JobMarketClient, Trace

ROLE_COMPUTE = 2
PROFILE = b"\x42" * 32
BATCH = b"\x07" * 32


@dataclass
class Market:
    chain: object
    client: JobMarketClient
    poster: object
    workers: list
    referee: object
    base_version: int
    holders: list[str]
    supply0: int
    held0: int

    def balance_of_holders(self) -> int:
        t = Token(self.chain)
        return sum(t.balance(h) for h in self.holders)

    def assert_books(self) -> None:
        """JobMarket holds exactly its escrow; every wei is accounted for (burns included)."""
        t = Token(self.chain)
        market = self.client.c.address
        assert t.balance(market) == self.client.total_escrowed()
        burned = self.supply0 - t.total_supply()
        assert self.balance_of_holders() + burned == self.held0

    def post(self, mode: str = "replicated", replicas: int = 3, n_segments: int = 8, reward: int = 30 * MESH,
             apply_seconds: int = 60, work_seconds: int = 600, deadline_in: int = 7200, name: str = "ft") -> int:
        now = self.chain.timestamp()
        return self.client.post(spec_cid="bafkspec", name=name, base_version=self.base_version, batches=[BATCH],
                                mode=mode, replicas=replicas, n_segments=n_segments, profile_id=PROFILE,
                                reward=reward, apply_seconds=apply_seconds, work_seconds=work_seconds,
                                deadline=now + deadline_in, sender=self.poster)

    def assign(self, job_id: int, applicants: list) -> list[str]:
        for w in applicants:
            self.client.apply(job_id, PROFILE, sender=w)
        self.chain.increase_time(61)
        self.client.close_applications(job_id, sender=self.poster)
        self.chain.mine(3)
        return self.client.draw(job_id, sender=self.poster)

    def account(self, address: str):
        for a in [self.poster, self.referee, *self.workers]:
            if a.address == address:
                return a
        raise KeyError(address)


def random_trace(n: int) -> Trace:
    return Trace([os.urandom(32) for _ in range(n + 1)])


def make_market(chain, accounts) -> Market:
    # anvil keeps its clock offset across evm_revert: a previous test's increase_time
    # would make this test's first block jump ahead of the reverted head. Re-anchor.
    chain.advance_to(chain.timestamp() + 1)
    client = JobMarketClient(chain)
    reg = Registry(chain)
    workers = accounts[1:6]
    for w in workers:
        reg.register(f"http://127.0.0.1:1/{w.address[-4:]}", ROLE_COMPUTE, sender=w)
        reg.stake(1000 * MESH, sender=w)
    poster = accounts[6]
    models = chain.contract("ModelRegistry")
    chain.transact(models.functions.register("base", os.urandom(32), 0, 0, 0, [], 0, "", ""), sender=poster)
    base_version = chain.call(models.functions.version_count())
    t = Token(chain)
    holders = [a.address for a in accounts] + [client.c.address, chain.addresses["NodeRegistry"],
                                                 chain.addresses["Governance"]]
    supply0 = t.total_supply()
    held0 = sum(t.balance(h) for h in holders)
    return Market(chain, client, poster, workers, accounts[0], base_version, holders, supply0, held0)


@pytest.fixture
def market(anvil_chain, accounts) -> Market:
    # anvil: ~4x the transactions/s of the embedded chain, and each test reverts to a
    # snapshot; the embedded backend runs the smoke test in test_market_embedded.py.
    return make_market(anvil_chain, accounts)
