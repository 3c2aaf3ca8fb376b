"""``proofmesh compute …``: post, cancel, inspect and dispute fine-tuning jobs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from proofmesh.cli.context import JsonOpt, console, ctx_chain, ctx_home, output
from proofmesh.errors import InputError

app = typer.Typer(help="Fine-tuning market: escrowed jobs, staked workers, verified training.",
                  no_args_is_help=True)

_DURATION = re.compile(r"^(\d+)([smhd]?)$")


def parse_duration(text: str) -> int:
    """'90' / '90s' / '15m' / '1h' / '2d' -> seconds."""
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) <= 0:
        raise InputError(f"{text!r} is not a duration", fix="use e.g. 30m, 1h or 3600")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _client():
    from proofmesh.compute.market import JobMarketClient

    return JobMarketClient(ctx_chain())


def _blobs(client):
    from proofmesh.compute.artifacts import Blobs
    from proofmesh.store.blobstore import BlobStore

    peers = [n.endpoint for n in client.registry.nodes() if n.endpoint]
    return Blobs(BlobStore(ctx_home().store_dir), peers)


def load_config(path: Path) -> dict:
    """A train.yaml/json: keys of TrainConfig (mode, steps, checkpoint_every, lr, seed, ...) and
    optionally ``threads`` and ``model`` (ModelShape)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read config {path}: {exc}", fix="pass a readable YAML/JSON file") from exc
    if not isinstance(data, dict):
        raise InputError(f"config {path} must be a mapping of hyper-parameters", fix="e.g. `steps: 32`")
    return data


@app.command("post")
def post(
    base: Annotated[int, typer.Option(help="ModelRegistry version id of the base model.")],
    base_weights: Annotated[Path, typer.Option(help="safetensors file of the base model (must match its root).")],
    data: Annotated[list[int], typer.Option(help="DataRegistry batch id (repeat for several).")],
    config: Annotated[Path, typer.Option(help="train.yaml: mode, steps, checkpoint_every, lr, seed, threads...")],
    reward: Annotated[str, typer.Option(help="Escrowed reward in MESH.")],
    name: Annotated[str, typer.Option(help="Lineage name the result is registered under.")] = "finetune",
    mode: Annotated[str, typer.Option(help="replicated | optimistic")] = "replicated",
    replicas: Annotated[int, typer.Option(help="Replicas (odd, >=3) in replicated mode; 1 in optimistic.")] = 3,
    deadline: Annotated[str, typer.Option(help="Refund if no workers are drawn within this (e.g. 1h).")] = "1h",
    apply_window: Annotated[str, typer.Option(help="How long applications stay open.")] = "60s",
    work_time: Annotated[str, typer.Option(help="How long a drawn worker has to deliver.")] = "30m",
    json_: JsonOpt = False,
) -> None:
    """Publish the job spec to this node's store and escrow the reward on JobMarket."""
    from proofmesh.chain.core import to_wei
    from proofmesh.compute.artifacts import weights_manifest
    from proofmesh.compute.training import (DataRef, ExecutionProfile, JobSpec, ModelShape, TrainConfig,
                                            weights_from_bytes)

    if mode == "optimistic" and replicas == 3:
        replicas = 1
    cfg = load_config(config)
    threads = int(cfg.pop("threads", 1))
    shape = ModelShape(**cfg.pop("model", {}))
    try:
        train = TrainConfig(**cfg)
    except TypeError as exc:
        raise InputError(f"config {config}: {exc}", fix="use only TrainConfig fields") from exc
    train.validate()
    client = _client()
    chain = client.chain
    blobs = _blobs(client)
    # Every check before any transaction: base version + its weights, data batches, spec.
    models = chain.contract("ModelRegistry")
    if not 1 <= base <= chain.call(models.functions.version_count()):
        raise InputError(f"unknown base model version {base}", fix="see `proofmesh model list`")
    raw = base_weights.read_bytes() if base_weights.exists() else None
    if raw is None:
        raise InputError(f"{base_weights} does not exist", fix="pass the base model's safetensors file")
    _, root, _ = weights_manifest(weights_from_bytes(raw))
    registered = chain.call(models.functions.versions(base))[0]
    if root != registered:
        raise InputError(f"{base_weights} is not version {base} (root 0x{root.hex()} != 0x{registered.hex()})",
                         fix="pass the weights file registered as the base version")
    refs = []
    dr = chain.contract("DataRegistry")
    for batch_id in data:
        b = chain.call(dr.functions.batches(batch_id))
        if b[2] == b"\0" * 32:
            raise InputError(f"unknown data batch {batch_id}", fix="see `proofmesh data batches`")
        refs.append(DataRef(root="0x" + b[2].hex(), cid=b[6]))
    spec = JobSpec(base_version=base, base_weights_cid=blobs.put(raw), data=tuple(refs), train=train,
                   profile=ExecutionProfile.current(threads), model=shape)
    spec.validate()
    spec_cid = blobs.put(spec.to_bytes())
    now = chain.timestamp()
    job_id = client.post(spec_cid=spec_cid, name=name, base_version=base,
                         batches=[bytes.fromhex(r.root[2:]) for r in refs], mode=mode, replicas=replicas,
                         n_segments=train.n_segments, profile_id=spec.profile.profile_id, reward=to_wei(reward),
                         apply_seconds=parse_duration(apply_window), work_seconds=parse_duration(work_time),
                         deadline=now + parse_duration(apply_window) + parse_duration(deadline))
    output({"job_id": job_id, "spec_cid": spec_cid, "mode": mode, "replicas": replicas, "reward": reward}, json_)


@app.command("cancel")
def cancel(job: int, json_: JsonOpt = False) -> None:
    """Cancel a job nobody has been drawn for yet; the escrow comes back."""
    client = _client()
    client.job(job)
    client.cancel(job)
    output({"job_id": job, "status": client.job(job).status}, json_)


@app.command("status")
def status(job: int, json_: JsonOpt = False) -> None:
    """Every phase of one job: record, workers' slots, verification game."""
    client = _client()
    info = client.job(job).as_dict()
    info["slots"] = {w: client.slot(job, w)["state"] for w in info["workers"] + info["applicants"]}
    if info["mode"] == "optimistic":
        info["game"] = client.game(job)
    output(info, json_, title=f"job {job}")


@app.command("list")
def list_jobs(json_: JsonOpt = False) -> None:
    """All jobs with their phase."""
    from proofmesh.chain.core import from_wei

    rows = [{"job": j.job_id, "mode": j.mode, "status": j.status, "reward": from_wei(j.reward) if j.reward else "-",
             "replicas": j.replicas, "workers": len(j.workers), "version": j.version_id or "-"}
            for j in _client().jobs()]
    output(rows, json_, title="jobs")


@app.command("dispute")
def dispute(job: int,
            force: Annotated[bool, typer.Option(help="Challenge even if the re-run matches (you will lose the bond).")] = False,
            json_: JsonOpt = False) -> None:
    """Re-run an optimistic job; if the result differs, challenge it (locks your challenge bond)
    and play the bisection until the referee's turn."""
    import time

    from proofmesh.compute.referee import Challenger

    client = _client()
    ch = Challenger(client, _blobs(client))
    if not force and ch.check(job):
        output({"job_id": job, "challenged": False, "reason": "re-run matches the submitted result"}, json_)
        return
    ch.challenge(job)
    while True:
        turn = client.game(job)["dispute"]["turn"]
        if turn == "challenger":
            ch.respond(job)
        elif turn == "referee" or turn == "none":
            break
        else:
            time.sleep(1.0)
    d = client.game(job)["dispute"]
    output({"job_id": job, "challenged": True, "segment": [d["lo"], d["hi"]], "turn": d["turn"]}, json_)


@app.command("referee")
def referee(job: int, json_: JsonOpt = False) -> None:
    """(Referee account only) settle whatever the job waits for: a replicated dissent, a
    bisected segment, or a drawn audit — by re-executing single segments."""
    from proofmesh.compute.referee import Referee

    client = _client()
    r = Referee(client, _blobs(client))
    info = client.job(job)
    if info.mode == "replicated" and info.status == "disputed":
        out = {"accepted": r.rule_replicated(job)}
    elif info.mode == "optimistic" and client.game(job)["status"] == "disputed":
        out = {"worker_right": r.rule_dispute(job)}
    elif info.mode == "optimistic" and client.game(job)["audit"]["pending"]:
        bad = r.rule_audit(job)
        out = {"audit_passed": bad is None, "failed_segment": bad.segment if bad else None}
    else:
        raise InputError(f"job {job} is {info.status}: nothing for the referee to rule on",
                         fix="check `proofmesh compute status JOB`")
    out.update(job_id=job, segments_executed=r.segments_executed)
    output(out, json_)
