"""Request limits of the standalone blob server (``serve_blobs``, real uvicorn on 127.0.0.1):
``PUT /blobs`` streams to disk under ``max_upload`` and answers 413 in the project's error shape
past it, and 408 to an upload slower than the minimum rate; every other route is behind the
BodyLimit; the server keeps serving. And the fetching side: a blob fetched from a peer is held to
the same minimum rate (a real dripping peer on 127.0.0.1, a paced one, a real blob server)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from proofmesh.crypto.cid import cid_of_bytes
from proofmesh.http_limits import MB, HttpLimits
from proofmesh.http_reads import TransferTooSlow
from proofmesh.store.api import serve_blobs
from proofmesh.store.blobstore import BlobStore
from proofmesh.store.fetch import FetchFailed, fetch
from tests.conftest import drip, wait_for

MAX_UPLOAD = 4 * MB
LIMITS = HttpLimits(max_body_bytes=MB, max_connections=32)


def still_serving(url: str, store) -> None:
    cid = store.put_bytes(b"still here")
    r = httpx.get(f"{url}/blobs/{cid}")
    assert r.status_code == 200 and r.content == b"still here"


def test_declared_bodies_over_the_limits_get_413(store, http_probe):
    with serve_blobs(store, max_upload=MAX_UPLOAD, limits=LIMITS) as url:
        probe = http_probe(url)
        status, headers, body = probe.declared("/blobs", 400 * MB, method="PUT")
        err = json.loads(body)
        assert status == 413 and err["type"] == "BodyTooLarge" and "max_upload" in err["fix"]
        assert headers.get("connection") == "close"
        status, _, body = probe.declared("/blobs/anything", 400 * MB, method="POST")   # not an upload route
        assert status == 413 and "http_max_body_mb" in json.loads(body)["fix"]
        still_serving(url, store)
    assert list(store.tmp_dir.iterdir()) == []


def test_a_chunked_upload_over_the_limit_gets_413_and_is_not_held(store, http_probe):
    with serve_blobs(store, max_upload=MAX_UPLOAD, limits=LIMITS) as url:
        probe = http_probe(url)
        (status, _, body, _), grew = probe.peak_rss_growth(
            os.getpid(), lambda: probe.chunked("/blobs", 3 * MAX_UPLOAD, method="PUT"))
        assert status == 413 and json.loads(body)["type"] == "BodyTooLarge"
        assert grew < 3 * MAX_UPLOAD, f"the server held {grew / MB:.1f} MB of a {3 * MAX_UPLOAD / MB:.0f} MB body"
        # a route that reads no body answers without reading it (the rest is discarded, not held)
        status, _, _, _ = probe.chunked("/blobs/x", 3 * LIMITS.max_body_bytes)
        assert status == 405
        still_serving(url, store)
    assert list(store.tmp_dir.iterdir()) == []


def test_nested_json_bodies_are_just_bytes_or_a_4xx(store, http_probe):
    """The blob store parses no JSON: a '[[[[' upload is a blob like any other; sent to a route
    that takes no body it is a 4xx; either way the server keeps serving."""
    nested = b"[" * MB
    with serve_blobs(store, max_upload=MAX_UPLOAD, limits=HttpLimits(max_body_bytes=2 * MB)) as url:
        probe = http_probe(url)
        status, _, body = probe.body("/blobs", nested, method="PUT")
        assert status == 201 and json.loads(body)["cid"] == cid_of_bytes(nested)
        status, _, _ = probe.body("/blobs/" + cid_of_bytes(nested), nested, method="POST")
        assert 400 <= status < 500
        still_serving(url, store)


def test_bodies_just_under_the_limits_are_served(store):
    with serve_blobs(store, max_upload=MAX_UPLOAD, limits=LIMITS) as url:
        data = os.urandom(MAX_UPLOAD)          # at the upload limit, over the BodyLimit: exempt
        r = httpx.put(f"{url}/blobs", content=data)
        assert r.status_code == 201 and store.get_bytes(r.json()["cid"]) == data
        r = httpx.put(f"{url}/blobs", content=iter([data[:MB], data[MB:]]))    # chunked
        assert r.status_code == 201


# --------------------------------------------------------------------------- minimum rate
# A transfer gets a grace plus one second per http_min_rate_kbps kilobits it delivered, over the
# whole transfer (MinRate): a peer dripping bytes is cut just after the grace whatever size it
# declared, and a large transfer at a normal speed runs as long as it needs.
GRACE_S = 0.5
FLOOR_KBPS = 8000.0                   # 1 MB/s
PACE = 4 * MB                         # bytes/s of a "normal speed" transfer in these tests
PACED_SIZE = 10 * MB                  # ~2.5 s at PACE: five times the grace


def paced_pieces(data: bytes, piece: int = 256 * 1024):
    for i in range(0, len(data), piece):
        yield data[i:i + piece]
        time.sleep(piece / PACE)


def paced_peer(blobs: dict[str, bytes]) -> FastAPI:
    """A peer that serves each blob at PACE bytes/s (a normal link), not as fast as it can."""
    app = FastAPI()

    @app.get("/blobs/{cid}")
    async def get(cid: str) -> StreamingResponse:
        data = blobs[cid]

        async def pieces():
            for i in range(0, len(data), 256 * 1024):
                yield data[i:i + 256 * 1024]
                await asyncio.sleep(256 * 1024 / PACE)
        return StreamingResponse(pieces(), media_type="application/octet-stream",
                                 headers={"content-length": str(len(data))})
    return app


def test_a_dripping_blob_server_fails_the_fetch_soon_after_the_grace(tmp_path, hostile_peer):
    """The hostile peer declares 100,000 bytes and sends one every 0.2 s: every read gets a byte
    well within its timeout, so a per-read timeout never fired (the fetch held for ~5.5 h). A
    deadline fixed from the declared size would allow 1 + 100 s; the rule cuts it at ~1 s, the
    error names the peer, the bytes it got and the rule, nothing is left, the next peer serves."""
    hostile_peer.mode = "trickle"
    data = os.urandom(5000)
    source, mine = BlobStore(tmp_path / "source"), BlobStore(tmp_path / "mine")
    cid = source.put_bytes(data)
    t0 = time.monotonic()
    with pytest.raises(FetchFailed) as info:
        fetch(cid, [hostile_peer.url], mine, timeout=1.0, min_rate_kbps=8)        # 1 s + 1 s per kB
    took = time.monotonic() - t0
    assert 0.9 < took < 3.0, f"the fetch was cut after {took:.1f} s; the rule allows ~1 s"
    cause = info.value.causes[hostile_peer.url]
    assert isinstance(cause, TransferTooSlow) and 0 < cause.received < 50, cause
    assert hostile_peer.url in info.value.message and f"{cause.received:,} bytes in" in info.value.message
    assert "http_min_rate_kbps = 8" in info.value.message and "1 s plus 1 s per 1 kB" in info.value.message
    assert list(mine.list()) == [] and list(mine.tmp_dir.iterdir()) == []
    hostile_peer.mode = "trickle_head"             # the status line and headers dripped: the grace
    t0 = time.monotonic()
    with pytest.raises(FetchFailed) as info:
        fetch(cid, [hostile_peer.url], mine, timeout=1.0, min_rate_kbps=8)
    took = time.monotonic() - t0
    cause = info.value.causes[hostile_peer.url]
    assert isinstance(cause, TransferTooSlow) and cause.received == 0 and 0.9 < took < 3.0, (cause, took)
    assert list(mine.list()) == [] and list(mine.tmp_dir.iterdir()) == []
    hostile_peer.mode = "trickle"
    with serve_blobs(source, limits=LIMITS) as honest:
        result = fetch(cid, [hostile_peer.url, honest], mine, timeout=1.0, min_rate_kbps=8)
    assert result.peer == honest and "http_min_rate_kbps" in result.failures[hostile_peer.url]
    assert mine.get_bytes(cid) == data and list(mine.tmp_dir.iterdir()) == []


def test_a_large_blob_at_a_normal_speed_is_fetched_past_the_grace(tmp_path):
    """10 MB at 4 MB/s takes ~2.5 s, five times the 0.5 s grace: the rule (1 MB/s on average)
    lets it through; a fixed deadline of the grace, or one per read, would not be the rule."""
    data = os.urandom(PACED_SIZE)
    cid = cid_of_bytes(data)
    mine = BlobStore(tmp_path / "mine")
    with serve_blobs(app=paced_peer({cid: data}), limits=LIMITS) as url:
        t0 = time.monotonic()
        result = fetch(cid, [url], mine, timeout=GRACE_S, min_rate_kbps=FLOOR_KBPS)
        took = time.monotonic() - t0
    assert result.peer == url and mine.get_bytes(cid) == data
    assert took > 3 * GRACE_S, f"took {took:.2f} s: not paced, the test proves nothing"


def test_a_large_blob_from_a_real_blob_server_is_fetched_at_full_speed(tmp_path):
    data = os.urandom(64 * MB)
    source, mine = BlobStore(tmp_path / "source"), BlobStore(tmp_path / "mine")
    cid = source.put_bytes(data)
    with serve_blobs(source, limits=LIMITS) as url:
        result = fetch(cid, [url], mine, timeout=GRACE_S, min_rate_kbps=FLOOR_KBPS)
    assert result.peer == url and mine.size(cid) == len(data) and mine.verify(cid)


def test_a_dripping_upload_gets_408_and_nothing_is_stored(store, http_probe):
    limits = HttpLimits(max_body_bytes=MB, max_connections=32, body_timeout_s=1.0, min_rate_kbps=8)
    with serve_blobs(store, max_upload=MAX_UPLOAD, limits=limits) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"PUT /blobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
            status, headers, body, took = drip(s, b"x" * 100000, 0.2)   # 5 bytes/s, declared 100 kB
        err = json.loads(body)
        assert status == 408 and err["type"] == "BodyTooSlow", (status, body)
        assert 0.9 < took < 3.0, f"408 after {took:.1f} s; the rule allows ~1 s"
        assert "http_min_rate_kbps = 8" in err["error"] and "PROOFMESH_HTTP_MIN_RATE_KBPS" in err["fix"]
        assert headers.get("connection") == "close"
        wait_for(lambda: list(store.tmp_dir.iterdir()) == [], 10, "the aborted upload's temporary file removed")
        assert list(store.list()) == []
        still_serving(url, store)


def test_an_upload_at_a_normal_speed_is_not_cut(store):
    limits = HttpLimits(max_body_bytes=MB, max_connections=32, body_timeout_s=GRACE_S, min_rate_kbps=FLOOR_KBPS)
    data = os.urandom(PACED_SIZE)
    with serve_blobs(store, max_upload=128 * MB, limits=limits) as url:
        t0 = time.monotonic()
        r = httpx.put(f"{url}/blobs", content=paced_pieces(data), timeout=30)     # chunked, 4 MB/s
        took = time.monotonic() - t0
        assert r.status_code == 201, r.text
        assert store.get_bytes(r.json()["cid"]) == data
        assert took > 3 * GRACE_S, f"took {took:.2f} s: not paced, the test proves nothing"
        big = os.urandom(64 * MB)                                                 # and at full speed
        r = httpx.put(f"{url}/blobs", content=big, timeout=60)
        assert r.status_code == 201 and r.json()["cid"] == cid_of_bytes(big)
