"""Keep-alive HTTP/1.1 connections to peers proofmesh does not control, for calls on a hot path.

The router calls inference nodes once per answer, and its HTTP client is part of what a
user waits for. httpx, through which :mod:`proofmesh.http_reads` reads every other peer,
spends ~0.9-1.2 ms of Python per request here (request and response models, the h11 state
machine, httpcore's pool, two writes per request) — as much as the node's own work.
This client keeps only what the router needs, with the same guarantees as ``http_reads``:

* **one write per request**: head and body leave in one ``sendall``, so the node wakes once;
* a **byte cap**: a declared ``Content-Length`` over it fails before the body is read, a
  streamed (chunked) body at the first chunk past it (:class:`~proofmesh.http_reads.AnswerTooLarge`);
* a **total deadline** from the request to the answer's last byte, connecting included
  (:class:`~proofmesh.http_reads.AnswerTimeout`): every blocking call gets what is left of it;
* the answer parsed by httptools (llhttp, the parser the node's own server uses), so chunked
  and keep-alive framing are handled by a tested parser, not by hand;
* answers as :class:`~proofmesh.http_reads.Answer`, so callers read status, headers, content and
  ``json()`` exactly as from ``http_reads.read_answer``.

A connection is reused only after an answer read whole that the peer allows to be kept
alive; one that a peer closed while idle is detected before reuse, and a request whose
reused connection closes before any byte of an answer is sent once more on a fresh one (what
httpx does too). Plain ``http://`` and ``https://`` (stdlib ``ssl``, default verification).
Thread-safe: a connection serves one request at a time.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from functools import lru_cache
from typing import Any, Mapping
from urllib.parse import urlencode, urlsplit

import httptools
import httpx
import orjson

from proofmesh.http_reads import Answer, AnswerTimeout, AnswerTooLarge, PeerAnswerError

__all__ = ["PeerPool", "PeerConnectionError"]

_Peer = tuple[str, str, int]          # scheme, host, port


class PeerConnectionError(PeerAnswerError):
    """No answer from the peer: the connection was refused, reset or closed before the answer
    was whole, or what came back is not HTTP."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}", url=url,
                         fix="the peer is down or misbehaving; try another (or check its endpoint)")


@lru_cache(maxsize=1024)
def _split(url: str) -> tuple[_Peer, str]:
    """((scheme, host, port), request target) of ``url``."""
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise PeerConnectionError(url, "not an http(s) URL")
    port = u.port or (443 if u.scheme == "https" else 80)
    return (u.scheme, u.hostname, port), (u.path or "/") + (f"?{u.query}" if u.query else "")


class _Reading:
    """httptools callbacks collecting one answer, within the byte cap."""

    __slots__ = ("limit", "headers", "body", "size", "declared", "done", "framed", "parser", "keep_alive")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.declared: int | None = None    # a Content-Length over the cap
        self.done = False
        self.framed: bool | None = None     # once the head is read: is the body's end marked in it?
        self.parser: Any = None
        self.keep_alive = False             # (llhttp answers this only until the message completes)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        if name.lower() == b"content-length" and value.strip().isdigit() and int(value) > self.limit:
            self.declared = int(value)

    def on_headers_complete(self) -> None:
        names = {k.lower() for k, _ in self.headers}
        self.framed = b"content-length" in names or b"transfer-encoding" in names

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size <= self.limit:
            self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True
        self.keep_alive = self.parser.should_keep_alive()


class PeerPool:
    """Keep-alive connections to any number of peers (idle ones kept up to
    ``max_idle_per_peer`` each). :meth:`request` sends one request and reads its answer whole."""

    def __init__(self, *, max_idle_per_peer: int = 8) -> None:
        self.max_idle_per_peer = max_idle_per_peer
        self._idle: dict[_Peer, list[socket.socket]] = {}
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None

    def request(self, method: str, url: str, *, max_bytes: int, deadline_s: float, content: bytes | None = None,
                json: Any = None, params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None) -> Answer:
        """Send ``method url`` (a ``content`` body, or ``json`` encoded with orjson) and read its
        answer whole within ``max_bytes`` and ``deadline_s``. Raises AnswerTooLarge,
        AnswerTimeout or :class:`PeerConnectionError`; the status is not checked."""
        if max_bytes <= 0 or deadline_s <= 0:
            raise ValueError(f"a request needs a positive cap and deadline, got {max_bytes} bytes, {deadline_s} s")
        peer, target = _split(url)
        if params:
            target += ("&" if "?" in target else "?") + urlencode(params)
        fields = {"host": peer[1] if peer[2] in (80, 443) else f"{peer[1]}:{peer[2]}",
                  "accept-encoding": "identity"}      # the cap counts the bytes as they arrive
        if json is not None:
            content = _json_bytes(json)
            fields["content-type"] = "application/json"
        fields.update({k.lower(): v for k, v in (headers or {}).items()})
        body = content or b""
        if body or method not in ("GET", "HEAD"):
            fields["content-length"] = str(len(body))
        head = "".join((f"{method} {target} HTTP/1.1\r\n", *(f"{k}: {v}\r\n" for k, v in fields.items()), "\r\n"))
        if head.count("\r\n") != len(fields) + 2 or "\n" in head.replace("\r\n", ""):
            raise ValueError(f"a header or the URL of a request to {url} contains a line break")
        data = head.encode("latin-1") + body
        t0 = time.monotonic()
        end = t0 + deadline_s
        sock, reused = self._connection(peer, url, end, deadline_s)
        try:
            try:
                return self._exchange(sock, peer, url, data, max_bytes, t0, end, deadline_s)
            except _ClosedBeforeAnswer:
                if not reused:
                    raise PeerConnectionError(url, "connection closed before any answer") from None
            # the peer closed a kept-alive connection as we reused it: once more on a fresh one
            sock.close()
            sock, _ = self._connection(peer, url, end, deadline_s, fresh=True)
            try:
                return self._exchange(sock, peer, url, data, max_bytes, t0, end, deadline_s)
            except _ClosedBeforeAnswer:
                raise PeerConnectionError(url, "connection closed before any answer") from None
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for socks in idle.values():
            for s in socks:
                s.close()

    # --- internals ------------------------------------------------------------------------
    def _connection(self, peer: _Peer, url: str, end: float, deadline_s: float, *,
                    fresh: bool = False) -> tuple[socket.socket, bool]:
        """(an open connection to ``peer``, whether it was kept from an earlier answer)."""
        while not fresh:
            with self._lock:
                socks = self._idle.get(peer)
                sock = socks.pop() if socks else None
            if sock is None:
                break
            if _still_open(sock):
                return sock, True
            sock.close()
        left = end - time.monotonic()
        if left <= 0:
            raise AnswerTimeout(url, deadline_s, 0)
        try:
            sock = socket.create_connection(peer[1:], timeout=left)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if peer[0] == "https":
                if self._tls is None:
                    self._tls = ssl.create_default_context()
                sock = self._tls.wrap_socket(sock, server_hostname=peer[1])
        except socket.timeout:
            raise AnswerTimeout(url, deadline_s, 0) from None
        except OSError as exc:
            raise PeerConnectionError(url, f"cannot connect ({exc.strerror or exc})") from None
        return sock, False

    def _exchange(self, sock: socket.socket, peer: _Peer, url: str, data: bytes, limit: int, t0: float,
                  end: float, deadline_s: float) -> Answer:
        reading = _Reading(limit)
        parser = reading.parser = httptools.HttpResponseParser(reading)
        got = 0
        try:
            sock.settimeout(max(end - time.monotonic(), 1e-3))
            sock.sendall(data)
            while not reading.done:
                left = end - time.monotonic()
                if left <= 0:
                    raise AnswerTimeout(url, deadline_s, reading.size)
                sock.settimeout(left)
                chunk = sock.recv(1 << 16)
                if not chunk:
                    if got == 0:
                        raise _ClosedBeforeAnswer
                    if reading.framed is False:      # a body that ends where the connection does
                        sock.close()
                        return self._answer(url, parser, reading, t0)
                    raise PeerConnectionError(url, f"connection closed after {got} bytes, before the answer was whole")
                got += len(chunk)
                parser.feed_data(chunk)
                if reading.declared is not None:
                    raise AnswerTooLarge(url, limit, reading.declared, declared=True)
                if reading.size > limit:
                    raise AnswerTooLarge(url, limit, reading.size)
        except socket.timeout:
            raise AnswerTimeout(url, deadline_s, reading.size) from None
        except httptools.HttpParserUpgrade:
            raise PeerConnectionError(url, "the peer switched protocols") from None
        except httptools.HttpParserError as exc:
            raise PeerConnectionError(url, f"not an HTTP answer ({exc})") from None
        except OSError as exc:       # reset, broken pipe, TLS failure, unreachable
            if got == 0 and isinstance(exc, (ConnectionResetError, BrokenPipeError)):
                raise _ClosedBeforeAnswer from None
            raise PeerConnectionError(url, f"connection failed ({exc.strerror or exc})") from None
        if reading.keep_alive:
            with self._lock:
                idle = self._idle.setdefault(peer, [])
                keep = len(idle) < self.max_idle_per_peer
                if keep:
                    idle.append(sock)
            if not keep:
                sock.close()
        else:
            sock.close()
        return self._answer(url, parser, reading, t0)

    @staticmethod
    def _answer(url: str, parser: Any, reading: _Reading, t0: float) -> Answer:
        return Answer(url, parser.get_status_code(), httpx.Headers(reading.headers), b"".join(reading.body),
                      time.monotonic() - t0)


def _json_bytes(value: Any) -> bytes:
    """``value`` as JSON: orjson (numpy arrays included), or the standard library for what
    orjson refuses (integers beyond 64 bits, e.g. a uint256 in wei)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        import json

        return json.dumps(value, separators=(",", ":")).encode()


class _ClosedBeforeAnswer(Exception):
    """The connection closed (or was reset) before one byte of the answer arrived."""


def _still_open(sock: socket.socket) -> bool:
    """False if an idle connection was closed by its peer (or has unread bytes: a peer that
    sent something unasked is not trusted with the next request). A TLS connection cannot be
    peeked at: it is tried, and a close before the answer sends the request once more."""
    if isinstance(sock, ssl.SSLSocket):
        return True
    try:
        sock.setblocking(False)
        sock.recv(1, socket.MSG_PEEK)
        return False           # closed (b"") or bytes nobody asked for
    except BlockingIOError:
        return True            # open and quiet
    except OSError:
        return False
    finally:
        sock.setblocking(True)
