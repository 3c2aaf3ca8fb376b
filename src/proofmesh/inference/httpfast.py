"""``POST /v1/infer`` answered inside the HTTP protocol, below ASGI.

A node's request costs the model run plus the node's own work; at batch 32 the 5.2M-param
MLP runs ~7 ms and the 10 % budget is 0.7 ms for everything else. After each run the model
has streamed its 21 MB of weights through the core's caches, so every Python step after it
runs cold (measured: each step 2-7x its warm cost), and uvicorn's ASGI machinery per
request (scope dict, RequestResponseCycle, asyncio.Event, a Task, the receive/send
coroutines, header assembly) is a long cold path of its own. This protocol is uvicorn's
httptools protocol (keep-alive, flow control, graceful shutdown, the server's connection
set: :meth:`ServerHandle.kill` still works) with one change: a ``POST /v1/infer`` is
collected by the parser callbacks and handed to the node's :class:`_Dispatch` directly,
answered on the spot when the node can run it inline, or from a task when it goes to a
worker thread (zk, paid, delayed, busy, or other clients active: see ``_Dispatch``). Every other request goes through ASGI as before.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from proofmesh.errors import InputError
from proofmesh.http_limits import error_json, guarded_base
from proofmesh.inference.wire import ANSWER_TYPE

_JSON, _BINARY = b"application/json", ANSWER_TYPE.encode()

_REASONS = {200: b"OK", 402: b"Payment Required", 404: b"Not Found", 408: b"Request Timeout",
            413: b"Content Too Large", 422: b"Unprocessable Entity", 500: b"Internal Server Error",
            501: b"Not Implemented"}


class RequestTimeout(InputError):
    """A request that did not arrive whole within the node's ``request_timeout_s`` (HTTP 408)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the request did not arrive whole within {timeout_s:g} s of its first byte",
                         fix="send the request at once; a node operator can raise request_timeout_s")


def _head(status: int, length: int, keep_alive: bool, binary: bool, node_ms: float) -> bytes:
    # server-timing (the W3C header): the node's time from the request's first byte to its
    # answer, so a client can tell node time from transit and its own work
    return b"".join((b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"")),
                     b"content-type: %s\r\ncontent-length: %d\r\n" % (_BINARY if binary else _JSON, length),
                     b"server-timing: node;dur=%.3f\r\n" % node_ms,
                     b"" if keep_alive else b"connection: close\r\n", b"\r\n"))


class _Pending:
    """Stands for uvicorn's RequestResponseCycle while an offloaded answer is pending."""

    response_complete = False
    disconnected = False
    keep_alive = True

    def __init__(self) -> None:
        self.message_event = asyncio.Event()


class InferProtocol(guarded_base()):
    """uvicorn's httptools protocol, guarded (``http_limits.guarded_base``: silent connections
    closed, a deadline from a request's first byte), with ``POST /v1/infer`` short-circuited to
    the app's ``dispatch`` (see the module docstring). The deadline runs to the request's last
    byte, on either path (``request_timeout_s`` of the node's config)."""

    deadline_to_headers = False

    def __init__(self, config: Any, *args: Any, **kw: Any) -> None:
        super().__init__(config, *args, **kw)
        self.dispatch = getattr(config.app, "dispatch", None)
        self._fast: list[bytes] | None = None      # body chunks of a /v1/infer request being read
        self._fast_size = 0                        # its bytes so far
        self._refused = False                      # answered 413 or 408: the rest of it is dropped
        self._fast_busy = False                    # a /v1/infer answer is pending on a task
        self._fast_keep_alive = True
        self._fast_accept = ""
        self._t_first = 0.0                        # when the request being answered began to arrive
        node = getattr(self.dispatch, "node", None)
        if node is not None:
            self.request_timeout_s = node.config.request_timeout_s

    def on_message_begin(self) -> None:
        self._t_first = time.perf_counter()     # parsing starts as the request's first bytes arrive
        super().on_message_begin()              # (arms the request's deadline)

    def _too_slow(self) -> None:
        """The request did not arrive whole within its deadline (headers or body dripped):
        408 and close, whichever path (fast or ASGI) was reading it."""
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._fast_busy:     # reading is paused by us while an earlier answer is pending: not its fault
            self._deadline = self.loop.call_later(self.request_timeout_s, self._too_slow)
            return
        self._fast = None
        self._refused = True
        self._fast_keep_alive = False
        self._respond(408, error_json(RequestTimeout(self.request_timeout_s)))

    def on_headers_complete(self) -> None:
        if (self.dispatch is None or self.url != b"/v1/infer" or self.parser.get_method() != b"POST"
                or self.pipeline or (self.cycle is not None and not self.cycle.response_complete)
                or self._fast_busy or self.parser.should_upgrade()):
            self._fast = None
            return super().on_headers_complete()
        self._fast = []
        self._fast_size = 0
        self._fast_keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        declared = next((v for k, v in self.headers if k == b"content-length"), b"")
        if declared.isdigit() and int(declared) > self.dispatch.max_body:
            self._refuse(int(declared))           # before reading it (no 100 Continue either)
            return
        if self.expect_100_continue:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._fast is None:
            if not self._refused:
                super().on_body(body)
            return
        self._fast.append(body)
        self._fast_size += len(body)
        if self._fast_size > self.dispatch.max_body:   # a chunked body that grows past the limit
            self._refuse(self._fast_size)

    def _refuse(self, size: int) -> None:
        """Answer 413 and close: the body (declared or streamed past the node's limit) is
        never buffered; what else arrives on this connection is dropped."""
        self._fast = None
        self._refused = True
        self._fast_keep_alive = False
        self._respond(*self.dispatch.too_large(size))

    def on_message_complete(self) -> None:
        self._disarm()
        if self._refused:
            return
        chunks = self._fast
        if chunks is None:
            return super().on_message_complete()
        self._fast = None
        raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        ctype = accept = b""
        for k, v in self.headers:
            if k == b"content-type":
                ctype = v
            elif k == b"accept":
                accept = v
        self._fast_accept = accept = accept.decode("latin-1")
        try:
            answer = self.dispatch.answer_now(raw, ctype.decode("latin-1"), accept,
                                              alone=self.dispatch.arrived(id(self)))
        except Exception as exc:   # a bug, not bad input: answer 500 like uvicorn would, keep serving
            self.logger.exception("inference request failed", exc_info=exc)
            answer = (500, b'{"error": "internal error"}')
        if isinstance(answer, tuple):
            self._respond(*answer)
            return
        # runs on a worker thread: read nothing more from this connection until answered;
        # a request already parsed behind it is queued by uvicorn as a pipelined one (it sees
        # a cycle in progress) and started by on_response_complete after this answer
        self._fast_busy = True
        self.cycle = _Pending()
        self.flow.pause_reading()
        task = self.loop.create_task(self._answer_later(answer))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _answer_later(self, body: dict) -> None:
        try:
            status, data = await self.dispatch.answer_offloaded(body, self._fast_accept)
        except Exception as exc:
            self.logger.exception("inference request failed", exc_info=exc)
            status, data = 500, b'{"error": "internal error"}'
        self._fast_busy = False
        if isinstance(self.cycle, _Pending):
            self.cycle = None
        if not self.transport.is_closing():
            self._respond(status, data)

    def _respond(self, status: int, data: bytes) -> None:
        binary = status == 200 and ANSWER_TYPE in self._fast_accept
        node_ms = (time.perf_counter() - self._t_first) * 1000
        self.transport.write(_head(status, len(data), self._fast_keep_alive, binary, node_ms) + data)
        if not self._fast_keep_alive:
            self.transport.close()
            return
        self.on_response_complete()    # keep-alive timer, resume reading, counters

    def connection_lost(self, exc: Exception | None) -> None:
        if self.dispatch is not None:
            self.dispatch.closed(id(self))
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self._fast_busy:
            self._fast_keep_alive = False   # close after the pending answer
            return
        super().shutdown()


def protocol_for(app: Any) -> "type[asyncio.Protocol] | None":
    """The protocol class for a node app (None: not a node app, use uvicorn's own)."""
    return InferProtocol if getattr(app, "dispatch", None) is not None else None
