"""Stateful property test of the token + staking + emission books on a real EVM.

Hypothesis drives random sequences of stake / unstake / withdraw / bond / release /
slash / emission / transfer calls (valid and invalid) against the deployed contracts,
and after every step checks the accounting invariants of DESIGN.md:

* total supply = sum of all balances (accounts and contracts);
* NodeRegistry holds exactly sum(stake) + sum(unbonding); Emission holds exactly its pools;
* supply never exceeds the cap; bonds never exceed stake; a slash never exceeds the
  domain's bond; only authorised domains bond or slash; no withdrawal before unbonding.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from proofmesh.chain.client import Chain, close_embedded
from proofmesh.chain.core import MESH, GovernanceClient, Registry, Token
from proofmesh.config import Home
from proofmesh.errors import ContractRevert

NODES = [1, 2, 3]
DOMAINS = [8, 9]
OUTSIDER = 7
amounts = st.integers(min_value=0, max_value=3_000).map(lambda x: x * MESH // 10)


def make_machine(template: tuple[Path, dict[str, str]], workdir: Path, accounts: list):
    counter = iter(range(10**6))

    class Books(RuleBasedStateMachine):
        @initialize()
        def setup(self) -> None:
            from tests.conftest import make_home

            self.home: Home = make_home(workdir / f"h{next(counter)}", template)
            self.chain = Chain.connect(self.home, accounts[0])
            self.R = self.chain.contract("NodeRegistry")
            self.E = self.chain.contract("Emission")
            self.token = Token(self.chain)
            gov = GovernanceClient(self.chain)
            for i, d in enumerate(DOMAINS):
                gov.schedule(self.R.functions.set_domain(accounts[d].address, True), salt=bytes([i]) * 32)
            self.chain.increase_time(gov.min_delay() + 1)
            for i, d in enumerate(DOMAINS):
                gov.execute(self.R.functions.set_domain(accounts[d].address, True), salt=bytes([i]) * 32)
            reg = Registry(self.chain)
            for n in NODES:
                reg.register("", 2, sender=accounts[n])
                self.token.approve(self.R.address, 2**255, sender=accounts[n])
            self.holders = [a.address for a in accounts] + list(self.chain.addresses.values())

        def teardown(self) -> None:
            if hasattr(self, "home"):
                close_embedded(self.home.chain_dir)
                shutil.rmtree(self.home.path, ignore_errors=True)

        def _tx(self, fn, sender) -> bool:
            try:
                self.chain.transact(fn, sender=sender)
                return True
            except ContractRevert:
                return False

        def node(self, n: int):
            return Registry(self.chain).info(accounts[n].address)

        @rule(n=st.sampled_from(NODES), amount=amounts)
        def stake(self, n, amount):
            ok = self._tx(self.R.functions.stake(amount), accounts[n])
            assert ok == (0 < amount <= self.token.balance(accounts[n].address) + (amount if ok else 0))

        @rule(n=st.sampled_from(NODES), amount=amounts)
        def request_unstake(self, n, amount):
            before = self.node(n)
            ok = self._tx(self.R.functions.request_unstake(amount), accounts[n])
            assert ok == (0 < amount <= before.free_stake)

        @rule(n=st.sampled_from(NODES))
        def withdraw(self, n):
            before = self.node(n)
            ok = self._tx(self.R.functions.withdraw(), accounts[n])
            if ok:
                # the block that withdrew is at or after the unbonding deadline
                assert self.chain.timestamp() >= before.unbond_at and before.unbonding > 0
            else:
                assert before.unbonding == 0 or self.chain.timestamp() + 1 < before.unbond_at + 2

        @rule(seconds=st.sampled_from([3600, 86400, 15 * 86400]))
        def wait(self, seconds):
            self.chain.increase_time(seconds)

        @rule(d=st.sampled_from(DOMAINS), n=st.sampled_from(NODES), amount=amounts)
        def lock_bond(self, d, n, amount):
            before = self.node(n)
            ok = self._tx(self.R.functions.lock_bond(accounts[n].address, amount), accounts[d])
            assert ok == (0 < amount <= before.free_stake)

        @rule(d=st.sampled_from(DOMAINS), n=st.sampled_from(NODES), amount=amounts)
        def release_bond(self, d, n, amount):
            bond = self.chain.call(self.R.functions.bonded_by(accounts[d].address, accounts[n].address))
            ok = self._tx(self.R.functions.release_bond(accounts[n].address, amount), accounts[d])
            assert ok == (amount <= bond)

        @rule(d=st.sampled_from(DOMAINS), n=st.sampled_from(NODES), amount=amounts)
        def slash(self, d, n, amount):
            bond = self.chain.call(self.R.functions.bonded_by(accounts[d].address, accounts[n].address))
            ok = self._tx(self.R.functions.slash(accounts[n].address, amount, accounts[OUTSIDER].address), accounts[d])
            assert ok == (0 < amount <= bond)

        @rule(n=st.sampled_from(NODES), amount=amounts)
        def outsider_cannot_touch_bonds(self, n, amount):
            assert not self._tx(self.R.functions.lock_bond(accounts[n].address, amount), accounts[OUTSIDER])
            assert not self._tx(self.R.functions.slash(accounts[n].address, amount, accounts[OUTSIDER].address),
                                accounts[OUTSIDER])

        @rule()
        def distribute(self):
            self._tx(self.E.functions.distribute(), accounts[OUTSIDER])

        @rule(src=st.sampled_from(NODES + [OUTSIDER]), dst=st.sampled_from(NODES + [OUTSIDER]), amount=amounts)
        def transfer(self, src, dst, amount):
            have = self.token.balance(accounts[src].address)
            ok = self._tx(self.token.c.functions.transfer(accounts[dst].address, amount), accounts[src])
            assert ok == (amount <= have)

        # ------------------------------------------------------------ invariants
        @invariant()
        def books_balance(self):
            if not hasattr(self, "chain"):
                return
            supply = self.token.total_supply()
            assert supply == sum(self.token.balance(h) for h in self.holders)
            assert supply <= self.token.cap()
            nodes = [self.node(n) for n in NODES]
            assert self.token.balance(self.R.address) == sum(x.stake + x.unbonding for x in nodes)
            pools = sum(self.chain.call(self.E.functions.pool_balance(i)) for i in range(6))
            assert self.token.balance(self.E.address) == pools
            for n, info in zip(NODES, nodes):
                assert info.bonded <= info.stake
                by_domain = sum(self.chain.call(self.R.functions.bonded_by(accounts[d].address, accounts[n].address))
                                for d in DOMAINS)
                assert by_domain == info.bonded

    return Books


@pytest.mark.slow
def test_token_and_staking_invariants(_embedded_template, tmp_path, accounts):
    machine = make_machine(_embedded_template, tmp_path, accounts)
    run_state_machine_as_test(machine, settings=settings(
        max_examples=5, stateful_step_count=15, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
