"""proofmesh's own capabilities served as paid MCP tools, called by an agent that pays,
against the real data, models and inference clients on the same chain."""

from __future__ import annotations

import os

import numpy as np
import pytest

from proofmesh.agents.builtin import builtin_tools
from proofmesh.agents.client import ToolCallFailed
from proofmesh.agents.provider import ToolProvider
from proofmesh.crypto.keccak import keccak256

from .conftest import PRICE


@pytest.fixture
def builtin_provider(net):
    c = net.staked(1)
    p = ToolProvider(c, builtin_tools(None, c), PRICE, state_dir=net.tmp / "builtin")
    p.start()
    net.providers.append(p)
    p.publish()
    return p


def test_data_and_model_tools(net, builtin_provider, accounts, tmp_path):
    from safetensors.numpy import save_file

    from proofmesh.data.batch import batch_tree
    from proofmesh.data.client import DataRegistryClient
    from proofmesh.models.registry import ModelRegistryClient

    # a published data batch of three records
    data_owner = net.staked(3, roles=1, stake=1_000 * 10**18)   # a staked data contributor (bonds per batch)
    dc = DataRegistryClient(data_owner)
    source = dc.register_source(f"https://example.org/{os.urandom(4).hex()}", "CC-BY-4.0", sender=accounts[3])
    hashes = [keccak256(f"record {i}".encode()) for i in range(3)]
    tree = batch_tree(hashes)
    batch_id, _ = dc.publish_raw(source, tree.root, 3, 30, "bafkreimanifest", "bafkreirecords", sender=accounts[3])
    # a registered model version
    w = tmp_path / "w.safetensors"
    save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, str(w))
    mc = ModelRegistryClient(net.chain.with_account(accounts[4]))
    rec, _ = mc.register_version(f"tiny-{os.urandom(3).hex()}", w, sender=accounts[4])

    agent = net.agent(5)
    proof = ["0x" + p.hex() for p in tree.proof(1)]
    res = agent.call_sync("verify_data_record", {"batch_id": batch_id, "index": 1,
                                                 "record_hash": "0x" + hashes[1].hex(), "proof": proof})
    assert res.result["verified_on_chain"] is True and res.result["source_id"] == source
    bad = agent.call_sync("verify_data_record", {"batch_id": batch_id, "index": 2,
                                                 "record_hash": "0x" + hashes[1].hex(), "proof": proof})
    assert bad.result["verified_on_chain"] is False
    lineage = agent.call_sync("model_lineage", {"version_id": rec.id}).result
    assert lineage["focus"] == rec.id and lineage["versions"][0]["weights_root"] == rec.weights_root
    # a tool error (unknown version) is reported as a failed call, not a crash
    with pytest.raises(ToolCallFailed):
        agent.call_sync("model_lineage", {"version_id": 10_000})


@pytest.mark.slow
def test_verified_inference_tool(net, builtin_provider, accounts, tmp_path):
    from tests.inference.conftest import Network, export_mlp

    onnx = export_mlp(tmp_path / "mlp.onnx")
    infer_net = Network(net.chain, accounts, onnx, tmp_path / "nodes")
    try:
        infer_net.start_node(accounts[6])
        infer_net.start_node(accounts[7])
        agent = net.agent(8)
        x = np.random.default_rng(1).random((1, 4), dtype=np.float32)
        res = agent.call_sync("verified_inference", {"version": infer_net.version, "input": x.tolist(),
                                                     "verify": "redundant", "k": 2})
        import onnxruntime as ort
        direct = ort.InferenceSession(str(onnx)).run(None, {"x": x})[0]
        assert np.allclose(np.asarray(res.result["output"]), direct, atol=1e-3)
        assert len(res.result["agreeing"]) == 2
    finally:
        infer_net.stop()
