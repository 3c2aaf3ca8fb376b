"""Node service adapter: the node daemon validates data batches when the node holds DATA_VALIDATOR.

Every ``validator_interval`` seconds (a setting; default 2) the service:

* as a keeper, draws the committee of any published batch that has none once the
  seed block is past (anyone may; the contract takes the randomness from a block the
  contributor could not know when publishing);
* for every committee this node is on and has not attested yet: fetches the batch's
  records blob from the other nodes in the registry (re-hashed on arrival, so a peer
  cannot feed it wrong records), checks the sampled records
  (:func:`proofmesh.data.validator.attest`) and submits its EIP-712-signed attestation.
  Records nobody serves are attested as *unavailable*, which is the point of checking.

State is the chain itself (``attested(batch, validator)``), so a restarted node neither
misses nor repeats an attestation.
"""

from __future__ import annotations

import threading
from typing import Any

ROLES = 1  # NodeRegistry DATA_VALIDATOR


class ValidatorService:
    """The data validator loop as a NodeService."""

    name = "validator"

    def __init__(self, ctx: Any) -> None:
        from proofmesh.data.client import DataRegistryClient

        self.ctx = ctx
        self.client = DataRegistryClient(ctx.chain)
        self.me = ctx.account.address
        self.interval = ctx.home.settings.validator_interval
        self.attested: list[int] = []
        self.drawn: list[int] = []
        self.errors = 0
        self._done: set[int] = set()      # batches with nothing left for this node to do
        self._thread: threading.Thread | None = None

    def router(self) -> Any:
        from fastapi import APIRouter

        r = APIRouter(tags=["validator"])

        @r.get("/status")
        def status() -> dict[str, Any]:
            return {"validator": self.me, "attested": self.attested[-50:], "drew": self.drawn[-50:],
                    "errors": self.errors}

        return r

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="proofmesh-validator", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        from proofmesh.node.logs import log_event

        while not self.ctx.stopping.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # retried on the next round
                self.errors += 1
                log_event(self.ctx.log, "validator poll failed", 30, error=f"{type(exc).__name__}: {exc}")
            self.ctx.stopping.wait(self.interval)

    def poll_once(self) -> list[str]:
        """Draw due committees and attest where this node is drawn; returns what was done."""
        from proofmesh.errors import ContractRevert

        done: list[str] = []
        chain, c = self.ctx.chain, self.client.c
        for batch_id in range(1, self.client.batch_count() + 1):
            if batch_id in self._done or self.ctx.stopping.is_set():
                continue
            members = self.client.committee(batch_id)
            if not members:
                seed_block = chain.call(c.functions.seed_block_of(batch_id))
                if chain.block_number() > seed_block:
                    try:
                        chain.transact(c.functions.draw_committee(batch_id))
                        self.drawn.append(batch_id)
                        done.append(f"drew committee of batch {batch_id}")
                        members = self.client.committee(batch_id)
                    except ContractRevert:
                        continue  # another keeper was first, or the batch is closed
                else:
                    continue
            if self.me not in members or chain.call(c.functions.attested(batch_id, self.me)):
                self._done.add(batch_id)
                continue
            if self._attest(batch_id):
                self.attested.append(batch_id)
                self._done.add(batch_id)
                done.append(f"attested batch {batch_id}")
        return done

    def _attest(self, batch_id: int) -> bool:
        from proofmesh.chain.core import Registry
        from proofmesh.data.validator import attest
        from proofmesh.errors import ContractRevert, ProofmeshError
        from proofmesh.node.logs import log_event
        from proofmesh.store.fetch import fetch

        b = self.client.batch(batch_id)
        store = self.ctx.store
        if not store.has(b.records_cid):
            own = self.ctx.base_url.rstrip("/")
            peers = [n.endpoint.rstrip("/") for n in Registry(self.ctx.chain).nodes()
                     if n.endpoint.startswith("http") and n.address != self.me and n.endpoint.rstrip("/") != own]
            try:
                fetch(b.records_cid, peers, store, timeout=30.0,
                      min_rate_kbps=self.ctx.home.settings.http_min_rate_kbps)
            except ProofmeshError as exc:
                # attest anyway: check_batch reports the records as unavailable
                log_event(self.ctx.log, "batch records not retrievable", 30, batch=batch_id, error=exc.message)
        try:
            res = attest(self.ctx.chain, store, batch_id, self.ctx.account)
        except ContractRevert as exc:
            log_event(self.ctx.log, "attestation refused", 30, batch=batch_id, reason=exc.reason)
            return False
        log_event(self.ctx.log, "attested data batch", batch=batch_id, available=res["available"],
                  quality_bps=res["quality_bps"], duplicate_bps=res["duplicate_bps"])
        return True

    def stop(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def health(self) -> dict[str, Any]:
        return {"attested": len(self.attested), "poll_errors": self.errors}

    def metrics(self) -> dict[str, float]:
        return {"validator_attested": float(len(self.attested)), "validator_committees_drawn": float(len(self.drawn)),
                "validator_poll_errors": float(self.errors)}


def create(ctx: Any) -> ValidatorService | None:
    """A validator for a node with a key on a chain that has the DataRegistry."""
    if ctx.chain is None or ctx.account is None or "DataRegistry" not in ctx.chain.addresses:
        return None
    return ValidatorService(ctx)
