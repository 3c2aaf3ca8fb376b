"""Demo step "blobs": content addressing that survives lying peers and disk rot.

A dataset shard is added to this node's store (its CID is the one IPFS would give), a
second node serves it over HTTP, a third "node" serves the same CID with one byte changed.
Fetching from [liar, honest] stores the right bytes and names the liar; then the local copy
is corrupted on disk, and the next read refuses it and quarantines it.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Response

from proofmesh.crypto.cid import cid_of_file
from proofmesh.errors import StoreError
from proofmesh.store.api import serve_blobs
from proofmesh.store.blobstore import BlobStore
from proofmesh.store.fetch import fetch


def _lying_app(cid: str, data: bytes) -> FastAPI:
    app = FastAPI()

    @app.get("/blobs/{want}")
    def get(want: str) -> Response:
        if want != cid:
            return Response(status_code=404)
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 0x01
        return Response(bytes(bad), media_type="application/octet-stream")
    return app


def run(ctx: Any) -> dict[str, Any]:
    """Run the step on ``ctx`` (a :class:`proofmesh.cli.demo.DemoContext`); returns summary rows."""
    shard = ctx.workdir / "shard-000.bin"
    data = os.urandom(600_000)  # three 256 KiB chunks: a real UnixFS DAG, not a single block
    shard.write_bytes(data)
    peer = BlobStore(ctx.workdir / "peer-store")
    cid = peer.put_file(shard)
    assert cid == cid_of_file(shard)
    ctx.log(f"shard {shard.name}: {len(data):,} bytes -> {cid}")

    mine = BlobStore(ctx.home.store_dir)
    with serve_blobs(peer) as honest, serve_blobs(app=_lying_app(cid, data)) as liar:
        result = fetch(cid, [liar, honest], mine, timeout=10)
        ctx.log(f"fetched from {result.peer}; refused {liar}: {result.failures[liar]}")

        path = mine._path(cid)
        os.chmod(path, 0o644)
        with path.open("r+b") as f:  # simulate disk rot in the local copy
            f.seek(1000)
            f.write(bytes([data[1000] ^ 0x01]))
        try:
            mine.get_bytes(cid)
            rot = "NOT detected"
        except StoreError as exc:
            rot = "detected, quarantined"
            ctx.log(f"local copy rotted: {exc.message}")
        repaired = fetch(cid, [honest], mine, timeout=10)
        assert mine.get_bytes(cid) == data
        ctx.log(f"repaired from {repaired.peer}")
    ctx.data["blob_cid"] = cid
    return {"cid": cid, "size": len(data), "fetched_from": result.peer,
            "lying_peer": f"refused ({result.failures[liar]})", "disk_rot": rot,
            "repaired_from": repaired.peer}
