"""Inference serving as a node daemon service: versions from config.toml
(`[inference] serve = [...]`) and from `proofmesh serve VERSION`, which registers the
version with the running daemon (admin token from the home) instead of running its own
server. A real daemon (uvicorn on 127.0.0.1) on the test chain; the router is the client."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from proofmesh.chain.client import Chain
from proofmesh.chain.core import MESH, Registry
from proofmesh.cli.main import app
from proofmesh.config import Home
from proofmesh.inference.model import export_mlp
from proofmesh.inference.publish import publish_model
from proofmesh.inference.registry import InferenceRegistry
from proofmesh.inference.router import Router
from proofmesh.node.daemon import NodeDaemon
from tests.conftest import HttpProbe
from tests.node.conftest import serve_in_thread

INFERENCE = 4


def _start(home: Home, chain: Chain, node) -> tuple[NodeDaemon, object]:
    d = NodeDaemon(home, port=0, chain=chain.with_account(node), log_stderr=False,
                   services=["proofmesh.inference.service"]).start()
    t = serve_in_thread(d)
    Registry(chain).update(d.url, INFERENCE, sender=node)    # routers find the node at its endpoint
    return d, t


def test_daemon_serves_configured_and_cli_registered_versions(chain: Chain, home: Home, accounts: list,
                                                              tmp_path: Path) -> None:
    node, client = accounts[5], accounts[6]
    onnx1, onnx2 = export_mlp(tmp_path / "a.onnx", seed=21), export_mlp(tmp_path / "b.onnx", seed=22)
    v1 = publish_model(chain, "svc-mlp-a", onnx1, tolerance=1e-3).version
    v2 = publish_model(chain, "svc-mlp-b", onnx2, tolerance=1e-3).version
    reg, ireg = Registry(chain), InferenceRegistry(chain)
    reg.register("http://127.0.0.1:1", INFERENCE, sender=node)
    reg.stake(300 * MESH, sender=node)
    ireg.post_bond(ireg.min_bond(), sender=node)
    with home.config_file.open("a") as f:
        f.write(f'\n[inference]\nserve = [{{version = {v1}, onnx = "{onnx1}"}}]\n')
    home = Home.resolve(home.path)          # config.toml with a section still loads
    x = np.random.default_rng(3).random((2, 4), dtype=np.float32)

    d, t = _start(home, chain, node)
    try:
        assert d.health()["services"]["inference"]["versions"] == [v1]
        ans = Router(chain, v1, account=client).infer(x)
        assert ans.node == node.address
        assert np.allclose(ans.output, ort.InferenceSession(str(onnx1)).run(None, {"x": x})[0])

        runner = CliRunner()
        # a file that is not the registered one is refused by the node; nothing is added
        bad = runner.invoke(app, ["--home", str(home.path), "serve", str(v2), "--onnx", str(onnx1)])
        assert bad.exit_code != 0 and "onnx" in bad.output.lower()
        assert httpx.get(f"{d.url}/svc/inference/versions").json()["versions"][-1]["version"] == v1
        # `proofmesh serve` attaches to the running daemon instead of starting a server
        ok = runner.invoke(app, ["--home", str(home.path), "serve", str(v2), "--onnx", str(onnx2)])
        assert ok.exit_code == 0, ok.output
        assert "registered with the running node daemon" in ok.output and d.url in ok.output
        assert [i["version"] for i in httpx.get(f"{d.url}/svc/inference/versions").json()["versions"]] == [v1, v2]
        # serving a version again replaces its node, which first hands its journals (used nonces,
        # one owner at a time) to the new one; a refused replacement leaves the old one served
        again = runner.invoke(app, ["--home", str(home.path), "serve", str(v2), "--onnx", str(onnx2)])
        assert again.exit_code == 0, again.output
        bad = runner.invoke(app, ["--home", str(home.path), "serve", str(v2), "--onnx", str(onnx1)])
        assert bad.exit_code != 0 and "onnx" in bad.output.lower()
        assert [i["version"] for i in httpx.get(f"{d.url}/svc/inference/versions").json()["versions"]] == [v1, v2]
        # one endpoint, two versions: picked by the request's version
        body = {"version": v2, "input": x.tolist(), "nonce": secrets.randbits(256), "mode": "plain"}
        out = httpx.post(f"{d.url}/v1/infer", json=body, timeout=30).json()
        assert np.allclose(np.asarray(out["output"]), ort.InferenceSession(str(onnx2)).run(None, {"x": x})[0])
        assert httpx.get(f"{d.url}/v1/info", params={"version": v2}).json()["version"] == v2
        # a body that is not a JSON object the daemon can route (here nested 1M deep) goes to
        # the default version's node, which answers 422, and both keep serving
        deep = httpx.post(f"{d.url}/v1/infer", content=b"[" * (1 << 20), timeout=30,
                          headers={"content-type": "application/json"})
        assert deep.status_code == 422 and deep.json()["type"] == "BadJSON"
        # a body over http_max_body_mb (64 MB) is refused by the daemon's BodyLimit from its header
        status, _, err = HttpProbe(d.url).declared("/v1/infer", 100 << 20)
        assert status == 413 and json.loads(err)["type"] == "BodyTooLarge"
        # a router for the second version finds it on the shared endpoint
        ans2 = Router(chain, v2, account=client).infer(x)
        assert ans2.node == node.address
        assert np.allclose(ans2.output, ort.InferenceSession(str(onnx2)).run(None, {"x": x})[0])
        assert httpx.get(f"{d.url}/v1/info").json()["version"] == v1      # the default (first) version
        missing = httpx.get(f"{d.url}/v1/info", params={"version": 999})
        assert missing.status_code == 404 and "does not serve version 999" in missing.json()["error"]
        # the network cannot reconfigure the node: admin calls need the home's token
        r = httpx.post(f"{d.url}/svc/inference/versions", json={"version": v2, "onnx": str(onnx2)})
        assert r.status_code == 401 and "admin token" in r.json()["error"]
        assert httpx.delete(f"{d.url}/svc/inference/versions/{v2}").status_code == 401
    finally:
        d.request_stop()
        t.join(timeout=60)

    # restart: config.toml's version and the one registered by `proofmesh serve` are served again
    d, t = _start(home, chain, node)
    try:
        assert d.health()["services"]["inference"]["versions"] == [v1, v2]
        assert json.loads((home.path / "inference" / "served.json").read_text())[0]["version"] == v2
        token = (home.path / "node" / "admin.token").read_text()
        r = httpx.delete(f"{d.url}/svc/inference/versions/{v2}", headers={"authorization": f"Bearer {token}"})
        assert r.json() == {"removed": True}
        assert httpx.get(f"{d.url}/v1/info", params={"version": v2}).status_code == 404
    finally:
        d.request_stop()
        t.join(timeout=60)


def test_serve_without_inference_role_is_a_clear_error(chain: Chain, home: Home, accounts: list,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from proofmesh.crypto.keys import Keystore

    monkeypatch.setenv("PROOFMESH_PASSWORD", "pw")
    Keystore(home).import_key("default", accounts[7].key, "pw")
    Registry(chain).register("http://127.0.0.1:1", 2, sender=accounts[7])   # compute only
    onnx = export_mlp(tmp_path / "c.onnx", seed=23)
    v = publish_model(chain, "svc-mlp-c", onnx, tolerance=1e-3).version
    from proofmesh.chain.client import close_embedded

    close_embedded(home.chain_dir)      # the daemon owns the embedded chain
    r = CliRunner().invoke(app, ["--home", str(home.path), "serve", str(v), "--onnx", str(onnx), "--port", "0"])
    assert r.exit_code != 0
    assert "cannot serve version" in " ".join(r.output.split()) and "INFERENCE" in r.output
    assert not (home.path / "inference" / "served.json").exists() or \
        json.loads((home.path / "inference" / "served.json").read_text()) == []
