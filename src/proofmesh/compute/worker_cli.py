"""``proofmesh worker …``: run this node as a compute worker."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from proofmesh.cli.context import console, ctx_chain, ctx_home
from proofmesh.errors import InputError

app = typer.Typer(help="Run this node as a compute worker (fine-tuning jobs).", no_args_is_help=True)


@app.command("start")
def start(
    port: Annotated[int, typer.Option(help="Port of this worker's blob server (its registered endpoint).")] = 8720,
    interval: Annotated[float, typer.Option(help="Seconds between polls of the chain.")] = 1.0,
    threads: Annotated[int, typer.Option(help="torch threads (the execution profile jobs must match).")] = 1,
    max_seconds: Annotated[Optional[float], typer.Option(help="Stop after this many seconds.")] = None,
    keeper: Annotated[bool, typer.Option(help="Also close applications, draw and finalize when due.")] = True,
    cheat: Annotated[Optional[str], typer.Option(
        help="[TESTS/DEMO ONLY] play a dishonest worker: 'perturb' (noise on the final weights) or 'skip' "
             "(skip half of the segments). Such a worker gets slashed; never use it for real.")] = None,
) -> None:
    """Serve this node's blobs, poll the JobMarket, apply, train, commit/reveal or submit."""
    from proofmesh.compute.artifacts import Blobs
    from proofmesh.compute.market import ROLE_COMPUTE, JobMarketClient
    from proofmesh.compute.worker import Worker
    from proofmesh.store.api import serve_blobs
    from proofmesh.store.blobstore import BlobStore

    home = ctx_home()
    chain = ctx_chain()
    client = JobMarketClient(chain)
    node = client.registry.info(chain.account.address)
    if not node.registered or not node.roles & ROLE_COMPUTE:
        raise InputError(f"{chain.account.address} is not registered with the compute role",
                         fix=f"run `proofmesh node register --endpoint http://127.0.0.1:{port} --roles compute`")
    if node.stake - node.bonded < client.param("worker_bond"):
        raise InputError("free stake is below the worker bond", fix="stake more with `proofmesh node stake`")
    store = BlobStore(home.store_dir)
    with serve_blobs(store, port=port) as url:
        console.print(f"worker {chain.account.address} serving blobs at {url}"
                      + (f" [bold red](CHEATING: {cheat})[/]" if cheat else ""))
        worker = Worker(client, Blobs(store), home.dir("compute"), threads=threads, cheat=cheat, keeper=keeper,
                        log=lambda m: console.print(f"  {m}"))
        try:
            worker.run(interval=interval, max_seconds=max_seconds)
        except KeyboardInterrupt:
            console.print("worker stopped")
