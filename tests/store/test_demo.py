"""The "blobs" demo step runs for real and reports what happened."""

from __future__ import annotations

from types import SimpleNamespace

from proofmesh.config import Home
from proofmesh.crypto.cid import cid_of_bytes
from proofmesh.store.blobstore import BlobStore
from proofmesh.store.demo import run


def test_demo_step(tmp_path):
    home = Home.resolve(tmp_path / "home")
    home.init()
    (tmp_path / "work").mkdir()
    logs: list[str] = []
    ctx = SimpleNamespace(home=home, workdir=tmp_path / "work", data={}, log=logs.append)
    rows = run(ctx)
    assert rows["cid"].startswith("bafybei")
    assert rows["cid"] == cid_of_bytes((tmp_path / "work" / "shard-000.bin").read_bytes())
    assert "not the expected" in rows["lying_peer"]
    assert rows["disk_rot"] == "detected, quarantined"
    assert rows["repaired_from"] == rows["fetched_from"]
    assert BlobStore(home.store_dir).verify(rows["cid"])
    assert ctx.data["blob_cid"] == rows["cid"]
