"""``proofmesh demo``: the whole story on a fresh home, one capability per step.

The foundation step creates a home, a key, deploys the contracts, mints (genesis and
one epoch of emission), registers and stakes a node and prints the address book.
Each capability adds a step: a module ``proofmesh.<domain>.demo`` with
``run(ctx: DemoContext) -> dict`` that does real work on the same chain and returns
summary rows. Steps share results through ``ctx.data`` (e.g. a batch id).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.panel import Panel
from rich.table import Table

from proofmesh.chain.client import Chain
from proofmesh.cli.context import console, output
from proofmesh.config import Home
from proofmesh.plugins import import_optional

DEMO_PASSWORD = "proofmesh-demo"

# (step name, module); modules not built yet are skipped.
DEMO_STEPS = [
    ("node", "proofmesh.node.demo"),
    ("blobs", "proofmesh.store.demo"),
    ("data", "proofmesh.data.demo"),
    ("models", "proofmesh.models.demo"),
    ("compute", "proofmesh.compute.demo"),
    ("inference", "proofmesh.inference.demo"),
    ("edge", "proofmesh.edge.demo"),
    ("agents", "proofmesh.agents.demo"),
]


@dataclass
class DemoContext:
    """What every demo step gets: the home, a connected chain, funded actors."""

    home: Home
    chain: Chain                       # signs as the home's key (deployer, genesis holder)
    workdir: Path                      # scratch space for files the step makes
    actors: list[Any]                  # funded LocalAccounts for other parties (workers, devices, agents)
    devnet: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = lambda msg: console.print(f"  {msg}")

    def actor(self, i: int) -> Any:
        return self.actors[i]


def _foundation(home: Home, devnet: bool, log: Callable[[str], None]) -> tuple[DemoContext, dict[str, Any]]:
    from proofmesh.chain.bootstrap import bootstrap_home
    from proofmesh.chain.core import MESH, EmissionClient, Registry, Token, fund, from_wei
    from proofmesh.chain.embedded import dev_accounts
    from proofmesh.crypto.keys import Keystore

    summary = bootstrap_home(home, "default", DEMO_PASSWORD,
                             progress=lambda name, addr: log(f"deployed [bold]{name}[/bold] at {addr}"))
    me = Keystore(home).load("default", DEMO_PASSWORD)
    chain = Chain.connect(home, me)
    log(f"home {home.path}, key {me.address}, chain id {chain.chain_id} ({chain.backend})")

    token, emission = Token(chain), EmissionClient(chain)
    log(f"genesis: {from_wei(token.balance(me.address))} MESH minted to {me.address}")
    epoch = chain.call(emission.c.functions.epoch_length())
    start = chain.call(emission.c.functions.start_time())
    chain.advance_to(start + epoch * (chain.call(emission.c.functions.epochs_distributed()) + 1))
    minted = chain.transact(emission.c.functions.distribute())
    pools = emission.pools()
    log("emission epoch minted into reward pools: " + ", ".join(f"{k} {from_wei(v)}" for k, v in pools.items()))

    reg = Registry(chain)
    if not reg.info(me.address).registered:
        reg.register(f"http://127.0.0.1:{home.settings.node_port}", 63)
        reg.stake(10_000 * MESH)
    info = reg.info(me.address)
    log(f"node {me.address} registered with all roles, staked {from_wei(info.stake)} MESH")

    actors = dev_accounts()[1:]
    for a in actors:
        if token.balance(a.address) < 50_000 * MESH:
            fund(chain, a.address, mesh=100_000 * MESH)
    log(f"funded {len(actors)} actor accounts with 100,000 MESH each")
    ctx = DemoContext(home=home, chain=chain, workdir=home.path / "demo", actors=actors, devnet=devnet, log=log)
    ctx.workdir.mkdir(exist_ok=True)
    ctx.data["address_book"] = dict(chain.addresses)
    return ctx, {"contracts": summary["contracts"], "supply": from_wei(token.total_supply()),
                 "emission_gas": minted.gas_used, "node_stake": from_wei(info.stake)}


def _quiet_third_party() -> None:
    """The demo's output is proofmesh's story: silence library chatter (warnings, progress bars)."""
    import logging
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in ("transformers", "peft", "torch", "uvicorn", "uvicorn.access", "ezkl"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run_demo(*, devnet: bool = False, keep: bool = True, only: list[str] | None = None,
             json_out: bool = False, home_path: Path | None = None) -> dict[str, Any]:
    """Run the demo; returns {step: summary}."""
    from proofmesh.cli.context import state

    base = home_path or state().home_path
    if base is None:
        base = Path(tempfile.mkdtemp(prefix="proofmesh-demo-"))
    home = Home.resolve(base)
    os.environ.setdefault("PROOFMESH_PASSWORD", DEMO_PASSWORD)
    _quiet_third_party()
    anvil = None
    if devnet:
        from proofmesh.chain.anvil import start_anvil

        anvil = start_anvil(state_file=None)
        home.init(backend="rpc", rpc_url=anvil.url)
    else:
        home.init()
    log = (lambda msg: None) if json_out else (lambda msg: console.print(f"  {msg}"))
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    try:
        if not json_out:
            console.print(Panel.fit("[bold]proofmesh demo[/bold] — foundation", border_style="cyan"))
        t0 = time.monotonic()
        ctx, results["foundation"] = _foundation(home, devnet, log)
        timings["foundation"] = time.monotonic() - t0
        for name, module_name in DEMO_STEPS:
            if only and name not in only:
                continue
            module = import_optional(module_name)
            if module is None:
                continue
            if not json_out:
                console.print(Panel.fit(f"[bold]{name}[/bold]", border_style="cyan"))
            t0 = time.monotonic()
            results[name] = module.run(ctx)
            timings[name] = time.monotonic() - t0
    finally:
        if anvil is not None:
            anvil.stop()
    if json_out:
        output({"home": str(home.path), "steps": results, "seconds": timings}, True)
    else:
        table = Table(title="proofmesh demo — summary")
        table.add_column("step", style="bold cyan")
        table.add_column("result")
        table.add_column("s", justify="right")
        for name, summary in results.items():
            text = "\n".join(f"{k}: {v}" for k, v in (summary or {}).items() if not isinstance(v, (dict, list)))
            table.add_row(name, text, f"{timings[name]:.1f}")
        console.print(table)
        book = Table(title="address book")
        book.add_column("contract")
        book.add_column("address")
        for k, v in sorted(ctx.data["address_book"].items()):
            book.add_row(k, v)
        console.print(book)
        console.print(f"home: {home.path}" + ("" if keep else " (temporary)"))
        if ctx.data.get("explorer_url"):
            console.print(f"explorer: {ctx.data['explorer_url']}")
        else:
            console.print(f"explorer: run `proofmesh --home {home.path} node start` and open "
                          f"http://127.0.0.1:{home.settings.node_port}/")
    return results
