"""The core CLI end to end (init, account, chain, node) and its bad-input behaviour:
one clear line, a non-zero exit code, and nothing changed."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from proofmesh.chain.client import close_embedded
from proofmesh.cli.main import app
from proofmesh.crypto.keys import Keystore

PW = "correct horse"


@pytest.fixture
def cli(home, accounts, monkeypatch):
    """Run the CLI against the deployed test home, as dev account 1 imported as 'default'."""
    monkeypatch.setenv("PROOFMESH_PASSWORD", PW)
    Keystore(home).import_key("default", accounts[1].key, PW)
    runner = CliRunner()

    def run(*args: str, ok: bool = True, env: dict | None = None):
        result = runner.invoke(app, ["--home", str(home.path), *args], env=env)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run


def as_json(result) -> object:
    return json.loads(result.stdout)


def test_init_creates_home_key_and_deploys(empty_home, monkeypatch):
    monkeypatch.setenv("PROOFMESH_PASSWORD", PW)
    result = CliRunner().invoke(app, ["--home", str(empty_home.path), "init", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{"):])
    assert data["deployed_now"] and data["contracts"] >= 4 and float(data["mesh"]) > 0
    assert (empty_home.path / "config.toml").exists() and (empty_home.path / "keys" / "default.json").exists()
    # idempotent: a second init deploys nothing new
    again = CliRunner().invoke(app, ["--home", str(empty_home.path), "init", "--json"])
    assert again.exit_code == 0 and '"deployed_now": false' in again.stdout
    close_embedded(empty_home.chain_dir)


def test_account_node_lifecycle(cli, accounts):
    rows = as_json(cli("account", "list", "--json"))
    assert rows == [{"name": "default", "address": accounts[1].address, "default": True}]
    bal = as_json(cli("account", "balance", "--json"))
    assert bal["mesh"] == "1000000"
    cli("account", "transfer", accounts[2].address, "2.5")
    assert as_json(cli("account", "balance", "--json"))["mesh"] == "999997.5"

    cli("node", "register", "--endpoint", "http://127.0.0.1:8701", "--roles", "compute,inference")
    info = as_json(cli("node", "stake", "500", "--json"))
    assert info["stake"] == "500" and info["roles"] == ["compute", "inference"]
    info = as_json(cli("node", "unstake", "200", "--json"))
    assert info["unbonding"] == "200"
    listed = as_json(cli("node", "list", "--json"))
    assert [n["address"] for n in listed] == [accounts[1].address]
    chain_info = as_json(cli("chain", "info", "--json"))
    assert chain_info["chain_id"] == 31337 and "NodeRegistry" in chain_info["contracts"]


def _assert_clean_failure(result, *fragments: str) -> None:
    assert result.exit_code != 0
    text = result.output
    assert "Traceback" not in text
    for f in fragments:
        assert f in text, text


def test_bad_input_gives_one_clear_line_and_changes_nothing(cli, accounts):
    before = as_json(cli("account", "balance", "--json"))

    _assert_clean_failure(cli("account", "balance", "nobody", ok=False), "unknown", "nobody")
    _assert_clean_failure(cli("account", "transfer", accounts[2].address, "1", ok=False,
                              env={"PROOFMESH_PASSWORD": "wrong"}), "wrong password")
    _assert_clean_failure(cli("account", "transfer", accounts[2].address, "99999999", ok=False),
                          "insufficient MESH balance")
    _assert_clean_failure(cli("account", "transfer", "0x1234", "1", ok=False), "not a valid address")
    _assert_clean_failure(cli("account", "transfer", accounts[2].address, "abc", ok=False), "not a number")
    _assert_clean_failure(cli("node", "stake", "10", ok=False), "not a registered node")
    cli("node", "register", "--roles", "compute")
    _assert_clean_failure(cli("node", "register", "--roles", "compute", ok=False), "already registered")
    _assert_clean_failure(cli("node", "register", "--roles", "wizard", ok=False), "unknown role")
    cli("node", "stake", "100")
    _assert_clean_failure(cli("node", "unstake", "101", ok=False), "free stake is 100")
    cli("node", "unstake", "50")
    _assert_clean_failure(cli("node", "withdraw", ok=False), "unbonding not finished")
    _assert_clean_failure(cli("--rpc-url", "http://127.0.0.1:9", "chain", "info", ok=False),
                          "cannot reach an Ethereum JSON-RPC node")

    after = as_json(cli("account", "balance", "--json"))
    assert float(after["mesh"]) == float(before["mesh"]) - 100  # only the successful stake moved tokens
    assert after["staked"] == "50"


def test_home_from_another_chain_id(cli, home):
    close_embedded(home.chain_dir)
    result = cli("chain", "info", ok=False, env={"PROOFMESH_CHAIN_ID": "5"})
    _assert_clean_failure(result, "holds a chain with id 31337, not 5")


def test_uninitialised_home(tmp_path):
    result = CliRunner().invoke(app, ["--home", str(tmp_path / "nothing"), "account", "list"])
    _assert_clean_failure(result, "no proofmesh home", "proofmesh init")


def test_governance_through_the_cli(home, accounts, monkeypatch):
    """Parameters change only through the timelock: propose, wait, execute."""
    from proofmesh.chain.client import Chain

    monkeypatch.setenv("PROOFMESH_PASSWORD", PW)
    Keystore(home).import_key("admin", accounts[0].key, PW)  # the deployer is the timelock admin
    runner = CliRunner()

    def run(*args, ok=True):
        r = runner.invoke(app, ["--home", str(home.path), *args])
        if ok:
            assert r.exit_code == 0, r.output
        return r

    op = json.loads(run("gov", "propose", "NodeRegistry", "set_min_stake", str(5 * 10**18), "-a", "admin", "--json").stdout)
    assert op["state"] == "waiting" and op["target"] == "NodeRegistry"
    early = run("gov", "execute", op["id"], "-a", "admin", ok=False)
    assert early.exit_code != 0 and "waiting" in early.output
    chain = Chain.connect(home, accounts[0])
    chain.increase_time(2 * 86400 + 1)
    run("gov", "execute", op["id"], "-a", "admin")
    assert chain.call(chain.contract("NodeRegistry").functions.min_stake()) == 5 * 10**18
    ops = json.loads(run("gov", "list", "--json").stdout)
    assert [o["state"] for o in ops] == ["done"]
    bad = run("gov", "propose", "NodeRegistry", "set_min_stake", "lots", "-a", "admin", ok=False)
    assert "must be uint256" in bad.output
