"""Collaborative inference: a model split into 2 stages served by different nodes."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from proofmesh.errors import InputError
from proofmesh.inference.pipeline import Pipeline, candidate_cuts, split_model
from proofmesh.inference.publish import publish_model
from proofmesh.inference.router import Router
from proofmesh.inference.server import InferenceNode, NodeConfig, ServerHandle, create_app
from tests.inference.conftest import INFERENCE, export_mlp


def test_two_stage_pipeline_equals_whole_model(chain, accounts, tmp_path):
    from proofmesh.chain.core import MESH, Registry
    from proofmesh.inference.registry import InferenceRegistry

    whole = export_mlp(tmp_path / "deep.onnx", seed=3, sizes=(6, 16, 16, 4))
    s1, s2, cut = split_model(whole, tmp_path / "stages")
    reg = InferenceRegistry(chain)
    v1 = publish_model(chain, "deep-stage1", s1).version
    v2 = publish_model(chain, "deep-stage2", s2).version
    servers = []
    try:
        for acct, version, path in ((accounts[3], v1, s1), (accounts[4], v2, s2)):
            node = InferenceNode(NodeConfig(version, path, tmp_path / acct.address), acct,
                                 domain=reg.domain, registry=reg)
            srv = ServerHandle(create_app(node))
            Registry(chain).register(srv.url, INFERENCE, sender=acct)
            Registry(chain).stake(200 * MESH, sender=acct)
            servers.append(srv.start())
        x = np.random.default_rng(2).random((5, 6), dtype=np.float32)
        pipe = Pipeline([Router(chain, v1, account=accounts[6]), Router(chain, v2, account=accounts[6])])
        ans = pipe.infer(x.tolist())
        direct = ort.InferenceSession(str(whole)).run(None, {"x": x})[0]
        assert np.allclose(ans.output, direct, rtol=0, atol=1e-6)
        # each stage was served by a different node, with its own receipt
        assert [a.node for a in ans.stages] == [accounts[3].address, accounts[4].address]
        for a, v in zip(ans.stages, (v1, v2)):
            assert a.receipt.version == v and a.receipt.signer(reg.domain) == a.node
    finally:
        for s in servers:
            s.stop()


def test_split_refuses_bad_cuts(tmp_path):
    m = export_mlp(tmp_path / "m.onnx")
    assert candidate_cuts(m)
    with pytest.raises(InputError, match="not an intermediate tensor"):
        split_model(m, tmp_path / "out", cut="nope")
