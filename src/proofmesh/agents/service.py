"""Node service adapter: the node daemon serves paid MCP tools when the node holds TOOL_PROVIDER.

What to serve is declared in ``<home>/agents/tools.json``::

    {"tools": ["mypkg.tools:summarize"], "names": ["summarize"], "price": "0.01",
     "builtin": false, "port": 0, "settle_every": 300}

The MCP server keeps its own port (the streamable-HTTP app has its own lifespan), as
``proofmesh agents publish`` does; the tools are (re)registered in ToolRegistry with
that endpoint at start. Vouchers are redeemed every ``settle_every`` seconds and once
more on shutdown, so a stopped node hands its earned payments in rather than losing
them (the voucher ledger is on disk under ``<home>/agents/provider`` as well).
"""

from __future__ import annotations

import threading
from typing import Any

from proofmesh.errors import ConfigError
from proofmesh.plugins import service_spec

ROLES = 16  # NodeRegistry TOOL_PROVIDER


class ToolService:
    """A :class:`~proofmesh.agents.provider.ToolProvider` as a NodeService."""

    name = "tools"

    def __init__(self, ctx: Any, spec: dict[str, Any]) -> None:
        from proofmesh.agents.provider import ToolProvider
        from proofmesh.agents.schema import load_function, tool_from_function
        from proofmesh.chain.core import to_wei

        refs = list(spec.get("tools", []))
        names = list(spec.get("names", []))
        if names and len(names) != len(refs):
            raise ConfigError("agents/tools.json: 'names' must have one name per entry of 'tools'",
                              fix="give one name per function, or drop 'names'")
        specs = [tool_from_function(load_function(ref), name=names[i] if names else None)
                 for i, ref in enumerate(refs)]
        if spec.get("builtin"):
            from proofmesh.agents.builtin import builtin_tools

            specs += builtin_tools(ctx.home, ctx.chain)
        self.ctx = ctx
        self.settle_every = float(spec.get("settle_every", 300))
        self.provider = ToolProvider(ctx.chain, specs, to_wei(spec.get("price", "0")),
                                     state_dir=ctx.home.dir("agents") / "provider", port=int(spec.get("port", 0)))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.settlements = 0
        self.settle_errors = 0

    def router(self) -> Any:
        from fastapi import APIRouter

        r = APIRouter(tags=["tools"])

        @r.get("/status")
        def status() -> dict[str, Any]:
            return {"endpoint": self.provider.endpoint, "tools": sorted(self.provider.tools),
                    "settlements": self.settlements}

        return r

    def start(self) -> None:
        self.provider.start()
        self.provider.publish(self.ctx.store)
        if self.settle_every > 0:
            self._thread = threading.Thread(target=self._loop, name="proofmesh-tools-settle", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.settle_every):
            self._settle()

    def _settle(self) -> None:
        try:
            self.provider.settle()
            self.settlements += 1
        except Exception:  # keep serving; the next round retries, the ledger is on disk
            self.settle_errors += 1

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self.provider.stop()
        self._settle()  # hand in what was earned before going away

    def health(self) -> dict[str, Any]:
        return {"endpoint": self.provider.endpoint, "tools": len(self.provider.tools)}

    def metrics(self) -> dict[str, float]:
        return {"tools_settlements": float(self.settlements), "tools_settle_errors": float(self.settle_errors)}


def create(ctx: Any) -> ToolService | None:
    """Serve what ``<home>/agents/tools.json`` names; decline if there is no such file."""
    spec = service_spec(ctx, "ToolRegistry", "agents/tools.json")
    return None if spec is None else ToolService(ctx, spec)
