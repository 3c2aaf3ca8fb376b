"""Bounded reads of an answer from an HTTP peer that proofmesh does not control.

A proofmesh client often talks to a peer it found on chain or was pointed at: an edge gateway
being verified, a node's endpoint probed by the explorer, a tool provider. ``httpx.get(...).json()``
reads that peer's answer whole, with no cap (a peer answering 10 GB exhausts the caller's
memory), its timeouts apply to each read, not to the whole answer (a peer sending a byte every
few seconds holds the caller for as long as it likes), and ``.json()`` lets a ``[[[[...`` flood
escape as ``RecursionError``. This module reads such an answer with:

* a **byte cap**: a ``Content-Length`` over it fails before the body is read; otherwise the body
  is streamed (``client.stream``/``iter_bytes``) and reading stops at the first chunk past the
  cap, so no more than the cap plus one chunk is ever held (:class:`AnswerTooLarge`);
* a **total deadline** from the request to the answer's last byte, connecting, the headers and
  every read included (:class:`AnswerTimeout`);
* JSON parsed with :func:`proofmesh.http_limits.parse_json` (:class:`~proofmesh.http_limits.BadJSON`).

A transfer whose size is not bounded by a small cap (a multi-GB blob) cannot have one fixed
deadline; :func:`rated_stream` streams it under a :class:`~proofmesh.http_limits.MinRate`
instead — a grace period plus one second per ``http_min_rate_kbps`` kilobits received, enforced
over the whole transfer by the same watchdog (:class:`TransferTooSlow`).

The default cap is ``http_max_answer_mb`` (settings of ``PROOFMESH_HOME``; 64 MB, room for the
largest legitimate answer, an inference answer for a big batch). A call site whose answer is
known to be small (a health check, a beacon) passes a smaller one.

Callers that keep going when a peer misbehaves catch :data:`PEER_ERRORS`.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from proofmesh.errors import ProofmeshError
from proofmesh.http_limits import MB, BadJSON, MinRate, parse_json

__all__ = ["DEFAULT_MAX_ANSWER_MB", "PeerAnswerError", "AnswerTooLarge", "AnswerTimeout", "AnswerStatus", "Answer",
           "TransferTooSlow", "PEER_ERRORS", "max_answer_bytes", "read_answer", "get_json", "RatedStream",
           "rated_stream", "min_rate_kbps"]

DEFAULT_MAX_ANSWER_MB = 64   # Settings.http_max_answer_mb
_RAISE_HINT = "raise it with http_max_answer_mb in <home>/config.toml or PROOFMESH_HTTP_MAX_ANSWER_MB"


class PeerAnswerError(ProofmeshError):
    """A peer's answer that proofmesh refused to read or use (too large, too slow, an error status)."""

    def __init__(self, message: str, *, url: str, fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.url = url


class AnswerTooLarge(PeerAnswerError):
    """An answer over the byte cap: declared by its ``Content-Length`` or grown past it while read."""

    def __init__(self, url: str, limit: int, size: int | None = None, *, declared: bool = False) -> None:
        said = (f"declares {size:,} bytes" if declared else f"passed {size:,} bytes" if size is not None
                else "is larger")
        super().__init__(
            f"answer from {url} {said}, over this client's cap of {limit:,} bytes ({limit / MB:g} MB); "
            f"stopped reading it",
            url=url,
            fix=f"if this peer's answers are legitimately that large, {_RAISE_HINT}; otherwise use another peer")
        self.limit = limit
        self.size = size


class AnswerTimeout(PeerAnswerError):
    """An answer that did not arrive whole within the total deadline (a slow or trickling peer)."""

    def __init__(self, url: str, deadline_s: float, received: int) -> None:
        super().__init__(
            f"answer from {url} did not arrive within {deadline_s:g} s ({received:,} bytes of it had); "
            f"stopped waiting",
            url=url,
            fix="the peer is slow or holding the connection open; retry later or use another peer "
                "(the deadline is the caller's timeout argument)")
        self.deadline_s = deadline_s
        self.received = received


class TransferTooSlow(AnswerTimeout):
    """A transfer that fell below its :class:`~proofmesh.http_limits.MinRate`: it had taken longer
    than the grace plus the time its bytes so far allow."""

    def __init__(self, url: str, rule: MinRate, received: int, elapsed_s: float) -> None:
        PeerAnswerError.__init__(
            self,
            f"{url} timed out: {received:,} bytes in {elapsed_s:.1f} s, under the minimum rate (a transfer "
            f"gets {rule.describe()}); stopped reading it",
            url=url,
            fix="the peer is too slow or stalls on purpose: use another peer; on a slow link lower "
                "http_min_rate_kbps in <home>/config.toml or PROOFMESH_HTTP_MIN_RATE_KBPS")
        self.deadline_s = rule.allowed_s(received)
        self.received = received
        self.elapsed_s = elapsed_s
        self.rule = rule


class AnswerStatus(PeerAnswerError):
    """A peer answered with an HTTP error status (4xx or 5xx)."""

    def __init__(self, url: str, status_code: int, detail: str) -> None:
        super().__init__(f"{url} answered HTTP {status_code}: {detail}", url=url,
                         fix="check the URL and the peer's state")
        self.status_code = status_code


# What a caller that survives a misbehaving peer catches: transport failures (refused, reset,
# per-phase timeouts), the refusals above, and an answer that is not JSON.
PEER_ERRORS: tuple[type[BaseException], ...] = (httpx.HTTPError, PeerAnswerError, BadJSON)


@dataclass(frozen=True)
class Answer:
    """A peer's whole answer, read within the cap and the deadline."""

    url: str
    status_code: int
    headers: httpx.Headers
    content: bytes
    elapsed_s: float

    @property
    def excerpt(self) -> str:
        """The body's first 200 bytes as text, to quote in an error message."""
        return self.content[:200].decode("utf-8", "replace")

    def raise_for_status(self) -> "Answer":
        """``self``, or :class:`AnswerStatus` for a 4xx/5xx (quoting :attr:`excerpt`)."""
        if self.status_code >= 400:
            raise AnswerStatus(self.url, self.status_code, self.excerpt)
        return self

    def json(self) -> Any:
        """The body as JSON; :class:`BadJSON` if it is not JSON or nests too deep."""
        return parse_json(self.content, what=f"answer from {self.url}",
                          fix="the peer answered something other than JSON; use another peer")


def min_rate_kbps(settings: Any = None) -> float:
    """The default minimum rate: ``http_min_rate_kbps`` of ``settings`` (None: the settings of
    ``PROOFMESH_HOME`` or ``~/.proofmesh``, env first)."""
    if settings is None:
        from proofmesh.config import Home

        settings = Home.resolve().settings
    return float(settings.http_min_rate_kbps)


def max_answer_bytes(settings: Any = None) -> int:
    """The default byte cap: ``http_max_answer_mb`` of ``settings`` (None: the settings of
    ``PROOFMESH_HOME`` or ``~/.proofmesh``, env first)."""
    if settings is None:
        from proofmesh.config import Home

        settings = Home.resolve().settings
    return int(settings.http_max_answer_mb) * MB


class _Deadlines:
    """One daemon thread that fires every pending read's deadline, soonest first.

    A ``threading.Timer`` per read started a thread per call: +0.3 ms on a router's every
    request (measured against a plain ``httpx`` GET on 127.0.0.1: 0.84 vs 0.47 ms). A
    cancelled watchdog stays in the heap until its time comes and is skipped then."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)   # the thread and lock do not survive a fork

    def _reset(self) -> None:
        self._heap: list[tuple[float, int, "_Watchdog"]] = []
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, when: float, dog: "_Watchdog") -> None:
        with self._cv:
            heapq.heappush(self._heap, (when, next(self._seq), dog))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="proofmesh-read-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is dog:
                self._cv.notify()             # the new deadline is the soonest: wake up earlier

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cv.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                _, _, dog = heapq.heappop(self._heap)
            dog._fire()


_DEADLINES = _Deadlines()


class _Watchdog:
    """Shuts the connection's socket down when the deadline passes.

    httpx's timeouts are per read and fixed when the request starts, so a peer sending a byte
    before each read timeout (the headers included: h11 reads them in pieces) never trips one.
    ``shutdown`` from this timer thread makes the blocked ``recv`` return at once, whatever
    phase the request is in; httpx then fails the read and drops the connection from its pool.
    The socket comes from httpcore's trace hook when a connection is opened, or from the
    answer's ``network_stream`` when a pooled one is reused (then the headers' wait is bounded
    by the read timeout, itself capped at the deadline)."""

    def __init__(self, deadline_s: float) -> None:
        self.fired = False
        self._cancelled = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self.deadline = time.monotonic() + deadline_s
        _DEADLINES.add(self.deadline, self)

    def extend(self, until: float) -> None:
        """Move the deadline to ``until`` (a ``time.monotonic()`` instant) if that is later. Just
        an attribute: when the old deadline comes, :meth:`_fire` re-arms for the new one, so a
        transfer extending it on every chunk costs no heap operation per chunk."""
        if until > self.deadline:
            self.deadline = until

    def attach(self, stream: Any) -> None:
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is None:
            return
        with self._lock:
            self._sock = sock
            fired = self.fired
        if fired:
            self._shutdown(sock)

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            self.attach(info.get("return_value"))

    def _fire(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            if time.monotonic() < self.deadline:      # extended meanwhile
                rearm = True
            else:
                rearm = False
                self.fired = True
                sock = self._sock
        if rearm:
            _DEADLINES.add(self.deadline, self)
            return
        if sock is not None:
            self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:
            # the plain socket's method: a TLS socket's own shutdown() would touch its SSL state
            # from this thread while the caller's thread is inside it
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass   # already closed

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True


def read_answer(method: str, url: str, *, max_bytes: int | None = None, deadline_s: float = 30.0,
                client: httpx.Client | None = None, **request: Any) -> Answer:
    """Send one request and read its answer whole, within ``max_bytes`` and ``deadline_s``.

    ``client``: an ``httpx.Client`` to reuse (its pool; its own timeouts are replaced, for this
    call, by ones capped at the deadline); None opens and closes one. ``request``: keyword
    arguments for ``client.stream`` (``json``, ``content``, ``headers``, ``params``...).

    Raises :class:`AnswerTooLarge` past the cap (counted on the decoded body), :class:`AnswerTimeout`
    past the deadline, and ``httpx.HTTPError`` for a transport failure before it (refused,
    reset). The status is not checked: see :meth:`Answer.raise_for_status`.
    """
    limit = max_answer_bytes() if max_bytes is None else max_bytes
    if limit <= 0 or deadline_s <= 0:
        raise ValueError(f"read_answer needs a positive cap and deadline, got {limit} bytes, {deadline_s} s")
    t0 = time.monotonic()
    dog = _Watchdog(deadline_s)
    received = 0
    try:
        with _watched_stream(method, url, client, dog, httpx.Timeout(deadline_s), request) as resp:
            declared = resp.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise AnswerTooLarge(url, limit, int(declared), declared=True)
            body = bytearray()
            for chunk in resp.iter_bytes():
                received += len(chunk)
                if received > limit:
                    raise AnswerTooLarge(url, limit, received)
                body += chunk
                if time.monotonic() - t0 > deadline_s:
                    raise AnswerTimeout(url, deadline_s, received)
            return Answer(url, resp.status_code, resp.headers, bytes(body), time.monotonic() - t0)
    except httpx.HTTPError:
        # the watchdog's shutdown surfaces as a read error or a closed connection
        if dog.fired or time.monotonic() - t0 >= deadline_s:
            raise AnswerTimeout(url, deadline_s, received) from None
        raise


@contextmanager
def _watched_stream(method: str, url: str, client: httpx.Client | None, dog: _Watchdog, timeout: httpx.Timeout,
                    request: dict[str, Any]) -> Iterator[httpx.Response]:
    """``client.stream(method, url, **request)`` with ``dog`` watching its socket, asking for an
    uncompressed answer (caps and rates count the bytes as they arrive, and one compressed read
    could decode to far more than a cap at once); ``client`` None opens and closes one. The
    watchdog is cancelled on the way out; its ``fired`` stays readable."""
    own = client is None
    http = client if client is not None else httpx.Client()
    headers = dict(request.pop("headers", None) or {})
    headers.setdefault("accept-encoding", "identity")
    extensions = dict(request.pop("extensions", None) or {})
    extensions["trace"] = dog.trace
    try:
        with http.stream(method, url, headers=headers, timeout=timeout, extensions=extensions, **request) as resp:
            dog.attach(resp.extensions.get("network_stream"))
            yield resp
    finally:
        dog.cancel()
        if own:
            http.close()


def get_json(url: str, *, max_bytes: int | None = None, deadline_s: float = 30.0,
             client: httpx.Client | None = None, **request: Any) -> Any:
    """``GET url`` as JSON, within the cap and the deadline; :class:`AnswerStatus` for a 4xx/5xx.
    See :func:`read_answer` for the arguments and the other errors."""
    return read_answer("GET", url, max_bytes=max_bytes, deadline_s=deadline_s, client=client,
                       **request).raise_for_status().json()


class RatedStream:
    """An answer being streamed under a :class:`~proofmesh.http_limits.MinRate` (see
    :func:`rated_stream`): ``response`` for the status and headers, :meth:`iter_bytes` for the
    body."""

    def __init__(self, url: str, response: httpx.Response, rule: MinRate, dog: _Watchdog, t0: float) -> None:
        self.url = url
        self.response = response
        self.rule = rule
        self.received = 0
        self._dog = dog
        self._t0 = t0

    def too_slow(self) -> TransferTooSlow:
        return TransferTooSlow(self.url, self.rule, self.received, time.monotonic() - self._t0)

    def iter_bytes(self) -> Iterator[bytes]:
        """The body, chunk by chunk; raises :class:`TransferTooSlow` once the transfer has taken
        longer than its bytes so far allow (checked at each chunk, and by the watchdog, which
        shuts the socket down, while a read waits)."""
        rule, dog, t0 = self.rule, self._dog, self._t0
        try:
            for chunk in self.response.iter_bytes():
                self.received += len(chunk)
                allowed = t0 + rule.allowed_s(self.received)
                if time.monotonic() > allowed:
                    raise self.too_slow()
                dog.extend(allowed)
                yield chunk
        except httpx.HTTPError:
            if dog.fired:
                raise self.too_slow() from None
            raise


@contextmanager
def rated_stream(method: str, url: str, *, rule: MinRate, client: httpx.Client | None = None,
                 read_timeout_s: float | None = None, **request: Any) -> Iterator[RatedStream]:
    """Send one request and stream its answer under ``rule``: the request may take
    ``rule.grace_s`` to its first body byte, then one more second per ``rule.kbps`` kilobits
    received, over the whole transfer (a peer sending a byte before each read timeout is cut
    shortly after the grace, whatever length it declared; a GB answer at a normal speed is not).

    ``client``: an ``httpx.Client`` to reuse (None opens and closes one); ``read_timeout_s`` caps
    each read on top (default: the grace); ``request``: keyword arguments for ``client.stream``.
    Raises :class:`TransferTooSlow` past the rule (here or from :meth:`RatedStream.iter_bytes`),
    ``httpx.HTTPError`` for a transport failure before it. The status is not checked, nor any
    byte cap: the caller decides from ``response`` and counts what it keeps.
    """
    t0 = time.monotonic()
    dog = _Watchdog(rule.grace_s)
    timeout = httpx.Timeout(read_timeout_s if read_timeout_s is not None else rule.grace_s)
    stream: RatedStream | None = None
    try:
        with _watched_stream(method, url, client, dog, timeout, request) as resp:
            stream = RatedStream(url, resp, rule, dog, t0)
            yield stream
    except httpx.HTTPError:
        # the watchdog's shutdown surfaces as a read error or a closed connection
        if dog.fired:
            raise TransferTooSlow(url, rule, stream.received if stream else 0, time.monotonic() - t0) from None
        raise
