"""The router against a hostile node: a node found on chain that floods, stalls or garbles its
answer costs the caller neither memory nor unbounded time — the router reads every answer
within a byte cap and a total deadline (proofmesh.http_reads), marks the node down or bad and
fails over to an honest one."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import numpy as np
import pytest

from proofmesh.chain.core import MESH, Registry
from proofmesh.inference import wire
from proofmesh.inference.router import Router

INFERENCE = 4


class HostileNode:
    """A raw-socket HTTP server that answers /v1/info like ``honest`` (but as ``address``) and
    /v1/infer as ``mode`` says."""

    def __init__(self, honest_url: str, address: str, mode: str) -> None:
        self.honest_url, self.address, self.mode = honest_url, address, mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.infer_calls = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                buf = b""
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, body = buf.partition(b"\r\n\r\n")
                length = next((int(ln.split(b":")[1]) for ln in head.split(b"\r\n")
                               if ln.lower().startswith(b"content-length")), 0)
                while len(body) < length:
                    body += conn.recv(65536)
                path = head.split()[1].decode()
                if path.startswith("/v1/info"):
                    info = httpx.get(self.honest_url + path).json()
                    info["node"] = self.address
                    self._send(conn, 200, b"application/json", httpx.Response(200, json=info).content)
                    return
                self.infer_calls += 1
                self._misbehave(conn)
            except OSError:
                return      # the router hung up on us: what it should do

    def _send(self, conn: socket.socket, status: int, ctype: bytes, body: bytes) -> None:
        conn.sendall(b"HTTP/1.1 %d X\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                     % (status, ctype, len(body)) + body)

    def _misbehave(self, conn: socket.socket) -> None:
        if self.mode == "declared-flood":      # says 2 GB up front
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2000000000\r\n\r\n")
            for _ in range(2000):              # 128 MB of it unless the router hangs up first
                conn.sendall(b"[" * (1 << 16))
        elif self.mode == "chunked-flood":     # no length: streams until stopped
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (1 << 16, b"[" * (1 << 16))
            for _ in range(2000):              # 128 MB unless the router hangs up first
                conn.sendall(chunk)
        elif self.mode == "trickle":           # one byte every 0.3 s: each read within its timeout
            for b in b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n" + b" " * 1000:
                conn.sendall(bytes([b]))
                time.sleep(0.3)
        elif self.mode == "deep-json":
            self._send(conn, 200, b"application/json", b"[" * (1 << 20))
        elif self.mode == "garbled-frame":
            self._send(conn, 200, wire.ANSWER_TYPE.encode(), b"PMA1\xff\xff\xff\x7fgarbage")

    def close(self) -> None:
        self.sock.close()


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


@pytest.mark.parametrize("mode", ["declared-flood", "chunked-flood", "trickle", "deep-json", "garbled-frame"])
def test_router_fails_over_from_a_hostile_node(network, accounts, chain, mode):
    honest = network.start_node(accounts[3])
    bad_acct = accounts[8]
    hostile = HostileNode(honest.url, bad_acct.address, mode)
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
        assert hostile.infer_calls >= 1, "the hostile node was not tried first"
        assert ans.node == honest.account.address and ans.failovers >= 1
        bad = router.nodes[bad_acct.address]
        assert bad.bad >= 1 and bad.last_error
        assert took < 15                              # the deadline (2 s) bounds a stalled answer
        assert _rss() - before < 64 << 20             # a flood was not buffered (128 MB or 2 GB offered)
        if mode == "trickle":
            assert "2 s" in bad.last_error or "deadline" in bad.last_error.lower()
        if mode in ("deep-json", "garbled-frame"):
            assert "malformed answer" in bad.last_error
    finally:
        router.close()
        hostile.close()
        Registry(chain).update("http://127.0.0.1:1", INFERENCE, sender=bad_acct)   # out of later tests' way
