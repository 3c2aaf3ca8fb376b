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
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from proofmesh.config import Settings
from proofmesh.errors import ConfigError
from proofmesh.http_limits import MB, BadJSON, BodyLimit, HttpLimits, parse_json


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
    assert limits.uvicorn_options() == {"limit_concurrency": 7, "timeout_keep_alive": 75}
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
