"""`proofmesh inference …` / `proofmesh infer` on the test chain: publish, status, infer
through the router against a real node, and clear errors for bad input and tee."""

from __future__ import annotations

import json

import numpy as np
import pytest

from proofmesh.crypto.keys import Keystore
from tests.conftest import cli_runner
from tests.inference.conftest import Network

PW = "pw"


@pytest.fixture
def cli(home, accounts, chain, monkeypatch):
    monkeypatch.setenv("PROOFMESH_PASSWORD", PW)
    Keystore(home).import_key("default", accounts[0].key, PW)
    Keystore(home).import_key("client", accounts[6].key, PW)
    return cli_runner(home.path)


def test_publish_status_infer(cli, chain, accounts, mlp_onnx, tmp_path):
    from tests.inference.conftest import export_mlp

    onnx = export_mlp(tmp_path / "cli.onnx", seed=11)
    pub = json.loads(cli("inference", "publish", "cli-mlp", onnx, "--tolerance", "0.01", "--json").stdout)
    version = pub["version"]
    st = json.loads(cli("inference", "status", version, "--json").stdout)
    assert st["onnx_sha256"] == pub["onnx_sha256"] and st["circuit"] is False and st["tolerance"] == 0.01
    net = Network(chain, accounts, onnx, tmp_path / "n", version=version)   # a node for the CLI-published version
    try:
        net.start_node(accounts[3])
        x = np.random.default_rng(0).random((2, 4), dtype=np.float32)
        (tmp_path / "in.json").write_text(json.dumps(x.tolist()))
        out = json.loads(cli("infer", version, tmp_path / "in.json", "--account", "client", "--json").stdout)
        import onnxruntime as ort
        direct = ort.InferenceSession(str(onnx)).run(None, {"x": x})[0]
        assert np.allclose(np.asarray(out["output"]), direct) and out["node"] == accounts[3].address
        (tmp_path / "bad.json").write_text(json.dumps([[1, 2, 3]]))
        bad = cli("infer", version, tmp_path / "bad.json", "--account", "client", ok=False)
        assert "shape" in bad.output and "fix" in bad.output
        tee = cli("infer", version, tmp_path / "in.json", "--verify", "tee", "--account", "client", ok=False)
        assert "no TEE available" in tee.output
    finally:
        net.stop()
    missing = cli("inference", "status", 999, ok=False)
    assert "no serving terms" in missing.output


def test_redundant_dispute_through_the_cli(cli, chain, accounts, tmp_path):
    """`infer --verify redundant` opens the dispute and hands it to the committee; node duty
    (what the daemon ticks) reveals and claims; `inference disputes/resolve/claim` follow it."""
    from proofmesh.inference.committee import committee_tick
    from tests.inference.conftest import advance_to, export_mlp

    onnx = export_mlp(tmp_path / "cli-r.onnx", seed=12)
    version = json.loads(cli("inference", "publish", "cli-red", onnx, "--tolerance", "0.01", "--json").stdout)["version"]
    net = Network(chain, accounts, onnx, tmp_path / "n", version=version)
    try:
        nodes = [net.start_node(accounts[3]), net.start_node(accounts[4]), net.start_node(accounts[5], tamper=0.25)]
        liar = accounts[5].address
        x = np.random.default_rng(1).random((1, 4), dtype=np.float32)
        (tmp_path / "in.json").write_text(json.dumps(x.tolist()))
        out = json.loads(cli("infer", version, tmp_path / "in.json", "--verify", "redundant", "--k", "3",
                             "--account", "client", "--json").stdout)
        did = out["dispute"]
        assert did is not None and liar not in out["agreeing"] and len(out["committee"]) == 1
        voter = next(n for n in nodes if n.account.address == out["committee"][0])
        listed = json.loads(cli("inference", "disputes", "--json").stdout)
        row = next(r for r in listed if r["dispute"] == did)
        assert row["phase"] == "voting" and liar in (row["node_a"], row["node_b"])
        # the client drew the committee when it opened the dispute: drawing again changes nothing
        seed = net.registry.dispute_state(did)["seed"]
        assert seed != bytes(32)
        again = json.loads(cli("inference", "draw", did, "--account", "client", "--json").stdout)
        assert again == {"dispute": did, "seed": "0x" + bytes(seed).hex()}
        early = cli("inference", "resolve", did, "--account", "client", ok=False)
        assert "is voting, not resolvable" in early.output
        tick = committee_tick(voter.node)                                       # still the vote window
        assert tick["revealed"] == [] and tick["claimed"] == []
        advance_to(chain, row["vote_deadline"] + 1)
        assert committee_tick(voter.node)["revealed"] == [did]
        advance_to(chain, row["reveal_deadline"] + 1)
        done = json.loads(cli("inference", "resolve", did, "--account", "client", "--json").stdout)
        assert done == {"dispute": did, "slashed": liar, "state": "resolved"}
        before = net.registry.chain.call(net.registry.disputes.functions.votes(did, voter.account.address))
        assert committee_tick(voter.node)["claimed"] == [did]                   # the voter's share, once
        after = net.registry.chain.call(net.registry.disputes.functions.votes(did, voter.account.address))
        assert not before[2] and after[2]
        nobody = cli("inference", "claim", did, "--account", "client", ok=False)
        assert "winning side" in nobody.output and "claim_vote_reward reverted" in nobody.output
        # the committee's one voter was right: there is nobody to penalise
        right = cli("inference", "penalise", did, voter.account.address, "--account", "client", ok=False)
        assert "penalise_voter reverted" in right.output and "already settled" in right.output
        assert "not an address" in cli("inference", "penalise", did, "0x12", ok=False).output
    finally:
        net.stop()
