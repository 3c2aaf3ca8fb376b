"""Shared fixtures: real chains with everything deployed.

* ``chain`` — an embedded py-evm chain (LMDB on disk) in a fresh temporary home,
  all contracts deployed and wired, dev accounts funded. Deploying takes seconds, so
  it happens once per test session into a template directory and every test gets a
  byte copy of it (a consistent LMDB snapshot), which opens in milliseconds.
* ``anvil_chain`` — the same deployment on one anvil per session; each test runs
  between ``evm_snapshot`` and ``evm_revert`` so tests stay independent.
* ``any_chain`` — parametrised over both: the contract suite runs on both backends.

Accounts: the ten anvil dev accounts. ``accounts[0]`` deployed everything and is
the timelock's admin; each of ``accounts[1..9]`` holds 1,000,000 MESH.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

os.environ.setdefault("PROOFMESH_KDF", "fast")  # cheap keystore KDF in tests (documented in keys.py)

from proofmesh.chain.client import Chain, close_embedded, open_embedded  # noqa: E402
from proofmesh.chain.core import MESH, Token  # noqa: E402
from proofmesh.chain.deploy import DeployParams, deploy_all  # noqa: E402
from proofmesh.chain.embedded import dev_accounts  # noqa: E402
from proofmesh.config import Home  # noqa: E402

FUNDED_MESH = 1_000_000 * MESH


def pytest_configure(config: pytest.Config) -> None:
    """Compile (or load from numba's on-disk cache) the inference node's receipt kernel once,
    in the controlling process, before any xdist worker starts: a node made by a test or by
    a spawned daemon then loads it in about a second, instead of compiling it for tens of
    seconds on a fresh clone while a health check waits for that daemon."""
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return    # a worker, or a run without xdist (a developer's single file): nothing to share
    from proofmesh.inference.receipt import ValuesSealer, receipt_domain

    ValuesSealer(b"\x01" * 32, receipt_domain(1, "0x" + "00" * 20))


@pytest.fixture(scope="session")
def accounts() -> list:
    return dev_accounts()


def _deploy_and_fund(chain: Chain, accounts: list) -> dict[str, str]:
    book = deploy_all(chain, DeployParams())
    token = Token(chain)
    for a in accounts[1:]:
        token.transfer(a.address, FUNDED_MESH)
    return book


@pytest.fixture(scope="session")
def _embedded_template(tmp_path_factory: pytest.TempPathFactory, accounts: list) -> tuple[Path, dict[str, str]]:
    home = Home.resolve(tmp_path_factory.mktemp("template-home"))
    home.init()
    emb = open_embedded(home.chain_dir, home.settings.chain_id)
    from web3 import Web3

    from proofmesh.chain.client import EmbeddedProvider

    chain = Chain(Web3(EmbeddedProvider(emb)), account=accounts[0], home=home)
    book = _deploy_and_fund(chain, accounts)
    close_embedded(home.chain_dir)
    return home.chain_dir, book


def make_home(path: Path, template: tuple[Path, dict[str, str]] | None = None, **settings: object) -> Home:
    """A fresh home at ``path``; with a template, its chain is a copy of the deployed one."""
    home = Home.resolve(path)
    home.init(**settings)
    if template is not None:
        src, book = template
        shutil.rmtree(home.chain_dir)
        shutil.copytree(src, home.chain_dir, ignore=shutil.ignore_patterns("LOCK", "rpc.json"))
        home.save_address_book(31337, book)
    return home


@pytest.fixture
def home(tmp_path: Path, _embedded_template: tuple[Path, dict[str, str]]) -> Iterator[Home]:
    """A temporary home whose embedded chain has everything deployed."""
    h = make_home(tmp_path / "home", _embedded_template)
    yield h
    close_embedded(h.chain_dir)


@pytest.fixture
def chain(home: Home, accounts: list) -> Chain:
    """The home's embedded chain, connected in-process, signing as accounts[0]."""
    return Chain.connect(home, accounts[0])


@pytest.fixture
def empty_home(tmp_path: Path) -> Iterator[Home]:
    """A temporary home with nothing in it (not even initialised)."""
    h = Home.resolve(tmp_path / "empty-home")
    yield h
    close_embedded(h.chain_dir)


# ------------------------------------------------------------------------ anvil

@pytest.fixture(scope="session")
def _anvil_deployed(accounts: list) -> Iterator[tuple[str, dict[str, str]]]:
    from proofmesh.chain.anvil import start_anvil

    proc = start_anvil()
    try:
        chain = Chain.from_url(proc.url, account=accounts[0])
        book = _deploy_and_fund(chain, accounts)
        yield proc.url, book
    finally:
        proc.stop()


@pytest.fixture
def anvil_chain(_anvil_deployed: tuple[str, dict[str, str]], accounts: list, tmp_path: Path) -> Iterator[Chain]:
    """The session anvil, reverted to its freshly deployed state after each test."""
    url, book = _anvil_deployed
    home = Home.resolve(tmp_path / "anvil-home")
    home.init(backend="rpc", rpc_url=url)
    home.save_address_book(31337, book)
    chain = Chain.connect(home, accounts[0])
    snap = chain.w3.provider.make_request("evm_snapshot", [])["result"]
    yield chain
    chain.w3.provider.make_request("evm_revert", [snap])


@pytest.fixture(params=["embedded", "anvil"])
def any_chain(request: pytest.FixtureRequest) -> Chain:
    """The contract suite's chain: runs each test on both backends."""
    return request.getfixturevalue("chain" if request.param == "embedded" else "anvil_chain")
