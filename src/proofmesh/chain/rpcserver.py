"""Serve an :class:`EmbeddedChain`'s JSON-RPC over HTTP on 127.0.0.1.

The process that owns the embedded chain (the node daemon, or a test) runs this so
that every other process — CLI, workers, devices — reaches the same chain through
the ordinary ``rpc`` path. It uses the standard library's threading HTTP server:
requests are serialised by the chain's own lock anyway, and it starts in
milliseconds. The daemon mounts :func:`rpc_router` into its FastAPI app instead.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fastapi import APIRouter, Request

from proofmesh.chain.embedded import EmbeddedChain


def _answer(chain: EmbeddedChain, payload: Any) -> Any:
    if isinstance(payload, list):
        return [chain.handle(r) for r in payload]
    if not isinstance(payload, dict) or "method" not in payload:
        return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "invalid request"}}
    return chain.handle(payload)


class RPCServer:
    """A background HTTP JSON-RPC server for one embedded chain."""

    def __init__(self, chain: EmbeddedChain, host: str = "127.0.0.1", port: int = 0, publish: bool = True) -> None:
        self.chain = chain

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    payload = json.loads(self.rfile.read(length))
                    body = json.dumps(_answer(chain, payload)).encode()
                except ValueError:
                    body = json.dumps({"jsonrpc": "2.0", "id": None,
                                       "error": {"code": -32700, "message": "parse error"}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
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
    """A FastAPI router answering JSON-RPC at ``POST /rpc`` (for the node daemon)."""
    router = APIRouter()

    @router.post("/rpc")
    async def rpc(request: Request) -> Any:
        import anyio

        payload = await request.json()
        return await anyio.to_thread.run_sync(_answer, chain, payload)

    return router
