"""Fixtures of the agents tests: staked providers serving real MCP tools on 127.0.0.1
and staked agents, on the embedded chain with everything deployed."""

from __future__ import annotations

from pathlib import Path

import pytest

from proofmesh.agents.client import AgentClient
from proofmesh.agents.provider import ToolProvider
from proofmesh.agents.schema import tool_from_function
from proofmesh.chain.core import MESH, Registry
from proofmesh.chain.deploy import ROLES

PRICE = MESH // 100    # 0.01 MESH per call


def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


def shout(text: str, times: int = 1) -> str:
    """Upper-case a text, repeated."""
    return " ".join([text.upper()] * times)


def flaky(x: int) -> int:
    """Fails on negative input."""
    if x < 0:
        raise ValueError("negative input")
    return x * 2


class Net:
    """Actors on one chain: accounts[1..4] provide tools, accounts[5..9] are agents."""

    def __init__(self, chain, accounts, tmp: Path) -> None:
        self.chain = chain
        self.accounts = accounts
        self.tmp = tmp
        self.providers: list[ToolProvider] = []
        self._staked: set[str] = set()

    def staked(self, i: int, roles: int = ROLES["tools"], stake: int = 500 * MESH):
        """accounts[i] registered with ``roles`` and staked; returns a Chain signing as it."""
        c = self.chain.with_account(self.accounts[i])
        if self.accounts[i].address not in self._staked:
            reg = Registry(c)
            reg.register(f"http://127.0.0.1/{i}", roles)
            reg.stake(stake)
            self._staked.add(self.accounts[i].address)
        return c

    def provider(self, i: int, funcs=(word_count,), price: int = PRICE, **kw) -> ToolProvider:
        p = ToolProvider(self.staked(i), [tool_from_function(f) for f in funcs], price,
                         state_dir=self.tmp / f"provider{i}", **kw)
        p.start()
        self.providers.append(p)
        p.publish()
        return p

    def agent(self, i: int, *, staked: bool = True, **kw) -> AgentClient:
        c = self.staked(i, ROLES["data"]) if staked else self.chain.with_account(self.accounts[i])
        kw.setdefault("deposit", MESH)
        return AgentClient(c, state_dir=self.tmp / f"agent{i}", **kw)

    def close(self) -> None:
        for p in self.providers:
            p.stop()


@pytest.fixture
def net(chain, accounts, tmp_path):
    n = Net(chain, accounts, tmp_path)
    yield n
    n.close()
