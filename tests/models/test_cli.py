"""`proofmesh model …` end to end on the test chain, including bad input (one clear line, exit != 0)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from proofmesh.crypto.keys import Keystore
from tests.conftest import cli_runner

PW = "pw"


@pytest.fixture
def cli(home, accounts, evaluators, monkeypatch):
    monkeypatch.setenv("PROOFMESH_PASSWORD", PW)
    ks = Keystore(home)
    ks.import_key("default", accounts[1].key, PW)
    for a in evaluators:
        ks.import_key(f"ev-{a.address[2:8].lower()}", a.key, PW)
    return cli_runner(home.path)


def js(result):
    return json.loads(result.stdout)


def test_model_cli_end_to_end(cli, tiny, evaluators, tmp_path: Path) -> None:
    d1 = tiny.save(tiny.gpt2(seed=0), tmp_path / "v1")
    v1 = js(cli("model", "register", d1, "--name", "cli-lm", "--config", d1 / "config.json", "--json"))
    assert v1["id"] == 1 and v1["tensors"] > 10 and v1["gas"] > 0
    assert (d1 / "README.md").exists() and "weights_root" in (d1 / "README.md").read_text()
    # v2 = v1 with damaged weights: worse perplexity
    t = load_file(str(d1 / "model.safetensors"))
    d2 = tmp_path / "v2"
    d2.mkdir()
    (d2 / "config.json").write_bytes((d1 / "config.json").read_bytes())
    save_file({k: v + 0.8 * torch.randn_like(v) for k, v in t.items()}, str(d2 / "model.safetensors"),
              metadata={"format": "pt"})
    v2 = js(cli("model", "register", d2, "--name", "cli-lm", "--parent", 1, "--json"))
    assert v2["parent"] == 1

    # duplicate weights and a missing parent: refused with a clear line, nothing registered
    dup = cli("model", "register", d1, "--name", "cli-lm", ok=False)
    assert "already registered as version 1" in dup.output
    bad = cli("model", "register", tiny.save(tiny.gpt2(seed=3), tmp_path / "v3"), "--name", "x", "--parent", 99, ok=False)
    assert "does not exist" in bad.output
    assert len(js(cli("model", "list", "--json"))) == 2
    # v1's weights are published (this home's store + the on-chain locator); v2's files are not v1's
    pub = js(cli("model", "publish", 1, d1, "--json"))
    assert pub["weights_cid"].startswith("bafk")
    assert "refusing them" in " ".join(cli("model", "publish", 2, d1, ok=False).output.split())
    fetched = js(cli("model", "fetch", 1, tmp_path / "fetched", "--json"))
    assert (Path(fetched["path"]) / "model.safetensors").exists()

    records = [{"input_ids": [(s + j) % 7 for j in range(10)]} for s in range(7)]
    es_file = tiny.write_jsonl(tmp_path / "held-out.jsonl", records)
    es = js(cli("model", "evalset", "commit", "cli-lm", es_file, "--json"))["eval_set"]
    cli("model", "policy", "set", "cli-lm", "--metric", "perplexity", "--tolerance", "0.1", "--quorum", "3")
    cli("model", "evalset", "reveal", es)

    for vid, folder in ((1, d1), (2, d2)):
        req = js(cli("model", "request", vid, "--eval-set", es, "--json"))
        assert len(req["evaluators"]) == 3
        if vid == 1:   # an evaluator that was not drawn is refused before anything runs or is signed
            outsider = next(a.address for a in evaluators if a.address not in req["evaluators"])
            r = cli("model", "eval", vid, "--eval-set", es, "--weights", folder,
                    "--account", f"ev-{outsider[2:8].lower()}", ok=False)
            assert "was not drawn" in " ".join(r.output.split())
        for addr in req["evaluators"]:
            weights = [] if vid == 1 else ["--weights", folder]    # v1: fetched by its locator
            out = js(cli("model", "eval", vid, "--eval-set", es, *weights,
                         "--account", f"ev-{addr[2:8].lower()}", "--json"))
            assert out["backend"] == "torch" and out["value"] > 1.0
        assert out["attested"] == 3 and out["median"] == pytest.approx(out["value"], rel=1e-6)
    shown = js(cli("model", "show", 1, "--json"))
    assert shown["evaluations"][0]["finalized"]

    rel = js(cli("model", "release", 1, "--eval-set", es, "--json"))
    assert rel["released"] is True
    refused = cli("model", "release", 2, "--eval-set", es, ok=False)
    assert "regression" in refused.output and "best_released_ancestor" in refused.output
    assert js(cli("model", "show", 2, "--json"))["released"] is False

    # verify: match, then a tampered copy names the tensor
    assert "match" in cli("model", "verify", d1, 1).output
    t["transformer.wpe.weight"] = t["transformer.wpe.weight"].clone()
    t["transformer.wpe.weight"][0, 0] += 1
    save_file(t, str(tmp_path / "tampered.safetensors"))
    mism = cli("model", "verify", tmp_path / "tampered.safetensors", 1, "--json", ok=False)
    report = json.loads(mism.stdout)
    assert report["changed"] == ["transformer.wpe.weight"] and report["proofs"][0]["accepted_on_chain"]

    tree = cli("model", "lineage", 2).output
    assert "v1 cli-lm" in tree and "released" in tree and "v2 cli-lm" in tree
    assert "v1 -> v2" in cli("model", "lineage", 1, "--format", "dot").output
    assert "graph TD" in cli("model", "lineage", 1, "--format", "mermaid").output
    assert "unknown format" in cli("model", "lineage", 1, "--format", "png", ok=False).output
    assert "does not exist" in cli("model", "show", 42, ok=False).output


def test_cli_bad_files(cli, tmp_path: Path) -> None:
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    r = cli("model", "register", tmp_path / "broken.safetensors", "--name", "b", ok=False)
    assert "truncated" in " ".join(r.output.split()) and "fix" in r.output
    r = cli("model", "register", tmp_path / "nothing-here", "--name", "b", ok=False)
    assert "no such file" in " ".join(r.output.split())
