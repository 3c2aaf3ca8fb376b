"""Limits on what an HTTP peer may send a proofmesh server.

Every proofmesh server faces the network: a node's daemon, the edge gateway, a tool
provider, a blob server, the embedded chain's JSON-RPC. Without limits one client could
stream a 400 MB body that the server buffers whole (measured on the inference node: RSS
+1.2 GB for one request), or hold thousands of connections open. This module holds:

* :class:`HttpLimits` — the limits of one server: the largest request body, the most
  connections at once (uvicorn answers 503 past it) and how long an idle keep-alive
  connection stays open. Defaults come from the home's settings (``http_max_body_mb``,
  ``http_max_connections``; ``PROOFMESH_<NAME>`` or ``<home>/config.toml``), and each
  server's constructor can override them;
* :class:`BodyLimit` — ASGI middleware answering **413** for a body over the limit, whether
  its ``Content-Length`` says so up front or a chunked body grows past it while streaming
  (the body is never buffered whole), and **408** for a body that takes longer than
  ``http_body_timeout_s`` in all to arrive (uvicorn has no such timeout: a client dripping its
  body a byte every few seconds would hold a connection slot for as long as it liked). A
  *streamed* route (the blob store's ``PUT /blobs``, up to GBs) gets :class:`MinRate` instead:
  ``http_body_timeout_s`` plus one second per ``http_min_rate_kbps`` kilobits received;
* :class:`MinRate` — the minimum-throughput rule for transfers of any size, shared with the
  client side (:func:`proofmesh.http_reads.rated_stream`, the blob fetch);
* :func:`guarded_base` — the httptools protocol every proofmesh uvicorn server runs (and the one
  check that refuses to start a server without httptools: uvicorn's h11 fallback is unguarded);
* :func:`parse_json` — ``json.loads`` for a request body, turning a body that is not JSON or
  nests deeper than the parser allows (a ``RecursionError``) into :class:`BadJSON`, so a server
  answers 4xx instead of 500.

The other direction, a proofmesh *client* reading the answer of a peer it does not control, is
:mod:`proofmesh.http_reads`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from proofmesh.errors import ConfigError, InputError, NotAvailableError, ProofmeshError

__all__ = ["MB", "DEFAULT_MAX_BODY_MB", "DEFAULT_MAX_CONNECTIONS", "DEFAULT_BODY_TIMEOUT_S", "KEEP_ALIVE_S",
           "DEFAULT_MIN_RATE_KBPS", "REFUSALS", "MinRate", "HttpLimits", "BodyLimit", "BodyTooLarge", "BodyTimeout",
           "BodyTooSlow", "BadJSON", "parse_json", "error_json", "too_large", "body_timed_out", "guarded_base",
           "guarded_protocol", "HeadersTimeout", "ServerDependencyMissing"]

MB = 1024 * 1024
DEFAULT_MAX_BODY_MB = 64            # Settings.http_max_body_mb
DEFAULT_MAX_CONNECTIONS = 1024      # Settings.http_max_connections
# Settings.http_body_timeout_s. A legitimate body arrives at network speed: 64 MB (the body
# limit) at 10 Mbit/s takes ~55 s, so one minute does not cut a real client, and a client
# dripping its body holds a connection slot for at most that long.
DEFAULT_BODY_TIMEOUT_S = 60.0
# Idle keep-alive connections are closed after this long. Longer than clients keep pooled
# connections idle between calls (httpx: 5 s; the inference router polls less often), so a
# pooled connection is not closed under a client, and short enough that idle ones do not pile
# up against the connection limit (75 s is nginx's default).
KEEP_ALIVE_S = 75
# Settings.http_min_rate_kbps: the slowest average rate (kilobits per second, after the grace
# period) a transfer of unbounded size may run at. 1 Mbit/s lets a slow home uplink through (a
# 4 GB model then takes ~9 h) while a peer that drips bytes to hold a slot is cut once the grace
# period is over, whatever size it declared.
DEFAULT_MIN_RATE_KBPS = 1000.0
# Why a request was refused before a route saw it whole: the ``reason`` an ``on_refuse`` callback
# gets (the node daemon counts them in /metrics).
REFUSALS = ("body_too_large", "body_timeout", "body_too_slow", "headers_timeout")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
OnRefuse = Callable[[str], None]   # told one of REFUSALS each time a request is refused


class BodyTooLarge(InputError):
    """A request body over the server's limit (answered with HTTP 413)."""

    def __init__(self, limit: int, size: int | None = None) -> None:
        said = f"of {size:,} bytes" if size is not None else f"of more than {limit:,} bytes"
        super().__init__(
            f"request body {said} is over this server's limit of {limit:,} bytes ({limit / MB:g} MB)",
            fix=f"send at most {limit:,} bytes; the server's operator can raise the limit with "
                f"http_max_body_mb in <home>/config.toml or PROOFMESH_HTTP_MAX_BODY_MB")
        self.limit = limit
        self.size = size


class BodyTimeout(InputError):
    """A request body that took longer than the server's deadline to arrive (HTTP 408)."""

    def __init__(self, timeout_s: float, received: int) -> None:
        super().__init__(
            f"request body took longer than this server's {timeout_s:g} s to arrive "
            f"({received:,} bytes received)",
            fix=f"send the body within {timeout_s:g} s; the server's operator can raise the deadline with "
                f"http_body_timeout_s in <home>/config.toml or PROOFMESH_HTTP_BODY_TIMEOUT_S")
        self.timeout_s = timeout_s
        self.received = received


class BodyTooSlow(BodyTimeout):
    """A streamed request body (an upload) that arrived slower than the server's :class:`MinRate`
    allows (HTTP 408)."""

    def __init__(self, rule: "MinRate", received: int, waited_s: float) -> None:
        InputError.__init__(
            self,
            f"request body arrived too slowly: {received:,} bytes in {waited_s:.1f} s, under this server's "
            f"minimum rate ({rule.describe()})",
            fix=f"send at least {rule.kbps:g} kbit/s on average; the server's operator can lower "
                f"http_min_rate_kbps or raise http_body_timeout_s (the grace) in <home>/config.toml or "
                f"PROOFMESH_HTTP_MIN_RATE_KBPS / PROOFMESH_HTTP_BODY_TIMEOUT_S")
        self.timeout_s = rule.allowed_s(received)
        self.received = received
        self.rule = rule


class BadJSON(InputError):
    """A body (a request's, or a peer's answer) that is not JSON, or nests deeper than the JSON
    parser allows."""


def error_json(exc: ProofmeshError) -> bytes:
    """The project's error shape for an HTTP answer: ``{"error", "fix", "type"}``."""
    return json.dumps({"error": exc.message, "fix": exc.fix, "type": type(exc).__name__}).encode()


def parse_json(body: bytes | str, *, what: str = "request body", fix: str | None = None) -> Any:
    """``json.loads(body)``, raising :class:`BadJSON` for anything that is not a JSON document.

    A ``RecursionError`` is caught here because the C parser recurses once per ``[`` or ``{``:
    a ~100 KB body of ``[[[[...`` exceeds the recursion limit (12,288, set in
    :mod:`proofmesh`), and most handlers only catch ``ValueError``, so it became a 500.
    ``what`` names the body in the message (a client passes ``"answer from <url>"``) and ``fix``
    replaces the hint (whoever sent the body is not always the one who can fix it).
    """
    try:
        return json.loads(body)
    except RecursionError:
        raise BadJSON(f"{what} nests JSON arrays/objects deeper than the parser allows",
                      fix=fix or "send a JSON document nested at most a few hundred levels deep") from None
    except ValueError as exc:   # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadJSON(f"{what} is not JSON: {exc}", fix=fix or "send a UTF-8 JSON document") from None


@dataclass(frozen=True)
class MinRate:
    """A minimum-throughput rule for a transfer of any size (a multi-GB blob, an upload).

    A transfer may take ``grace_s`` plus one second for every ``kbps`` kilobits it has delivered
    so far: at any moment, ``elapsed <= grace_s + received / bytes_per_s``. So a transfer that has
    run at ``kbps`` or faster on average (after the grace) is never cut — a stall is paid for by
    the time it banked earlier — and one of ``size`` bytes is over within
    ``grace_s + size / bytes_per_s`` at most. A peer that drips bytes is cut shortly after
    ``grace_s``, whatever size it declared: a deadline of ``grace_s + declared / rate`` fixed up
    front would let a peer declaring 16 GB and sending a byte a minute hold the other side for
    ~36 h at 1 Mbit/s. (Apache's ``mod_reqtimeout`` ``MinRate`` works the same way.)"""

    grace_s: float
    kbps: float = DEFAULT_MIN_RATE_KBPS

    def __post_init__(self) -> None:
        if self.grace_s <= 0 or self.kbps <= 0:
            raise ConfigError(f"a minimum rate needs a positive grace and rate, got {self}",
                              fix="set http_min_rate_kbps (and the timeout used as its grace) to positive numbers")

    @property
    def bytes_per_s(self) -> float:
        return self.kbps * 125.0          # 1 kbit = 1,000 bits = 125 bytes

    def allowed_s(self, received: int) -> float:
        """Seconds the transfer may have taken once ``received`` bytes have arrived."""
        return self.grace_s + received / self.bytes_per_s

    def describe(self) -> str:
        return (f"{self.grace_s:g} s plus 1 s per {self.bytes_per_s / 1000:g} kB received, "
                f"i.e. http_min_rate_kbps = {self.kbps:g}")


@dataclass(frozen=True)
class HttpLimits:
    """What a peer may send one server: body size, time to send it, connections at once, idle
    keep-alive."""

    max_body_bytes: int = DEFAULT_MAX_BODY_MB * MB
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    keep_alive_s: float = KEEP_ALIVE_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    min_rate_kbps: float = DEFAULT_MIN_RATE_KBPS

    def __post_init__(self) -> None:
        if (self.max_body_bytes <= 0 or self.max_connections <= 0 or self.keep_alive_s <= 0
                or self.body_timeout_s <= 0 or self.min_rate_kbps <= 0):
            raise ConfigError(f"HTTP limits must be positive, got {self}",
                              fix="set http_max_body_mb, http_max_connections, http_body_timeout_s and "
                                  "http_min_rate_kbps to positive numbers")

    @property
    def upload_rate(self) -> MinRate:
        """The rule for streamed uploads: ``body_timeout_s`` of grace, then ``min_rate_kbps``."""
        return MinRate(self.body_timeout_s, self.min_rate_kbps)

    @classmethod
    def from_settings(cls, settings: Any = None, *, max_body_bytes: int | None = None,
                      max_connections: int | None = None, keep_alive_s: float | None = None,
                      body_timeout_s: float | None = None, min_rate_kbps: float | None = None) -> "HttpLimits":
        """Limits from ``settings`` (a :class:`proofmesh.config.Settings`; None: the settings of
        ``PROOFMESH_HOME`` or ``~/.proofmesh``, env first), each overridable by an argument."""
        if settings is None:
            from proofmesh.config import Home

            settings = Home.resolve().settings
        return cls(max_body_bytes=max_body_bytes if max_body_bytes is not None else settings.http_max_body_mb * MB,
                   max_connections=max_connections if max_connections is not None else settings.http_max_connections,
                   keep_alive_s=keep_alive_s if keep_alive_s is not None else KEEP_ALIVE_S,
                   body_timeout_s=body_timeout_s if body_timeout_s is not None else settings.http_body_timeout_s,
                   min_rate_kbps=min_rate_kbps if min_rate_kbps is not None else settings.http_min_rate_kbps)

    def uvicorn_options(self, *, on_refuse: "OnRefuse | None" = None) -> dict[str, Any]:
        """Keyword arguments for ``uvicorn.Config``: past ``limit_concurrency`` connections (or
        requests in flight) uvicorn answers 503 at once instead of queueing without bound, and
        the guarded httptools protocol (:func:`guarded_protocol`) closes silent connections and
        answers 408 to headers that do not arrive within ``body_timeout_s`` (``on_refuse`` is
        told ``"headers_timeout"``). Raises :class:`ServerDependencyMissing` without httptools:
        every proofmesh uvicorn server gets its options here, so none starts unguarded on h11."""
        return {"limit_concurrency": self.max_connections, "timeout_keep_alive": self.keep_alive_s,
                "http": guarded_protocol(self.body_timeout_s, on_refuse=on_refuse)}

    def wrap(self, app: ASGIApp, *, exempt: Iterable[str] = (), streamed: Iterable[str] = (),
             on_refuse: "OnRefuse | None" = None) -> "BodyLimit":
        """``app`` behind a :class:`BodyLimit` of ``max_body_bytes`` and ``body_timeout_s``;
        ``streamed`` paths get :attr:`upload_rate` instead (see :class:`BodyLimit`)."""
        return BodyLimit(app, self.max_body_bytes, exempt=exempt, streamed=streamed,
                         body_timeout_s=self.body_timeout_s, min_rate_kbps=self.min_rate_kbps, on_refuse=on_refuse)


async def too_large(send: Send, exc: BodyTooLarge) -> None:
    """Send a 413 with the project's error body. ``connection: close``: the rest of the body is
    not worth receiving (uvicorn would otherwise read and discard it to keep the connection)."""
    body = error_json(exc)
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def body_timed_out(send: Send, exc: BodyTimeout) -> None:
    """Send a 408 with the project's error body and ``connection: close``: the client was too
    slow, and the rest of its body must not be waited for (nor taken for the next request)."""
    body = error_json(exc)
    await send({"type": "http.response.start", "status": 408,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None   # the HTTP server refuses a malformed length itself (400)
    return None


class BodyLimit:
    """ASGI middleware: request bodies over ``max_bytes`` get 413 and never reach the app whole.

    * a declared ``Content-Length`` over the limit is answered 413 at once; the app is not called;
    * a body without one (chunked) is counted as it arrives: once it passes the limit the app's
      next ``receive()`` gets ``http.disconnect`` (as if the client had gone), the client gets
      413, and whatever the app sends afterwards is dropped. The server delivers the body in
      pieces and stops reading the socket while a piece waits (uvicorn: past 64 KB), so no more
      than the limit plus one piece is ever held;
    * a body that takes longer than ``body_timeout_s`` to arrive gets **408** the same way (the
      app's pending ``receive()`` gets ``http.disconnect``, ``connection: close`` ends the
      connection). Only the time the app spends waiting in ``receive()`` for body chunks counts,
      summed over the whole body, so a client cannot reset the clock by sending a byte now and
      then, and an app that is slow after the body has arrived is never cut;
    * paths in ``streamed`` (exact paths: the blob store's ``PUT /blobs``, which streams its body
      to disk and bounds its size itself) are not held to ``max_bytes`` and get the
      minimum-throughput rule instead of the fixed deadline: ``body_timeout_s`` plus one second per
      ``min_rate_kbps`` kilobits received (:class:`MinRate`), else 408 :class:`BodyTooSlow` — a
      GB upload at a normal speed passes, a dripping one is cut after the grace;
    * paths in ``exempt`` (exact paths) pass unchecked;
    * websocket and lifespan scopes pass through untouched.

    ``on_refuse`` (if given) is told the reason (one of :data:`REFUSALS`) of every 413/408 sent
    here: a refused request never reaches the app's own request counters.

    If the app had already started its answer when the limit or the deadline is passed (a route
    answering while it reads), that answer goes on; the app still gets ``http.disconnect``.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, *, exempt: Iterable[str] = (), streamed: Iterable[str] = (),
                 body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S, min_rate_kbps: float = DEFAULT_MIN_RATE_KBPS,
                 on_refuse: OnRefuse | None = None) -> None:
        if max_bytes <= 0:
            raise ConfigError(f"BodyLimit needs a positive byte limit, got {max_bytes}",
                              fix="set http_max_body_mb to a positive integer")
        if body_timeout_s <= 0:
            raise ConfigError(f"BodyLimit needs a positive body deadline, got {body_timeout_s}",
                              fix="set http_body_timeout_s to a positive number of seconds")
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout_s = body_timeout_s
        self.rate = MinRate(body_timeout_s, min_rate_kbps)
        self.exempt = frozenset(exempt)
        self.streamed = frozenset(streamed)
        self.on_refuse = on_refuse

    def _refused(self, reason: str) -> None:
        if self.on_refuse is not None:
            self.on_refuse(reason)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            return await self.app(scope, receive, send)
        rated = scope["path"] in self.streamed
        limit = self.max_bytes
        if not rated:
            declared = _declared_length(scope)
            if declared is not None and declared > limit:
                self._refused("body_too_large")
                return await too_large(send, BodyTooLarge(limit, declared))

        timeout_s = self.body_timeout_s
        rate = self.rate
        received = 0
        waited = 0.0            # seconds spent in receive() while the body was incomplete
        body_done = False       # the last body chunk (more_body false) has arrived
        over = False            # a limit was passed: the app only gets http.disconnect now
        app_answering = False   # the app sent http.response.start before that
        rejected = False        # our 413/408 went out: drop what the app sends

        async def limited_receive() -> Message:
            nonlocal received, waited, body_done, over, rejected
            if over:
                return {"type": "http.disconnect"}
            if body_done:
                # After the body only http.disconnect can come, whenever the client goes:
                # waiting for it is the app's business (a streaming answer), never timed.
                return await receive()
            t0 = time.monotonic()
            # a streamed body's allowance grows with what it delivered (MinRate); others have a
            # fixed one
            allowed = rate.allowed_s(received) if rated else timeout_s
            try:
                # asyncio.timeout, not wait_for: no extra task per body chunk on the request path
                async with asyncio.timeout(allowed - waited):
                    message = await receive()
            except TimeoutError:
                waited += time.monotonic() - t0
                over = True
                if not app_answering:
                    rejected = True
                    if rated:
                        self._refused("body_too_slow")
                        await body_timed_out(send, BodyTooSlow(rate, received, waited))
                    else:
                        self._refused("body_timeout")
                        await body_timed_out(send, BodyTimeout(timeout_s, received))
                return {"type": "http.disconnect"}
            waited += time.monotonic() - t0
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not rated:
                    over = True
                    if not app_answering:
                        rejected = True
                        self._refused("body_too_large")
                        await too_large(send, BodyTooLarge(limit))
                    return {"type": "http.disconnect"}
                body_done = not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal app_answering
            if rejected:
                return
            if message["type"] == "http.response.start":
                app_answering = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            # Told the client went away, an app may raise (Starlette: ClientDisconnect from
            # request.body()); the 413 is already out, so that is the expected end, not a bug.
            if not rejected:
                raise


class HeadersTimeout(InputError):
    """A request whose headers did not arrive within the server's ``http_body_timeout_s`` (408)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the request's headers did not arrive within {timeout_s:g} s of its first byte",
                         fix="send the request at once; the operator can raise http_body_timeout_s")


class ServerDependencyMissing(NotAvailableError):
    """A proofmesh HTTP server cannot start: httptools, which its guarded protocol needs, is
    missing."""


@functools.cache
def guarded_base() -> Any:
    """uvicorn's httptools protocol with the two slots it leaves open closed. Built on first use:
    uvicorn is not imported by the clients that use this module.

    Without httptools this raises :class:`ServerDependencyMissing` instead of letting uvicorn
    fall back to its h11 protocol, which has neither guard (and no ``http_body_timeout_s`` on
    the headers): every proofmesh uvicorn server gets its protocol from here (through
    :meth:`HttpLimits.uvicorn_options`, or as a base class), so this is the one check.

    * a connection that never sends a byte: uvicorn arms its idle (keep-alive) timer only after
      a first response, so it was held for ever; here the timer runs from the connection;
    * a request sent a byte at a time: every byte restarts that timer and the app (with
      :class:`BodyLimit`'s body deadline) only sees the request once its headers are complete;
      here the headers must arrive within ``request_timeout_s`` of the request's first byte,
      else 408 and close (``on_refuse`` told ``"headers_timeout"``). A subclass that reads some
      bodies itself (the inference node's ``inference/httpfast.py``) keeps the deadline to the
      request's end (``deadline_to_headers = False``) and answers it in its own ``_too_slow``."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError as exc:
        raise ServerDependencyMissing(
            f"this proofmesh HTTP server cannot start: httptools is not installed or does not import ({exc}); "
            f"proofmesh serves HTTP only with uvicorn's httptools protocol, guarded against clients that drip "
            f"their request or say nothing (uvicorn's fallback, h11, has no such guard)",
            fix="pip install 'httptools>=0.6' (a dependency of proofmesh: reinstalling proofmesh also installs it)"
        ) from None

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        request_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
        deadline_to_headers = True     # False: the deadline runs to the request's last byte
        on_refuse: OnRefuse | None = None
        _deadline: Any = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                self.timeout_keep_alive_handler)

        def on_message_begin(self) -> None:
            self._deadline = self.loop.call_later(self.request_timeout_s, self._too_slow)
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            if self.deadline_to_headers:
                self._disarm()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            if self.on_refuse is not None:
                self.on_refuse("headers_timeout")   # a staticmethod (guarded_protocol)
            body = error_json(HeadersTimeout(self.request_timeout_s))
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
            self.transport.close()

    return GuardedHttpToolsProtocol


def guarded_protocol(headers_timeout_s: float, *, on_refuse: OnRefuse | None = None) -> Any:
    """:func:`guarded_base` with headers due within ``headers_timeout_s``, ``on_refuse`` told of
    each 408 it sends (:class:`ServerDependencyMissing` without httptools)."""
    attrs: dict[str, Any] = {"request_timeout_s": headers_timeout_s}
    if on_refuse is not None:
        attrs["on_refuse"] = staticmethod(on_refuse)
    return type("GuardedHttpToolsProtocol", (guarded_base(),), attrs)
