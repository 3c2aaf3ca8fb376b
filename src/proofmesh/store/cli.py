"""``proofmesh blob …``: the home's content-addressed blob store from the command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from proofmesh.cli.context import JsonOpt, ctx_home, output, progress_bar
from proofmesh.errors import InputError, StoreError

app = typer.Typer(help="Content-addressed blobs: IPFS-compatible CIDs, stored and fetched by hash.",
                  no_args_is_help=True)


def _store():
    from proofmesh.store.blobstore import BlobStore

    return BlobStore(ctx_home().store_dir)


@app.command("cid")
def cid_cmd(files: Annotated[list[Path], typer.Argument(help="Files to hash.")], json_: JsonOpt = False) -> None:
    """Print each file's CID (= `ipfs add --cid-version=1 --raw-leaves -n`), storing nothing."""
    from proofmesh.crypto.cid import cid_of_file

    output([{"file": str(f), "cid": cid_of_file(f), "size": f.stat().st_size} for f in files], json_)


@app.command("add")
def add(files: Annotated[list[Path], typer.Argument(help="Files to store.")], json_: JsonOpt = False) -> None:
    """Store files (streamed, deduplicated); prints their CIDs."""
    store = _store()
    rows = []
    with progress_bar("adding", total=len(files)) as advance:
        for f in files:
            cid = store.put_file(f)
            rows.append({"file": str(f), "cid": cid, "size": store.size(cid)})
            advance()
    output(rows, json_)


@app.command("get")
def get(cid: Annotated[str, typer.Argument(help="CID of the blob.")],
        out: Annotated[Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")] = None) -> None:
    """Write a stored blob, re-hashed on the way; a corrupted blob is refused and quarantined."""
    store = _store()
    if out is None:
        with store.open(cid) as r:
            while piece := r.read(1 << 20):
                sys.stdout.buffer.write(piece)
        sys.stdout.buffer.flush()
        return
    # Write beside the target and rename only once the CID checked out, so a corrupted
    # blob never leaves a plausible-looking file behind.
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        with store.open(cid) as r, tmp.open("wb") as w:
            while piece := r.read(1 << 20):
                w.write(piece)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


@app.command("ls")
def ls(json_: JsonOpt = False) -> None:
    """List stored blobs."""
    store = _store()
    output([{"cid": c, "size": store.size(c)} for c in store.list()], json_, title="blobs")


@app.command("fetch")
def fetch_cmd(cid: Annotated[str, typer.Argument(help="CID to fetch.")],
              peer: Annotated[list[str] | None, typer.Option("--peer", "-p", help="Peer base URL (repeatable). "
                                                             "Default: every registered node's endpoint.")] = None,
              timeout: Annotated[float, typer.Option(help="Seconds per peer.")] = 30.0,
              json_: JsonOpt = False) -> None:
    """Fetch a blob from peers, re-hashing it; peers that send wrong bytes are skipped."""
    from proofmesh.store.fetch import fetch

    peers = list(peer or [])
    if not peers:
        from proofmesh.chain.core import Registry
        from proofmesh.cli.context import ctx_chain

        peers = [n.endpoint for n in Registry(ctx_chain(signer=False)).nodes() if n.endpoint]
        if not peers:
            raise InputError("no peers: no node on chain has an endpoint",
                             fix="pass --peer http://host:port")
    result = fetch(cid, peers, _store(), timeout=timeout)
    output({"cid": result.cid, "from": result.peer or "(already stored)",
            "failed_peers": result.failures}, json_)


@app.command("rm")
def rm(cid: Annotated[str, typer.Argument(help="CID to remove.")],
       block: Annotated[bool, typer.Option("--block", help="Also refuse this CID from now on (takedown).")] = False,
       json_: JsonOpt = False) -> None:
    """Remove a blob from this node's store."""
    removed = _store().delete(cid, block=block)
    output({"cid": cid, "removed": removed, "blocked": block}, json_)


@app.command("verify")
def verify(json_: JsonOpt = False) -> None:
    """Re-hash every stored blob; corrupted ones are quarantined and listed."""
    store = _store()
    cids = list(store.list())
    bad = []
    with progress_bar("verifying", total=len(cids)) as advance:
        for c in cids:
            if not store.verify(c):
                bad.append(c)
            advance()
    output({"checked": len(cids), "corrupted": bad}, json_)
    if bad:
        raise StoreError(f"{len(bad)} corrupted blob(s) quarantined", fix="fetch them again with `proofmesh blob fetch`")
