"""What every CLI command shares: the selected home, output mode, account and chain.

Domain CLIs (``proofmesh/<domain>/cli.py``) use these helpers so that ``--home``,
``--json``, passwords, errors and tables behave the same everywhere::

    from proofmesh.cli.context import JsonOpt, ctx_chain, output

    @app.command()
    def show(thing: str, json_: JsonOpt = False) -> None:
        chain = ctx_chain()
        output({"thing": thing}, json_)
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Iterator, Sequence

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from proofmesh.config import Home
from proofmesh.errors import ConfigError, ProofmeshError

console = Console()
err_console = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
AccountOpt = Annotated[str | None, typer.Option("--account", "-a", help="Keystore account to sign with (default: the home's default_account).")]


@dataclass
class CLIState:
    """Global options of one invocation."""

    home_path: Path | None = None
    json: bool = False
    backend: str | None = None
    rpc_url: str | None = None
    _home: Home | None = None
    _accounts: dict[str, Any] = field(default_factory=dict)
    _chains: dict[str, Any] = field(default_factory=dict)


_state = CLIState()


def state() -> CLIState:
    return _state


def reset_state(**kwargs: Any) -> None:
    """Start a fresh invocation (the root callback calls this)."""
    global _state
    _state = CLIState(**kwargs)


def ctx_home(*, must_exist: bool = True) -> Home:
    """The selected home; a clear error if it was never initialised."""
    if _state._home is None:
        home = Home.resolve(_state.home_path)
        if _state.backend:
            home.settings.backend = _state.backend
        if _state.rpc_url:
            home.settings.rpc_url = _state.rpc_url
            if not _state.backend:
                home.settings.backend = "rpc"
        _state._home = home
    if must_exist and not _state._home.initialised:
        raise ConfigError(f"no proofmesh home at {_state._home.path}",
                          fix="run `proofmesh init` (or pass --home / set PROOFMESH_HOME)")
    return _state._home


def password_for(name: str, *, confirm: bool = False) -> str:
    """PROOFMESH_PASSWORD, or a hidden prompt."""
    env = os.environ.get("PROOFMESH_PASSWORD")
    if env is not None:
        return env
    if not sys.stdin.isatty():
        raise ProofmeshError(f"a password is needed for account {name!r} and there is no terminal to ask",
                             fix="set PROOFMESH_PASSWORD")
    return typer.prompt(f"Password for account {name!r}", hide_input=True, confirmation_prompt=confirm)


def ctx_account(name: str | None = None) -> Any:
    """The decrypted LocalAccount ``name`` (default: the home's default account)."""
    from proofmesh.crypto.keys import Keystore

    home = ctx_home()
    name = name or home.settings.default_account
    if name not in _state._accounts:
        ks = Keystore(home)
        ks.address_of(name)  # unknown account -> clear error before any prompt
        _state._accounts[name] = ks.load(name, password_for(name))
    return _state._accounts[name]


def ctx_chain(account: str | None = None, *, signer: bool = True) -> Any:
    """A connected Chain for the home, signing with ``account`` (if ``signer``)."""
    from proofmesh.chain.client import Chain
    from proofmesh.chain.core import require_deployed

    key = f"{account}:{signer}"
    if key not in _state._chains:
        home = ctx_home()
        acct = ctx_account(account) if signer else None
        chain = Chain.connect(home, acct)
        require_deployed(chain)
        _state._chains[key] = chain
    return _state._chains[key]


# ------------------------------------------------------------------------ output

def _jsonable(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return "0x" + obj.hex()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def output(data: Any, json_flag: bool = False, *, title: str | None = None,
           columns: Sequence[str] | None = None) -> None:
    """Print ``data`` as JSON (``--json``) or as a Rich table / key-value list."""
    if json_flag or _state.json:
        sys.stdout.write(json.dumps(data, default=_jsonable, indent=2) + "\n")
        return
    if isinstance(data, list):
        rows = [r if isinstance(r, dict) else {"value": r} for r in data]
        cols = list(columns or (rows[0].keys() if rows else []))
        table = Table(title=title, show_lines=False)
        for c in cols:
            table.add_column(c)
        for r in rows:
            table.add_row(*[_cell(r.get(c)) for c in cols])
        console.print(table if rows else f"[dim]{title or 'nothing'}: none[/dim]")
    elif isinstance(data, dict):
        table = Table(title=title, show_header=False, box=None)
        table.add_column(style="bold cyan")
        table.add_column()
        for k, v in data.items():
            table.add_row(str(k), _cell(v))
        console.print(table)
    else:
        console.print(data)


def _cell(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(_cell(x) for x in v)
    if isinstance(v, bytes):
        return "0x" + v.hex()
    if isinstance(v, dict):
        return json.dumps(v, default=_jsonable)
    return "" if v is None else str(v)


def print_error(exc: ProofmeshError) -> None:
    err_console.print(f"[bold red]error:[/bold red] {exc.message}", highlight=False)
    if exc.fix:
        err_console.print(f"[yellow]fix:[/yellow] {exc.fix}", highlight=False)


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Any]:
    """A Rich progress bar on stderr (silent with --json); yields ``advance(n)``."""
    if _state.json:
        yield lambda n=1: None
        return
    with Progress(SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=err_console, transient=False) as p:
        task = p.add_task(description, total=total)
        yield lambda n=1: p.advance(task, n)
