"""The web explorer: JSON sections built from real chain state, and the page in headless chromium.

State is made through each domain's own client on the embedded chain (nodes, stake,
transfers, an emission epoch, a three-version model lineage, a tool, a device), a
real daemon serves it, and Debian's chromium (driven by Playwright) renders the page:
the checks are on the rendered DOM and screenshot, not on HTTP status codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest

from proofmesh.chain.client import Chain
from proofmesh.chain.core import MESH, EmissionClient, Registry, Token
from proofmesh.config import Home
from proofmesh.node.daemon import NodeDaemon

from .conftest import serve_in_thread

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _weights(path: Path, seed: int) -> Path:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    save_file({"layer.weight": rng.standard_normal((4, 4)).astype(np.float32),
               "layer.bias": rng.standard_normal(4).astype(np.float32)}, str(path))
    return path


def _make_state(chain: Chain, accounts: list, tmp_path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # nodes with distinct roles and stakes
    for acct, roles, stake in [(accounts[1], 2 | 32, 1500), (accounts[2], 16, 900), (accounts[3], 4, 2500)]:
        reg = Registry(chain.with_account(acct))
        reg.register(f"http://127.0.0.1:9{acct.address[-3:].lower()}", roles)
        reg.stake(stake * MESH)
    Token(chain).transfer(accounts[4].address, 1234 * MESH)
    # devices first: their key proof carries a wall-clock deadline, before time is moved on below
    if "DeviceRegistry" in chain.addresses:
        from proofmesh.edge.identity import create_key
        from proofmesh.edge.onchain import EdgeChain

        key = create_key(tmp_path / "device.key", "pw")
        EdgeChain(chain).register_device(key, device_class="thermo", cell="871f1d489ffffff", stake=100 * MESH,
                                         owner=accounts[5])
        out["device"] = key.address
    # one emission epoch
    em = EmissionClient(chain)
    start = chain.call(em.c.functions.start_time())
    epoch = chain.call(em.c.functions.epoch_length())
    chain.advance_to(start + epoch + 1)
    em.distribute()
    # model lineage: root -> child -> grandchild, the child trained on two data batches
    if "ModelRegistry" in chain.addresses:
        from proofmesh.models.registry import ModelRegistryClient

        models = ModelRegistryClient(chain)
        v1, _ = models.register_version("explorer-net", _weights(tmp_path / "w1.safetensors", 1))
        v2, _ = models.register_version("explorer-net", _weights(tmp_path / "w2.safetensors", 2), parent=v1.id,
                                        data_batches=["0x" + "ab" * 32, "0x" + "cd" * 32])
        v3, _ = models.register_version("explorer-net", _weights(tmp_path / "w3.safetensors", 3), parent=v2.id)
        out["versions"] = [v1.id, v2.id, v3.id]
    if "DataRegistry" in chain.addresses:
        import json

        from proofmesh.data.client import DataRegistryClient, open_index, publish
        from proofmesh.data.pipeline import IngestConfig, ingest
        from proofmesh.store.blobstore import BlobStore

        contributor = accounts[6]
        reg = Registry(chain.with_account(contributor))
        reg.register("http://127.0.0.1:9666", 1)
        reg.stake(1000 * MESH)
        client = DataRegistryClient(chain)
        sid = client.register_source("https://example.org/explorer-corpus", "CC0-1.0", "test corpus",
                                     sender=contributor)
        texts = [f"record number {i} about topic {i % 7} with some distinct words w{i} x{i * 3} y{i * 7}"
                 for i in range(30)]
        texts += texts[:4]  # four exact duplicates the pipeline must drop
        corpus = tmp_path / "corpus.jsonl"
        corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
        cfg = IngestConfig()
        index = open_index(chain.home, cfg.index_params())
        ingest([corpus], tmp_path / "batch", cfg, index=index)
        out["batch"] = publish(chain, BlobStore(chain.home.store_dir), index, tmp_path / "batch", sid,
                               sender=contributor)
    if "ToolRegistry" in chain.addresses:
        from proofmesh.agents.registry import ToolRegistry

        ToolRegistry(chain).register("summarize", "bafkreitoolschema", "http://127.0.0.1:9555/mcp", 2 * MESH // 100,
                                     1, sender=accounts[2])
        out["tool"] = "summarize"
    return out


@pytest.fixture
def explorer(chain: Chain, home: Home, accounts: list, tmp_path: Path) -> Iterator[tuple[NodeDaemon, dict[str, Any]]]:
    state = _make_state(chain, accounts, tmp_path)
    daemon = NodeDaemon(home, port=0, chain=chain, poll_interval=0.2, log_stderr=False).start()
    t = serve_in_thread(daemon)
    try:
        yield daemon, state
    finally:
        daemon.request_stop()
        t.join(timeout=30)


def test_explorer_api_sections(explorer: tuple[NodeDaemon, dict[str, Any]], accounts: list) -> None:
    daemon, state = explorer
    get = lambda p: httpx.get(f"{daemon.url}/api/explorer/{p}", timeout=30).json()  # noqa: E731
    nodes = {n["address"]: n for n in get("nodes")["nodes"]}
    assert nodes[accounts[3].address]["stake"] == "2500" and nodes[accounts[3].address]["roles"] == ["inference"]
    token = get("token")
    assert token["deployed"] and token["supply"] != "0"
    assert any(t["to"] == accounts[4].address and t["amount"] == "1234" for t in token["transfers"])
    assert len(token["emission"]["epochs"]) == 1
    assert sum(float(p["balance"]) for p in token["emission"]["pools"]) > 0
    if "versions" in state:
        m = get("models")
        v1, v2, v3 = state["versions"]
        assert {"from": v1, "to": v2} in m["edges"] and {"from": v2, "to": v3} in m["edges"]
        d = get(f"models/{v2}")
        assert d["parent"] == v1 and d["children"] == [v3] and len(d["data_batches"]) == 2
        assert d["release"]["released"] is False
        assert httpx.get(f"{daemon.url}/api/explorer/models/999").status_code == 404
    if "tool" in state:
        tools = get("tools")["tools"]
        assert tools[0]["name"] == "summarize" and tools[0]["price"] == "0.02"
    if "device" in state:
        assert get("devices")["devices"][0]["device"] == state["device"]
    if "batch" in state:
        data = get("datasets")
        assert data["sources"][0]["uri"] == "https://example.org/explorer-corpus"
        b = data["batches"][0]
        assert b["id"] == state["batch"]["batch_id"] and b["records"] == 30
        assert b["dedup"]["kept"] == 30 and sum(b["dedup"].values()) == 34  # from the manifest blob
    inf = get("inference")
    assert inf["deployed"] is ("InferenceRegistry" in daemon.chain.addresses)
    # sections whose contract is missing degrade instead of failing
    assert get("datasets")["deployed"] is ("DataRegistry" in daemon.chain.addresses)
    assert get("jobs")["deployed"] is ("JobMarket" in daemon.chain.addresses)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (apt-get install chromium)")
def test_explorer_in_headless_chromium(explorer: tuple[NodeDaemon, dict[str, Any]], accounts: list,
                                       tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    daemon, state = explorer
    external: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("request", lambda r: None if r.url.startswith(daemon.url) else external.append(r.url))
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(daemon.url + "/")
            page.wait_for_selector("#tab-overview .card")
            assert "live" in page.inner_text("#status")
            assert "NodeRegistry" in page.inner_text("#tab-overview")

            page.click("nav button[data-tab=nodes]")
            page.wait_for_selector(f"#tab-nodes >> text={accounts[3].address}")
            assert "2500" in page.inner_text("#tab-nodes")

            page.click("nav button[data-tab=token]")
            page.wait_for_selector("#tab-token table")
            token_text = page.inner_text("#tab-token")
            assert "total supply" in token_text and "1234" in token_text and "compute" in token_text
            page.screenshot(path=str(tmp_path / "token.png"))

            if "versions" in state:
                v1, v2, v3 = state["versions"]
                page.click("nav button[data-tab=models]")
                page.wait_for_selector("#lineage g.version")
                assert page.locator("#lineage g.version").count() == 3
                assert page.locator("#lineage path.edge").count() == 2
                assert page.locator("#detail").is_hidden()
                page.click(f'#lineage g.version[data-id="{v2}"]')
                page.wait_for_selector("#detail-title")
                detail = page.inner_text("#detail")
                assert f"explorer-net v{v2}" in detail and f"v{v1}" in detail and f"v{v3}" in detail
                assert "0x" + "ab" * 32 in detail and "not evaluated yet" in detail
                assert "selected" in (page.get_attribute(f'#lineage g.version[data-id="{v2}"]', "class") or "")
                shot = tmp_path / "models.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000

                # live refresh: a new version registered now appears without reloading
                from proofmesh.models.registry import ModelRegistryClient

                ModelRegistryClient(daemon.chain).register_version(
                    "explorer-net", _weights(tmp_path / "w4.safetensors", 4), parent=v3)
                page.wait_for_function("document.querySelectorAll('#lineage g.version').length === 4",
                                       timeout=20_000)
                assert page.locator("#detail-title").is_visible()  # the open panel survived the refresh

            if "batch" in state:
                page.click("nav button[data-tab=datasets]")
                page.wait_for_selector("#tab-datasets >> text=explorer-corpus")
                assert "kept 30" in page.inner_text("#tab-datasets")
            if "tool" in state:
                page.click("nav button[data-tab=tools]")
                page.wait_for_selector("#tab-tools >> text=summarize")
            if "device" in state:
                page.click("nav button[data-tab=devices]")
                page.wait_for_selector("#tab-devices >> text=thermo")

            page.click("nav button[data-tab=jobs]")
            page.wait_for_selector("#tab-jobs h2")
            jobs_text = page.inner_text("#tab-jobs")
            if "JobMarket" not in daemon.chain.addresses:
                assert "not deployed" in jobs_text
            assert not errors, errors
        finally:
            browser.close()
    assert external == []  # works offline: nothing but this node was requested
