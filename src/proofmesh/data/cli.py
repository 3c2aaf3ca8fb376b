"""`proofmesh data …`: sources, ingest + dedup, publish, verify, overlap, challenges, takedown."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from proofmesh.cli.context import AccountOpt, JsonOpt, ctx_account, ctx_chain, ctx_home, output, progress_bar
from proofmesh.errors import InputError

app = typer.Typer(help="Data provenance and deduplication: sources, batches, proofs, rewards.",
                  no_args_is_help=True)
source_app = typer.Typer(help="Register and list data sources.", no_args_is_help=True)
challenge_app = typer.Typer(help="Prove duplicates on chain (commit-reveal).", no_args_is_help=True)
takedown_app = typer.Typer(help="Withdraw records or a whole source (tombstone on chain, content deleted).",
                           no_args_is_help=True)
app.add_typer(source_app, name="source")
app.add_typer(challenge_app, name="challenge")
app.add_typer(takedown_app, name="takedown")
index_app = typer.Typer(help="The cross-batch index of published records.", no_args_is_help=True)
app.add_typer(index_app, name="index")


def _client(account: str | None = None, signer: bool = True) -> Any:
    from proofmesh.data.client import DataRegistryClient

    return DataRegistryClient(ctx_chain(account, signer=signer))


def _store() -> Any:
    from proofmesh.store.blobstore import BlobStore

    return BlobStore(ctx_home().store_dir)


def _index(cfg: Any = None) -> Any:
    from proofmesh.data.client import open_index
    from proofmesh.data.pipeline import IngestConfig

    return open_index(ctx_home(), (cfg or IngestConfig()).index_params())


def _hash_arg(text: str) -> bytes:
    t = text[2:] if text.startswith("0x") else text
    try:
        b = bytes.fromhex(t)
    except ValueError:
        b = b""
    if len(b) != 32:
        raise InputError(f"{text!r} is not a 32-byte hex record hash", fix="pass 0x followed by 64 hex digits")
    return b


# ------------------------------------------------------------------------ sources

@source_app.command("add")
def source_add(uri: Annotated[str, typer.Argument(help="Where the data comes from (URL, DOI, path).")],
               license: Annotated[str, typer.Option("--license", help="SPDX licence identifier, e.g. CC-BY-4.0.")],
               description: Annotated[str, typer.Option("--description", help="Free text.")] = "",
               account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Register a data source; the same URI can be registered only once on the network."""
    sid = _client(account).register_source(uri, license, description)
    output({"source_id": sid, "uri": uri, "license": license}, json_)


@source_app.command("list")
def source_list(json_: JsonOpt = False) -> None:
    """All registered sources."""
    output([s.as_dict() for s in _client(signer=False).sources()], json_, title="data sources",
           columns=["source_id", "owner", "uri", "license", "withdrawn"])


# ------------------------------------------------------------------------ ingest

@app.command("ingest")
def ingest_cmd(
    paths: Annotated[list[Path], typer.Argument(help="JSONL / Parquet files or folders of text files.")],
    source: Annotated[int | None, typer.Option("--source", help="Source ID the batch will be published under.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Batch folder (default: <home>/data/batches/<root>).")] = None,
    text_field: Annotated[str, typer.Option("--text-field", help="JSONL key / Parquet column holding the text.")] = "text",
    on_error: Annotated[str, typer.Option("--on-error", help="fail: stop at the first bad record; skip: report and leave it out.")] = "fail",
    threshold: Annotated[float, typer.Option("--threshold", help="Near-duplicate Jaccard threshold.")] = 0.8,
    num_perm: Annotated[int, typer.Option("--num-perm", help="MinHash permutations.")] = 128,
    shingle_size: Annotated[int, typer.Option("--shingle-size", help="Words per shingle.")] = 5,
    no_near: Annotated[bool, typer.Option("--no-near", help="Exact dedup only.")] = False,
    semantic: Annotated[bool, typer.Option("--semantic", help="Also drop semantic duplicates (MiniLM + usearch).")] = False,
    semantic_threshold: Annotated[float, typer.Option("--semantic-threshold", help="Cosine threshold.")] = 0.95,
    nfkc: Annotated[bool, typer.Option("--nfkc/--no-nfkc", help="Unicode NFKC normalisation.")] = True,
    lowercase: Annotated[bool, typer.Option("--lowercase/--no-lowercase", help="Case folding.")] = True,
    whitespace: Annotated[bool, typer.Option("--whitespace/--no-whitespace", help="Collapse whitespace.")] = True,
    min_tokens: Annotated[int, typer.Option("--min-tokens", help="Records shorter than this earn nothing.")] = 8,
    max_record_bytes: Annotated[int, typer.Option("--max-record-bytes", help="Largest accepted record.")] = 16 << 20,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Run the map step on Ray ('local' starts one).")] = None,
    no_index: Annotated[bool, typer.Option("--no-index", help="Skip the cross-batch check (offline).")] = False,
    json_: JsonOpt = False,
) -> None:
    """Normalise, drop exact / near / semantic / already-published duplicates, write a batch."""
    from proofmesh.data.pipeline import IngestConfig, ingest
    from proofmesh.data.readers import ReadOptions, file_size

    cfg = IngestConfig(text_field=text_field, on_error=on_error, nfkc=nfkc, lowercase=lowercase,
                       whitespace=whitespace, threshold=threshold, num_perm=num_perm, shingle_size=shingle_size,
                       near=not no_near, semantic=semantic, semantic_threshold=semantic_threshold,
                       min_tokens=min_tokens, max_record_bytes=max_record_bytes)
    home = ctx_home()
    index = None if no_index else _index(cfg)
    opts = ReadOptions(text_field=text_field, on_error=on_error, max_record_bytes=max_record_bytes)
    batches_dir = home.dir("data") / "batches"
    batches_dir.mkdir(parents=True, exist_ok=True)
    target = out or (batches_dir / "pending")
    target.parent.mkdir(parents=True, exist_ok=True)
    sketches = None
    if ray_address:
        from proofmesh.data.raypath import ray_sketches

        sketches = ray_sketches(paths, cfg, ray_address, problems=opts.problems)
    total_bytes = sum(file_size(p) for p in paths)
    try:
        with progress_bar("ingest (records read, duplicates dropped)", None) as advance:
            last = [0]

            def prog(done: int, dropped: int) -> None:
                advance(done - last[0])
                last[0] = done
            result = ingest(paths, target, cfg, index=index, progress=prog, sketches=sketches, options=opts)
    finally:
        if index is not None:
            index.close()
    final = result.batch_dir
    if out is None:
        final = batches_dir / result.root.hex()[:16]
        if final.exists():
            import shutil

            shutil.rmtree(final)
        result.batch_dir.rename(final)
    if source is not None:
        from proofmesh.data.batch import LocalBatch

        lb = LocalBatch.open(final)
        info = lb.info
        info["source_id"] = source
        lb.save_info(info)
    rep = result.report
    summary = {"batch": str(final), "root": "0x" + result.root.hex(), "input_records": rep["input_records"],
               "input_mb": round(total_bytes / 1e6, 2), "kept": rep["kept"], **{f"dropped_{k}": v for k, v in rep["dropped"].items()},
               "token_count": rep["token_count"], "problems": len(rep["problems"]), "seconds": rep["seconds"]}
    if json_:
        output(dict(summary, report=rep), True)
        return
    output(summary, False, title="ingest")
    for p in rep["problems"][:10]:
        typer.echo(f"  problem: {p}", err=True)
    for c in rep["largest_clusters"][:3]:
        typer.echo(f"  cluster of {c['size']} ({c['stage']}): kept {c['kept'][:12]}… “{c['kept_text'][:70]}”")


# ------------------------------------------------------------------------ publish / verify

@app.command("publish")
def publish_cmd(batch: Annotated[Path, typer.Argument(help="Batch folder from `data ingest`.")],
                source: Annotated[int | None, typer.Option("--source", help="Source ID (default: the one given at ingest).")] = None,
                account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Put records + manifest in the store, record the batch on chain, then index it."""
    from proofmesh.data.batch import LocalBatch
    from proofmesh.data.client import publish
    from proofmesh.data.pipeline import IngestConfig

    lb = LocalBatch.open(batch)
    sid = source or lb.info.get("source_id")
    if sid is None:
        raise InputError("no source ID for this batch", fix="pass --source ID (see `proofmesh data source list`)")
    cfg = IngestConfig(**lb.info["config"])
    index = _index(cfg)
    try:
        res = publish(ctx_chain(account), _store(), index, batch, int(sid), sender=ctx_account(account))
    finally:
        index.close()
    res["gas_per_record"] = res["gas_used"] / max(1, res["record_count"])
    res["gas_per_token"] = res["gas_used"] / max(1, res["token_count"])
    output(res, json_, title="published")


@app.command("verify")
def verify_cmd(record: Annotated[str, typer.Argument(help="Record text, or its 0x record hash.")],
               json_: JsonOpt = False) -> None:
    """Which batch and source hold a record, with a Merkle proof the contract accepts."""
    from proofmesh.data.client import verify_record

    index = _index()
    try:
        res = verify_record(ctx_chain(signer=False), index, _store(), record)
    finally:
        index.close()
    output(res, json_, title="record")


@app.command("batch")
def batch_show(batch_id: int, json_: JsonOpt = False) -> None:
    """A batch's on-chain state (bond, duplicates, attestations, reward)."""
    c = _client(signer=False)
    d = c.batch(batch_id).as_dict()
    d["committee"] = c.committee(batch_id)
    d["pending_reward"] = c.pending_reward(batch_id)
    output(d, json_, title=f"batch #{batch_id}")


@app.command("batches")
def batches_list(json_: JsonOpt = False) -> None:
    """Every published batch (id, source, root, counts, state)."""
    c = _client(signer=False)
    rows = [c.batch(i).as_dict() for i in range(1, c.batch_count() + 1)]
    output(rows, json_, title="data batches",
           columns=["batch_id", "source_id", "contributor", "root", "record_count", "token_count",
                    "duplicates", "finalized", "reward"])


@app.command("overlap")
def overlap_cmd(a: Annotated[str, typer.Argument(help="Batch folder, input path, or batch:<id>.")],
                b: Annotated[str, typer.Argument(help="Batch folder, input path, or batch:<id>.")],
                threshold: Annotated[float, typer.Option("--threshold")] = 0.8,
                text_field: Annotated[str, typer.Option("--text-field")] = "text",
                json_: JsonOpt = False) -> None:
    """Exact and near overlap of B with A (contamination check)."""
    from proofmesh.data.overlap import load_texts, overlap

    def load(spec: str):
        if Path(spec).exists():
            return load_texts(spec, text_field)
        return load_texts(spec, text_field, store=_store(), client=_client(signer=False))
    la, ta = load(a)
    lb, tb = load(b)
    res = overlap(ta, tb, threshold=threshold)
    output(dict(res, a=la, b=lb), json_, title="overlap")


# ------------------------------------------------------------------------ validators, rewards

@app.command("attest")
def attest_cmd(batch_id: int, account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """As a drawn DATA_VALIDATOR: fetch the sampled records, check them, sign and submit."""
    from proofmesh.data.validator import attest

    index = _index()
    try:
        res = attest(ctx_chain(account), _store(), batch_id, ctx_account(account), index=index)
    finally:
        index.close()
    output(res, json_, title="attestation")


@app.command("finalize")
def finalize_cmd(batch_id: int, account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """After the challenge window: release the bond and pay the reward."""
    c = _client(account)
    c.finalize(batch_id)
    b = c.batch(batch_id)
    output({"batch_id": batch_id, "reward": b.reward, "finalized": b.finalized}, json_)


@challenge_app.command("duplicate")
def challenge_duplicate(record: Annotated[str, typer.Argument(help="0x record hash that occurs twice.")],
                        earlier: Annotated[int, typer.Option("--earlier", help="Batch holding the first copy.")],
                        later: Annotated[int, typer.Option("--later", help="Batch holding the repeat (may equal --earlier).")],
                        account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Prove a duplicate (commit, next block, reveal); the later batch's bond pays you."""
    from proofmesh.data.batch import batch_tree
    from proofmesh.data.client import _batch_hashes

    h = _hash_arg(record)
    c = _client(account)
    store = _store()
    ha = _batch_hashes(store, c.batch(earlier).records_cid)
    hb = ha if later == earlier else _batch_hashes(store, c.batch(later).records_cid)
    pos_a = [i for i, x in enumerate(ha) if x == h]
    pos_b = [i for i, x in enumerate(hb) if x == h]
    if later == earlier:
        if len(pos_a) < 2:
            raise InputError("the record does not occur twice in that batch", fix="check the hash and batch")
        ia, ib = pos_a[0], pos_a[1]
    else:
        if not pos_a or not pos_b:
            raise InputError("the record is not in both batches", fix="check the hash and batch ids")
        ia, ib = pos_a[0], pos_b[0]
    tx = c.challenge_duplicate(earlier, ia, batch_tree(ha).proof(ia), later, ib, batch_tree(hb).proof(ib), h)
    output({"batch": later, "index": ib, "earlier_batch": earlier, "earlier_index": ia, "tx": tx.tx_hash}, json_)


@takedown_app.command("record")
def takedown_record(batch_id: int, record: Annotated[str, typer.Argument(help="0x record hash.")],
                    reason: Annotated[str, typer.Option("--reason")] = "withdrawn by owner",
                    account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Withdraw one record: tombstone on chain, its rewards stop, this node forgets its sketch."""
    from proofmesh.data.client import batch_proof

    h = _hash_arg(record)
    c = _client(account)
    idx, proof = batch_proof(_store(), c, batch_id, h)
    tx = c.takedown_record(batch_id, idx, h, proof, reason)
    index = _index()
    try:
        index.forget_record(h)
    finally:
        index.close()
    output({"batch_id": batch_id, "index": idx, "record_hash": "0x" + h.hex(), "tx": tx.tx_hash}, json_)


@takedown_app.command("source")
def takedown_source(source_id: int, reason: Annotated[str, typer.Option("--reason")] = "withdrawn by owner",
                    account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Withdraw a whole source: its batches stop earning; this node deletes their content."""
    c = _client(account)
    c.withdraw_source(source_id, reason)
    store = _store()
    deleted = []
    for bid in range(1, c.batch_count() + 1):
        b = c.batch(bid)
        if b.source_id == source_id:
            for cid in (b.records_cid, b.manifest_cid):
                if store.delete(cid, block=True):
                    deleted.append(cid)
    output({"source_id": source_id, "withdrawn": True, "deleted_blobs": deleted}, json_)


@index_app.command("rebuild")
def index_rebuild(json_: JsonOpt = False) -> None:
    """Index every on-chain batch not yet indexed, from its records in the store (re-hashed)."""
    from proofmesh.data.client import rebuild_index

    index = _index()
    try:
        res = rebuild_index(ctx_chain(signer=False), _store(), index)
    finally:
        index.close()
    output(res, json_, title="index")


@index_app.command("stats")
def index_stats(json_: JsonOpt = False) -> None:
    """How many records and batches this node's index holds."""
    index = _index()
    try:
        res = {"path": str(index.path), "records": len(index), "batches": index.batch_ids(),
               "bands": index.bands, "rows": index.rows}
    finally:
        index.close()
    output(res, json_, title="index")
