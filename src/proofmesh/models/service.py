"""Node service adapter: the node daemon evaluates model versions when the node holds EVALUATOR.

Every ``evaluator_interval`` seconds (a setting; default 2) the service walks the open
ModelEvaluation requests and:

* as a keeper, draws the evaluators of a request whose seed block is mined (anyone may;
  the contract takes the randomness from a block mined after the request);
* for every request that drew this node and that it has not attested yet: fetches the
  revealed eval set and the version's weights **from other nodes' stores by CID**
  (the on-chain locator ``ModelRegistry.weights_cid_of``, the owner's node first; every
  blob re-hashed on arrival), checks the eval set's root and the per-tensor weights root
  against the chain, runs the evaluation (:func:`proofmesh.models.evaluate.evaluate_path`)
  and submits its EIP-712 attestation before the request's deadline.

Weights whose root is not the registered one are refused: the error is logged and shown
in ``/health`` and ``/svc/evaluator/status``, and no attestation is made (a no-show costs
reputation; a false value would cost more). The same bundle is not fetched again for
that request, a re-published one is. State is the chain itself (``has_attested``), so a
restarted node neither misses nor repeats an attestation.
"""

from __future__ import annotations

import threading
import time
from typing import Any

ROLES = 32  # NodeRegistry EVALUATOR


class EvaluatorService:
    """The evaluator loop as a NodeService."""

    name = "evaluator"

    def __init__(self, ctx: Any) -> None:
        from proofmesh.models.registry import ModelRegistryClient

        self.ctx = ctx
        self.client = ModelRegistryClient(ctx.chain, blobs=ctx.store)
        self.me = ctx.account.address
        self.interval = ctx.home.settings.evaluator_interval
        self.workdir = ctx.home.dir("models") / "evaluator"
        self.attested: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []
        self.drawn: list[int] = []
        self.errors = 0
        self.last_error: str | None = None
        self._done: set[int] = set()            # requests with nothing left for this node to do
        self._refused_bundle: dict[int, str] = {}   # request -> weights bundle CID refused for it
        self._retry_at: dict[int, float] = {}       # request -> when to try fetching its inputs again
        self.retry_seconds = ctx.home.settings.evaluator_retry
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ NodeService
    def router(self) -> Any:
        from fastapi import APIRouter

        r = APIRouter(tags=["evaluator"])

        @r.get("/status")
        def status() -> dict[str, Any]:
            return {"evaluator": self.me, "attested": self.attested[-50:], "refused": self.refused[-50:],
                    "drew": self.drawn[-50:], "errors": self.errors, "last_error": self.last_error}

        return r

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="proofmesh-evaluator", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        # an evaluation in progress is handed back as is: the chain still shows the
        # request unattested, so the next start picks it up if the window is open
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def health(self) -> dict[str, Any]:
        return {"attested": len(self.attested), "refused": len(self.refused), "poll_errors": self.errors,
                "last_error": self.last_error}

    def metrics(self) -> dict[str, float]:
        return {"evaluator_attested": float(len(self.attested)), "evaluator_refused": float(len(self.refused)),
                "evaluator_draws": float(len(self.drawn)), "evaluator_poll_errors": float(self.errors)}

    # ------------------------------------------------------------------ loop
    def _loop(self) -> None:
        from proofmesh.node.logs import log_event

        while not self.ctx.stopping.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # retried on the next round
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log_event(self.ctx.log, "evaluator poll failed", 30, error=self.last_error)
            self.ctx.stopping.wait(self.interval)

    def poll_once(self) -> list[str]:
        """Draw due requests and evaluate where this node is drawn; returns what was done."""
        from proofmesh.errors import ContractRevert

        done: list[str] = []
        chain, ev = self.ctx.chain, self.client.evaluation
        for rid in range(1, chain.call(ev.functions.request_count()) + 1):
            if rid in self._done or self.ctx.stopping.is_set():
                continue
            req = self.client.request(rid)
            if req["finalized"]:
                self._done.add(rid)
                continue
            if not req["drawn"]:
                if chain.block_number() <= req["seed_block"]:
                    continue
                try:
                    chain.transact(ev.functions.draw(rid))
                except ContractRevert:
                    continue  # another keeper was first (or the seed re-committed): read again next round
                self.drawn.append(rid)
                done.append(f"drew request {rid}")
                req = self.client.request(rid)
                if not req["drawn"]:
                    continue
            if (self.me not in req["evaluators"] or chain.call(ev.functions.has_attested(rid, self.me))
                    or chain.timestamp() > req["deadline"]):
                self._done.add(rid)
                continue
            if time.monotonic() < self._retry_at.get(rid, 0.0):
                continue
            outcome = self._evaluate(rid, req)
            if outcome:
                done.append(outcome)
        return done

    # ------------------------------------------------------------------ one evaluation
    def _evaluate(self, rid: int, req: dict[str, Any]) -> str | None:
        from proofmesh.errors import ContractRevert, NotAvailableError, ProofmeshError, StoreError, VerificationError
        from proofmesh.models import evalset as E
        from proofmesh.models.distribution import fetch_weights, peers_for, weights_cid
        from proofmesh.models.evaluate import evaluate_path
        from proofmesh.node.logs import log_event
        from proofmesh.store.fetch import fetch

        log = self.ctx.log
        version = req["version"]
        bundle = weights_cid(self.client, version)
        if bundle and self._refused_bundle.get(rid) == bundle:
            return None  # already refused these weights; wait for a re-publication or the deadline
        rec = self.client.version(version)
        peers = peers_for(self.client, version, exclude=[self.ctx.base_url])
        t0 = time.monotonic()
        try:
            es_info = self.client.eval_set(req["eval_set"])
            fetch(es_info["cid"], peers, self.ctx.store, timeout=60.0,
                  min_rate_kbps=self.ctx.home.settings.http_min_rate_kbps)
            es_file = self.workdir / f"evalset-{req['eval_set']}.jsonl"
            es_file.parent.mkdir(parents=True, exist_ok=True)
            es_file.write_bytes(self.ctx.store.get_bytes(es_info["cid"]))
            es = E.load(es_file)
            if "0x" + es.root.hex() != es_info["root"]:
                raise VerificationError(f"eval set {req['eval_set']} (blob {es_info['cid']}) has root "
                                        f"0x{es.root.hex()}, the chain says {es_info['root']}",
                                        fix="the committer revealed a CID that does not hold the committed set")
            model = fetch_weights(self.client, version, self.workdir / "weights", peers=peers)
            base = fetch_weights(self.client, rec.base, self.workdir / "weights", peers=peers) \
                if rec.kind == "lora" else None
        except VerificationError as exc:
            self._refused_bundle[rid] = bundle
            self.refused.append({"request": rid, "version": version, "bundle": bundle, "reason": exc.message})
            self.last_error = exc.message
            log_event(log, "evaluation refused: weights or eval set do not match the chain", 40, request=rid,
                      version=version, bundle=bundle, error=exc.message)
            return f"refused request {rid}"
        except (NotAvailableError, StoreError) as exc:
            # not published yet, or no peer up: try again later while the window is open
            self._retry_at[rid] = time.monotonic() + self.retry_seconds
            self.last_error = exc.message
            log_event(log, "evaluation inputs not retrievable yet", 30, request=rid, version=version,
                      error=exc.message)
            return None
        fetched_s = time.monotonic() - t0
        try:
            result = evaluate_path(model, es.records, req["metric"], base=base)
        except ProofmeshError as exc:
            self._refused_bundle[rid] = bundle
            self.refused.append({"request": rid, "version": version, "bundle": bundle, "reason": exc.message})
            log_event(log, "evaluation failed", 40, request=rid, version=version, error=exc.message)
            return f"could not evaluate request {rid}"
        try:
            a = self.client.make_attestation(rid, result.value, self.ctx.account, deadline=req["deadline"])
            tx = self.client.submit_attestation(rid, a)
        except ContractRevert as exc:
            log_event(log, "attestation refused", 30, request=rid, reason=exc.reason)
            self._done.add(rid)
            return None
        self._done.add(rid)
        self.attested.append({"request": rid, "version": version, "eval_set": req["eval_set"],
                              "metric": result.metric, "value": result.value, "records": result.records})
        log_event(log, "attested model evaluation", request=rid, version=version, metric=result.metric,
                  value=result.value, fetch_s=round(fetched_s, 2), eval_s=round(time.monotonic() - t0 - fetched_s, 2),
                  gas=tx.gas_used)
        return f"attested request {rid}"


def create(ctx: Any) -> EvaluatorService | None:
    """An evaluator for a node with a key on a chain that has ModelEvaluation."""
    if ctx.chain is None or ctx.account is None or "ModelEvaluation" not in ctx.chain.addresses:
        return None
    return EvaluatorService(ctx)
