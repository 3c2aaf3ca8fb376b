"""An ONNX classifier as a model version: weights root over its initializers, real
onnxruntime evaluation, attested and released."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from proofmesh.errors import InputError
from proofmesh.models import evalset
from proofmesh.models.evaluate import evaluate_path
from proofmesh.models.weights import manifest


def _export(model: torch.nn.Module, path: Path) -> Path:
    torch.onnx.export(model, (torch.zeros(1, 4),), str(path), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "n"}}, dynamo=False)
    return path


def _mlp(seed: int, train_steps: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(seed)
    for _ in range(train_steps):
        x = torch.randn(64, 4, generator=g)
        y = (x[:, 0] + x[:, 1] > 0).long()        # the task
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
        opt.zero_grad()
    return m.eval()


def test_onnx_version_evaluated_with_onnxruntime(client, evaluators, tiny, tmp_path: Path) -> None:
    untrained = _export(_mlp(0, 0), tmp_path / "v1.onnx")
    trained = _export(_mlp(0, 60), tmp_path / "v2.onnx")
    m1 = manifest(untrained)
    assert {t.dtype for t in m1.tensors} == {"FLOAT"} and len(m1.tensors) == 4
    assert manifest(trained).root != m1.root
    v1, _ = client.register_version("mlp", untrained)
    v2, _ = client.register_version("mlp", trained, parent=v1.id)
    assert client.verify(trained, v2.id).match

    rng = np.random.default_rng(1)
    xs = rng.standard_normal((40, 4)).round(3)
    records = [{"input": x.tolist(), "label": int(x[0] + x[1] > 0)} for x in xs]
    f = tiny.write_jsonl(tmp_path / "held-out.jsonl", records)
    esid, _, _ = client.commit_eval_set("mlp", f)
    client.set_policy("mlp", "accuracy", higher_is_better=True, tolerance=0.0, quorum=3)
    client.reveal_eval_set(esid)
    loaded = evalset.load(f).records
    acc = {v1.id: evaluate_path(untrained, loaded, "accuracy").value,
           v2.id: evaluate_path(trained, loaded, "accuracy").value}
    assert acc[v2.id] >= 0.9 and acc[v2.id] > acc[v1.id]
    by = {a.address: a for a in evaluators}
    for vid in (v1.id, v2.id):
        rid = client.request_evaluation(vid, esid)
        for addr in client.draw(rid):
            client.submit_attestation(rid, client.make_attestation(rid, acc[vid], by[addr]))
    client.release(v1.id, esid)
    client.release(v2.id, esid)
    assert client.check_release(v2.id, esid)["reason"] == "version already released"
    with pytest.raises(InputError, match="perplexity|accuracy"):
        evaluate_path(trained, loaded, "perplexity")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(InputError, match="not a readable ONNX model"):
        manifest(tmp_path / "junk.onnx")
