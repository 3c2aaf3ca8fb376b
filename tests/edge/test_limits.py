"""Request limits of the standalone edge gateway (``make_app`` behind its BodyLimit, real uvicorn
on 127.0.0.1): a batch over the limit gets 413 whether declared or streamed, without the
gateway holding it; a body that is not a batch (a '[[[[' flood) gets 400; the gateway keeps
serving; a batch just under the limit is judged as usual."""

from __future__ import annotations

import json
import os
import time
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


# --------------------------------------------------------------------------- a hostile gateway
# The device and `proofmesh edge verify` read the answers of a gateway they do not control,
# within a cap and a total deadline (proofmesh.http_reads); HostilePeer is in tests/conftest.py.
BEACON = {"chain_id": 31337, "verifying_contract": "0x" + "11" * 20, "nonce": "0x" + "07" * 32, "interval": 5}
HOSTILE = ["declared", "flood", "deep", "trickle", "trickle_head"]


@pytest.fixture
def device(tmp_path, hostile_peer, monkeypatch):
    from proofmesh.edge.device import Device
    from proofmesh.edge.identity import create_key

    monkeypatch.setenv("PROOFMESH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PROOFMESH_HTTP_MAX_ANSWER_MB", "4")
    create_key(tmp_path / "device.key", "pw")
    dev = Device(tmp_path, hostile_peer.url, password="pw", timeout=1.0)
    hostile_peer.good.update({"/edge/beacon": BEACON, "/edge/readings": {"codes": ["ok"]}})
    yield dev
    dev.client.close()


def test_a_device_survives_a_hostile_gateway_and_goes_on_with_a_good_one(device, hostile_peer, http_probe):
    assert device.max_answer == 4 * MB
    for mode in HOSTILE:
        hostile_peer.mode = mode
        t0 = time.monotonic()
        ok, grew = http_probe.peak_rss_growth(os.getpid(), device.refresh_beacon)
        assert ok is False and time.monotonic() - t0 < 2.5, mode       # deadline 1 s, not per read
        assert grew < 32 * MB, f"{mode}: the device held {grew / MB:.1f} MB"
    hostile_peer.mode = "good"
    assert device.refresh_beacon() and device.state.nonce == b"\x07" * 32
    device.make(b"21.5")
    for mode in HOSTILE:                         # the batch's answer: the reading stays queued
        hostile_peer.mode = mode
        t0 = time.monotonic()
        sent, grew = http_probe.peak_rss_growth(os.getpid(), device.flush)
        assert sent == 0 and len(device.pending) == 1 and time.monotonic() - t0 < 2.5, mode
        assert grew < 32 * MB, f"{mode}: the device held {grew / MB:.1f} MB"
    assert device.counts["send_failures"] == len(HOSTILE)
    hostile_peer.mode = "good"
    assert device.flush() == 1 and device.pending == []


def test_a_beacon_is_capped_small_and_must_be_a_beacon(device, hostile_peer):
    hostile_peer.good["/edge/beacon"] = {"pad": "x" * (80 * 1024)}          # 80 KB: over the beacon's 64 KB
    assert device.refresh_beacon() is False
    for not_a_beacon in ([], "beacon", {"chain_id": 1}):
        hostile_peer.good["/edge/beacon"] = not_a_beacon
        assert device.refresh_beacon() is False
    hostile_peer.good["/edge/beacon"] = BEACON
    assert device.refresh_beacon()


@pytest.mark.parametrize("mode", HOSTILE)
def test_verify_reading_refuses_a_hostile_gateway(hostile_peer, monkeypatch, tmp_path, mode):
    from proofmesh.edge.cli import verify_reading
    from proofmesh.errors import VerificationError
    from proofmesh.http_limits import BadJSON
    from proofmesh.http_reads import AnswerTimeout, AnswerTooLarge

    monkeypatch.setenv("PROOFMESH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PROOFMESH_HTTP_MAX_ANSWER_MB", "4")
    expected = {"declared": AnswerTooLarge, "flood": AnswerTooLarge, "deep": BadJSON,
                "trickle": AnswerTimeout, "trickle_head": AnswerTimeout}[mode]
    hostile_peer.mode = mode
    t0 = time.monotonic()
    with pytest.raises(expected) as info:
        verify_reading(None, hostile_peer.url, "0x" + "22" * 20, 1, deadline_s=1.0)
    assert time.monotonic() - t0 < 2.5 and hostile_peer.url in info.value.message
    hostile_peer.mode, hostile_peer.good["/edge/epochs"] = "good", []     # a good gateway: read, judged
    with pytest.raises(VerificationError, match="in no epoch"):
        verify_reading(None, hostile_peer.url, "0x" + "22" * 20, 1, deadline_s=1.0)
