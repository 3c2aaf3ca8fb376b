"""Node service adapter: the node daemon runs the compute worker when the node holds COMPUTE.

The worker (:class:`proofmesh.compute.worker.Worker`) polls the JobMarket, applies,
trains, commits/reveals or submits, and does the keeper calls. Inside the daemon it
uses the node's key and blob store (which the daemon already serves at
``/blobs/...`` on the node's registered endpoint, so other workers and the referee can
fetch its results), and keeps its per-job state under ``<home>/compute``.

Stopping: the loop is told to stop between polls. A training run in progress cannot be
interrupted mid-step; the daemon waits up to its stop budget, and if the process goes
away before the result is committed, the restarted worker finds its slot still
"assigned" and trains again (training is deterministic, so it commits the same
result); a result already committed is revealed from the state saved before the
commit. Settings (``config.toml`` or ``PROOFMESH_<NAME>``, :class:`proofmesh.config.Settings`):
``worker_threads`` (torch threads, part of the execution profile jobs must match; default 1)
and ``worker_interval`` (seconds between polls; default 1).
"""

from __future__ import annotations

import threading
from typing import Any

ROLES = 2  # NodeRegistry COMPUTE


class WorkerService:
    """The compute worker loop as a NodeService."""

    name = "worker"

    def __init__(self, ctx: Any) -> None:
        from proofmesh.compute.artifacts import Blobs
        from proofmesh.compute.market import JobMarketClient
        from proofmesh.compute.worker import Worker
        from proofmesh.node.logs import log_event

        self.ctx = ctx
        self.interval = ctx.home.settings.worker_interval
        self.actions: list[str] = []
        self.errors = 0
        blobs = Blobs(ctx.store, min_rate_kbps=ctx.home.settings.http_min_rate_kbps)
        self.worker = Worker(JobMarketClient(ctx.chain), blobs, ctx.home.dir("compute"),
                             threads=ctx.home.settings.worker_threads,
                             log=lambda msg: log_event(ctx.log, msg, service="worker"))
        self._thread: threading.Thread | None = None

    def router(self) -> Any:
        from fastapi import APIRouter

        r = APIRouter(tags=["worker"])

        @r.get("/status")
        def status() -> dict[str, Any]:
            return {"address": self.worker.me, "profile": "0x" + self.worker.profile.profile_id.hex(),
                    "recent_actions": self.actions[-20:], "finished_jobs": sorted(self.worker.done)}

        return r

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="proofmesh-worker", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        from proofmesh.node.logs import log_event

        while not self.ctx.stopping.is_set():
            try:
                self.actions.extend(self.worker.poll_once())
                del self.actions[:-200]
            except Exception as exc:  # a failed poll (chain hiccup) is retried on the next one
                self.errors += 1
                log_event(self.ctx.log, "worker poll failed", 30, error=f"{type(exc).__name__}: {exc}")
            self.ctx.stopping.wait(self.interval)

    def stop(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def health(self) -> dict[str, Any]:
        return {"finished_jobs": len(self.worker.done), "poll_errors": self.errors}

    def metrics(self) -> dict[str, float]:
        return {"worker_actions": float(len(self.actions)), "worker_poll_errors": float(self.errors),
                "worker_finished_jobs": float(len(self.worker.done))}


def create(ctx: Any) -> WorkerService | None:
    """A worker for a node with a key on a chain that has the JobMarket."""
    if ctx.chain is None or ctx.account is None or "JobMarket" not in ctx.chain.addresses:
        return None
    return WorkerService(ctx)
