"""Request limits of the standalone edge gateway (``make_app`` behind its BodyLimit, real uvicorn
on 127.0.0.1): a batch over the limit gets 413 whether declared or streamed, without the
gateway holding it; a body that is not a batch (a '[[[[' flood) gets 400; the gateway keeps
serving; a batch just under the limit is judged as usual."""

from __future__ import annotations

import json
import os
from typing import Iterator

import coincurve
import httpx
import pytest

from proofmesh.edge.gateway import GatewayConfig, GatewayCore, make_app
from proofmesh.edge.identity import KeyHolder
from proofmesh.edge.onchain import EdgeChain
from proofmesh.edge.reading import HEAD, MAX_PAYLOAD, RECORD_FIXED, encode_batch, make_reading
from proofmesh.http_limits import MB, HttpLimits

LIMIT = 4 * MB


@pytest.fixture
def gateway(chain, accounts, tmp_path, http_probe) -> Iterator[tuple[str, GatewayCore]]:
    acct = accounts[1]
    core = GatewayCore(GatewayConfig(tmp_path / "gw", workers=0, publish=False),
                       KeyHolder(acct, coincurve.PrivateKey(bytes(acct.key)), tmp_path / "none"),
                       edge=EdgeChain(chain))
    limits = HttpLimits(max_body_bytes=LIMIT, max_connections=32)
    try:
        with http_probe.serve(make_app(core, limits=limits), **limits.uvicorn_options()) as url:
            yield url, core
    finally:
        core.close()


def still_serving(url: str) -> None:
    r = httpx.get(f"{url}/edge/stats")
    assert r.status_code == 200 and "counts" in r.json()


def test_a_declared_batch_over_the_limit_gets_413(gateway, http_probe):
    url, _ = gateway
    status, _, body = http_probe(url).declared("/edge/readings", 400 * MB)
    err = json.loads(body)
    assert status == 413 and err["type"] == "BodyTooLarge" and "4 MB" in err["error"]
    still_serving(url)


def test_a_streamed_batch_over_the_limit_gets_413_and_is_not_held(gateway, http_probe):
    url, _ = gateway
    probe = http_probe(url)
    (status, _, body, _), grew = probe.peak_rss_growth(os.getpid(), lambda: probe.chunked("/edge/readings", 3 * LIMIT))
    assert status == 413 and json.loads(body)["type"] == "BodyTooLarge"
    assert grew < 3 * LIMIT, f"the gateway held {grew / MB:.1f} MB of a {3 * LIMIT / MB:.0f} MB body"
    still_serving(url)


def test_a_nested_json_flood_is_a_400_not_a_crash(gateway, http_probe):
    url, core = gateway
    status, _, body = http_probe(url).body("/edge/readings", b"[" * MB)
    assert status == 400 and "not a proofmesh reading batch" in json.loads(body)["detail"]["error"]
    assert core.stats["rejected_malformed_batch"] == 1
    still_serving(url)


def test_a_batch_just_under_the_limit_is_judged(gateway):
    url, core = gateway
    key = coincurve.PrivateKey()
    one = RECORD_FIXED + MAX_PAYLOAD
    n = (LIMIT - HEAD.size) // one
    readings = [make_reading(key, core.domain, device=b"\x11" * 20, seq=i + 1, nonce=bytes(32), timestamp=1,
                             payload=os.urandom(MAX_PAYLOAD)) for i in range(n)]
    body = encode_batch(readings)
    assert LIMIT - one < len(body) <= LIMIT
    r = httpx.post(f"{url}/edge/readings", content=body, timeout=60)
    assert r.status_code == 200
    answer = r.json()
    assert answer["accepted"] == 0 and answer["rejected"] == n     # an unknown device: judged, refused
