"""The compute worker: polls the market, applies, trains, commits/reveals or submits.

One :meth:`Worker.poll_once` looks at every live job and takes each action that is
due: apply (profile matches, bond locked by the contract), train when drawn, commit
then reveal (replicated) or submit (optimistic), answer its turns of a bisection,
and the keeper calls anyone may make (close applications, draw, finalize) so that
a market of workers alone keeps moving. Salts and results are saved under
``<home>/compute/`` before they are used on chain, so a restarted worker can still
reveal what it committed.

``cheat`` exists only so tests and the demo can play a dishonest worker:
``"perturb"`` trains honestly then adds noise to the final weights; ``"skip"``
skips half of the segments.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from proofmesh.compute.artifacts import Blobs, load_inputs, publish_result
from proofmesh.compute.market import JobMarketClient, Trace
from proofmesh.compute.training import ExecutionProfile, Trainer
from proofmesh.errors import ContractRevert, InputError, ProofmeshError

CHEATS = ("perturb", "skip")
LIVE = ("open", "assigning", "working", "reveal", "submitted", "disputed")


class Worker:
    """A COMPUTE node's job loop."""

    def __init__(self, client: JobMarketClient, blobs: Blobs, state_dir: Path, *, threads: int = 1,
                 cheat: str | None = None, keeper: bool = True,
                 log: Callable[[str], None] = lambda msg: None) -> None:
        if cheat is not None and cheat not in CHEATS:
            raise InputError(f"unknown cheat {cheat!r}", fix=f"use one of {CHEATS} (tests/demo only)")
        self.client = client
        self.chain = client.chain
        self.me = client.chain.account.address
        self.blobs = blobs
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.profile = ExecutionProfile.current(threads)
        self.cheat = cheat
        self.keeper = keeper
        self.log = log
        self.done: set[int] = set()

    # ------------------------------------------------------------------ state
    def _state_file(self, job_id: int) -> Path:
        return self.state_dir / f"job-{job_id}.json"

    def _save(self, job_id: int, data: dict[str, Any]) -> None:
        tmp = self._state_file(job_id).with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self._state_file(job_id))

    def _load(self, job_id: int) -> dict[str, Any] | None:
        f = self._state_file(job_id)
        return json.loads(f.read_text()) if f.exists() else None

    def _peers(self) -> list[str]:
        own = self.client.registry.info(self.me).endpoint
        return [n.endpoint for n in self.client.registry.nodes() if n.endpoint and n.endpoint != own]

    def _try(self, what: str, fn: Callable[[], Any]) -> bool:
        try:
            fn()
            self.log(what)
            return True
        except ContractRevert as exc:   # another process got there first, or not due yet
            self.log(f"{what}: skipped ({exc.reason})")
            return False

    # ------------------------------------------------------------------ loop
    def poll_once(self) -> list[str]:
        """Take every due action once; returns what was done."""
        actions: list[str] = []
        count = self.client.job_count()
        for job_id in range(1, count + 1):
            if job_id in self.done:
                continue
            try:
                info = self.client.job(job_id)
                if info.status not in LIVE:
                    self.done.add(job_id)
                    continue
                actions.extend(self._step(info))
            except ProofmeshError as exc:
                self.log(f"job {job_id}: {exc}")
        return actions

    def _step(self, info: Any) -> list[str]:
        job_id, out = info.job_id, []
        slot = self.client.slot(job_id, self.me)["state"]
        now = self.chain.timestamp()
        if info.status == "open":
            if slot == "none" and info.profile == "0x" + self.profile.profile_id.hex() and info.poster != self.me:
                if self._try(f"job {job_id}: applied", lambda: self.client.apply(job_id, self.profile.profile_id)):
                    out.append(f"applied {job_id}")
            need = info.replicas - info.committed
            if self.keeper and now >= info.apply_close and len(info.applicants) >= need:
                if self._try(f"job {job_id}: closed applications", lambda: self.client.close_applications(job_id)):
                    out.append(f"closed {job_id}")
        elif info.status == "assigning":
            if self.keeper and self.chain.block_number() > info.seed_block:
                if self._try(f"job {job_id}: drew workers", lambda: self.client.draw(job_id)):
                    out.append(f"drew {job_id}")
        elif info.status == "working" and slot == "assigned":
            out.append(self._work(info))
        elif info.status == "reveal" and slot == "committed":
            st = self._load(job_id)
            if st is None:
                raise ProofmeshError(f"job {job_id}: committed but no saved result to reveal",
                                     fix=f"restore {self._state_file(job_id)}")
            self.client.reveal(job_id, bytes.fromhex(st["weights_root"][2:]), bytes.fromhex(st["trace_root"][2:]),
                               bytes.fromhex(st["salt"][2:]), st["manifest_cid"], st["result_cid"])
            self.log(f"job {job_id}: revealed")
            out.append(f"revealed {job_id}")
        elif info.status == "reveal" and self.keeper and info.revealed == info.replicas:
            if self._try(f"job {job_id}: finalized", lambda: self.client.finalize_replicated(job_id)):
                out.append(f"finalized {job_id}")
        elif info.status == "disputed" and info.mode == "replicated":
            if self.keeper and now > info.phase_deadline:    # the referee let its window lapse
                if self._try(f"job {job_id}: voided lapsed dispute", lambda: self.client.timeout_dispute(job_id)):
                    out.append(f"voided {job_id}")
        elif info.mode == "optimistic" and info.status in ("submitted", "disputed") and self.me in info.workers:
            g = self.client.game(job_id)
            if g["status"] == "disputed" and g["dispute"]["turn"] == "worker":
                st = self._load(job_id)
                assert st is not None
                self.client.bisect_reveal(job_id, Trace.from_json(st["trace"]))
                self.log(f"job {job_id}: revealed bisection midpoint")
                out.append(f"bisected {job_id}")
        return out

    def _work(self, info: Any) -> str:
        job_id = info.job_id
        spec, base, records = load_inputs(Blobs(self.blobs.store, self._peers(), min_rate_kbps=self.blobs.min_rate_kbps), info.spec_cid)
        spec.profile.require_local()
        self.log(f"job {job_id}: training {spec.train.steps} steps ({spec.train.mode})"
                 + (f" [CHEATING: {self.cheat}]" if self.cheat else ""))
        result = Trainer(spec, base, records).run(perturb=0.05 if self.cheat == "perturb" else 0.0,
                                                  skip_fraction=0.5 if self.cheat == "skip" else 0.0)
        bundle, trace, result_cid = publish_result(self.blobs, job_id, result)
        weights_root = bytes.fromhex(bundle.weights_root[2:])
        salt = os.urandom(32)
        # Saved before the commitment goes on chain: a crash after committing can still reveal.
        self._save(job_id, {"salt": "0x" + salt.hex(), "weights_root": bundle.weights_root,
                            "trace_root": "0x" + trace.root.hex(), "manifest_cid": bundle.manifest_cid,
                            "result_cid": result_cid, "trace": trace.to_json()})
        if info.mode == "replicated":
            self.client.commit(job_id, weights_root, trace.root, salt)
            self.log(f"job {job_id}: committed")
            return f"committed {job_id}"
        self.client.submit(job_id, weights_root, trace, bundle.manifest_cid, result_cid)
        self.log(f"job {job_id}: submitted")
        return f"submitted {job_id}"

    def run(self, interval: float = 1.0, max_seconds: float | None = None) -> None:
        """Poll forever (or ``max_seconds``)."""
        start = time.monotonic()
        while max_seconds is None or time.monotonic() - start < max_seconds:
            self.poll_once()
            time.sleep(interval)
