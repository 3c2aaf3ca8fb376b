"""Store repair: find blobs whose bytes rotted on disk and fetch them again from peers.

The blob store already re-hashes on every read and quarantines a file that no longer
matches its CID. This built-in node service closes the loop: every ``interval``
seconds (and on ``POST /svc/store/scrub``) it re-hashes every stored blob, collects
CIDs that were quarantined (by the scrub or by any earlier read), and fetches each
from the other nodes in the on-chain registry. :func:`proofmesh.store.fetch.fetch`
re-hashes what a peer sends, so a lying peer cannot "repair" a blob with wrong bytes.
The bad copies stay in ``quarantine/`` for inspection.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from proofmesh.errors import ProofmeshError
from proofmesh.node.logs import log_event
from proofmesh.node.services import NodeContext


class StoreRepair:
    """The ``store`` service of every node."""

    name = "store"

    def __init__(self, ctx: NodeContext, *, interval: float = 600.0) -> None:
        self.ctx = ctx
        self.interval = interval
        self._lock = threading.Lock()          # one scrub at a time
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self.last: dict[str, Any] = {}
        self.counters = {"scrubs": 0, "blobs_checked": 0, "corrupted_found": 0, "repaired": 0, "repair_failed": 0}

    # -------------------------------------------------------------- NodeService
    def router(self) -> Any:
        import anyio
        from fastapi import APIRouter

        router = APIRouter(tags=["store"])

        @router.post("/scrub")
        async def scrub() -> dict[str, Any]:
            """Re-hash every blob now and re-fetch corrupted ones from peers."""
            return await anyio.to_thread.run_sync(self.scrub)

        @router.get("/status")
        def status() -> dict[str, Any]:
            return {"last": self.last, **self.counters}

        return router

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="proofmesh-store-repair", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._wake.set()
        if self._thread is not None:
            # a scrub in progress finishes its current blob; fetches time out on their own
            self._thread.join(timeout=timeout)

    def health(self) -> dict[str, Any]:
        return {"last_scrub": self.last.get("finished"), "repair_failed": self.counters["repair_failed"]}

    def metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.counters.items()}

    # -------------------------------------------------------------- work
    def _loop(self) -> None:
        while not self.ctx.stopping.is_set():
            self._wake.wait(self.interval)
            if self.ctx.stopping.is_set():
                return
            try:
                self.scrub()
            except Exception as exc:  # keep the loop alive; the next round retries
                log_event(self.ctx.log, "store scrub failed", 40, error=f"{type(exc).__name__}: {exc}")

    def scrub(self) -> dict[str, Any]:
        """Verify every blob; fetch the corrupted (quarantined) ones from peers. Returns a report."""
        from proofmesh.store.fetch import fetch

        store = self.ctx.store
        with self._lock:
            t0 = time.time()
            checked, corrupted = 0, []
            for cid in list(store.list()):
                if self.ctx.stopping.is_set():
                    break
                checked += 1
                try:
                    ok = store.verify(cid)
                except ProofmeshError:
                    ok = False
                if not ok:
                    corrupted.append(cid)
            # quarantined earlier (e.g. by a read that found rot) and not restored since
            for f in store.quarantine_dir.iterdir():
                cid = f.name.rsplit(".", 1)[0]
                if cid not in corrupted and not store.has(cid) and cid not in store.blocked():
                    corrupted.append(cid)
            repaired, failed = [], {}
            peers = self.peers() if corrupted else []
            for cid in corrupted:
                try:
                    res = fetch(cid, peers, store, timeout=30.0,
                                min_rate_kbps=self.ctx.home.settings.http_min_rate_kbps)
                    repaired.append({"cid": cid, "peer": res.peer})
                    log_event(self.ctx.log, "blob repaired from peer", cid=cid, peer=res.peer)
                except ProofmeshError as exc:
                    failed[cid] = exc.message
                    log_event(self.ctx.log, "blob could not be repaired", 30, cid=cid, error=exc.message)
            self.counters["scrubs"] += 1
            self.counters["blobs_checked"] += checked
            self.counters["corrupted_found"] += len(corrupted)
            self.counters["repaired"] += len(repaired)
            self.counters["repair_failed"] += len(failed)
            self.last = {"started": t0, "finished": time.time(), "checked": checked, "corrupted": corrupted,
                         "repaired": repaired, "failed": failed, "peers": peers}
            return self.last

    def peers(self) -> list[str]:
        """Endpoints of the other registered nodes (on-chain), own endpoint excluded."""
        chain = self.ctx.chain
        if chain is None or "NodeRegistry" not in chain.addresses:
            return []
        from proofmesh.chain.core import Registry

        me = self.ctx.account.address if self.ctx.account else None
        own = self.ctx.base_url.rstrip("/")
        return [n.endpoint.rstrip("/") for n in Registry(chain).nodes()
                if n.endpoint.startswith(("http://", "https://")) and n.address != me
                and n.endpoint.rstrip("/") != own]
