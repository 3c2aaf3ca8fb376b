"""Node service adapter: the node daemon serves registered model versions when the node holds INFERENCE.

What to serve, in order (a version listed twice is served once, from the first entry):

1. ``<home>/config.toml``::

       [inference]
       serve = [{version = 3, onnx = "/path/model.onnx", price = "0.01", epoch_seconds = 600}]

2. ``<home>/inference/serve.json`` — one such entry or a list (earlier releases);
3. ``<home>/inference/served.json`` — versions registered with the running daemon by
   ``proofmesh serve VERSION --onnx FILE`` (``POST /svc/inference/versions``, authorised
   by the daemon's admin token in ``<home>/node/admin.token``), kept so a restart serves
   them again.

An entry may name ``"circuit": "/path/to/circuit-dir"`` for ZK mode; by default the
circuit built in this home for that ONNX and the registered verifying key is used.

The node's inference API (``/v1/infer``, ``/v1/info``, …) is answered at the daemon's
root, because routers find nodes by their registry endpoint and call ``<endpoint>/v1/...``.
Requests go straight to the version's :func:`~proofmesh.inference.server.create_app`
app (ahead of the daemon's FastAPI stack, so serving inside the daemon costs no more
than serving alone). With several versions, a request picks one by ``?version=N``, an
``X-Proofmesh-Version`` header, or the ``version`` field of a JSON ``/v1/infer`` body;
otherwise the first listed version answers (routers discover that one).
"""

from __future__ import annotations

import json
import os
import threading
import tomllib
from pathlib import Path
from typing import Any

from fastapi import Request  # module level: FastAPI resolves string annotations in module globals

from proofmesh.errors import ConfigError, InputError, ProofmeshError
from proofmesh.http_limits import BadJSON, parse_json

ROLES = 4  # NodeRegistry INFERENCE
COMMITTEE_TICK_S = 5.0   # how often the daemon checks for votes to reveal and rewards to claim
SERVED_FILE = "inference/served.json"
TOKEN_HEADER = "authorization"


# --------------------------------------------------------------------------- specs

def _spec(raw: Any, where: str) -> dict[str, Any]:
    """A validated serve entry: ``{"version": int, "onnx": str, ...}``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a serve entry must be a table/object, got {raw!r}",
                          fix='write {version = N, onnx = "/path/model.onnx"}')
    try:
        version, onnx = int(raw["version"]), str(raw["onnx"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: serve entry {raw!r}: {exc!r} is missing or invalid",
                          fix='write {version = N, onnx = "/path/model.onnx"}') from None
    if version <= 0:
        raise ConfigError(f"{where}: version must be a positive id, got {version}", fix="use the registered version id")
    out = {k: v for k, v in raw.items() if k in ("price", "circuit", "epoch_seconds", "delay_ms")}
    return {"version": version, "onnx": str(Path(onnx).expanduser()), **out}


def configured_specs(home: Any) -> list[dict[str, Any]]:
    """Every version this home's daemon should serve (config.toml, serve.json, served.json)."""
    specs: list[dict[str, Any]] = []
    if home.config_file.exists():
        try:
            section = tomllib.loads(home.config_file.read_text()).get("inference", {})
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{home.config_file} is not valid TOML: {exc}", fix=f"fix {home.config_file}") from None
        entries = section.get("serve", []) if isinstance(section, dict) else None
        if not isinstance(entries, list):
            raise ConfigError(f"{home.config_file}: [inference] serve must be a list of tables",
                              fix='serve = [{version = 3, onnx = "/path/model.onnx"}]')
        specs += [_spec(e, f"{home.config_file} [inference]") for e in entries]
    for rel in ("inference/serve.json", SERVED_FILE):
        f = home.path / rel
        if not f.exists():
            continue
        try:
            raw = json.loads(f.read_text())
        except ValueError as exc:
            raise ConfigError(f"{f} is not valid JSON: {exc}", fix=f"fix or delete {f}") from None
        specs += [_spec(e, str(f)) for e in (raw if isinstance(raw, list) else [raw])]
    seen: set[int] = set()
    out = []
    for s in specs:
        if s["version"] not in seen:
            seen.add(s["version"])
            out.append(s)
    return out


def _save_served(home: Any, change: dict[str, Any] | None = None, remove: int | None = None) -> None:
    """Add/replace (``change``) or drop (``remove``) an entry of served.json, atomically."""
    f = home.path / SERVED_FILE
    f.parent.mkdir(parents=True, exist_ok=True)
    entries = json.loads(f.read_text()) if f.exists() else []
    key = change["version"] if change else remove
    entries = [e for e in entries if int(e.get("version", -1)) != key]
    if change:
        entries.append(change)
    tmp = f.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=2))
    os.replace(tmp, f)


# --------------------------------------------------------------------------- the service

class _Served:
    """One served version: its InferenceNode and the node's ASGI app."""

    def __init__(self, spec: dict[str, Any], node: Any, app: Any) -> None:
        self.spec, self.node, self.app = spec, node, app


class InferenceService:
    """Every configured :class:`~proofmesh.inference.server.InferenceNode`, as one NodeService."""

    name = "inference"

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.served: dict[int, _Served] = {}        # insertion order: the first is the default
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.epochs_committed = 0
        self.epoch_errors = 0
        self.votes_revealed = 0
        self.rewards_claimed = 0
        self.committee_errors = 0
        for spec in configured_specs(ctx.home):
            self.add(spec)

    # ------------------------------------------------------------------ versions
    def _build(self, spec: dict[str, Any]) -> _Served:
        from proofmesh.chain.core import to_wei
        from proofmesh.inference.registry import InferenceRegistry
        from proofmesh.inference.server import InferenceNode, NodeConfig, create_app
        from proofmesh.payments import Ledger, PaymentChannels

        ctx, version, onnx = self.ctx, spec["version"], Path(spec["onnx"])
        if not onnx.is_file():
            raise InputError(f"version {version}: ONNX file {onnx} does not exist",
                             fix="give the path of the ONNX file registered for this version")
        reg = InferenceRegistry(ctx.chain)
        circuit = Path(spec["circuit"]) if spec.get("circuit") else self._registered_circuit(reg, version, onnx)
        price = to_wei(str(spec.get("price", "0")))
        workdir = ctx.home.dir("inference") / f"node-{ctx.account.address}-{version}"
        workdir.mkdir(parents=True, exist_ok=True)
        ledger = Ledger(PaymentChannels(ctx.chain), ctx.account.address, path=workdir / "ledger.json") if price else None
        try:
            # InferenceNode refuses to start if the file is not the one the registry pins
            node = InferenceNode(NodeConfig(version, onnx, workdir, price=price, circuit_dir=circuit,
                                            delay_ms=int(spec.get("delay_ms", 0)),
                                            max_body_mb=ctx.home.settings.http_max_body_mb),
                                 ctx.account, domain=reg.domain, registry=reg, ledger=ledger)
        except BaseException:
            if ledger is not None:
                ledger.close()        # its journal's lock: a corrected request opens it again
            raise
        return _Served(spec, node, create_app(node))

    def _registered_circuit(self, reg: Any, version: int, onnx: Path) -> Path | None:
        rec = reg.circuit(version)
        if not rec.registered:
            return None
        from proofmesh.inference.cli import find_circuit
        from proofmesh.inference.model import file_sha256

        found = find_circuit(self.ctx.home.dir("inference") / "circuits", file_sha256(onnx), rec.vk_hash)
        return found.dir if found else None

    def add(self, spec: dict[str, Any], *, persist: bool = False) -> dict[str, Any]:
        """Serve ``spec``'s version (replacing an earlier entry for it); with ``persist``,
        also from the next start on. Raises if the node refuses it, with the earlier entry served
        again (restarted: the two cannot hold the version's journals at once)."""
        spec = _spec(spec, "serve request")
        version = spec["version"]
        with self._lock:
            old = self.served.get(version)
        if old is None:
            served = self._build(spec)
            with self._lock:
                self.served[version] = served
        else:
            # The replacement opens the same books and used-nonce journal, which have one owner
            # at a time (store/journal.py): the old node hands them back first, and comes back
            # (same place in the order) if the new one is refused.
            _close(old.node)
            try:
                served = self._build(spec)
            except BaseException:
                try:
                    restored = self._build(old.spec)
                except Exception:
                    restored = None          # the refusal of the new spec is the error to report
                with self._lock:
                    if restored is None:
                        self.served.pop(version, None)
                    else:
                        self.served[version] = restored
                raise
            with self._lock:
                self.served[version] = served
        if persist:
            _save_served(self.ctx.home, change=spec)
        return served.node.info()

    def remove(self, version: int) -> bool:
        """Stop serving ``version`` (and forget a runtime registration of it)."""
        with self._lock:
            old = self.served.pop(version, None)
        _save_served(self.ctx.home, remove=version)
        if old is None:
            return False
        self._commit(old.node)
        _close(old.node)
        return True

    # ------------------------------------------------------------------ HTTP
    def router(self) -> Any:
        """``/svc/inference/versions``: list (anyone), add / remove (the daemon's admin token)."""
        import hmac

        from fastapi import APIRouter
        from fastapi.responses import JSONResponse

        r = APIRouter(tags=["inference"])

        def authorised(request: Request) -> bool:
            given = request.headers.get(TOKEN_HEADER, "").removeprefix("Bearer ").strip()
            return bool(self.ctx.admin_token) and hmac.compare_digest(given, self.ctx.admin_token)

        def denied() -> JSONResponse:
            return JSONResponse({"error": "this call needs the node's admin token",
                                 "fix": f"run `proofmesh serve` on the node's machine (it reads "
                                        f"{self.ctx.home.path}/node/admin.token)"}, status_code=401)

        @r.get("/versions")
        def versions() -> dict[str, Any]:
            return {"versions": [s.node.info() for s in list(self.served.values())]}

        async def add(request: Request) -> JSONResponse:
            from starlette.concurrency import run_in_threadpool

            if not authorised(request):
                return denied()
            try:
                spec = parse_json(await request.body())   # BadJSON also for JSON nested too deep
                info = await run_in_threadpool(self.add, spec, persist=True)
            except BadJSON as exc:
                return JSONResponse({"error": exc.message, "fix": "POST {version, onnx, ...}", "type": "BadJSON"},
                                    status_code=422)
            except ValueError:
                return JSONResponse({"error": "body is not JSON", "fix": "POST {version, onnx, ...}"}, status_code=422)
            except ProofmeshError as exc:
                return JSONResponse({"error": exc.message, "fix": exc.fix, "type": type(exc).__name__},
                                    status_code=422)
            return JSONResponse({"serving": info, "url": self.ctx.base_url})

        async def remove(version: int, request: Request) -> JSONResponse:
            from starlette.concurrency import run_in_threadpool

            if not authorised(request):
                return denied()
            return JSONResponse({"removed": await run_in_threadpool(self.remove, version)})

        r.add_api_route("/versions", add, methods=["POST"])
        r.add_api_route("/versions/{version}", remove, methods=["DELETE"])
        return r

    def asgi_routes(self) -> dict[str, Any]:
        """Path prefixes the daemon hands to this service's ASGI callable directly."""
        return {"/v1/": self._dispatch}

    async def _dispatch(self, scope: dict, receive: Any, send: Any) -> None:
        served = self.served
        version = _requested_version(scope)
        if version is None and len(served) > 1 and scope["method"] == "POST" and scope["path"] == "/v1/infer":
            # the daemon runs these routes behind its BodyLimit: a body over http_max_body_mb is
            # answered 413 there, and reaches us as a disconnect
            body, receive = await _buffer(receive)
            if body is None:
                return
            try:
                version = int(parse_json(body).get("version"))
            except (BadJSON, ValueError, TypeError, AttributeError):
                version = None   # a binary (wire) body or no version field: the default version answers
        if version is None:
            target = next(iter(served.values()), None)
        else:
            target = served.get(version)
        if target is None:
            what = f"version {version}" if version is not None else "any model version"
            return await _json(send, 404, {"error": f"this node does not serve {what}",
                                           "fix": "serve it: `proofmesh serve VERSION --onnx FILE` on the node",
                                           "served": list(served)})
        await target.app(scope, receive, send)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._duties, name="proofmesh-inference-duties", daemon=True)
        self._thread.start()

    def _duties(self) -> None:
        """Every few seconds: committee duty (reveal committed votes when their window opens,
        claim rewards); every node's ``epoch_seconds``: commit its epoch of proven receipts."""
        import time

        last_epoch: dict[int, float] = {}
        periods = [float(s.spec.get("epoch_seconds", 600)) for s in self.served.values()]
        while not self._stop.wait(min([COMMITTEE_TICK_S, *periods])):
            now = time.monotonic()
            for version, s in list(self.served.items()):
                self._committee(s.node)
                if now - last_epoch.setdefault(version, now) >= float(s.spec.get("epoch_seconds", 600)):
                    last_epoch[version] = now
                    self._commit(s.node)

    def _committee(self, node: Any) -> None:
        from proofmesh.inference.committee import committee_tick

        try:
            done = committee_tick(node)
        except Exception:  # chain unreachable, a race with the window: retried next tick
            self.committee_errors += 1
            return
        self.votes_revealed += len(done["revealed"])
        self.rewards_claimed += len(done["claimed"])

    def _commit(self, node: Any) -> None:
        if node.circuit is None:
            return
        try:
            if node.commit_epoch() is not None:
                self.epochs_committed += 1
        except Exception:  # the leaves stay queued for the next try
            self.epoch_errors += 1

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout / 2)
        for s in list(self.served.values()):
            # hand back: commit what was proven since the last epoch so its receipts settle
            self._commit(s.node)
            _close(s.node)

    def health(self) -> dict[str, Any]:
        return {"versions": list(self.served), "zk": {v: s.node.circuit is not None for v, s in self.served.items()},
                "served": {v: s.node.served for v, s in self.served.items()}}

    def metrics(self) -> dict[str, float]:
        return {"inference_versions": float(len(self.served)),
                "inference_served": float(sum(s.node.served for s in self.served.values())),
                "inference_epochs": float(self.epochs_committed), "inference_epoch_errors": float(self.epoch_errors),
                "inference_votes_revealed": float(self.votes_revealed),
                "inference_vote_rewards_claimed": float(self.rewards_claimed),
                "inference_committee_errors": float(self.committee_errors)}


def _close(node: Any) -> None:
    try:
        node.close()
    except Exception:  # closing a prover that already stopped
        pass
    if getattr(node, "ledger", None) is not None:
        node.ledger.close()   # the books this service opened for the node (their journal's lock too)


def _requested_version(scope: dict) -> int | None:
    for k, v in scope["headers"]:
        if k == b"x-proofmesh-version":
            try:
                return int(v)
            except ValueError:
                return -1
    qs = scope.get("query_string", b"")
    if b"version=" in qs:
        from urllib.parse import parse_qs

        got = parse_qs(qs.decode("latin-1")).get("version")
        if got:
            try:
                return int(got[0])
            except ValueError:
                return -1
    return None


async def _buffer(receive: Any) -> tuple[bytes | None, Any]:
    """Read the whole request body; return it and a ``receive`` that replays it, or None if
    the client went away (or BodyLimit cut the body off) before the end: nobody to answer."""
    chunks = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None, receive
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


async def _json(send: Any, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def create(ctx: Any) -> InferenceService | None:
    """The inference service of a node with a key on a chain that has the InferenceRegistry
    (with no version yet, it waits for `proofmesh serve` to register one)."""
    if ctx.chain is None or ctx.account is None or "InferenceRegistry" not in ctx.chain.addresses:
        return None
    return InferenceService(ctx)


# --------------------------------------------------------------------------- `proofmesh serve`

def serve_with_daemon(home: Any, spec: dict[str, Any], *, host: str | None = None, port: int | None = None,
                      account_name: str | None = None, password: str | None = None,
                      announce: Any = print) -> str:
    """``proofmesh serve``: register ``spec`` with the home's running daemon (returns its
    URL), or, when none runs, start the daemon in the foreground serving it (returns when
    the daemon stops). Either way the version is served again after a restart."""
    import httpx

    from proofmesh.node.daemon import DaemonError, NodeDaemon, running_daemon

    spec = _spec(spec, "proofmesh serve")
    info = running_daemon(home)
    if info is not None:
        if not info.url:
            raise DaemonError("the node daemon is still starting", fix="run `proofmesh serve` again in a few seconds")
        token_file = home.path / "node" / "admin.token"
        try:
            token = token_file.read_text().strip()
        except OSError:
            raise DaemonError(f"cannot read the daemon's admin token {token_file}",
                              fix="run `proofmesh serve` as the user running the node daemon") from None
        r = httpx.post(f"{info.url}/svc/inference/versions", json=spec, timeout=300.0,
                       headers={TOKEN_HEADER: f"Bearer {token}"})
        if r.status_code == 404:
            raise DaemonError(f"the node daemon at {info.url} runs no inference service",
                              fix="give the node the INFERENCE role (`proofmesh node update --roles ...,inference`) "
                                  "and restart it (`proofmesh node stop`, `proofmesh node start`)")
        body = r.json()
        if r.status_code != 200:
            raise ProofmeshError(body.get("error", f"HTTP {r.status_code}"), fix=body.get("fix", ""))
        announce(f"version {spec['version']} registered with the running node daemon: serving on {info.url}/v1 "
                 f"(pid {info.pid})")
        return info.url
    _save_served(home, change=spec)
    daemon = NodeDaemon(home, host=host, port=port, account_name=account_name, password=password)
    try:
        daemon.start()
        svc = next((s.service for s in daemon.services if s.service.name == "inference"), None)
        if svc is None or spec["version"] not in svc.served:
            why = next((s["reason"] for s in daemon.skipped if s["module"] == __name__), "service not loaded")
            raise DaemonError(f"the node cannot serve version {spec['version']}: {why}",
                              fix="register the node with the INFERENCE role (`proofmesh node update --roles "
                                  "...,inference`) and deploy the inference contracts")
    except BaseException:
        daemon._release()
        _save_served(home, remove=spec["version"])
        raise
    announce(f"node daemon serving version {spec['version']} on {daemon.url}/v1 (Ctrl-C stops it; "
             f"`proofmesh node start` serves it again)")
    daemon.serve()
    return daemon.url
