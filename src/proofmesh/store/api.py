"""HTTP routes for blobs, mounted by the node daemon: ``app.include_router(blob_router(store))``.

* ``GET  /blobs/{cid}``  the bytes (``application/octet-stream``), verified while streaming;
* ``HEAD /blobs/{cid}``  200 with ``Content-Length`` if stored, 404 otherwise;
* ``PUT  /blobs``        body → stored; answers ``{"cid": …, "size": …}``.

Small blobs are verified before the first byte is sent, so a corrupted blob gets a clean
error status. Large blobs are streamed and verified as they go; if the end does not match,
the connection is cut before the response completes, so clients (which re-hash anyway, see
:mod:`proofmesh.store.fetch`) never receive a complete wrong body.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from proofmesh.errors import InputError, StoreError
from proofmesh.http_limits import BodyTooLarge, HttpLimits, error_json
from proofmesh.store.blobstore import BlobStore

__all__ = ["blob_router", "serve_blobs", "DEFAULT_MAX_UPLOAD"]

DEFAULT_MAX_UPLOAD = 1024**3
_SMALL = 8 * 1024**2
_PIECE = 1 << 20
_END = object()
_ABORT = object()


def _blob_too_large(max_upload: int, size: int | None = None) -> Response:
    exc = BodyTooLarge(max_upload, size)
    exc.fix = f"a blob server takes blobs of at most {max_upload:,} bytes (blob_router's max_upload)"
    # connection: close, so the server does not read (and discard) the rest of the upload
    return Response(error_json(exc), status_code=413, media_type="application/json",
                    headers={"connection": "close"})


def blob_router(store: BlobStore, *, max_upload: int = DEFAULT_MAX_UPLOAD) -> APIRouter:
    """An APIRouter serving ``store`` (uploads over ``max_upload`` bytes get 413).

    ``PUT /blobs`` streams its body to disk and enforces ``max_upload`` itself, so apps mount
    it as a *streamed* path of their :class:`~proofmesh.http_limits.BodyLimit`
    (``limits.wrap(app, streamed=("/blobs",))``, see :func:`serve_blobs`): not held to the body
    limit, and held to the minimum-rate rule instead of a fixed deadline (an upload dripped
    slower than ``http_min_rate_kbps`` after ``http_body_timeout_s`` gets 408; the blob writer is
    aborted and its temporary file removed, so nothing of it is stored).
    """
    router = APIRouter(tags=["blobs"])

    def _valid(cid: str) -> str:
        try:
            return store._cid(cid)
        except InputError as exc:
            raise HTTPException(status_code=400, detail=exc.message) from None

    @router.head("/blobs/{cid}")
    def head_blob(cid: str) -> Response:
        cid = _valid(cid)
        try:
            size = store.size(cid)
        except StoreError:
            return Response(status_code=404)
        return Response(status_code=200, headers={"content-length": str(size),
                                                  "content-type": "application/octet-stream"})

    @router.get("/blobs/{cid}")
    def get_blob(cid: str) -> Response:
        cid = _valid(cid)
        try:
            size = store.size(cid)
        except StoreError:
            raise HTTPException(status_code=404, detail=f"blob {cid} not found") from None
        if size <= _SMALL:
            try:
                data = store.get_bytes(cid)
            except StoreError as exc:
                # corrupted (now quarantined) or removed meanwhile: this node cannot serve it
                raise HTTPException(status_code=404, detail=exc.message) from None
            return Response(content=data, media_type="application/octet-stream",
                            headers={"x-content-cid": cid})

        def chunks() -> Iterator[bytes]:
            # Hold back the last piece until the reader has checked the CID at end of file:
            # on a mismatch the body stays short of Content-Length and the client sees a
            # broken response, never a complete wrong one.
            held = None
            with store.open(cid) as reader:
                while piece := reader.read(_PIECE):
                    if held is not None:
                        yield held
                    held = piece
            if held is not None:
                yield held

        return StreamingResponse(iterate_in_threadpool(chunks()), media_type="application/octet-stream",
                                 headers={"content-length": str(size), "x-content-cid": cid})

    @router.put("/blobs")
    async def put_blob(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_upload:
            return _blob_too_large(max_upload, int(declared))
        # The body streams through a bounded queue into the blocking store writer running
        # in a worker thread: memory stays at a few pieces whatever the blob size, and a
        # slow disk pushes back on the client.
        q: queue.Queue = queue.Queue(maxsize=16)

        def pieces() -> Iterator[bytes]:
            while True:
                item = q.get()
                if item is _END:
                    return
                if item is _ABORT:
                    raise StoreError("upload aborted")
                yield item

        writer = asyncio.ensure_future(run_in_threadpool(store.put_stream, pieces(), max_bytes=max_upload))

        async def send(item: object) -> None:
            while not writer.done():
                try:
                    q.put_nowait(item)
                    return
                except queue.Full:
                    await asyncio.sleep(0.002)

        total = 0
        try:
            async for piece in request.stream():
                total += len(piece)
                if total > max_upload:
                    raise BodyTooLarge(max_upload)
                if piece:
                    await send(piece)
        except BaseException as exc:
            await send(_ABORT)
            with contextlib.suppress(BaseException):
                await writer
            if isinstance(exc, BodyTooLarge):
                return _blob_too_large(max_upload)
            raise
        await send(_END)
        try:
            cid = await writer
        except StoreError as exc:
            raise HTTPException(status_code=409, detail=exc.message) from None
        return JSONResponse({"cid": cid, "size": total}, status_code=201)

    return router


@contextlib.contextmanager
def serve_blobs(store: BlobStore | None = None, *, host: str = "127.0.0.1", port: int = 0,
                app: Any = None, max_upload: int = DEFAULT_MAX_UPLOAD,
                limits: HttpLimits | None = None) -> Iterator[str]:
    """Run a standalone blob server (uvicorn in a background thread) for ``store``, or for
    ``app`` if given; yields its base URL and stops it on exit. The node daemon mounts
    :func:`blob_router` itself; this is for demos, tools and tests that need a peer.

    Uploads (``PUT /blobs``) are bounded by ``max_upload`` and must arrive at
    ``limits.min_rate_kbps`` on average after ``limits.body_timeout_s`` (408 past it); any other
    request body by ``limits.max_body_bytes`` (default: the home's ``http_max_body_mb``) and
    ``body_timeout_s``, and connections by ``limits.max_connections`` (503 past it)."""
    import socket
    import threading
    import time

    import uvicorn
    from fastapi import FastAPI

    if app is None:
        if store is None:
            raise InputError("serve_blobs needs a store (or an app)", fix="pass the BlobStore to serve")
        app = FastAPI(title="proofmesh blobs")
        app.include_router(blob_router(store, max_upload=max_upload))
    limits = limits or HttpLimits.from_settings()
    app = limits.wrap(app, streamed=("/blobs",))
    options = limits.uvicorn_options()   # first: refuses to start without httptools, before binding
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))  # bound here so the port is known (port=0: any free port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=1, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            sock.close()
            raise StoreError(f"the blob server on {host} did not start",
                             fix="check that the address is free and allowed")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
