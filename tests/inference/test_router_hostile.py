"""The router against a hostile node: a node found on chain that floods, stalls or garbles its
answer costs the caller neither memory nor unbounded time — the router reads every answer
within a byte cap and a total deadline (proofmesh.http_reads), marks the node down or bad and
fails over to an honest one."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from proofmesh.chain.core import MESH, Registry
from proofmesh.inference import wire
from proofmesh.inference.router import Router

INFERENCE = 4


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


@pytest.mark.parametrize("mode", ["declared", "flood", "trickle", "deep", "garbled"])
def test_router_fails_over_from_a_hostile_node(network, accounts, chain, hostile_peer, mode):
    honest = network.start_node(accounts[3])
    bad_acct = accounts[8]
    # the hostile node answers /v1/info like the honest one, as itself, then misbehaves on
    # /v1/infer as `mode` says (tests/conftest.py HostilePeer): a 1 GB declared answer, an
    # endless chunked one, a byte every 0.2 s, '[' x 200,000, a garbled answer frame
    info = httpx.get(honest.url + "/v1/info", params={"version": network.version}).json()
    hostile_peer.always[f"/v1/info?version={network.version}"] = {**info, "node": bad_acct.address}
    hostile_peer.mode, hostile_peer.garbled_type = mode, wire.ANSWER_TYPE
    hostile = hostile_peer
    reg = Registry(chain)
    if not reg.info(bad_acct.address).registered:
        reg.register(hostile.url, INFERENCE, sender=bad_acct)
    else:
        reg.update(hostile.url, INFERENCE, sender=bad_acct)
    # more stake than the honest node
    reg.stake(3000 * MESH, sender=bad_acct)
    if network.registry.service_bond(bad_acct.address) == 0:
        network.registry.post_bond(network.registry.min_bond(), sender=bad_acct)
    router = Router(chain, network.version, account=accounts[6], timeout=2.0)
    router.max_answer = 1 << 20           # 1 MB for this test (default: http_max_answer_mb)
    try:
        router.discover()
        assert {h.address for h in router.ranked()} >= {honest.account.address, bad_acct.address}
        router.nodes[bad_acct.address].latency = 1e-4     # and it looks fastest: tried first
        x = np.random.default_rng(5).random((2, 4), dtype=np.float32)
        before, t0 = _rss(), time.monotonic()
        ans = router.infer(x)
        took = time.monotonic() - t0
        assert hostile.requests >= 2, "the hostile node was not tried first"     # /v1/info, /v1/infer
        assert ans.node == honest.account.address and ans.failovers >= 1
        bad = router.nodes[bad_acct.address]
        assert bad.bad >= 1 and bad.last_error
        assert took < 15                              # the deadline (2 s) bounds a stalled answer
        assert _rss() - before < 64 << 20             # a flood was not buffered (512 MB or 1 GB offered)
        if mode == "trickle":
            assert "2 s" in bad.last_error or "deadline" in bad.last_error.lower()
        if mode in ("deep", "garbled"):
            assert "malformed answer" in bad.last_error
    finally:
        router.close()
        Registry(chain).update("http://127.0.0.1:1", INFERENCE, sender=bad_acct)   # out of later tests' way
