"""Serve an :class:`EmbeddedChain`'s JSON-RPC over HTTP on 127.0.0.1.

The process that owns the embedded chain (the node daemon, or a test) runs this so
that every other process — CLI, workers, devices — reaches the same chain through
the ordinary ``rpc`` path. It uses the standard library's threading HTTP server:
requests are serialised by the chain's own lock anyway, and it starts in
milliseconds. The daemon mounts :func:`rpc_router` into its FastAPI app instead.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from proofmesh.chain.embedded import EmbeddedChain
from proofmesh.errors import InputError
from proofmesh.http_limits import BadJSON, BodyTimeout, BodyTooLarge, HttpLimits, error_json, parse_json

# Seconds a connection may take to send its request line, headers and each read of its body:
# a client that opens a connection and sends nothing gives its thread back. A socket timeout is
# per read, so the body also has a total deadline (HttpLimits.body_timeout_s, see _read_body):
# a client dripping a byte every few seconds never trips a per-read timeout.
READ_TIMEOUT_S = 30
_PIECE = 64 * 1024


class _BodyDeadline(Exception):
    """The body did not arrive in time; ``received`` bytes of it had."""

    def __init__(self, received: int) -> None:
        super().__init__(received)
        self.received = received


def _read_body(rfile: Any, sock: socket.socket, length: int, timeout_s: float) -> bytes:
    """Read exactly ``length`` bytes of body within ``timeout_s`` seconds in all.

    ``rfile.read(length)`` would loop on the socket with a fresh per-read timeout each time; here
    every read gets only what is left of the deadline (and at most READ_TIMEOUT_S), and
    ``read1`` returns after one read of the socket, so the total is bounded. Raises
    :class:`_BodyDeadline` past the deadline, ``OSError`` if the client goes away.
    """
    deadline = time.monotonic() + timeout_s
    parts: list[bytes] = []
    got = 0
    try:
        while got < length:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _BodyDeadline(got)
            sock.settimeout(min(left, READ_TIMEOUT_S))
            try:
                piece = rfile.read1(min(length - got, _PIECE))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise _BodyDeadline(got) from None
                raise
            if not piece:
                raise ConnectionResetError("client closed the connection before sending its body")
            parts.append(piece)
            got += len(piece)
    finally:
        sock.settimeout(READ_TIMEOUT_S)
    return b"".join(parts)


def _answer(chain: EmbeddedChain, payload: Any) -> Any:
    """The JSON-RPC answer to a parsed body: one call or a batch of calls."""
    if isinstance(payload, list):
        return [_answer_one(chain, r) for r in payload] if payload else _INVALID
    return _answer_one(chain, payload)


_INVALID = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "invalid request"}}


def _answer_one(chain: EmbeddedChain, call: Any) -> Any:
    # a batch element that is not a call object (a number, a nested list) is an invalid
    # request, not a server error
    if not isinstance(call, dict) or not isinstance(call.get("method"), str):
        return _INVALID
    return chain.handle(call)


class LengthRequired(InputError):
    """A POST whose Content-Length is missing (answered 411) or not a byte count (400)."""


def parse_error(exc: BadJSON) -> dict[str, Any]:
    """The JSON-RPC answer to a body that is not JSON (or nests too deep): code -32700."""
    return {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": f"parse error: {exc.message}"}}


class _LimitedServer(ThreadingHTTPServer):
    """A threading HTTP server holding at most ``max_connections`` connections (a thread each);
    one more is answered 503 at once and closed, instead of starting another thread."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, max_connections: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.settimeout(1)
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                                b"Content-Length: 19\r\nConnection: close\r\n\r\nService Unavailable")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class RPCServer:
    """A background HTTP JSON-RPC server for one embedded chain.

    Limits (:class:`proofmesh.http_limits.HttpLimits`, from the settings of ``PROOFMESH_HOME``
    unless given): a body over ``max_body_bytes`` gets 413 before any of it is read, a POST
    without a ``Content-Length`` 411 (this server does not take chunked bodies), an invalid one
    400, a body not received within ``body_timeout_s`` in all 408; past ``max_connections``
    connections 503.
    """

    def __init__(self, chain: EmbeddedChain, host: str = "127.0.0.1", port: int = 0, publish: bool = True,
                 *, limits: HttpLimits | None = None) -> None:
        self.chain = chain
        self.limits = limits or HttpLimits.from_settings()
        max_body = self.limits.max_body_bytes
        body_timeout_s = self.limits.body_timeout_s

        class Handler(BaseHTTPRequestHandler):
            timeout = READ_TIMEOUT_S

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = self._length()
                if length is None:
                    return
                try:
                    payload = parse_json(_read_body(self.rfile, self.connection, length, body_timeout_s))
                except BadJSON as exc:
                    return self._reply(400, json.dumps(parse_error(exc)).encode())
                except _BodyDeadline as exc:
                    return self._reply(408, error_json(BodyTimeout(body_timeout_s, exc.received)))
                except OSError:   # the client went away or stalled past READ_TIMEOUT_S
                    self.close_connection = True
                    return
                self._reply(200, json.dumps(_answer(chain, payload)).encode())

            def _length(self) -> int | None:
                """The declared body length, or None once a 411/400/413 has been answered:
                nothing of the body is read before its size is known to be within the limit."""
                raw = self.headers.get("Content-Length")
                if raw is None:
                    self._reply(411, error_json(LengthRequired(
                        "a JSON-RPC POST needs a Content-Length header",
                        fix="send the body with its Content-Length (this server takes no chunked bodies)")))
                    return None
                try:
                    length = int(raw)
                    if length < 0:
                        raise ValueError(raw)
                except ValueError:
                    self._reply(400, error_json(LengthRequired(f"Content-Length {raw!r} is not a byte count",
                                                               fix="send a non-negative integer Content-Length")))
                    return None
                if length > max_body:
                    self._reply(413, error_json(BodyTooLarge(max_body, length)))
                    return None
                return length

            def _reply(self, status: int, body: bytes) -> None:
                if status >= 400:
                    # the unread body (if any) must not be taken for the next request
                    self.close_connection = True
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

        self.httpd = _LimitedServer((host, port), Handler, self.limits.max_connections)
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="proofmesh-rpc", daemon=True)
        self._publish = publish

    def start(self) -> "RPCServer":
        self._thread.start()
        if self._publish:
            self.chain.set_rpc_url(self.url)
        return self

    def stop(self) -> None:
        if self._publish:
            self.chain.set_rpc_url(None)
        self.httpd.shutdown()
        self.httpd.server_close()


def rpc_router(chain: EmbeddedChain) -> APIRouter:
    """A FastAPI router answering JSON-RPC at ``POST /rpc``. Its body size is bounded by the
    app's :class:`proofmesh.http_limits.BodyLimit` (the node daemon has one)."""
    router = APIRouter()

    @router.post("/rpc")
    async def rpc(request: Request) -> Any:
        import anyio

        try:
            payload = parse_json(await request.body())
        except BadJSON as exc:
            return JSONResponse(parse_error(exc), status_code=400)
        return await anyio.to_thread.run_sync(_answer, chain, payload)

    return router
