"""Off-chain verification: the referee's re-execution and a challenger's checks.

The referee never re-runs a whole job. For a replicated dissent it walks the revealed
traces to the first checkpoint where they differ and re-executes that one segment
from the agreed checkpoint; a replica within tolerance of the re-execution survives.
For an optimistic dispute the bisection game has already narrowed things to one
segment. For an audit it re-executes the drawn segments. Missing or mismatching
blobs count against whoever had to serve them.

A :class:`Challenger` is any staked node that re-runs an optimistic result, and if its
own trace differs, challenges and plays the bisection with its own checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proofmesh.compute.artifacts import (Blobs, ResultBundle, load_bundle, load_checkpoint, load_inputs,
                                         load_weights, missing)
from proofmesh.compute.market import JobMarketClient, Trace, audit_plan
from proofmesh.compute.training import (Checkpoint, Tolerance, Trainer, compare_checkpoints, compare_results)


@dataclass
class SegmentVerdict:
    """Result of re-executing one segment of a worker's trace."""

    segment: int
    ok: bool
    reason: str


class Referee:
    """Settles disputes by re-executing single segments."""

    def __init__(self, client: JobMarketClient, blobs: Blobs, tolerance: Tolerance = Tolerance()) -> None:
        self.client = client
        self.blobs = blobs
        self.tol = tolerance
        self.segments_executed = 0

    # -------------------------------------------------------------- helpers
    def peers(self, *nodes: str) -> list[str]:
        urls = [self.client.registry.info(n).endpoint for n in nodes]
        return [u for u in urls if u] + self.blobs.peers

    def _trainer(self, job_id: int) -> tuple[Trainer, Any]:
        info = self.client.job(job_id)
        spec, base, records = load_inputs(self.blobs, info.spec_cid)
        return Trainer(spec, base, records), info

    def _rerun(self, trainer: Trainer, start: Checkpoint) -> Checkpoint:
        K = trainer.spec.train.checkpoint_every
        self.segments_executed += 1
        return trainer.run(start=start, until_step=start.step + K).checkpoints[-1]

    def check_segment(self, trainer: Trainer, bundle: ResultBundle, segment: int, peers: list[str]) -> SegmentVerdict:
        """Re-execute ``segment`` (checkpoint segment-1 -> segment) of ``bundle``."""
        try:
            start = load_checkpoint(self.blobs, bundle, segment - 1, peers)
            claimed = load_checkpoint(self.blobs, bundle, segment, peers)
        except Exception as exc:
            if missing(exc):
                return SegmentVerdict(segment, False, f"checkpoint unavailable or wrong: {exc}")
            raise
        if segment == 1:
            initial = trainer.run(until_step=0).checkpoints[0]
            if initial.hash != start.hash:
                return SegmentVerdict(segment, False, "initial checkpoint is not the spec's")
        cmp = compare_checkpoints(claimed, self._rerun(trainer, start), self.tol)
        if not cmp.within:
            return SegmentVerdict(segment, False, f"re-execution differs (relative distance {cmp.rel_distance:.3g})")
        if segment == len(bundle.trace) - 1:
            try:
                weights = load_weights(self.blobs, bundle, peers)
            except Exception as exc:
                if missing(exc):
                    return SegmentVerdict(segment, False, f"weights unavailable or wrong: {exc}")
                raise
            if not compare_results(trainer, weights, trainer.weights_at(claimed), self.tol).within:
                return SegmentVerdict(segment, False, "final weights are not the final checkpoint's")
        return SegmentVerdict(segment, True, "re-executed within tolerance")

    # -------------------------------------------------------------- replicated
    def judge_replicated(self, job_id: int) -> list[str]:
        """Revealed replicas whose result survives re-execution of the first disputed segment."""
        self.locators: dict[str, tuple[str, str]] = {}
        trainer, info = self._trainer(job_id)
        revealed = {e["args"]["worker"]: e["args"] for e in self.client.chain.events(
            "JobMarket", "Revealed", argument_filters={"job_id": job_id})}
        bundles: dict[str, ResultBundle] = {}
        for w, ev in revealed.items():
            if self.client.slot(job_id, w)["state"] != "revealed":
                continue
            try:
                b = load_bundle(self.blobs, ev["result_cid"], self.peers(w))
            except Exception as exc:
                if missing(exc):
                    continue
                raise
            if b.weights_root != "0x" + ev["weights_root"].hex() or \
                    Trace.from_json(b.trace).root != ev["trace_root"]:
                continue
            bundles[w] = b
            self.locators[w] = (b.manifest_cid, ev["result_cid"])
        alive = dict(bundles)
        n = info.n_segments
        # Walk to the first divergence among the survivors and re-execute that segment.
        while len({tuple(b.trace) for b in alive.values()}) > 1:
            first = min(i for i in range(n + 1) if len({b.trace[i] for b in alive.values()}) > 1)
            if first == 0:
                initial = "0x" + trainer.run(until_step=0).checkpoints[0].hash.hex()
                alive = {w: b for w, b in alive.items() if b.trace[0] == initial}
                continue
            verdicts = {w: self.check_segment(trainer, b, first, self.peers(w)) for w, b in alive.items()}
            alive = {w: b for w, b in alive.items() if verdicts[w].ok}
            if len({b.trace[first] for b in alive.values()}) > 1:
                break     # honest float noise across kernels: every survivor is within tolerance
        # Traces agree (or diverge only within tolerance): each survivor's weights must be
        # what its own final checkpoint merges to (no training needed for that).
        accepted = []
        merged: dict[str, Any] = {}
        for w, b in alive.items():
            try:
                final = load_checkpoint(self.blobs, b, n, self.peers(w))
                weights = load_weights(self.blobs, b, self.peers(w))
            except Exception as exc:
                if missing(exc):
                    continue
                raise
            key = b.trace[n]
            if key not in merged:
                merged[key] = trainer.weights_at(final)
            if compare_results(trainer, weights, merged[key], self.tol).within:
                accepted.append(w)
        return accepted

    def rule_replicated(self, job_id: int) -> list[str]:
        accepted = self.judge_replicated(job_id)
        manifest_cid, result_cid = self.locators[accepted[0]] if accepted else ("", "")
        self.client.rule_replicated(job_id, accepted, manifest_cid, result_cid)
        return accepted

    # -------------------------------------------------------------- optimistic
    def _worker_bundle(self, job_id: int) -> tuple[Trainer, ResultBundle, list[str], Any]:
        trainer, info = self._trainer(job_id)
        worker = info.workers[0]
        peers = self.peers(worker)
        bundle = load_bundle(self.blobs, info.result_cid, peers)
        return trainer, bundle, peers, info

    def judge_dispute(self, job_id: int) -> bool:
        """Whether the worker's checkpoint at the end of the bisected segment is right."""
        g = self.client.game(job_id)["dispute"]
        try:
            trainer, bundle, peers, info = self._worker_bundle(job_id)
        except Exception as exc:
            if missing(exc):
                return False
            raise
        if Trace.from_json(bundle.trace).root.hex() != info.trace_root.removeprefix("0x"):
            return False
        if bundle.trace[g["lo"]] != g["h_lo"] or bundle.trace[g["hi"]] != g["h_hi"]:
            return False
        return self.check_segment(trainer, bundle, g["hi"], peers).ok if g["hi"] == g["lo"] + 1 else False

    def rule_dispute(self, job_id: int) -> bool:
        right = self.judge_dispute(job_id)
        self.client.rule_segment(job_id, right)
        return right

    def audit(self, job_id: int) -> SegmentVerdict | None:
        """Re-execute the drawn audit segments; the first failing one, or None if all pass."""
        plan = self.client.game(job_id)["audit"]["segments"]
        try:
            trainer, bundle, peers, info = self._worker_bundle(job_id)
        except Exception as exc:
            if missing(exc):
                return SegmentVerdict(plan[0], False, f"result bundle unavailable: {exc}")
            raise
        for seg in plan:
            v = self.check_segment(trainer, bundle, seg, peers)
            if not v.ok:
                return v
        return None

    def rule_audit(self, job_id: int) -> SegmentVerdict | None:
        """Audit and report on chain; a failure is proven with the worker's own trace hashes."""
        bad = self.audit(job_id)
        if bad is None:
            self.client.rule_audit_pass(job_id)
            return None
        info = self.client.job(job_id)
        bundle = load_bundle(self.blobs, info.result_cid, self.peers(info.workers[0]))
        self.client.rule_audit_fail(job_id, bad.segment, Trace.from_json(bundle.trace))
        return bad


class Challenger:
    """A staked node that re-runs an optimistic result and disputes it if it differs."""

    def __init__(self, client: JobMarketClient, blobs: Blobs) -> None:
        self.client = client
        self.blobs = blobs
        self.own: dict[int, list[str]] = {}

    def check(self, job_id: int) -> bool:
        """Re-run the job; True if the worker's trace and weights root equal ours."""
        info = self.client.job(job_id)
        spec, base, records = load_inputs(self.blobs, info.spec_cid)
        result = Trainer(spec, base, records).run()
        from proofmesh.compute.artifacts import weights_manifest

        _, root, _ = weights_manifest(result.weights)
        own = Trace(result.trace)
        self.own[job_id] = own.to_json()
        return own.root.hex() == info.trace_root.removeprefix("0x") and root.hex() == info.weights_root.removeprefix("0x")

    def challenge(self, job_id: int) -> None:
        self.client.challenge(job_id)

    def respond(self, job_id: int) -> None:
        """Our move in the bisection: agree iff our checkpoint at the midpoint is the worker's."""
        d = self.client.game(job_id)["dispute"]
        mid = (d["lo"] + d["hi"]) // 2
        self.client.bisect_respond(job_id, self.own[job_id][mid] == d["h_mid"])
