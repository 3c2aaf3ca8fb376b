"""proofmesh.http_pool against real servers on 127.0.0.1: a stdlib keep-alive server, the
shared HostilePeer (tests/conftest.py) and raw sockets answering what no HTTP server would."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from proofmesh.http_limits import BadJSON
from proofmesh.http_pool import PeerConnectionError, PeerPool
from proofmesh.http_reads import AnswerTimeout, AnswerTooLarge


class _Echo(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1: answers JSON naming the method, path, body and connection."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        size = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(size) if size else b""
        if self.path.startswith("/missing"):
            out, status = b'{"error": "no such thing"}', 404
        else:
            out, status = json.dumps({"method": self.command, "path": self.path, "body": body.decode(),
                                      "type": self.headers.get("content-type"),
                                      "conn": id(self.connection)}).encode(), 200
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
        if self.server.close_after_answer:       # closes without saying so (an idle timeout)
            self.close_connection = True

    do_GET = do_POST = _answer


@pytest.fixture()
def echo() -> Iterator[ThreadingHTTPServer]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    srv.daemon_threads = True
    srv.close_after_answer = False
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def _raw_server(answer: bytes) -> tuple[str, socket.socket]:
    """A server that reads a request's head and sends ``answer`` as is, then closes."""
    ls = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = ls.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{ls.getsockname()[1]}", ls


def test_request_and_answer(echo):
    pool = PeerPool()
    try:
        a = pool.request("POST", echo.url + "/v1/x", json={"k": 1}, params={"version": 3}, max_bytes=1 << 20,
                         deadline_s=5)
        body = a.json()
        assert a.status_code == 200 and a.headers["content-type"] == "application/json"
        assert body["method"] == "POST" and body["path"] == "/v1/x?version=3" and json.loads(body["body"]) == {"k": 1}
        assert body["type"] == "application/json"
        b = pool.request("GET", echo.url + "/missing", max_bytes=1 << 20, deadline_s=5)
        assert b.status_code == 404 and "no such thing" in b.excerpt     # the status is the caller's to judge
        c = pool.request("POST", echo.url + "/raw", content=b"\x00\x01", headers={"content-type": "x/y"},
                         max_bytes=1 << 20, deadline_s=5).json()
        assert c["type"] == "x/y" and c["body"] == "\x00\x01"
    finally:
        pool.close()


def test_connections_are_kept_alive_and_a_closed_one_is_replaced(echo):
    pool = PeerPool()
    try:
        conns = {pool.request("GET", echo.url + "/a", max_bytes=1 << 20, deadline_s=5).json()["conn"]
                 for _ in range(5)}
        assert len(conns) == 1, "every request opened a new connection"
        # the server now drops each connection after its answer, without a Connection: close
        # header (as a keep-alive timeout does): the next request must not fail for it
        echo.close_after_answer = True
        pool.request("GET", echo.url + "/b", max_bytes=1 << 20, deadline_s=5)   # reused, then dropped
        time.sleep(0.05)
        answers = [pool.request("GET", echo.url + "/c", max_bytes=1 << 20, deadline_s=5) for _ in range(3)]
        assert all(a.status_code == 200 for a in answers)
    finally:
        pool.close()


@pytest.mark.parametrize("mode, error", [("declared", AnswerTooLarge), ("flood", AnswerTooLarge),
                                         ("trickle", AnswerTimeout), ("trickle_head", AnswerTimeout)])
def test_hostile_answers_are_bounded(hostile_peer, mode, error):
    hostile_peer.mode = mode
    pool = PeerPool()
    t0 = time.monotonic()
    with pytest.raises(error) as info:
        pool.request("GET", hostile_peer.url + "/x", max_bytes=1 << 20, deadline_s=1.0)
    took = time.monotonic() - t0
    assert took < 3.0, f"{mode}: held the caller {took:.1f} s past a 1 s deadline"
    assert hostile_peer.url in info.value.message
    if mode == "declared":
        assert "declares 1,073,741,824 bytes" in info.value.message     # refused before reading it
    pool.close()


def test_deep_json_is_a_clear_error(hostile_peer):
    hostile_peer.mode = "deep"
    a = PeerPool().request("GET", hostile_peer.url + "/x", max_bytes=1 << 20, deadline_s=5)
    with pytest.raises(BadJSON):
        a.json()


def test_a_refused_connection():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]        # nothing listens here once closed
    with pytest.raises(PeerConnectionError, match="cannot connect"):
        PeerPool().request("GET", f"http://127.0.0.1:{port}/", max_bytes=1024, deadline_s=2)


@pytest.mark.parametrize("answer, error", [
    (b"hello, this is not HTTP\r\n\r\n", "not an HTTP answer"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part", "before the answer was whole"),
])
def test_answers_that_are_not_whole_http(answer, error):
    url, ls = _raw_server(answer)
    try:
        with pytest.raises(PeerConnectionError, match=error):
            PeerPool().request("GET", url + "/", max_bytes=1024, deadline_s=2)
    finally:
        ls.close()


def test_a_body_ended_by_the_connection_is_read():
    url, ls = _raw_server(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nthe whole body")
    try:
        a = PeerPool().request("GET", url + "/", max_bytes=1024, deadline_s=2)
        assert a.status_code == 200 and a.content == b"the whole body"
    finally:
        ls.close()


def test_line_breaks_in_a_header_are_refused(echo):
    with pytest.raises(ValueError, match="line break"):
        PeerPool().request("GET", echo.url + "/", headers={"x-a": "1\r\nx-injected: 2"}, max_bytes=1024,
                           deadline_s=2)


def test_json_bodies_carry_numpy_arrays_and_big_integers(echo):
    import numpy as np

    pool = PeerPool()
    body = {"x": np.arange(3, dtype=np.float32), "wei": 10**24}
    got = json.loads(pool.request("POST", echo.url + "/j", json={"wei": 10**24}, max_bytes=1 << 20,
                                  deadline_s=5).json()["body"])
    assert got == {"wei": 10**24}
    got = json.loads(pool.request("POST", echo.url + "/j", json={"x": body["x"]}, max_bytes=1 << 20,
                                  deadline_s=5).json()["body"])
    assert got == {"x": [0.0, 1.0, 2.0]}
    pool.close()
