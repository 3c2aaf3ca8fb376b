"""CLI of the node layer.

* ``proofmesh node start|status|stop`` — added to the core ``node`` group by
  :func:`register` (one line in ``cli/main.py``);
* ``proofmesh devnet up|status|down`` — this module's ``app`` (picked up through
  ``_DOMAIN_GROUPS``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from proofmesh.cli.context import AccountOpt, JsonOpt, console, ctx_home, output, password_for

app = typer.Typer(help="A local multi-node network: anvil + N node daemons on 127.0.0.1.", no_args_is_help=True)

DirOpt = Annotated[Path | None, typer.Option("--dir", help="Devnet directory (default ~/.proofmesh-devnet "
                                                            "or PROOFMESH_DEVNET_DIR).")]


def register(node_app: typer.Typer) -> None:
    """Add ``start``, ``status`` and ``stop`` to the core ``node`` group."""
    node_app.command("start")(node_start)
    node_app.command("status")(node_status)
    node_app.command("stop")(node_stop)


def node_start(
    port: Annotated[int | None, typer.Option(help="Port on --host (default: node_port in config.toml, 8700).")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default 127.0.0.1).")] = None,
    account: AccountOpt = None,
) -> None:
    """Run this home's node daemon in the foreground (Ctrl-C / SIGTERM stops it gracefully)."""
    from proofmesh.crypto.keys import Keystore
    from proofmesh.node.daemon import NodeDaemon

    home = ctx_home()
    name = account or home.settings.default_account
    password = password_for(name) if Keystore(home).exists(name) else None
    daemon = NodeDaemon(home, host=host, port=port, account_name=name, password=password).start()
    console.print(f"[bold]proofmesh node[/bold] on {daemon.url}  (explorer {daemon.url}/ · "
                  f"health {daemon.url}/health · logs {home.path}/node/node.log)", highlight=False)
    daemon.serve()


def node_status(json_: JsonOpt = False) -> None:
    """Is this home's daemon running? Its URL, PID and /health."""
    from proofmesh.node.daemon import daemon_health, running_daemon

    home = ctx_home()
    info = running_daemon(home)
    if info is None:
        output({"running": False, "home": str(home.path)}, json_, title="node")
        raise typer.Exit(3)
    health = daemon_health(info.url) if info.url else None
    data: dict[str, Any] = {"running": True, **info.as_dict()}
    if health:
        data.update({k: health.get(k) for k in ("ok", "head", "roles", "chain_ok", "uptime_s")})
        data["services"] = {k: "up" if v.get("up") else "down" for k, v in health.get("services", {}).items()}
    output(data, json_, title="node")


def node_stop(timeout: Annotated[float, typer.Option(help="Seconds to wait for a graceful stop.")] = 30.0,
              json_: JsonOpt = False) -> None:
    """Stop this home's daemon gracefully (SIGTERM) and wait for it."""
    from proofmesh.node.daemon import stop_daemon

    info = stop_daemon(ctx_home(), timeout=timeout)
    output({"stopped": True, "pid": info.pid, "url": info.url}, json_)


@app.command("up")
def devnet_up_cmd(
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="Number of node daemons (new devnet only).")] = 4,
    directory: DirOpt = None,
    base_port: Annotated[int | None, typer.Option(help="Ports base_port.. for the nodes (default: free ports).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Create (or resume) a devnet and start every process that is not running."""
    from proofmesh.node.devnet import devnet_status, devnet_up

    log = (lambda msg: None) if json_ else (lambda msg: console.print(f"  {msg}", highlight=False))
    record = devnet_up(directory, nodes=nodes, base_port=base_port, log=log)
    output(devnet_status(Path(record.directory)), json_, title=f"devnet {record.directory}",
           columns=["node", "address", "roles", "stake", "url", "pid", "health"])


@app.command("status")
def devnet_status_cmd(directory: DirOpt = None, json_: JsonOpt = False) -> None:
    """Every node of the devnet: address, roles, stake, URL, health."""
    from proofmesh.node.devnet import devnet_status

    output(devnet_status(directory), json_, title="devnet",
           columns=["node", "address", "roles", "stake", "url", "pid", "health"])


@app.command("down")
def devnet_down_cmd(directory: DirOpt = None,
                    purge: Annotated[bool, typer.Option(help="Also delete the devnet directory.")] = False,
                    json_: JsonOpt = False) -> None:
    """Stop every node and anvil (state is kept unless --purge)."""
    from proofmesh.node.devnet import devnet_down

    output(devnet_down(directory, purge=purge), json_, title="devnet down")
