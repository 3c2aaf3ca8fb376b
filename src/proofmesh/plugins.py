"""How capabilities plug into the shared layers without import cycles.

The CLI, the deployer, the demo and the node daemon each name the optional modules a
capability may provide (``proofmesh.<domain>.cli``, ``.deployment``, ``.demo``,
``.service``). A capability that does not ship one is simply skipped; any other import
failure inside a module that does exist is a real bug and is raised.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def import_optional(module_name: str) -> ModuleType | None:
    """``module_name`` imported, or None if that module itself does not exist."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
