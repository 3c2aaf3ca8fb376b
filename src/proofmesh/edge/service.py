"""Node service adapter: the node daemon runs the edge gateway when the node holds EDGE_GATEWAY.

Routes are the gateway's own (:func:`proofmesh.edge.gateway.make_router`) under
``/svc/gateway``, so a device is pointed at ``<node endpoint>/svc/gateway`` and uses
``/edge/beacon`` and ``/edge/readings`` there. The gateway signs receipts and publishes
epochs with the node's key. State lives in ``<home>/edge/gateway`` (readings log,
published epochs), so a restarted node replays its log and loses no acknowledged reading.
"""

from __future__ import annotations

import os
from typing import Any

ROLES = 8  # NodeRegistry EDGE_GATEWAY


class GatewayService:
    """The edge gateway as a :class:`proofmesh.node.services.NodeService`."""

    name = "gateway"

    def __init__(self, ctx: Any) -> None:
        import coincurve

        from proofmesh.edge.gateway import GatewayConfig, GatewayCore
        from proofmesh.edge.identity import KeyHolder
        from proofmesh.edge.onchain import EdgeChain

        key = KeyHolder(ctx.account, coincurve.PrivateKey(bytes(ctx.account.key)), ctx.home.keys_dir)
        # verifier threads (cheap: the kernel runs with the GIL released, no extra processes)
        workers = ctx.home.settings.gateway_workers or os.cpu_count() or 1
        self.core = GatewayCore(GatewayConfig(directory=ctx.home.dir("edge") / "gateway", workers=workers),
                                key, edge=EdgeChain(ctx.chain))

    def router(self) -> Any:
        from proofmesh.edge.gateway import make_router

        return make_router(self.core)

    def start(self) -> None:
        self.core.start()

    def stop(self, timeout: float) -> None:
        # accepted readings are fsynced before they are acknowledged; close() syncs the log
        # and the next start replays it into the open epochs (nothing is lost or re-counted)
        self.core.close()

    def health(self) -> dict[str, Any]:
        view = self.core.stats_view()
        return {"published_epochs": len(view.get("published", {})), "known_keys": view.get("known_keys", 0)}

    def metrics(self) -> dict[str, float]:
        return {f"gateway_{k}": float(v) for k, v in self.core.stats.items() if isinstance(v, (int, float))}


def create(ctx: Any) -> GatewayService | None:
    """A gateway for a node with a key on a chain that has the edge contracts."""
    if ctx.chain is None or ctx.account is None or "EdgeEpochs" not in ctx.chain.addresses:
        return None
    return GatewayService(ctx)
