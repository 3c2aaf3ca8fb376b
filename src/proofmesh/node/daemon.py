"""The node daemon: one long-running FastAPI + uvicorn process per home.

What it serves on one port (127.0.0.1 by default):

* ``POST /rpc`` — on the embedded backend the daemon owns the chain (its lock) and
  serves its JSON-RPC here; the URL is published in ``<home>/chain/rpc.json`` so the
  CLI, workers and devices in other processes reach the same chain through
  ``Chain.connect(home)`` without configuration;
* ``/blobs/...`` — the content-addressed blob store (:mod:`proofmesh.store.api`);
* ``/health`` (JSON) and ``/metrics`` (Prometheus text);
* ``/`` and ``/api/explorer/...`` — the web explorer;
* ``/svc/<name>/...`` — the routes of each service the node's on-chain roles enable
  (:mod:`proofmesh.node.services`).

One daemon per home: it holds an exclusive ``flock`` on ``<home>/node/LOCK`` for its
whole life, so a second one refuses to start with the first one's PID and URL, and
a ``kill -9`` releases the lock with the process (no stale-lock cleanup needed).
SIGTERM/SIGINT stop accepting connections, let in-flight requests finish, ask every
service to finish or hand back its work (``stop(timeout)``), close the chain
cleanly and withdraw the published RPC URL. Restarting picks up where it was: the
chain, the store and every service's journal live in the home.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import Request  # module level: FastAPI resolves string annotations in module globals

from proofmesh.config import Home
from proofmesh.errors import ConfigError, ProofmeshError
from proofmesh.http_limits import BadJSON, HttpLimits, parse_json
from proofmesh.node.events import EventIndex
from proofmesh.node.logs import log_event, setup_logging
from proofmesh.node.metrics import CONTENT_TYPE, NodeMetrics
from proofmesh.node.repair import StoreRepair
from proofmesh.node.services import LoadedService, NodeContext, load_services

VERSION = "0.1.0"
QUIET_ROUTES = {"/health", "/metrics"}   # polled constantly: logged at debug level only


class DaemonError(ProofmeshError):
    """The node daemon cannot start, or is not running."""


@dataclass
class DaemonInfo:
    """What a running daemon publishes in ``<home>/node/daemon.json``."""

    pid: int
    url: str
    started: float
    backend: str
    address: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "url": self.url, "started": self.started, "backend": self.backend,
                "address": self.address}


def node_dir(home: Home) -> Path:
    return home.dir("node")


def running_daemon(home: Home) -> DaemonInfo | None:
    """The daemon running for ``home``, or None (decided by its lock, not by a PID file)."""
    d = home.path / "node"
    lock = d / "LOCK"
    if not lock.exists():
        return None
    fd = os.open(lock, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: a daemon is alive
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
    finally:
        os.close(fd)
    try:
        raw = json.loads((d / "daemon.json").read_text())
        return DaemonInfo(**raw)
    except (OSError, ValueError, TypeError):
        # starting up: the lock is held but the URL not published yet
        return DaemonInfo(pid=_lock_pid(lock), url="", started=0.0, backend="?", address=None)


def _lock_pid(lock: Path) -> int:
    try:
        return int(json.loads(lock.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return -1


class NodeDaemon:
    """One node: its lock, chain connection, socket, services and web app.

    ``start()`` does everything that can fail with a clear error (lock, chain, port,
    key, services) *before* anything is published, and undoes it all if a step fails;
    ``serve()`` then runs uvicorn until SIGTERM/SIGINT or :meth:`request_stop`.
    Pass ``chain`` to reuse a connection this process already has (tests), ``limits`` to
    override the home's HTTP limits (``http_max_body_mb``, ``http_max_connections``,
    ``http_body_timeout_s``, ``http_min_rate_kbps``): a body over the limit gets 413 on every route,
    the services' fast prefixes (inference's ``/v1/``) included, but the blob store's ``PUT /blobs``
    (streamed to disk, bounded by its own ``max_upload``, and by the minimum rate in time). Every
    413/408 the limits send is counted in ``/metrics`` (``proofmesh_http_refused_total{reason}``).
    """

    def __init__(self, home: Home, *, host: str | None = None, port: int | None = None,
                 account_name: str | None = None, password: str | None = None, chain: Any = None,
                 poll_interval: float = 1.0, stop_timeout: float = 20.0, log_stderr: bool = True,
                 services: list[str] | None = None, scrub_interval: float = 600.0,
                 limits: HttpLimits | None = None) -> None:
        if not home.initialised:
            raise ConfigError(f"no proofmesh home at {home.path}",
                              fix="run `proofmesh init` (or pass --home / set PROOFMESH_HOME)")
        self.home = home
        self.host = host or home.settings.node_host
        self.port = home.settings.node_port if port is None else port
        self.account_name = account_name or home.settings.default_account
        self.password = password
        self.poll_interval = poll_interval
        self.stop_timeout = stop_timeout
        self.log_stderr = log_stderr
        self.service_modules = services
        self.scrub_interval = scrub_interval
        self.limits = limits or HttpLimits.from_settings(home.settings)
        self.chain: Any = chain
        self._own_chain = chain is None
        self.account: Any = chain.account if chain is not None else None
        self.roles = 0
        self.stake = 0
        self.url = ""
        self.started = 0.0
        self.log = logging.getLogger("proofmesh.node")
        self.index: EventIndex | None = None
        self.services: list[LoadedService] = []
        self.skipped: list[dict[str, Any]] = []
        self.ctx: NodeContext | None = None
        self.metrics = NodeMetrics(self.snapshot)
        self.chain_ok = True
        self.chain_error: str | None = None
        self._lock_fd: int | None = None
        self._sock: socket.socket | None = None
        self._server: Any = None
        self._watcher: threading.Thread | None = None
        self._stop_watch = threading.Event()
        self._uvicorn_options: dict[str, Any] = {}
        self.app: Any = None
        self.asgi: Any = None     # what uvicorn runs: ``app`` behind the services' fast prefixes

    # ================================================================== start-up
    def start(self) -> "NodeDaemon":
        """Lock, connect, bind, load services and build the app; all-or-nothing."""
        # First, before the lock: refuses to start without httptools (ServerDependencyMissing)
        self._uvicorn_options = self.limits.uvicorn_options(on_refuse=self.metrics.refuse)
        self.log = setup_logging(node_dir(self.home) / "node.log", stderr=self.log_stderr)
        try:
            self._take_lock()
            if self.chain is None:
                self._connect()
            self._bind()
            self._load_identity()
            self._build()
        except BaseException:
            self._release()
            raise
        return self

    def _take_lock(self) -> None:
        lock = node_dir(self.home) / "LOCK"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            info = running_daemon(self.home)
            where = f" (pid {info.pid}, {info.url or 'starting'})" if info else ""
            raise DaemonError(f"a node daemon is already running for home {self.home.path}{where}",
                              fix="stop it with `proofmesh node stop`, or start this one with another --home") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid()}).encode())
        self._lock_fd = fd

    def _connect(self) -> None:
        from web3 import Web3

        from proofmesh.chain.client import Chain, EmbeddedProvider, open_embedded
        from proofmesh.chain.embedded import ChainLockedError

        settings = self.home.settings
        if settings.backend == "embedded":
            try:
                emb = open_embedded(self.home.chain_dir, settings.chain_id)
            except ChainLockedError as exc:
                raise DaemonError(f"cannot own the embedded chain: {exc.message}",
                                  fix="stop the other process using this home (a running command or test), "
                                      "then start the node again") from None
            self.chain = Chain(Web3(EmbeddedProvider(emb)), home=self.home, backend="embedded", embedded=emb)
            self.chain.addresses = self.home.address_book(self.chain.chain_id)
        else:
            self.chain = Chain.connect(self.home)  # a ChainError with a fix if the URL does not answer

    def _bind(self) -> None:
        # proto must be IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on accepted sockets
        # whose proto says TCP, and without it Nagle + delayed ACKs add ~40 ms to every
        # keep-alive request (measured: 20 req/s instead of 120).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        # SO_REUSEADDR: a restart right after kill -9 must not wait out TIME_WAIT; it
        # still refuses a port another process is listening on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise DaemonError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}",
                              fix="stop whatever listens there, or pick another port with --port "
                                  "(or node_port in config.toml)") from None
        sock.setblocking(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"

    def _load_identity(self) -> None:
        from proofmesh.crypto.keys import Keystore

        if self.account is None:
            ks = Keystore(self.home)
            if ks.exists(self.account_name):
                password = self.password if self.password is not None else os.environ.get("PROOFMESH_PASSWORD")
                if password is None:
                    raise DaemonError(f"the node key {self.account_name!r} is encrypted and no password was given",
                                      fix="set PROOFMESH_PASSWORD (or run `proofmesh node start` in a terminal)")
                self.account = ks.load(self.account_name, password)
        if self.account is not None and self.chain.account is None:
            self.chain = self.chain.with_account(self.account)
        self._refresh_node()

    def _refresh_node(self) -> None:
        if self.account is None or "NodeRegistry" not in self.chain.addresses:
            return
        from proofmesh.chain.core import Registry

        info = Registry(self.chain).info(self.account.address)
        self.roles, self.stake = info.roles, info.stake

    def _build(self) -> None:
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse, Response

        from proofmesh.node.explorer.api import explorer_router, static_router
        from proofmesh.store.api import blob_router
        from proofmesh.store.blobstore import BlobStore

        store = BlobStore(self.home.store_dir)
        self.index = EventIndex(self.chain)
        self.ctx = NodeContext(home=self.home, chain=self.chain if self.chain.addresses else None,
                               account=self.account, roles=self.roles, store=store, base_url=self.url, log=self.log,
                               admin_token=self._admin_token())
        self.services, self.skipped = load_services(self.ctx, self.service_modules)
        # built in: every node keeps its store healthy, whatever its roles
        self.services.insert(0, LoadedService(module="proofmesh.node.repair",
                                              service=StoreRepair(self.ctx, interval=self.scrub_interval)))

        @asynccontextmanager
        async def lifespan(_app: Any) -> AsyncIterator[None]:
            import anyio

            await anyio.to_thread.run_sync(self._on_start)
            yield
            await anyio.to_thread.run_sync(self._on_stop)

        app = FastAPI(title="proofmesh node", version=VERSION, lifespan=lifespan, docs_url="/api/docs",
                      redoc_url=None, openapi_url="/api/openapi.json")

        @app.middleware("http")
        async def observe(request: Request, call_next: Any) -> Any:
            t0 = time.perf_counter()
            status = 500
            try:
                response = await call_next(request)
                status = response.status_code
                return response
            finally:
                route = request.scope.get("route")
                path = getattr(route, "path", None) or "unmatched"
                dt = time.perf_counter() - t0
                self.metrics.observe(request.method, path, status, dt)
                level = logging.DEBUG if path in QUIET_ROUTES or path.startswith("/api/explorer") else logging.INFO
                log_event(self.log, "request", level, method=request.method, path=request.url.path,
                          status=status, ms=round(dt * 1000, 2))

        if self.chain.embedded is not None:
            app.include_router(self._rpc_router())
        app.include_router(blob_router(store))

        @app.get("/health")
        def health() -> JSONResponse:
            body = self.health()
            return JSONResponse(body, status_code=200 if body["ok"] else 503)

        @app.get("/metrics")
        def metrics() -> Response:
            return Response(self.metrics.render(), media_type=CONTENT_TYPE)

        for loaded in self.services:
            r = loaded.service.router()
            if r is None:
                continue
            # a service may serve at the root (``prefix = ""``) when clients find it by the
            # node's registry endpoint, e.g. inference's /v1/...; the default is /svc/<name>
            prefix = getattr(loaded.service, "prefix", f"/svc/{loaded.service.name}")
            routes = getattr(r, "router", r)  # a FastAPI app: take its routes
            app.include_router(routes, prefix=prefix)
        app.include_router(explorer_router(self))
        app.include_router(static_router())
        self.app = app
        # Outermost, so a refused body never reaches the app (nor its middleware); the routes of
        # every service included above are covered.
        # ``PUT /blobs`` streams to disk under its own max_upload: a streamed path, held to the
        # minimum-rate rule instead (408 to a dripping upload). Refusals are counted in /metrics.
        refuse = self.metrics.refuse
        limited = self.limits.wrap(app, streamed=("/blobs",), on_refuse=refuse)
        # a service's fast routes (inference's /v1/) skip FastAPI, not the limits
        fast = {prefix: self.limits.wrap(handler, on_refuse=refuse) for loaded in self.services
                if hasattr(loaded.service, "asgi_routes") for prefix, handler in loaded.service.asgi_routes().items()}
        self.asgi = _PrefixFront(limited, fast) if fast else limited

    def _admin_token(self) -> str:
        """A fresh secret per daemon life, readable only by this user: local tools that can
        read the home (e.g. `proofmesh serve`) may administer the node; the network may not."""
        import secrets

        token = secrets.token_urlsafe(32)
        f = node_dir(self.home) / "admin.token"
        tmp = f.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token)
        os.replace(tmp, f)
        return token

    def _rpc_router(self) -> Any:
        """``POST /rpc``: the embedded chain's JSON-RPC, counted per method for /metrics."""
        import anyio
        from fastapi import APIRouter
        from fastapi.responses import JSONResponse

        from proofmesh.chain.rpcserver import _answer, parse_error

        router = APIRouter()
        emb = self.chain.embedded

        async def rpc(request: Request) -> JSONResponse:
            try:
                payload = parse_json(await request.body())
            except BadJSON as exc:   # not JSON, or nested too deep to parse
                return JSONResponse(parse_error(exc), status_code=400)
            for call in payload if isinstance(payload, list) else [payload]:
                if isinstance(call, dict):
                    self.metrics.rpc_call(str(call.get("method", "?")))
            # the chain serialises calls on its own lock; run them off the event loop
            return JSONResponse(await anyio.to_thread.run_sync(_answer, emb, payload))

        router.add_api_route("/rpc", rpc, methods=["POST"], include_in_schema=False)
        return router

    # ============================================================== run & stop
    def serve(self) -> None:
        """Run until SIGTERM/SIGINT (main thread) or :meth:`request_stop`; then clean up."""
        import uvicorn

        if self.app is None:
            self.start()
        # limits.keep_alive_s (75 s) is longer than clients (routers, peers) idle between calls,
        # so pooled connections are not closed under them (uvicorn's default is 5 s); past
        # limits.max_connections uvicorn answers 503
        config = uvicorn.Config(self.asgi, log_config=None, access_log=False, lifespan="on",
                                timeout_graceful_shutdown=self.stop_timeout, ws="none",
                                **self._uvicorn_options)
        self._server = uvicorn.Server(config)
        if threading.current_thread() is threading.main_thread():
            # uvicorn handles SIGTERM/SIGINT while serving (graceful shutdown) and then
            # re-raises the signal to whatever handler was there before. With the default
            # handler that kills the process before _release() runs; a no-op handler lets
            # the daemon finish its cleanup and exit 0.
            import signal

            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: None)
        try:
            assert self._sock is not None
            self._server.run(sockets=[self._sock])
        finally:
            self._release()

    def request_stop(self) -> None:
        """Ask a serving daemon to shut down gracefully (from any thread)."""
        if self._server is not None:
            self._server.should_exit = True

    @property
    def serving(self) -> bool:
        return bool(self._server is not None and self._server.started)

    def _on_start(self) -> None:
        self.started = time.time()
        try:
            self.index.poll()  # type: ignore[union-attr]
        except Exception as exc:  # the chain may be briefly away: the watcher retries
            self._chain_down(exc)
        for loaded in self.services:
            try:
                loaded.service.start()
                loaded.started = True
                log_event(self.log, "service started", service=loaded.service.name, module=loaded.module)
            except Exception as exc:
                loaded.error = f"{type(exc).__name__}: {exc}"
                log_event(self.log, "service failed to start", logging.ERROR, service=loaded.service.name,
                          error=loaded.error)
        if self.chain.embedded is not None:
            self.chain.embedded.set_rpc_url(f"{self.url}/rpc")
        self._publish()
        self._watcher = threading.Thread(target=self._watch, name="proofmesh-node-watch", daemon=True)
        self._watcher.start()
        log_event(self.log, "node started", url=self.url, pid=os.getpid(), backend=self.chain.backend,
                  address=self.account.address if self.account else None, roles=self.roles,
                  services=[s.service.name for s in self.services])

    def _on_stop(self) -> None:
        log_event(self.log, "node stopping", pid=os.getpid())
        assert self.ctx is not None
        self.ctx.stopping.set()
        self._stop_watch.set()
        # Each service gets its share of the stop budget to finish or hand back work.
        budget = self.stop_timeout / max(1, len(self.services))
        for loaded in reversed(self.services):
            if not loaded.started:
                continue
            try:
                loaded.service.stop(budget)
                log_event(self.log, "service stopped", service=loaded.service.name)
            except Exception as exc:
                log_event(self.log, "service failed to stop cleanly", logging.ERROR, service=loaded.service.name,
                          error=f"{type(exc).__name__}: {exc}")
            loaded.started = False
        if self._watcher is not None:
            self._watcher.join(timeout=5)

    def _watch(self) -> None:
        last_node_refresh = 0.0
        while not self._stop_watch.wait(self.poll_interval):
            try:
                self.index.poll()  # type: ignore[union-attr]
                if time.monotonic() - last_node_refresh > 5:
                    self._refresh_node()
                    last_node_refresh = time.monotonic()
                if not self.chain_ok:
                    log_event(self.log, "chain reachable again")
                self.chain_ok, self.chain_error = True, None
            except Exception as exc:
                self._chain_down(exc)

    def _chain_down(self, exc: Exception) -> None:
        msg = exc.message if isinstance(exc, ProofmeshError) else f"{type(exc).__name__}: {exc}"
        if self.chain_ok:
            log_event(self.log, "chain unreachable", logging.WARNING, error=msg)
        self.chain_ok, self.chain_error = False, msg

    def _publish(self) -> None:
        info = DaemonInfo(pid=os.getpid(), url=self.url, started=self.started, backend=self.chain.backend,
                          address=self.account.address if self.account else None)
        p = node_dir(self.home) / "daemon.json"
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(info.as_dict()))
        os.replace(tmp, p)

    def _release(self) -> None:
        """Undo start(): withdraw the URL, close the chain and socket, drop the lock."""
        with contextlib.suppress(FileNotFoundError):
            (node_dir(self.home) / "daemon.json").unlink()
        if self.chain is not None and self.chain.embedded is not None and self._own_chain:
            from proofmesh.chain.client import close_embedded

            self.chain.embedded.set_rpc_url(None)
            close_embedded(self.home.chain_dir)
        elif self.chain is not None and self.chain.embedded is not None and self.url:
            self.chain.embedded.set_rpc_url(None)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)
            self._lock_fd = None
        if self.started:
            log_event(self.log, "node stopped", pid=os.getpid())

    # ================================================================== status
    def snapshot(self) -> dict[str, Any]:
        """Live figures for /metrics."""
        store = self.ctx.store if self.ctx else None
        out: dict[str, Any] = {"roles": self.roles, "stake": self.stake}
        if self.index is not None:
            out.update(head=self.index.head, transactions=self.index.transactions, events=len(self.index.all()))
        if store is not None:
            cids = list(store.list())
            out.update(blobs=len(cids), store_bytes=store.total_size())
        out["services"] = {s.service.name: {"up": s.started, "metrics": _safe_call(s.service.metrics, {})}
                           for s in self.services}
        return out

    def health(self) -> dict[str, Any]:
        from proofmesh.chain.core import role_names

        services = {s.service.name: {"up": s.started, "error": s.error, **_safe_call(s.service.health, {})}
                    for s in self.services}
        ok = self.chain_ok and all(s.started for s in self.services)
        return {"ok": ok, "version": VERSION, "pid": os.getpid(), "url": self.url,
                "uptime_s": round(time.time() - self.started, 1) if self.started else 0.0,
                "backend": self.chain.backend, "chain_id": self.chain.chain_id,
                "chain_ok": self.chain_ok, "chain_error": self.chain_error,
                "head": self.index.head if self.index else -1,
                "rpc": f"{self.url}/rpc" if self.chain.embedded is not None else self.chain.rpc_url,
                "address": self.account.address if self.account else None,
                "roles": role_names(self.roles), "stake": str(self.stake),
                "deployed": "MeshToken" in self.chain.addresses,
                "services": services, "skipped": self.skipped}


class _PrefixFront:
    """Hands requests under a service's fast prefixes straight to that service; everything
    else (and the lifespan) goes to the daemon's FastAPI app."""

    def __init__(self, app: Any, routes: dict[str, Any]) -> None:
        self.app = app
        self.routes = sorted(routes.items(), key=lambda kv: -len(kv[0]))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            for prefix, handler in self.routes:
                if path.startswith(prefix):
                    return await handler(scope, receive, send)
        await self.app(scope, receive, send)


def _safe_call(fn: Any, default: dict[str, Any]) -> dict[str, Any]:
    try:
        return dict(fn())
    except Exception as exc:  # a broken service must not break /health or /metrics
        return {**default, "error": f"{type(exc).__name__}: {exc}"}


def stop_daemon(home: Home, timeout: float = 30.0) -> DaemonInfo:
    """SIGTERM the home's daemon and wait for it to release its lock."""
    import signal

    info = running_daemon(home)
    if info is None:
        raise DaemonError(f"no node daemon is running for home {home.path}", fix="start one with `proofmesh node start`")
    if info.pid <= 0:
        raise DaemonError("the node daemon is still starting; its PID is not known yet", fix="try again in a second")
    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running_daemon(home) is None:
            return info
        time.sleep(0.1)
    raise DaemonError(f"the node daemon (pid {info.pid}) did not stop within {timeout:.0f}s",
                      fix=f"check {home.path}/node/node.log; `kill -9 {info.pid}` is safe (state is on disk)")


def daemon_health(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """GET ``url``/health, or None if nothing answers."""
    import httpx

    try:
        r = httpx.get(f"{url}/health", timeout=timeout)
        return r.json()
    except (httpx.HTTPError, ValueError):
        return None


__all__ = ["NodeDaemon", "DaemonError", "DaemonInfo", "running_daemon", "stop_daemon", "daemon_health"]
