"""`proofmesh agents …` on the test chain: publish, list, call (paid, receipt checked), settle,
and bad input (one clear line, exit != 0)."""

from __future__ import annotations

import json

import pytest

from proofmesh.agents.provider import ToolProvider
from proofmesh.agents.schema import load_function, tool_from_function
from proofmesh.chain.core import MESH, Registry
from proofmesh.crypto.keys import Keystore
from tests.conftest import cli_runner

PW = "pw"


@pytest.fixture
def cli(home, accounts, chain, monkeypatch):
    monkeypatch.setenv("PROOFMESH_PASSWORD", PW)
    ks = Keystore(home)
    ks.import_key("default", accounts[1].key, PW)      # the provider
    ks.import_key("agent", accounts[5].key, PW)
    for acct, role in ((accounts[1], 16), (accounts[5], 1)):
        Registry(chain).register("http://127.0.0.1", role, sender=acct)
        Registry(chain).stake(300 * MESH, sender=acct)
    return cli_runner(home.path)


def test_agents_cli_end_to_end(cli, home, chain, accounts):
    out = json.loads(cli("agents", "publish", "tests.agents.tooldemo:reverse", "--price", "0.02",
                         "--name", "rev", "--once", "--port", "1", "--json").stdout)
    assert set(out["tools"]) == {"rev"}
    # the schema went into the home's blob store by CID
    from proofmesh.store.blobstore import BlobStore
    rows = json.loads(cli("agents", "tools", "--search", "re", "--json").stdout)
    assert [r["name"] for r in rows] == ["rev"] and rows[0]["price_mesh"] == "0.02"
    assert BlobStore(home.store_dir).has(rows[0]["schema_cid"])
    # serve it for real (a thread of this process shares the embedded chain) and call it via the CLI
    provider = ToolProvider(chain.with_account(accounts[1]), [tool_from_function(
        load_function("tests.agents.tooldemo:reverse"), name="rev")], 2 * MESH // 100,
        state_dir=home.dir("agents") / "provider")
    provider.start()
    try:
        provider.publish()
        res = json.loads(cli("agents", "call", "rev", "--args", '{"text": "mesh"}', "--account", "agent",
                             "--json").stdout)
        assert res["result"] == "hsem" and res["price"] == str(2 * MESH // 100)
        assert res["receipt"]["payer"] == accounts[5].address
        bad = cli("agents", "call", "rev", "--args", '{"text": 5}', "--account", "agent", ok=False)
        assert "text" in bad.output and "fix" in bad.output
        bad = cli("agents", "call", "rev", "--args", "{not json", "--account", "agent", ok=False)
        assert "not JSON" in bad.output
        bad = cli("agents", "call", "nope", "--account", "agent", ok=False)
        assert "no active provider offers tool 'nope'" in bad.output
    finally:
        provider.stop()
    settled = json.loads(cli("agents", "settle", "--json").stdout)
    assert settled["redeemed"] == 2 * MESH // 100
    # --node: hand the tools to the node daemon's service (config written, nothing served here)
    cfg = json.loads(cli("agents", "publish", "tests.agents.tooldemo:reverse", "--price", "0.03", "--node",
                         "--json").stdout)
    written = json.loads((home.path / "agents" / "tools.json").read_text())
    assert written["tools"] == ["tests.agents.tooldemo:reverse"] and written["price"] == "0.03"
    assert cfg["tools"] == ["reverse"]
    bad = cli("agents", "publish", "tests.agents.tooldemo:nope", "--price", "0.01", "--once", ok=False)
    assert "no attribute" in bad.output
    bad = cli("agents", "publish", "tests.agents.tooldemo:reverse", "--price", "-1", "--once", ok=False)
    assert "price" in bad.output


def test_prove_fault_cli_slashes_a_deterministic_tool(cli, home, chain, accounts, tmp_path):
    from proofmesh.agents.receipts import Receipt
    from proofmesh.agents.registry import ToolRegistry, tool_id_of
    from proofmesh.agents.schema import json_hash
    cli("agents", "publish", "tests.agents.tooldemo:reverse", "--price", "0.01", "--name", "rev",
        "--deterministic", "--once", "--port", "1")
    reg = ToolRegistry(chain)
    tid = tool_id_of(accounts[1].address, "rev")
    assert reg.get(tid).deterministic

    def receipt(result, nonce):
        r = Receipt(tid, json_hash({"text": "ab"}), json_hash(result), accounts[5].address, MESH // 100, nonce)
        f = tmp_path / f"r{nonce}.json"
        f.write_text(json.dumps({"receipt": r.signed(accounts[1], reg.domain).to_json()}))
        return str(f)
    a, b, same = receipt("ba", 1), receipt("xx", 2), receipt("ba", 3)
    bad = cli("agents", "prove-fault", a, same, "--account", "agent", ok=False)
    assert "do not conflict" in bad.output                      # refused before any bond is locked
    out = json.loads(cli("agents", "prove-fault", a, b, "--account", "agent", "--json").stdout)
    assert out["proven"] is True and float(out["bounty_mesh"]) > 0
    assert not reg.get(tid).active and reg.get(tid).disputes == 1
