"""Blob HTTP API and peer fetch over real uvicorn servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest
from fastapi import FastAPI, Response

from proofmesh.crypto.cid import CHUNK_SIZE, cid_of_bytes
from proofmesh.errors import StoreError
from proofmesh.store.blobstore import BlobStore
from proofmesh.store.fetch import fetch

from .conftest import node_app, serve


def lying_peer(real: dict[str, bytes]) -> FastAPI:
    """A malicious peer: serves every blob it knows with one byte flipped."""
    app = FastAPI()

    @app.get("/blobs/{cid}")
    def get(cid: str) -> Response:
        data = bytearray(real[cid])
        data[len(data) // 2] ^= 0xFF
        return Response(bytes(data), media_type="application/octet-stream")
    return app


def slow_peer() -> FastAPI:
    """A peer that accepts the request and never answers in time."""
    app = FastAPI()

    @app.get("/blobs/{cid}")
    async def get(cid: str) -> Response:
        await asyncio.sleep(30)
        return Response(b"too late")
    return app


def test_put_get_head(store):
    with serve(node_app(store)) as url:
        data = os.urandom(3 * CHUNK_SIZE + 7)
        r = httpx.put(f"{url}/blobs", content=data)
        assert r.status_code == 201
        cid = r.json()["cid"]
        assert cid == cid_of_bytes(data) and r.json()["size"] == len(data)
        assert store.get_bytes(cid) == data
        g = httpx.get(f"{url}/blobs/{cid}")
        assert g.status_code == 200 and g.content == data
        h = httpx.head(f"{url}/blobs/{cid}")
        assert h.status_code == 200 and int(h.headers["content-length"]) == len(data)
        missing = cid_of_bytes(b"nope")
        assert httpx.head(f"{url}/blobs/{missing}").status_code == 404
        assert httpx.get(f"{url}/blobs/{missing}").status_code == 404
        assert httpx.get(f"{url}/blobs/garbage").status_code == 400


def test_upload_limit(store):
    with serve(node_app(store, max_upload=1000)) as url:
        r = httpx.put(f"{url}/blobs", content=b"x" * 1001)
        assert r.status_code == 413

        def chunked():  # no content-length: the limit is enforced while streaming
            for _ in range(20):
                yield b"y" * 100
        r = httpx.put(f"{url}/blobs", content=chunked())
        assert r.status_code == 413
    assert list(store.list()) == [] and list(store.tmp_dir.iterdir()) == []


def test_put_of_taken_down_blob_is_refused(store):
    cid = store.put_bytes(b"illegal content")
    store.delete(cid, block=True)
    with serve(node_app(store)) as url:
        r = httpx.put(f"{url}/blobs", content=b"illegal content")
        assert r.status_code == 409 and "taken down" in r.json()["detail"]
        assert httpx.get(f"{url}/blobs/{cid}").status_code == 404
    assert not store.has(cid) and list(store.tmp_dir.iterdir()) == []


def test_corrupted_blob_not_served(store):
    cid = store.put_bytes(b"will rot")
    p = store._path(cid)
    os.chmod(p, 0o644)
    p.write_bytes(b"has rot!")
    with serve(node_app(store)) as url:
        assert httpx.get(f"{url}/blobs/{cid}").status_code == 404
    assert not store.has(cid)


def test_large_blob_streamed_and_verified(store, monkeypatch):
    import proofmesh.store.api as api
    monkeypatch.setattr(api, "_SMALL", 1000)  # force the streaming path
    data = os.urandom(CHUNK_SIZE * 2 + 3)
    cid = store.put_bytes(data)
    with serve(node_app(store)) as url:
        assert httpx.get(f"{url}/blobs/{cid}").content == data
        p = store._path(cid)
        os.chmod(p, 0o644)
        with p.open("r+b") as f:
            f.seek(len(data) - 1)
            f.write(bytes([data[-1] ^ 1]))
        with pytest.raises(httpx.HTTPError):  # connection cut before a complete wrong body
            httpx.get(f"{url}/blobs/{cid}")
    assert not store.has(cid)


def test_fetch_skips_lying_and_slow_peers(tmp_path):
    source = BlobStore(tmp_path / "source")
    data = os.urandom(CHUNK_SIZE + 1234)
    cid = source.put_bytes(data)
    empty = BlobStore(tmp_path / "empty")
    mine = BlobStore(tmp_path / "mine")
    with serve(lying_peer({cid: data})) as liar, serve(slow_peer()) as slow, \
            serve(node_app(empty)) as nothing, serve(node_app(source)) as honest:
        result = fetch(cid, [liar, slow, nothing, honest], mine, timeout=2.0)
    assert result.peer == honest
    assert "not the expected" in result.failures[liar]
    assert "timed out" in result.failures[slow]
    assert result.failures[nothing] == "HTTP 404"
    assert mine.get_bytes(cid) == data
    assert fetch(cid, [], mine).peer is None  # already stored: no network


def test_fetch_fails_cleanly_when_all_peers_bad(tmp_path):
    data = b"only liars have it" * 100
    cid = cid_of_bytes(data)
    mine = BlobStore(tmp_path / "mine")
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port
    with serve(lying_peer({cid: data})) as liar:
        with pytest.raises(StoreError, match="could not fetch") as e:
            fetch(cid, [liar, dead], mine, timeout=1)
    assert liar in e.value.message and dead in e.value.message
    assert list(mine.list()) == [] and list(mine.tmp_dir.iterdir()) == []


def test_fetch_respects_max_bytes(tmp_path):
    source = BlobStore(tmp_path / "source")
    cid = source.put_bytes(os.urandom(5000))
    mine = BlobStore(tmp_path / "mine")
    with serve(node_app(source)) as url:
        with pytest.raises(StoreError, match="exceeds"):
            fetch(cid, [url], mine, max_bytes=4000)
    assert list(mine.list()) == []
