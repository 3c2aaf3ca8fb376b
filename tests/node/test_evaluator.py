"""The evaluator node service on a real devnet (anvil + three daemons, separate processes).

node0 registers a model version and publishes its weights (its daemon serves them from
its store; the bundle CID is the on-chain locator). node1 and node2 are the only other
EVALUATOR nodes, so they are drawn; their daemons fetch the weights and the revealed eval
set from node0 by CID, check the weights root against the chain, evaluate, and attest;
the median is recorded and the release gate passes. A second version whose published
files are tampered (the owner put a bundle of altered weights on chain, bypassing the
client's check) is refused by both evaluators: root mismatch, a clear error, no attestation,
no release.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from proofmesh.chain.anvil import find_binary
from proofmesh.chain.client import Chain
from proofmesh.config import Home
from proofmesh.crypto.keys import Keystore
from proofmesh.errors import ContractRevert, ProofmeshError
from proofmesh.node.devnet import devnet_down, devnet_up
from tests.node.conftest import wait_for

try:
    find_binary("anvil")
    HAVE_ANVIL = True
except ProofmeshError:
    HAVE_ANVIL = False

pytestmark = [pytest.mark.slow, pytest.mark.anvil,
              pytest.mark.skipif(not HAVE_ANVIL, reason="anvil (npm @foundry-rs/anvil) is not installed")]

RECORDS = [{"input_ids": [(3 * i + j) % 29 for j in range(6)]} for i in range(10)]


def _tiny_gpt2(folder: Path, seed: int) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=31, n_positions=16)).save_pretrained(
        str(folder), safe_serialization=True)
    return folder


def _tampered_bundle(client, version, folder: Path, out: Path) -> str:
    """The owner's forged publication: files of altered weights, put on chain directly."""
    import shutil

    from safetensors.torch import load_file, save_file

    from proofmesh.models.distribution import WeightsBundle

    shutil.copytree(folder, out)
    t = load_file(str(out / "model.safetensors"))
    name = sorted(t)[-1]
    t[name] = t[name].clone()
    t[name].view(-1)[0] += 0.5
    save_file(t, str(out / "model.safetensors"), metadata={"format": "pt"})
    files = {f.name: client.blobs.put_file(f) for f in sorted(out.iterdir())}
    cid = client.blobs.put_bytes(WeightsBundle(version.id, version.weights_root, files, {}, False).to_bytes())
    client.chain.transact(client.registry.functions.publish_weights(version.id, cid))
    return cid


def test_drawn_evaluator_daemons_fetch_weights_from_owner_attest_and_refuse_tampered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from proofmesh.models.distribution import publish_weights
    from proofmesh.models.evaluate import evaluate_path
    from proofmesh.models.registry import ModelRegistryClient

    monkeypatch.setenv("PROOFMESH_EVALUATOR_INTERVAL", "1")   # inherited by the daemons
    d = tmp_path / "devnet"
    record = devnet_up(d, nodes=3)
    stop_clock = threading.Event()
    try:
        n0, n1, n2 = record.nodes
        home0 = Home.resolve(n0.home)
        chain = Chain.connect(home0, Keystore(home0).load("default", record.password))

        def clock() -> None:  # anvil mines only on transactions; draws wait for the seed block
            while not stop_clock.wait(0.5):
                try:
                    chain.mine()
                except Exception:
                    pass
        threading.Thread(target=clock, daemon=True).start()

        client = ModelRegistryClient(chain)      # node0's store, served by node0's daemon
        v1_dir = _tiny_gpt2(tmp_path / "v1", seed=1)
        v1, _ = client.register_version("devnet-lm", v1_dir)
        bundle1, _ = publish_weights(client, v1.id, v1_dir)
        v2_dir = _tiny_gpt2(tmp_path / "v2", seed=2)
        v2, _ = client.register_version("devnet-lm", v2_dir, parent=v1.id)
        bundle2 = _tampered_bundle(client, v2, v2_dir, tmp_path / "v2-tampered")
        es_file = tmp_path / "eval.jsonl"
        es_file.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
        esid, _root, _salt = client.commit_eval_set("devnet-lm", es_file)
        client.set_policy("devnet-lm", "perplexity", higher_is_better=False, tolerance=0.5, quorum=2)
        client.reveal_eval_set(esid)
        rid1 = client.request_evaluation(v1.id, esid)
        rid2 = client.request_evaluation(v2.id, esid)

        # the daemons draw (keepers), fetch from node0, evaluate and attest
        req = wait_for(lambda: (r := client.request(rid1))["finalized"] and r, 300, "the quorum's attestations")
        assert sorted(req["evaluators"]) == sorted([n1.address, n2.address])
        expected = evaluate_path(v1_dir, RECORDS, "perplexity").value
        result = client.evaluation_result(v1.id, esid)
        assert set(result.values) == {n1.address, n2.address}
        assert all(abs(v - expected) < 1e-3 for v in result.values.values()), (result.values, expected)
        assert abs(req["median"] - expected) < 1e-3
        client.release(v1.id, esid)                               # the gate passes with the median
        assert client.version(v1.id).released
        log0 = (Path(n0.home) / "node" / "node.log").read_text()
        assert log0.count(f"/blobs/{bundle1}") >= 2                # both evaluators fetched from node0

        # the tampered publication: both drawn evaluators refuse it, nothing is attested
        def refused_by(n) -> list[dict]:
            return httpx.get(f"{n.url}/svc/evaluator/status", timeout=10).json()["refused"]
        for n in (n1, n2):
            got = wait_for(lambda: [x for x in refused_by(n) if x["request"] == rid2], 240, f"{n.name} to refuse")
            assert got[0]["bundle"] == bundle2
            assert "refusing them" in got[0]["reason"] and v2.weights_root in got[0]["reason"]
            assert "1 changed" in got[0]["reason"]
            health = httpx.get(f"{n.url}/health", timeout=10).json()["services"]["evaluator"]
            assert health["refused"] >= 1 and health["attested"] == 1
            assert "evaluation refused" in (Path(n.home) / "node" / "node.log").read_text()
        assert client.request(rid2)["count"] == 0
        with pytest.raises(ContractRevert, match="no quorum median"):
            client.release(v2.id, esid)
    finally:
        stop_clock.set()
        devnet_down(d)
