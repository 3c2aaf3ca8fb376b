"""The home directory and settings: one place for configuration.

Resolution order for every setting: explicit argument > environment variable
``PROOFMESH_<NAME>`` > ``<home>/config.toml`` > default. The home itself comes from
``--home`` > ``PROOFMESH_HOME`` > ``~/.proofmesh``.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from proofmesh.errors import ConfigError

DEFAULT_HOME = Path("~/.proofmesh")


@dataclass
class Settings:
    """Settings of one home; every field can be overridden by ``PROOFMESH_<FIELD>``."""

    backend: str = "embedded"          # "embedded" | "rpc"
    rpc_url: str = ""                  # for backend=rpc
    chain_id: int = 31337              # chain id of a new embedded chain
    confirmations: int = 0             # rpc: blocks to wait after a write
    default_account: str = "default"   # keystore name used by the CLI
    node_host: str = "127.0.0.1"
    node_port: int = 8700
    dev_mode: bool = True              # allows insecure local setups (e.g. locally generated SRS)
    http_max_body_mb: int = 64         # largest request body a proofmesh HTTP server accepts (413 past it)
    http_max_connections: int = 1024   # connections one server holds at once (503 past it)
    http_body_timeout_s: float = 60.0  # seconds a server waits, in all, for a request's body (408 past it)
    http_max_answer_mb: int = 64       # largest answer a proofmesh client reads from a peer it does not control
    http_min_rate_kbps: float = 1000.0  # slowest average rate of a blob upload or fetch after its grace (408 / fetch fails)
    # the node daemon's services (docs/node.md)
    worker_interval: float = 1.0       # compute worker: seconds between its polls of JobMarket
    worker_threads: int = 1            # compute worker: torch threads a job trains with
    gateway_workers: int = 0           # edge gateway: signature-checking threads (0: one per core)
    validator_interval: float = 2.0    # data validator: seconds between its passes over open batches
    evaluator_interval: float = 2.0    # model evaluator: seconds between its passes over open requests
    evaluator_retry: float = 15.0      # model evaluator: seconds before fetching a request's inputs again

    @classmethod
    def load(cls, config_file: Path) -> "Settings":
        values: dict[str, Any] = {}
        if config_file.exists():
            try:
                values.update(tomllib.loads(config_file.read_text()))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{config_file} is not valid TOML: {exc}",
                                  fix=f"fix or delete {config_file}") from exc
        known = {f.name: f for f in fields(cls)}
        values = {k: v for k, v in values.items() if not isinstance(v, dict)}  # [sections] belong to services
        unknown = set(values) - set(known)
        if unknown:
            raise ConfigError(f"{config_file}: unknown setting(s) {sorted(unknown)}",
                              fix=f"valid settings are {sorted(known)}")
        for name, f in known.items():
            env = os.environ.get(f"PROOFMESH_{name.upper()}")
            if env is not None:
                values[name] = env
        out = cls()
        for name, raw in values.items():
            value = _coerce(name, raw, type(getattr(out, name)))
            low = _MINIMUM.get(name)
            if low is not None and value < low:
                raise ConfigError(f"setting {name!r} must be at least {low}, got {value}",
                                  fix=f"set PROOFMESH_{name.upper()} or {name} in {config_file} to {low} or more")
            setattr(out, name, value)
        return out

    def to_toml(self) -> str:
        return "".join(_toml_line(f.name, getattr(self, f.name)) for f in fields(self))


# Settings below which a service would spin, or run nothing, instead of failing at start-up.
_MINIMUM: dict[str, float] = {"worker_interval": 0.01, "worker_threads": 1, "gateway_workers": 0,
                              "validator_interval": 0.01, "evaluator_interval": 0.01, "evaluator_retry": 0.0}


def _toml_line(name: str, v: Any) -> str:
    if isinstance(v, bool):
        return f"{name} = {'true' if v else 'false'}\n"
    if isinstance(v, int):
        return f"{name} = {v}\n"
    return f"{name} = {json.dumps(v)}\n"


def _set_top_level(config_file: Path, text: str, values: dict[str, Any]) -> str:
    """``text`` with the top-level settings in ``values`` set and every other line — other
    settings, comments, the [sections] services read — kept byte for byte."""
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_file} is not valid TOML: {exc}", fix=f"fix or delete {config_file}") from exc
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    # Top-level keys come before the first [table] header (TOML puts later keys in that table).
    top = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
    for name, value in values.items():
        key = re.compile(rf"^\s*(?:{name}|\"{name}\"|'{name}')\s*=")
        at = next((i for i in range(top) if key.match(lines[i])), None)
        if at is not None:
            lines[at] = _toml_line(name, value)
        else:   # after the last top-level line, so a blank line before a [table] stays
            end = next((i + 1 for i in range(top - 1, -1, -1) if lines[i].strip()), 0)
            lines.insert(end, _toml_line(name, value))
            top += 1
    out = "".join(lines)
    after = tomllib.loads(out)
    expected = {**before, **tomllib.loads("".join(_toml_line(k, v) for k, v in values.items()))}
    if after != expected:   # e.g. a multi-line string value the line edit cannot handle
        raise ConfigError(f"cannot update {config_file} in place (set {sorted(values)})",
                          fix=f"edit {config_file} by hand: set {', '.join(sorted(values))}")
    return out


def _coerce(name: str, raw: Any, typ: type) -> Any:
    try:
        if typ is bool and isinstance(raw, str):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        return typ(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r} must be {typ.__name__}, got {raw!r}",
                          fix=f"set PROOFMESH_{name.upper()} or {name} in config.toml to a valid {typ.__name__}") from exc


@dataclass
class Home:
    """A state directory: keys, chain data, blob store, config, address book."""

    path: Path
    settings: Settings = field(default_factory=Settings)

    @classmethod
    def resolve(cls, path: str | Path | None = None) -> "Home":
        """Home from an explicit path, ``PROOFMESH_HOME`` or ``~/.proofmesh``."""
        raw = path or os.environ.get("PROOFMESH_HOME") or DEFAULT_HOME
        p = Path(raw).expanduser().resolve()
        return cls(path=p, settings=Settings.load(p / "config.toml"))

    # --- well-known locations -------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / "config.toml"

    @property
    def keys_dir(self) -> Path:
        return self.path / "keys"

    @property
    def chain_dir(self) -> Path:
        return self.path / "chain"

    @property
    def store_dir(self) -> Path:
        return self.path / "store"

    @property
    def address_book_file(self) -> Path:
        return self.path / "addresses.json"

    def dir(self, name: str) -> Path:
        """A private sub-directory for a domain's own state (created on demand)."""
        d = self.path / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def initialised(self) -> bool:
        return self.config_file.exists()

    def init(self, **overrides: Any) -> None:
        """Create the directory layout and write config.toml (idempotent).

        A new file gets every setting; an existing one only has the ``overrides`` set:
        its other settings, comments and [sections] (read by services, e.g. ``[inference]``)
        are kept as they were.
        """
        known = {f.name for f in fields(Settings)}
        if set(overrides) - known:
            raise ConfigError(f"unknown setting(s) {sorted(set(overrides) - known)}",
                              fix=f"valid settings are {sorted(known)}")
        for d in (self.path, self.keys_dir, self.chain_dir, self.store_dir):
            d.mkdir(parents=True, exist_ok=True)
        for k, v in overrides.items():
            setattr(self.settings, k, v)
        if self.config_file.exists() and not overrides:
            return
        if self.config_file.exists():
            text = _set_top_level(self.config_file, self.config_file.read_text(),
                                  {k: getattr(self.settings, k) for k in overrides})
        else:
            text = self.settings.to_toml()
        tmp = self.config_file.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_file)

    # --- address book -----------------------------------------------------------
    def address_book(self, chain_id: int) -> dict[str, str]:
        """Deployed contract addresses for ``chain_id`` (empty if none)."""
        if not self.address_book_file.exists():
            return {}
        return json.loads(self.address_book_file.read_text()).get(str(chain_id), {})

    def save_address_book(self, chain_id: int, book: dict[str, str]) -> None:
        data = {}
        if self.address_book_file.exists():
            data = json.loads(self.address_book_file.read_text())
        data[str(chain_id)] = book
        tmp = self.address_book_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, self.address_book_file)
