"""Demo step of the compute capability: a fine-tuning job with one cheating replica.

A poster registers a tiny GPT-2 base model and posts a replicated LoRA fine-tuning job
(3 replicas) with an escrowed reward. Three staked workers, each with its own blob
server on 127.0.0.1, apply; the contract draws them with a future block's hash;
they fetch spec, base weights and data from the poster over HTTP (re-hashing), train
for real, commit and reveal. One of them plays a cheater (perturbed weights): the
reveals disagree, the referee re-executes, the cheater is slashed, the honest two
are paid, and the result is registered as a child version of the base model.
(The workers run in this process here; tests/compute/test_multiprocess.py runs them
as separate `proofmesh worker start` processes.)
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from typing import Any

from proofmesh.chain.core import MESH, Registry, Token, from_wei

ROLE_COMPUTE = 2


def _ensure_worker(chain, account, endpoint: str, bond: int) -> None:
    reg = Registry(chain.with_account(account))
    info = reg.info(account.address)
    if not info.registered:
        reg.register(endpoint, ROLE_COMPUTE)
    else:
        reg.update(endpoint, info.roles | ROLE_COMPUTE)
    info = reg.info(account.address)
    if info.stake - info.bonded < max(bond, chain.call(reg.c.functions.min_stake())):
        reg.stake(1_000 * MESH)


def run(ctx: Any) -> dict:
    from proofmesh.compute.artifacts import Blobs, weights_manifest
    from proofmesh.compute.market import JobMarketClient
    from proofmesh.compute.referee import Referee
    from proofmesh.compute.training import (DataRef, ExecutionProfile, JobSpec, TrainConfig, build_base_weights)
    from proofmesh.compute.worker import Worker
    from proofmesh.store.api import serve_blobs
    from proofmesh.store.blobstore import BlobStore
    from eth_hash.auto import keccak

    chain = ctx.chain
    work = ctx.workdir / "compute"
    work.mkdir(parents=True, exist_ok=True)
    poster, workers = ctx.actor(6), [ctx.actor(0), ctx.actor(1), ctx.actor(2)]
    market = JobMarketClient(chain.with_account(poster))
    token = Token(chain)
    with ExitStack() as stack:
        poster_store = BlobStore(work / "poster-store")
        poster_url = stack.enter_context(serve_blobs(poster_store))
        bond = market.param("worker_bond")
        # Workers find the poster's blobs through its registered endpoint.
        reg = Registry(chain.with_account(poster))
        pinfo = reg.info(poster.address)
        if not pinfo.registered:
            reg.register(poster_url, 1)
        else:
            reg.update(poster_url, pinfo.roles)
        agents = []
        for i, w in enumerate(workers):
            store = BlobStore(work / f"worker{i}-store")
            url = stack.enter_context(serve_blobs(store))
            _ensure_worker(chain, w, url, bond)
            cheat = "perturb" if i == 2 else None
            agents.append(Worker(JobMarketClient(chain.with_account(w)), Blobs(store), work / f"worker{i}",
                                 cheat=cheat, log=lambda m, i=i, c=cheat: ctx.log(
                                     f"worker{i}{' (cheater)' if c else ''}: {m}") if "skipped" not in m else None))
        # Base model + data in the poster's store.
        base = build_base_weights(seed=7)
        raw, root, manifest = weights_manifest(base)
        models = chain.contract("ModelRegistry")
        existing = chain.call(models.functions.version_of_root(root))
        if existing == 0:
            chain.transact(models.functions.register("demo-ft-base", root, 0, 0, 0, [], 0, "",
                                                     poster_store.put_bytes(manifest)), sender=poster)
            existing = chain.call(models.functions.version_count())
        base_version = existing
        records = "\n".join(json.dumps({"text": f"pump {i} pressure {i * 29 % 97} kPa, valve {'open' if i % 3 else 'shut'}"})
                            for i in range(400)).encode()
        data = DataRef(root="0x" + keccak(records).hex(), cid=poster_store.put_bytes(records))
        spec = JobSpec(base_version=base_version, base_weights_cid=poster_store.put_bytes(raw), data=(data,),
                       train=TrainConfig(mode="lora", steps=16, checkpoint_every=2, seed=ctx.chain.timestamp() % 1000),
                       profile=ExecutionProfile.current(1))
        stake0 = {w.address: Registry(chain).info(w.address).stake for w in workers}
        bal0 = {w.address: token.balance(w.address) for w in workers}
        now = chain.timestamp()
        job = market.post(spec_cid=poster_store.put_bytes(spec.to_bytes()), name="demo-ft",
                          base_version=base_version, batches=[bytes.fromhex(data.root[2:])], mode="replicated",
                          replicas=3, n_segments=spec.train.n_segments, profile_id=spec.profile.profile_id,
                          reward=30 * MESH, apply_seconds=60, work_seconds=600, deadline=now + 7200)
        ctx.log(f"job {job} posted: replicated x3, LoRA {spec.train.steps} steps, reward 30 MESH escrowed")
        for _ in range(40):
            status = market.job(job).status
            if status in ("disputed", "settled", "refunded"):
                break
            for a in agents:
                a.poll_once()
            if status == "open" and len(market.job(job).applicants) >= 3:
                chain.increase_time(61)         # let the application window pass (dev chain)
            chain.mine(1)
        info = market.job(job)
        ctx.log(f"job {job}: {info.status}; drawn {', '.join(w[:10] for w in info.workers)}")
        referee = Referee(JobMarketClient(chain), Blobs(BlobStore(work / "referee-store"), [poster_url]))
        accepted: list[str] = []
        if info.status == "disputed":
            accepted = referee.rule_replicated(job)
            ctx.log(f"referee re-executed {referee.segments_executed} segment(s); accepted "
                    f"{', '.join(a[:10] for a in accepted)}")
    info = market.job(job)
    slashed = [w.address for w in workers if Registry(chain).info(w.address).stake < stake0[w.address]]
    paid = {w.address: token.balance(w.address) - bal0[w.address] for w in workers}
    ctx.log(f"job {job} {info.status}: child version {info.version_id} of base {base_version}, "
            f"weights root {info.weights_root[:14]}…; slashed {', '.join(s[:10] for s in slashed) or 'nobody'}")
    ctx.data["compute_job"] = job
    ctx.data["compute_version"] = info.version_id
    return {"job": f"{job} (replicated x3, LoRA, {spec.train.steps} steps)",
            "status": info.status,
            "paid": ", ".join(f"{a[:10]} {from_wei(v)}" for a, v in paid.items() if v > 0),
            "slashed": ", ".join(f"{s[:10]} -{from_wei(bond)} MESH" for s in slashed) or "nobody",
            "child version": f"{info.version_id} (parent {base_version})",
            "market escrow": from_wei(market.total_escrowed())}
