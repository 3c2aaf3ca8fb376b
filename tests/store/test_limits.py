"""Request limits of the standalone blob server (``serve_blobs``, real uvicorn on 127.0.0.1):
``PUT /blobs`` streams to disk under ``max_upload`` and answers 413 in the project's error shape
past it; every other route is behind the BodyLimit; the server keeps serving."""

from __future__ import annotations

import json
import os

import httpx

from proofmesh.crypto.cid import cid_of_bytes
from proofmesh.http_limits import MB, HttpLimits
from proofmesh.store.api import serve_blobs

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
