"""``proofmesh agents``: publish tools, list them, call them and settle payments."""

from __future__ import annotations

import asyncio
import json
import threading
from decimal import Decimal, InvalidOperation
from typing import Optional

import typer

from proofmesh.cli.context import AccountOpt, JsonOpt, output

from proofmesh.errors import InputError

app = typer.Typer(help="Agent tool network: publish MCP tools with a price, discover, call and pay for them.",
                  no_args_is_help=True)

WEI = 10**18


def parse_mesh(text: str, what: str = "amount") -> int:
    """'0.01' MESH -> wei, exactly (no float rounding)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InputError(f"{what} {text!r} is not a number", fix=f"pass the {what} in MESH, e.g. 0.01") from None
    wei = value * WEI
    if value < 0 or wei != wei.to_integral_value():
        raise InputError(f"{what} {text!r} must be >= 0 with at most 18 decimals", fix="e.g. 0.01")
    return int(wei)


def fmt_mesh(wei: int) -> str:
    return f"{Decimal(wei) / WEI:f}"


def _ctx(account: str | None = None):
    from proofmesh.cli.context import ctx_chain, ctx_home
    return ctx_home(), ctx_chain(account)


@app.command()
def publish(
    functions: list[str] = typer.Argument(None, help="module:function to serve (one or more)"),
    price: str = typer.Option(..., "--price", help="price per call in MESH, e.g. 0.01"),
    name: Optional[list[str]] = typer.Option(None, "--name", help="tool name (one per function; default: function name)"),
    builtin: bool = typer.Option(False, "--builtin", help="also publish proofmesh's own capabilities as tools"),
    scheme: list[str] = typer.Option(["voucher", "exact"], "--scheme", help="accepted payment schemes"),
    host: str = typer.Option("127.0.0.1", help="interface to serve on"),
    port: int = typer.Option(0, help="port (0 = any free port)"),
    endpoint: Optional[str] = typer.Option(None, help="public URL to register (default http://HOST:PORT/mcp)"),
    settle_every: float = typer.Option(300.0, help="redeem vouchers and report usage every N seconds (0 = never)"),
    once: bool = typer.Option(False, "--once", help="register and exit without serving (for scripts)"),
    deterministic: bool = typer.Option(False, "--deterministic", help="declare the tools pure (same arguments, "
                                       "same result): two receipts that disagree slash the tool bond"),
    node: bool = typer.Option(False, "--node", help="let the node daemon serve them: write "
                              "<home>/agents/tools.json and exit (restart `proofmesh node start`)"),
    account: AccountOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Serve Python functions as paid MCP tools and register them in ToolRegistry."""
    from proofmesh.agents.provider import ToolProvider
    from proofmesh.agents.schema import load_function, tool_from_function
    home, chain = _ctx(account)
    functions = functions or []
    names = list(name or [])
    if names and len(names) != len(functions):
        raise InputError(f"{len(names)} --name for {len(functions)} functions", fix="give one --name per function")
    specs = [tool_from_function(load_function(ref), name=names[i] if names else None)
             for i, ref in enumerate(functions)]
    price_wei = parse_mesh(price, "price")
    if node and deterministic:
        raise InputError("--deterministic is not passed to the node daemon's tools service",
                         fix="publish deterministic tools without --node")
    if node:
        # Checked above (functions load, schemas build, price parses); the daemon's tools
        # service registers them with its own endpoint when it starts.
        import json as _json
        import os
        cfg = {"tools": functions, "names": names, "price": price, "builtin": builtin, "port": port,
               "settle_every": settle_every}
        f = home.dir("agents") / "tools.json"
        tmp = f.with_suffix(".tmp")
        tmp.write_text(_json.dumps(cfg, indent=2))
        os.replace(tmp, f)
        output({"config": str(f), "tools": [s.name for s in specs] + (["(builtin)"] if builtin else []),
                "next": "restart the node: proofmesh node start"}, json_, title="tools for the node daemon")
        return
    if builtin:
        from proofmesh.agents.builtin import builtin_tools
        specs += builtin_tools(home, chain)
    if not specs:
        raise InputError("nothing to publish", fix="pass module:function arguments and/or --builtin")
    provider = ToolProvider(chain, specs, price_wei, state_dir=home.dir("agents") / "provider",
                            schemes=tuple(scheme), host=host, port=port, deterministic=deterministic)
    store = _store(home)
    ids = provider.publish(store, endpoint=endpoint)
    output({"endpoint": endpoint or provider.endpoint, "provider": provider.address,
            "tools": {n: "0x" + i.hex() for n, i in ids.items()}, "price": price}, json_, title="published")
    if once:
        provider.close()
        return
    stop = threading.Event()
    if settle_every > 0:
        def loop():
            while not stop.wait(settle_every):
                try:
                    provider.settle()
                except Exception as exc:  # keep serving; the next round retries
                    typer.echo(f"settle failed: {exc}", err=True)
        threading.Thread(target=loop, daemon=True).start()
    try:
        provider.serve_forever()
    finally:
        stop.set()
        try:
            provider.settle()
        finally:
            provider.close()


@app.command()
def tools(search: Optional[str] = typer.Option(None, "--search", help="filter by text in the tool name"),
          all_: bool = typer.Option(False, "--all", help="include retired tools"),
          json_: JsonOpt = False) -> None:
    """List tools registered on chain, best reputation first."""
    from proofmesh.agents.registry import ToolRegistry
    from proofmesh.cli.context import ctx_chain
    chain = ctx_chain(signer=False)
    rows = [t.to_json() | {"price_mesh": fmt_mesh(t.price), "score_mesh": fmt_mesh(t.score)} for t in
            ToolRegistry(chain).search(search, include_retired=all_)]
    output(rows, json_, title="tools (best reputation first)",
           columns=["name", "provider", "price_mesh", "schemes", "score_mesh", "payers", "calls", "failures",
                    "disputes", "endpoint"])


@app.command()
def call(tool: str = typer.Argument(..., help="tool name"),
         args: str = typer.Option("{}", "--args", help="arguments as a JSON object"),
         scheme: str = typer.Option("voucher", help="voucher (channel) or exact (EIP-3009 per call)"),
         max_price: Optional[str] = typer.Option(None, help="refuse providers above this price (MESH)"),
         deposit: str = typer.Option("10", help="channel deposit when a new channel is opened (MESH)"),
         account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Discover TOOL on chain, pay for one call, check the signed receipt, print the result."""
    from proofmesh.agents.client import AgentClient
    home, chain = _ctx(account)
    try:
        parsed = json.loads(args)
    except json.JSONDecodeError as exc:
        raise InputError(f"--args is not JSON: {exc}", fix='e.g. --args \'{"text": "hello"}\'') from None
    client = AgentClient(chain, state_dir=home.dir("agents") / "client", scheme=scheme,
                         deposit=parse_mesh(deposit, "deposit"),
                         max_price=parse_mesh(max_price, "max price") if max_price else None)
    output(client.call_sync(tool, parsed).to_json(), json_, title=f"{tool} (paid, receipt verified)")


@app.command()
def settle(account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Provider: redeem the latest vouchers in one transaction and report payers' usage."""
    from proofmesh.agents.provider import settle_from_state
    home, chain = _ctx(account)
    output(settle_from_state(chain, home.dir("agents") / "provider"), json_, title="settled")


@app.command()
def report(account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Agent: submit your signed usage of every tool you called (feeds reputation)."""
    from proofmesh.agents.client import AgentClient
    home, chain = _ctx(account)
    client = AgentClient(chain, state_dir=home.dir("agents") / "client")
    try:
        sent = client.report_usage()
    finally:
        asyncio.run(client.aclose())     # its journals: the next command in this process opens them again
    output({"reports_sent": sent}, json_)


def _receipt_file(path: str):
    from pathlib import Path

    from proofmesh.agents.receipts import Receipt
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read a receipt from {path}: {exc}",
                         fix="pass a JSON file holding a receipt or an `agents call --json` result") from None
    return Receipt.from_json(doc.get("receipt", doc) if isinstance(doc, dict) else {})


@app.command("prove-fault")
def prove_fault(receipt_a: str = typer.Argument(..., help="JSON file: a receipt (or an `agents call --json` output)"),
                receipt_b: str = typer.Argument(..., help="JSON file: a second receipt of the same tool"),
                account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Prove a deterministic tool wrong: two of its provider's receipts with the same arguments
    and different results. Commits (locking the dispute bond), then reveals in a later block;
    a valid proof slashes the tool bond and pays you the bounty, anything else burns the bond."""
    from proofmesh.agents.registry import ToolRegistry
    _, chain = _ctx(account)
    a, b = _receipt_file(receipt_a), _receipt_file(receipt_b)
    if a.args_hash != b.args_hash or a.result_hash == b.result_hash:
        raise InputError("these receipts do not conflict (need equal argsHash and different resultHash)",
                         fix="a false dispute burns the dispute bond; check the receipts")
    reg = ToolRegistry(chain)
    salt = reg.commit_dispute(a, b, sender=chain.account)
    proven = reg.prove_fault(a, b, salt, sender=chain.account)
    ev = (chain.events("ToolRegistry", "FaultProven" if proven else "DisputeRejected",
                       from_block=chain.w3.eth.block_number) or [{"args": {}}])[-1]["args"]
    output({"proven": proven, "tool_id": "0x" + a.tool_id.hex(),
            **({"slashed_mesh": fmt_mesh(ev.get("slashed", 0)), "bounty_mesh": fmt_mesh(ev.get("bounty", 0))}
               if proven else {"reason": ev.get("reason", "")})}, json_, title="fault proof")


def _store(home):
    from proofmesh.store.blobstore import BlobStore
    return BlobStore(home.store_dir)
