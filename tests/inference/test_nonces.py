"""Used request nonces survive a node restart (inference gap 3); dated nonces bound the set."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from proofmesh.inference.nonces import DATED_TAG, NonceReused, NonceStale, UsedNonces, dated_nonce
from proofmesh.inference.router import Router

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _ask(url: str, version: int, x1, nonce: int) -> httpx.Response:
    return httpx.post(url + "/v1/infer", json={"version": version, "input": x1.tolist(), "nonce": str(nonce)})


def test_a_nonce_used_before_a_restart_is_refused_after_it(network, accounts, x1):
    n = network.start_node(accounts[3])
    dated = dated_nonce()
    assert _ask(n.url, network.version, x1, 41).status_code == 200
    assert _ask(n.url, network.version, x1, dated).status_code == 200
    assert Router(network.chain, network.version).infer(x1.tolist()).receipt.nonce >> 224 == DATED_TAG
    # the node stops (daemon restart) and a new process of it starts on the same workdir
    n.server.stop()
    n.node.close()
    network.nodes.remove(n)
    again = network.start_node(accounts[3])
    for nonce in (41, dated):
        r = _ask(again.url, network.version, x1, nonce)
        assert r.status_code == 422 and "nonce already used" in r.json()["error"], r.text
    assert _ask(again.url, network.version, x1, 42).status_code == 200      # fresh ones still answered


def test_a_stale_or_future_dated_nonce_is_refused(network, accounts, x1):
    n = network.start_node(accounts[3])
    for when in (time.time() - 3600, time.time() + 3600):
        r = _ask(n.url, network.version, x1, dated_nonce(when))
        assert r.status_code == 422 and "replay window" in r.json()["error"] and r.json()["fix"]
    assert len(n.node.nonces) == 0                    # refused: nothing recorded


def test_nonces_expire_with_the_window_and_dated_ones_stay_refused(tmp_path):
    path = tmp_path / "nonces.jsonl"
    used = UsedNonces(path, window_s=2, future_s=0)
    old = dated_nonce()
    used.add(old)
    used.add(7)
    with pytest.raises(NonceReused):
        used.check(old)
    used.close()
    time.sleep(3.1)                                   # past window + future: forgotten at open ...
    used = UsedNonces(path, window_s=2, future_s=0)
    assert len(used) == 0 and path.read_text() == ""  # ... in memory and on disk
    with pytest.raises(NonceStale):                   # ... but a dated one is refused as stale anyway
        used.check(old)
    used.check(7)                                     # an undated one is only refused within the window
    used.close()


def test_nonces_answered_before_a_crash_survive_once_written(tmp_path):
    # write-behind: after its sync (at most commit_interval_s later) a nonce survives os._exit
    path = tmp_path / "nonces.jsonl"
    code = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {SRC!r})
        from proofmesh.inference.nonces import UsedNonces
        used = UsedNonces(__import__("pathlib").Path({str(path)!r}), commit_interval_s=0.01)
        for n in range(1, 501):
            used.add(n)
        time.sleep(0.5)                               # several commit intervals
        os._exit(0)                                   # no close()
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    used = UsedNonces(path)
    for n in (1, 250, 500):
        with pytest.raises(NonceReused):
            used.check(n)
    used.check(501)
    used.close()
