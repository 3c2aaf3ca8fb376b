"""BodyLimit (proofmesh.http_limits): the ASGI rules driven message by message, then one real
uvicorn server on 127.0.0.1 with an app that buffers whatever it is given."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from proofmesh.config import Settings
from proofmesh.errors import ConfigError
from proofmesh.http_limits import MB, BadJSON, BodyLimit, HttpLimits, MinRate, parse_json

from tests.conftest import drip  # noqa: E402


class Recorder:
    """An ASGI app that reads its body to the end (like ``await request.body()``), then answers
    200 with how much it got; it notes every message it receives."""

    def __init__(self, answer_first: bool = False) -> None:
        self.called = False
        self.messages: list[dict[str, Any]] = []
        self.answer_first = answer_first

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        self.called = True
        if self.answer_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        got = 0
        while True:
            m = await receive()
            self.messages.append(m)
            if m["type"] == "http.disconnect":
                # what Starlette does: ClientDisconnect out of request.body()
                raise RuntimeError("client disconnected")
            got += len(m.get("body", b""))
            if not m.get("more_body"):
                break
        if not self.answer_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(got).encode()})


def drive(app: Any, pieces: list[bytes], *, length: int | None = None, path: str = "/x",
          scope_type: str = "http") -> tuple[list[dict[str, Any]], int]:
    """Run ``app`` for one request whose body arrives in ``pieces``; returns what it sent and
    how many times it called ``receive``."""
    headers = [(b"content-length", str(length).encode())] if length is not None else []
    scope = {"type": scope_type, "path": path, "method": "POST", "headers": headers}
    queue = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1} for i, p in enumerate(pieces)]
    sent: list[dict[str, Any]] = []
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(m: dict[str, Any]) -> None:
        sent.append(m)

    asyncio.run(app(scope, receive, send))
    return sent, calls


def status_and_body(sent: list[dict[str, Any]]) -> tuple[int, bytes]:
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_a_declared_length_over_the_limit_is_answered_413_without_calling_the_app():
    app = Recorder()
    sent, calls = drive(BodyLimit(app, 1000), [b"x" * 10], length=5000)
    status, body = status_and_body(sent)
    assert status == 413 and not app.called and calls == 0
    err = json.loads(body)
    assert err["type"] == "BodyTooLarge"
    assert "5,000 bytes" in err["error"] and "1,000 bytes" in err["error"]
    assert "http_max_body_mb" in err["fix"] and "PROOFMESH_HTTP_MAX_BODY_MB" in err["fix"]
    assert (b"connection", b"close") in sent[0]["headers"]


def test_a_streamed_body_past_the_limit_gets_413_and_the_app_a_disconnect():
    app = Recorder()
    pieces = [b"y" * 100] * 30                     # 3,000 bytes, no declared length, limit 1,000
    sent, calls = drive(BodyLimit(app, 1000), pieces)
    status, body = status_and_body(sent)
    assert status == 413 and json.loads(body)["type"] == "BodyTooLarge"
    assert "more than 1,000 bytes" in json.loads(body)["error"]
    # the app saw 1,000 bytes' worth of pieces, then a disconnect; its own 200 was dropped
    assert app.messages[-1] == {"type": "http.disconnect"}
    assert sum(len(m.get("body", b"")) for m in app.messages) <= 1000 + 100
    assert len(sent) == 2
    # never buffered whole: nothing was read past the piece that crossed the limit
    assert calls == 11


def test_bodies_within_the_limit_pass_untouched():
    for pieces, length in (([b"a" * 1000], 1000), ([b"a" * 400, b"b" * 600], None), ([b""], None)):
        app = Recorder()
        sent, _ = drive(BodyLimit(app, 1000), pieces, length=length)
        assert status_and_body(sent) == (200, str(sum(map(len, pieces))).encode())


def test_an_app_already_answering_keeps_its_answer():
    app = Recorder(answer_first=True)
    with pytest.raises(RuntimeError, match="client disconnected"):   # the app's own error, not hidden
        drive(BodyLimit(app, 100), [b"z" * 80] * 3)
    assert app.messages[-1]["type"] == "http.disconnect"


def test_exempt_paths_websocket_and_lifespan_pass_through():
    app = Recorder()
    sent, _ = drive(BodyLimit(app, 10, exempt=("/blobs",)), [b"x" * 50], length=50, path="/blobs")
    assert status_and_body(sent) == (200, b"50")
    for other in ("/blobs/up", "/blobsy", "/"):        # exact paths only
        sent, _ = drive(BodyLimit(app, 10, exempt=("/blobs",)), [b"x" * 50], length=50, path=other)
        assert sent[0]["status"] == 413

    seen: list[tuple[Any, Any]] = []

    async def raw(scope: dict, receive: Any, send: Any) -> None:
        seen.append((receive, send))

    limited = BodyLimit(raw, 10)
    for kind in ("websocket", "lifespan"):
        async def receive() -> dict[str, Any]:
            return {}

        async def send(m: dict[str, Any]) -> None:
            pass

        asyncio.run(limited({"type": kind, "path": "/", "headers": [(b"content-length", b"999")]}, receive, send))
        assert seen[-1] == (receive, send)     # the very same callables: untouched


def test_parse_json_turns_bad_and_deep_bodies_into_bad_json():
    assert parse_json(b'{"a": [1, 2]}') == {"a": [1, 2]}
    with pytest.raises(BadJSON, match="deeper"):
        parse_json(b"[" * 1_000_000)
    with pytest.raises(BadJSON, match="not JSON"):
        parse_json(b"{nope")
    with pytest.raises(BadJSON, match="not JSON"):
        parse_json(b"\xff\xfe\x00")


def test_limits_come_from_the_settings_and_can_be_overridden(monkeypatch, tmp_path):
    assert Settings().http_max_body_mb == 64 and Settings().http_max_connections == 1024
    (tmp_path / "config.toml").write_text("http_max_body_mb = 8\n")
    monkeypatch.setenv("PROOFMESH_HTTP_MAX_CONNECTIONS", "7")
    settings = Settings.load(tmp_path / "config.toml")
    limits = HttpLimits.from_settings(settings)
    assert limits.max_body_bytes == 8 * MB and limits.max_connections == 7
    opts = limits.uvicorn_options()
    assert opts["limit_concurrency"] == 7 and opts["timeout_keep_alive"] == 75
    assert issubclass(opts["http"], HttpToolsProtocol)        # the guarded protocol (see below)
    assert HttpLimits.from_settings(settings, max_body_bytes=123).max_body_bytes == 123
    monkeypatch.setenv("PROOFMESH_HOME", str(tmp_path))       # no settings given: the home's
    assert HttpLimits.from_settings().max_body_bytes == 8 * MB
    with pytest.raises(ConfigError, match="positive"):
        HttpLimits(max_body_bytes=0)


# --------------------------------------------------------------------------- a real server
def _echo_app() -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        body = await request.body()          # buffers whatever it is given: BodyLimit must stop it
        return JSONResponse({"got": len(body)})

    return Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/ping", lambda r: JSONResponse({}))])


@pytest.fixture
def limited_server():
    """A uvicorn server on 127.0.0.1 in this process: the echo app behind a 4 MB BodyLimit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    limits = HttpLimits(max_body_bytes=4 * MB, max_connections=2)
    server = uvicorn.Server(uvicorn.Config(limits.wrap(_echo_app()), log_level="warning", lifespan="off",
                                           **limits.uvicorn_options()))
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    t.join(10)
    sock.close()


def test_a_real_server_refuses_big_bodies_without_holding_them(limited_server, http_probe):
    probe = http_probe(limited_server)
    status, _, body = probe.declared("/echo", 400 * MB)
    assert status == 413 and json.loads(body)["type"] == "BodyTooLarge"
    (status, _, body, sent), grew = probe.peak_rss_growth(os.getpid(), lambda: probe.chunked("/echo", 48 * MB))
    assert status == 413 and json.loads(body)["type"] == "BodyTooLarge"
    assert grew < 24 * MB, f"the server held {grew / MB:.1f} MB for a 48 MB body ({sent / MB:.0f} MB sent)"
    r = httpx.post(f"{limited_server}/echo", content=b"1" * (4 * MB - 1))
    assert r.status_code == 200 and r.json() == {"got": 4 * MB - 1}


def test_a_real_server_answers_503_past_its_connection_limit(limited_server):
    held = [socket.create_connection(("127.0.0.1", int(limited_server.rsplit(":", 1)[1]))) for _ in range(2)]
    try:
        time.sleep(0.2)     # let the server accept both
        assert httpx.get(f"{limited_server}/ping").status_code == 503
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    while httpx.get(f"{limited_server}/ping").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


# --------------------------------------------------------------------------- body deadline (408)
def test_a_body_dripped_past_the_deadline_gets_408_and_the_app_a_disconnect():
    """Driven message by message: the body's pieces come slower than the deadline allows in all."""
    app = Recorder()
    scope = {"type": "http", "path": "/x", "method": "POST", "headers": []}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0.15)                 # each piece well within any per-read timeout
        return {"type": "http.request", "body": b"x", "more_body": True}

    async def send(m: dict[str, Any]) -> None:
        sent.append(m)

    t0 = time.monotonic()
    asyncio.run(BodyLimit(app, 1000, body_timeout_s=0.5)(scope, receive, send))
    assert time.monotonic() - t0 < 1.5
    status, body = status_and_body(sent)
    err = json.loads(body)
    assert status == 408 and err["type"] == "BodyTimeout" and "0.5 s" in err["error"]
    assert "http_body_timeout_s" in err["fix"] and "PROOFMESH_HTTP_BODY_TIMEOUT_S" in err["fix"]
    assert (b"connection", b"close") in sent[0]["headers"]
    assert app.messages[-1] == {"type": "http.disconnect"} and len(sent) == 2   # the app's answer dropped


def _slow_app() -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"got": len(body)})

    async def slow(request: Request) -> JSONResponse:
        body = await request.body()
        await asyncio.sleep(2.5)                  # slow after its body arrived: never cut
        return JSONResponse({"got": len(body)})

    return Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/slow", slow, methods=["POST"])])


def test_a_real_server_answers_408_to_a_dripping_client_and_not_to_a_slow_app(http_probe):
    limits = HttpLimits(max_body_bytes=4 * MB, max_connections=8, body_timeout_s=2.0)
    with http_probe.serve(limits.wrap(_slow_app()), **limits.uvicorn_options()) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            status, headers, body, took = drip(s, b"x" * 100)      # one byte per 0.5 s
        assert status == 408 and json.loads(body)["type"] == "BodyTimeout", (status, body)
        assert 1.5 < took < 5, f"408 after {took:.1f} s, deadline 2 s"
        assert headers.get("connection") == "close"
        # a fast body to a slow route: the app's 2.5 s after the body are not counted
        r = httpx.post(f"{url}/slow", content=b"y" * 1000, timeout=10)
        assert r.status_code == 200 and r.json() == {"got": 1000}
        r = httpx.post(f"{url}/echo", content=b"z" * (4 * MB - 1), timeout=10)
        assert r.status_code == 200 and r.json() == {"got": 4 * MB - 1}


def test_the_body_deadline_comes_from_the_settings(monkeypatch, tmp_path):
    assert Settings().http_body_timeout_s == 60.0 and Settings().http_max_answer_mb == 64
    monkeypatch.setenv("PROOFMESH_HTTP_BODY_TIMEOUT_S", "7.5")
    limits = HttpLimits.from_settings(Settings.load(tmp_path / "config.toml"))
    assert limits.body_timeout_s == 7.5 and limits.wrap(Recorder()).body_timeout_s == 7.5
    with pytest.raises(ConfigError, match="positive"):
        HttpLimits(body_timeout_s=0)


# --------------------------------------------------------------------------- minimum rate (streamed paths)
def _timed_drive(limit: BodyLimit, piece: bytes, every_s: float, pieces: int, path: str = "/blobs"
                 ) -> tuple[list[dict[str, Any]], Recorder, float]:
    """Run ``limit`` for one request whose body comes as ``pieces`` pieces, one per ``every_s``."""
    app = Recorder()
    limit.app = app
    scope = {"type": "http", "path": path, "method": "PUT", "headers": []}
    sent: list[dict[str, Any]] = []
    left = [pieces]

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(every_s)
        left[0] -= 1
        return {"type": "http.request", "body": piece, "more_body": left[0] > 0}

    async def send(m: dict[str, Any]) -> None:
        sent.append(m)

    t0 = time.monotonic()
    asyncio.run(limit(scope, receive, send))
    return sent, app, time.monotonic() - t0


def test_a_streamed_path_is_held_to_the_minimum_rate_not_a_fixed_deadline():
    """``streamed`` paths (PUT /blobs): 0.5 s of grace plus 1 s per kB (8 kbit/s). A byte every
    0.1 s gets 408 BodyTooSlow just after the grace; 2 kB every 0.1 s (20 kB/s) runs 1.5 s, three
    times the grace, and is not cut, nor held to the 1,000-byte body limit; the same body on a
    path that is not streamed gets the fixed deadline."""
    refused: list[str] = []
    limit = BodyLimit(Recorder(), 1000, streamed=("/blobs",), body_timeout_s=0.5, min_rate_kbps=8,
                      on_refuse=refused.append)
    sent, app, took = _timed_drive(limit, b"x", 0.1, 100)
    status, body = status_and_body(sent)
    err = json.loads(body)
    assert status == 408 and err["type"] == "BodyTooSlow" and 0.45 < took < 1.2, (status, took)
    assert "0.5 s plus 1 s per 1 kB" in err["error"] and "http_min_rate_kbps = 8" in err["error"]
    assert "PROOFMESH_HTTP_MIN_RATE_KBPS" in err["fix"]
    assert app.messages[-1] == {"type": "http.disconnect"} and refused == ["body_too_slow"]

    sent, app, took = _timed_drive(limit, b"y" * 2000, 0.1, 15)
    assert status_and_body(sent) == (200, b"30000") and took > 1.4 and refused == ["body_too_slow"]

    sent, _, took = _timed_drive(BodyLimit(Recorder(), 10**6, body_timeout_s=0.5, min_rate_kbps=8,
                                           on_refuse=refused.append), b"y" * 2000, 0.1, 15, path="/x")
    assert status_and_body(sent)[0] == 408 and json.loads(status_and_body(sent)[1])["type"] == "BodyTimeout"
    assert refused == ["body_too_slow", "body_timeout"]


def test_every_refusal_is_reported_with_its_reason():
    refused: list[str] = []
    limit = BodyLimit(Recorder(), 1000, on_refuse=refused.append)
    drive(limit, [b"x" * 10], length=5000)
    drive(limit, [b"y" * 100] * 30)
    drive(limit, [b"z" * 100] * 3)                  # within the limit: not a refusal
    assert refused == ["body_too_large", "body_too_large"]


def test_the_minimum_rate_comes_from_the_settings(monkeypatch, tmp_path):
    assert Settings().http_min_rate_kbps == 1000.0 and HttpLimits().min_rate_kbps == 1000.0
    monkeypatch.setenv("PROOFMESH_HTTP_MIN_RATE_KBPS", "250")
    limits = HttpLimits.from_settings(Settings.load(tmp_path / "config.toml"), body_timeout_s=9)
    assert limits.min_rate_kbps == 250.0 and limits.upload_rate == MinRate(9, 250.0)
    assert limits.wrap(Recorder(), streamed=("/up",)).rate == MinRate(9, 250.0)
    assert MinRate(2, 8).allowed_s(3000) == 5.0           # 2 s + 3 kB at 1 kB/s
    (tmp_path / "config.toml").write_text("http_min_rate_kbps = 64\n")
    monkeypatch.delenv("PROOFMESH_HTTP_MIN_RATE_KBPS")
    assert HttpLimits.from_settings(Settings.load(tmp_path / "config.toml")).min_rate_kbps == 64.0
    for bad in (dict(min_rate_kbps=0), dict(min_rate_kbps=-1.0)):
        with pytest.raises(ConfigError, match="positive"):
            HttpLimits(**bad)
    with pytest.raises(ConfigError, match="http_min_rate_kbps"):
        MinRate(1.0, 0)


# --------------------------------------------------------------------------- no server without httptools
_WITHOUT_HTTPTOOLS = """
import sys
sys.modules["httptools"] = None          # what a missing httptools looks like to an import
from proofmesh.http_limits import HttpLimits, ServerDependencyMissing
from proofmesh.store.api import serve_blobs
from proofmesh.store.blobstore import BlobStore
for start in (lambda: HttpLimits().uvicorn_options(),
              lambda: serve_blobs(BlobStore(sys.argv[1])).__enter__()):
    try:
        start()
    except ServerDependencyMissing as exc:
        print("REFUSED", exc.message, "| FIX", exc.fix)
    else:
        print("STARTED")
"""


def test_servers_refuse_to_start_without_httptools(tmp_path):
    """uvicorn would fall back to h11, which has none of the guarded protocol's deadlines: every
    proofmesh server gets its uvicorn options from HttpLimits.uvicorn_options, which refuses."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _WITHOUT_HTTPTOOLS, str(tmp_path / "store")],
                         capture_output=True, text=True, timeout=120)
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and len(lines) == 2, (out.stdout, out.stderr)
    for line in lines:
        assert line.startswith("REFUSED") and "httptools is not installed" in line and "h11" in line, line
        assert "pip install 'httptools>=0.6'" in line


# --------------------------------------------------------------------------- bounded client reads
# proofmesh.http_reads against the HostilePeer of tests/conftest.py: a real socket server.
def test_an_answer_declared_over_the_cap_is_refused_from_its_header(hostile_peer):
    from proofmesh.http_reads import AnswerTooLarge, get_json

    hostile_peer.mode = "declared"
    t0 = time.monotonic()
    with pytest.raises(AnswerTooLarge) as info:
        get_json(hostile_peer.url + "/x", max_bytes=4 * MB, deadline_s=10)
    assert time.monotonic() - t0 < 2
    e = info.value
    assert e.url == hostile_peer.url + "/x" and "1,073,741,824 bytes" in e.message and "4 MB" in e.message
    assert "http_max_answer_mb" in e.fix and "PROOFMESH_HTTP_MAX_ANSWER_MB" in e.fix
    hostile_peer.mode, hostile_peer.good["/x"] = "good", {"ok": 1}
    assert get_json(hostile_peer.url + "/x", max_bytes=4 * MB, deadline_s=10) == {"ok": 1}


def test_a_flooding_answer_stops_at_the_cap_without_being_held(hostile_peer, http_probe):
    from proofmesh.http_reads import AnswerTooLarge, read_answer

    hostile_peer.mode = "flood"                   # chunked: no length to refuse up front
    def flood() -> BaseException:
        with pytest.raises(AnswerTooLarge) as info:
            read_answer("GET", hostile_peer.url + "/x", max_bytes=4 * MB, deadline_s=20)
        return info.value

    err, grew = http_probe.peak_rss_growth(os.getpid(), flood)
    assert err.size is not None and 4 * MB < err.size < 5 * MB
    assert grew < 48 * MB, f"the client held {grew / MB:.1f} MB of a 512 MB answer capped at 4 MB"
    hostile_peer.mode = "good"
    assert read_answer("GET", hostile_peer.url + "/x", max_bytes=4 * MB).json() == {}


def test_an_answer_nested_too_deep_is_bad_json_not_a_recursion_error(hostile_peer):
    from proofmesh.http_reads import PEER_ERRORS, get_json

    hostile_peer.mode = "deep"
    with pytest.raises(BadJSON, match="deeper") as info:
        get_json(hostile_peer.url + "/x", max_bytes=4 * MB)
    assert hostile_peer.url in info.value.message and isinstance(info.value, PEER_ERRORS)


@pytest.mark.parametrize("mode", ["trickle", "trickle_head"])
def test_a_trickling_answer_is_cut_at_the_total_deadline(hostile_peer, mode):
    """A byte every 0.2 s never trips a per-read timeout; the total deadline (1.5 s) holds, in the
    body and in the headers alike, and a pooled client is reused afterwards."""
    from proofmesh.http_reads import AnswerTimeout, get_json

    hostile_peer.mode = mode
    with httpx.Client(timeout=30) as client:
        t0 = time.monotonic()
        with pytest.raises(AnswerTimeout) as info:
            get_json(hostile_peer.url + "/x", deadline_s=1.5, client=client)
        took = time.monotonic() - t0
        assert 1.4 < took < 2.5, f"cut after {took:.2f} s"
        assert "1.5 s" in info.value.message and info.value.url == hostile_peer.url + "/x"
        hostile_peer.mode = "good"
        assert get_json(hostile_peer.url + "/x", deadline_s=1.5, client=client) == {}


def test_an_error_status_and_the_default_cap(hostile_peer, monkeypatch, tmp_path):
    from proofmesh.http_reads import AnswerStatus, max_answer_bytes

    monkeypatch.setenv("PROOFMESH_HOME", str(tmp_path))
    monkeypatch.setenv("PROOFMESH_HTTP_MAX_ANSWER_MB", "3")
    assert max_answer_bytes() == 3 * MB
    with pytest.raises(AnswerStatus, match="404"):
        from proofmesh.http_reads import Answer

        Answer("http://x/", 404, httpx.Headers(), b"nope", 0.0).raise_for_status()


def test_silent_connections_are_closed_and_dripped_headers_get_408(http_probe):
    """uvicorn arms its idle timer only after a first response and restarts it on every byte:
    a connection that says nothing, or sends its headers a byte at a time, held a connection
    slot for ever. The guarded protocol closes the first after the keep-alive timeout and
    answers 408 to the second once its headers are late."""
    limits = HttpLimits(max_body_bytes=4 * MB, max_connections=8, keep_alive_s=1.0, body_timeout_s=1.5)
    with http_probe.serve(limits.wrap(_slow_app()), **limits.uvicorn_options()) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            t0 = time.monotonic()
            assert s.recv(10) == b""                             # closed by the server
            assert time.monotonic() - t0 < 10
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            status, headers, body, took = drip(s, b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 100, 0.4)
        assert status == 408 and json.loads(body)["type"] == "HeadersTimeout", (status, body)
        assert 1.2 < took < 8 and headers.get("connection") == "close"
        r = httpx.post(f"{url}/echo", content=b"z" * 1000, timeout=10)   # a normal request is served
        assert r.status_code == 200 and r.json() == {"got": 1000}
