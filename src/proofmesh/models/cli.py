"""``proofmesh model …``: register, verify, evaluate, release and walk model versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from proofmesh.cli.context import AccountOpt, JsonOpt, console, ctx_chain, output, progress_bar, state
from proofmesh.errors import InputError, ProofmeshError, VerificationError

app = typer.Typer(help="Model lineage: versions, held-out evaluations, the release gate.", no_args_is_help=True)
evalset_app = typer.Typer(help="Held-out eval sets: commit a hash now, reveal the data later.", no_args_is_help=True)
policy_app = typer.Typer(help="A lineage's release policy.", no_args_is_help=True)
app.add_typer(evalset_app, name="evalset")
app.add_typer(policy_app, name="policy")


def _client(account: str | None = None, *, signer: bool = True):
    from proofmesh.models.registry import ModelRegistryClient

    return ModelRegistryClient(ctx_chain(account, signer=signer))


def _is_json(flag: bool) -> bool:
    return flag or state().json


# ---------------------------------------------------------------- versions

@app.command()
def register(path: Annotated[Path, typer.Argument(help="A .safetensors file, a (sharded) HF folder or a PEFT adapter folder.")],
             name: Annotated[str, typer.Option("--name", "-n", help="Lineage name (claimed by you if new).")],
             parent: Annotated[int, typer.Option(help="Parent version id (0: a root version).")] = 0,
             base: Annotated[int, typer.Option(help="Base model version of a LoRA adapter.")] = 0,
             data: Annotated[Optional[list[str]], typer.Option("--data", help="Training data batch root (repeatable).")] = None,
             job: Annotated[int, typer.Option("--job", help="Compute job id that produced the weights.")] = 0,
             config: Annotated[Optional[Path], typer.Option(help="Training/model config file (stored by CID).")] = None,
             card: Annotated[bool, typer.Option(help="Write a model card (README.md) beside the weights.")] = True,
             account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Hash the weights (per-tensor Merkle root) and register a version."""
    from proofmesh.models.hf import write_model_card
    from proofmesh.models.weights import list_tensors, manifest

    if config is not None and not config.is_file():
        raise InputError(f"{config}: no such config file", fix="pass an existing file to --config")
    client = _client(account)
    total = None if path.suffix == ".onnx" else sum(e.length for e in list_tensors(path)[0])
    with progress_bar("hashing tensors", total=total) as advance:
        m = manifest(path, progress=advance)
    rec, tx = client.register_version(name, m, parent=parent, base=base, data_batches=data or [], job_id=job,
                                      config=config)
    folder = path if path.is_dir() else path.parent
    if card:
        write_model_card(folder, rec, registry_address=client.registry.address, chain_id=client.chain.chain_id)
    out = rec.to_json() | {"tensors": len(m.tensors), "bytes": m.total_bytes, "gas": tx.gas_used}
    output(out, json_, title=f"registered version {rec.id}")


@app.command()
def verify(path: Annotated[Path, typer.Argument(help="Local weights.")],
           version: Annotated[int, typer.Argument(help="Version id to check against.")],
           json_: JsonOpt = False) -> None:
    """Re-hash local weights: match, or the tensors that differ (with on-chain-checked proofs)."""
    report = _client(signer=False).verify(path, version)
    if _is_json(json_):
        output(report.to_json(), True)
    elif report.match:
        console.print(f"[green]match[/green]: {path} is version {version} (root {report.registered_root})")
    else:
        console.print(f"[red]mismatch[/red]: local root {report.local_root} ≠ registered {report.registered_root}")
        for p in report.proofs:
            state_ = "changed" if p.local_sha256 else "missing"
            console.print(f"  {state_:8} {p.name} {p.dtype}{p.shape}  registered sha256 {p.registered_sha256[:16]}…"
                          f"  local {(p.local_sha256 or '-')[:16]}…  proof accepted by ModelRegistry: {p.accepted_on_chain}")
        for n in report.extra:
            console.print(f"  extra    {n} (not in the registered version)")
    if not report.match:
        raise typer.Exit(1)


@app.command()
def show(version: Annotated[int, typer.Argument(help="Version id.")], json_: JsonOpt = False) -> None:
    """A version's record, its evaluations and release status."""
    client = _client(signer=False)
    rec = client.version(version)
    evals = [{"eval_set": e.eval_set, "metric": e.metric, "median": e.median, "finalized": e.finalized,
              "evaluators": e.evaluators, "values": e.values} for e in client.evaluations_of(version)]
    output(rec.to_json() | {"evaluations": evals, "policy": client.policy(rec.name)}, json_, title=f"version {version}")


@app.command("list")
def list_(name: Annotated[Optional[str], typer.Option("--name", "-n", help="Only this lineage.")] = None,
          json_: JsonOpt = False) -> None:
    """Registered versions (of one lineage, or all)."""
    client = _client(signer=False)
    ids = client.versions_of(name) if name else list(range(1, client.version_count() + 1))
    rows = []
    for vid in ids:
        r = client.version(vid)
        rows.append({"id": r.id, "name": r.name, "kind": r.kind, "parent": r.parent or "", "base": r.base or "",
                     "weights_root": r.weights_root if _is_json(json_) else r.weights_root[:18] + "…",
                     "released": r.released, "owner": r.owner})
    output(rows, json_, title="model versions")


@app.command()
def lineage(version: Annotated[int, typer.Argument(help="Version id.")],
            fmt: Annotated[str, typer.Option("--format", "-f", help="tree | json | dot | mermaid")] = "tree",
            json_: JsonOpt = False) -> None:
    """Ancestors and descendants with data batches, job, evaluations and status."""
    from proofmesh.models import lineage as L

    if fmt not in L.FORMATS:
        raise InputError(f"unknown format {fmt!r}", fix=f"use one of {', '.join(L.FORMATS)}")
    lin = L.build(_client(signer=False), version)
    if _is_json(json_):
        fmt = "json"
    typer.echo(lin.render(fmt))


# ---------------------------------------------------------------- eval sets and policy

@evalset_app.command("commit")
def evalset_commit(name: Annotated[str, typer.Argument(help="Lineage name (you must own it).")],
                   file: Annotated[Path, typer.Argument(help="JSONL eval set (kept private until reveal).")],
                   account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Commit a held-out eval set as a salted hash (the salt stays in this home)."""
    esid, root, _ = _client(account).commit_eval_set(name, file)
    output({"eval_set": esid, "lineage": name, "root": "0x" + root.hex(),
            "next": f"register the versions to test, then `proofmesh model evalset reveal {esid}`"}, json_)


@evalset_app.command("reveal")
def evalset_reveal(eval_set: Annotated[int, typer.Argument(help="Eval set id.")],
                   account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Reveal a committed eval set (versions registered later cannot be evaluated on it)."""
    client = _client(account)
    client.reveal_eval_set(eval_set)
    output(client.eval_set(eval_set), json_, title=f"eval set {eval_set} revealed")


@policy_app.command("set")
def policy_set(name: Annotated[str, typer.Argument(help="Lineage name.")],
               metric: Annotated[str, typer.Option(help="accuracy | perplexity | loss")],
               tolerance: Annotated[float, typer.Option(help="Largest allowed regression vs the best released ancestor.")] = 0.0,
               quorum: Annotated[int, typer.Option(help="Evaluators drawn per evaluation (1-9).")] = 3,
               direction: Annotated[Optional[str], typer.Option(help="higher | lower is better (default: from the metric).")] = None,
               account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Set the release policy (locked after the lineage's first release)."""
    from proofmesh.models.evaluate import metric_direction

    if direction not in (None, "higher", "lower"):
        raise InputError(f"--direction must be higher or lower, not {direction!r}", fix="--direction higher")
    hib = metric_direction(metric) if direction is None else direction == "higher"
    client = _client(account)
    client.set_policy(name, metric, hib, tolerance, quorum)
    output({"lineage": name} | client.policy(name), json_, title="policy set")


# ---------------------------------------------------------------- evaluation and release

@app.command()
def request(version: Annotated[int, typer.Argument(help="Version id.")],
            eval_set: Annotated[int, typer.Option("--eval-set", "-e", help="Revealed eval set id.")],
            account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Request an evaluation and draw its evaluators from a future block's hash."""
    client = _client(account)
    rid = client.request_evaluation(version, eval_set)
    drawn = client.draw(rid)
    output(client.request(rid) | {"evaluators": drawn}, json_, title=f"evaluation request {rid}")


@app.command("eval")
def eval_(version: Annotated[int, typer.Argument(help="Version id.")],
          eval_set: Annotated[int, typer.Option("--eval-set", "-e", help="Eval set id.")],
          weights: Annotated[Optional[Path], typer.Option(help="Local weights of the version (HF folder, adapter folder or .onnx); default: fetched from the nodes by its published locator.")] = None,
          base_weights: Annotated[Optional[Path], typer.Option(help="Base model folder for a LoRA adapter (default: fetched like --weights).")] = None,
          eval_file: Annotated[Optional[Path], typer.Option(help="The revealed eval set (default: from the blob store by CID).")] = None,
          metric: Annotated[Optional[str], typer.Option(help="Must equal the lineage policy's metric (default: it).")] = None,
          account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """As a drawn evaluator: check the weights, run the model on the revealed set, sign and submit."""
    from proofmesh.models import evalset as E
    from proofmesh.models.evaluate import evaluate_path

    client = _client(account)
    me = client.chain.account.address
    rid = client.open_request(version, eval_set)
    if not rid:
        raise InputError(f"no evaluation request for version {version} on eval set {eval_set}",
                         fix=f"request one: `proofmesh model request {version} --eval-set {eval_set}`")
    req = client.request(rid)
    if req["finalized"]:
        raise InputError(f"version {version} is already evaluated on eval set {eval_set} (median {req['median']})",
                         fix="see `proofmesh model show`")
    if me not in req["evaluators"]:
        raise InputError(f"{me} was not drawn for request {rid} (drawn: {', '.join(req['evaluators'])})",
                         fix="only drawn evaluators may attest; wait for a request that draws you")
    if metric and metric != req["metric"]:
        raise InputError(f"the lineage policy measures {req['metric']}, not {metric}", fix=f"use --metric {req['metric']}")
    rec = client.version(version)
    if weights is None:
        from proofmesh.models.distribution import fetch_weights

        dest = client.chain.home.dir("models") / "fetched"
        with console.status(f"fetching the weights of version {version} from the nodes…"):
            weights = fetch_weights(client, version, dest)
            if rec.kind == "lora" and base_weights is None:
                base_weights = fetch_weights(client, rec.base, dest)
    report = client.verify(weights, version)
    if not report.match:
        raise VerificationError(f"{weights} is not version {version}: {len(report.changed)} changed, "
                                f"{len(report.missing)} missing tensor(s)", fix="evaluate the registered weights")
    if rec.kind == "lora":
        if base_weights is None:
            raise InputError("a LoRA version needs --base-weights", fix=f"pass the folder of base version {rec.base}")
        if not client.verify(base_weights, rec.base).match:
            raise VerificationError(f"{base_weights} is not base version {rec.base}", fix="use the registered base")
    es_info = client.eval_set(eval_set)
    raw_path = eval_file
    if raw_path is None:
        raw = client.get_blob(es_info["cid"])
        raw_path = client.chain.home.dir("models") / f"evalset-{eval_set}.jsonl"
        raw_path.write_bytes(raw)
    es = E.load(raw_path)
    if "0x" + es.root.hex() != es_info["root"]:
        raise VerificationError(f"{raw_path} has root 0x{es.root.hex()}, the chain says {es_info['root']}",
                                fix="use the revealed eval set file")
    with progress_bar(f"evaluating {req['metric']}", total=es.size) as advance:
        result = evaluate_path(weights, es.records, req["metric"], base=base_weights, progress=advance)
    a = client.make_attestation(rid, result.value, client.chain.account)
    tx = client.submit_attestation(rid, a)
    after = client.request(rid)
    output({"request": rid, "version": version, "eval_set": eval_set, "metric": result.metric,
            "value": result.value, "records": result.records, "tokens": result.tokens, "backend": result.backend,
            "attested": after["count"], "quorum": after["quorum"], "median": after["median"], "gas": tx.gas_used},
           json_, title="attestation submitted")


@app.command()
def publish(version: Annotated[int, typer.Argument(help="Version id (yours).")],
            path: Annotated[Path, typer.Argument(help="The version's weights: its folder (config, safetensors, tokenizer) or .onnx file.")],
            account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Make a version's weights fetchable by other nodes: store its files (served by this
    home's node daemon) and record the bundle's CID on chain. Refused unless the files
    hash to the registered weights root."""
    from proofmesh.models.distribution import publish_weights

    client = _client(account)
    with console.status("checking and storing the weights…"):
        cid, tx = publish_weights(client, version, path)
    output({"version": version, "weights_cid": cid, "gas": tx.gas_used}, json_, title="weights published")


@app.command()
def fetch(version: Annotated[int, typer.Argument(help="Version id.")],
          dest: Annotated[Path, typer.Argument(help="Folder to put the weights in.")],
          json_: JsonOpt = False) -> None:
    """Fetch a version's published weights from the nodes (each blob re-hashed by CID) and
    check them against the registered weights root."""
    from proofmesh.models.distribution import fetch_weights

    client = _client(signer=False)
    with console.status(f"fetching version {version}…"):
        path = fetch_weights(client, version, dest)
    output({"version": version, "path": str(path)}, json_, title="weights fetched and verified")


@app.command()
def contamination(version: Annotated[int, typer.Argument(help="Version id.")],
                  eval_set: Annotated[Optional[int], typer.Option("--eval-set", "-e", help="Revealed eval set id.")] = None,
                  eval_file: Annotated[Optional[Path], typer.Option(help="A JSONL eval set (e.g. before committing it).")] = None,
                  threshold: Annotated[float, typer.Option(help="Near-duplicate Jaccard threshold.")] = 0.8,
                  json_: JsonOpt = False) -> None:
    """Exact and near overlap between the version's training batches and an eval set."""
    from proofmesh.models import evalset as E
    from proofmesh.models.contamination import check

    client = _client(signer=False)
    if eval_file is None:
        if eval_set is None:
            raise InputError("give --eval-set ID or --eval-file PATH", fix="e.g. --eval-set 1")
        eval_file = client.chain.home.dir("models") / f"evalset-{eval_set}.jsonl"
        eval_file.write_bytes(client.get_blob(client.eval_set(eval_set)["cid"]))
    res = check(client.chain, client.blobs, version, E.load(eval_file).records, threshold=threshold)
    output(res, json_, title=f"contamination of version {version}")
    if res["exact_overlap"] or res["near_overlap"]:
        raise typer.Exit(1)


@app.command()
def release(version: Annotated[int, typer.Argument(help="Version id.")],
            eval_set: Annotated[int, typer.Option("--eval-set", "-e", help="Eval set whose quorum median gates the release.")],
            account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Release a version if the gate passes; otherwise show the numbers and the reason."""
    client = _client(account)
    verdict = client.check_release(version, eval_set)
    pol = client.policy(client.version(version).name)
    info = {"version": version, "eval_set": eval_set, "median": verdict["median"],
            "best_released_ancestor": verdict["best_ancestor"], "ancestor_median": verdict["best_ancestor_value"],
            "policy": pol}
    if not verdict["ok"]:
        output(info | {"released": False, "reason": verdict["reason"]}, json_, title="release refused")
        raise ProofmeshError(f"release of version {version} refused: {verdict['reason']}",
                             fix="improve the model, or evaluate on an eval set where the ancestor is measured")
    tx = client.release(version, eval_set)
    output(info | {"released": True, "gas": tx.gas_used}, json_, title=f"version {version} released")
