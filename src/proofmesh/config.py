"""The home directory and settings: one place for configuration.

Resolution order for every setting: explicit argument > environment variable
``PROOFMESH_<NAME>`` > ``<home>/config.toml`` > default. The home itself comes from
``--home`` > ``PROOFMESH_HOME`` > ``~/.proofmesh``.
"""

from __future__ import annotations

import json
import os
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
            setattr(out, name, _coerce(name, raw, type(getattr(out, name))))
        return out

    def to_toml(self) -> str:
        lines = []
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool):
                lines.append(f"{f.name} = {'true' if v else 'false'}")
            elif isinstance(v, int):
                lines.append(f"{f.name} = {v}")
            else:
                lines.append(f"{f.name} = {json.dumps(v)}")
        return "\n".join(lines) + "\n"


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
        """Create the directory layout and write config.toml (idempotent)."""
        for d in (self.path, self.keys_dir, self.chain_dir, self.store_dir):
            d.mkdir(parents=True, exist_ok=True)
        for k, v in overrides.items():
            setattr(self.settings, k, v)
        if not self.config_file.exists() or overrides:
            tmp = self.config_file.with_suffix(".tmp")
            tmp.write_text(self.settings.to_toml())
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
