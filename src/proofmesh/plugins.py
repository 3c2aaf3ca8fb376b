"""How capabilities plug into the shared layers without import cycles.

The CLI, the deployer, the demo and the node daemon each name the optional modules a
capability may provide (``proofmesh.<domain>.cli``, ``.deployment``, ``.demo``,
``.service``). A capability that does not ship one is simply skipped; any other import
failure inside a module that does exist is a real bug and is raised.
"""

from __future__ import annotations

import importlib
import json
from types import ModuleType
from typing import Any

from proofmesh.errors import ConfigError


def import_optional(module_name: str) -> ModuleType | None:
    """``module_name`` imported, or None if that module itself does not exist."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise


def service_spec(ctx: Any, contract: str, relative: str) -> dict[str, Any] | None:
    """The JSON spec of a file-configured service (``<home>/<relative>``), or None when the
    service should decline: no signing account, ``contract`` not deployed, or no such file."""
    if ctx.chain is None or ctx.account is None or contract not in ctx.chain.addresses:
        return None
    f = ctx.home.path / relative
    if not f.exists():
        return None
    try:
        return json.loads(f.read_text())
    except ValueError as exc:
        raise ConfigError(f"{f} is not valid JSON: {exc}", fix=f"fix or delete {f}") from None
