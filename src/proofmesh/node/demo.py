"""Demo step "node": the node daemon on the demo's own chain, serving the explorer live.

Placed first in ``DEMO_STEPS``, it starts a :class:`~proofmesh.node.daemon.NodeDaemon`
in this process on the demo home (the chain the demo already holds), so while the
other steps run, ``http://127.0.0.1:<port>/`` shows their transactions arriving and other
processes can reach the chain at ``/rpc``. Domain services are off here (the steps script those parties themselves). It sets
``ctx.data["explorer_url"]``, which
the demo prints at the end. The daemon lives as long as the demo process.
"""

from __future__ import annotations

import threading
import time
from typing import Any


def run(ctx: Any) -> dict:
    import httpx

    from proofmesh.node.daemon import NodeDaemon

    # No domain services: the demo's steps play workers, validators and gateways with their
    # own scripted actors, and the demo key holds every role — a worker or validator loop
    # on it would take part in their jobs and committees.
    daemon = NodeDaemon(ctx.home, chain=ctx.chain, log_stderr=False, poll_interval=1.0, services=[])
    try:
        daemon.start()
    except Exception as exc:  # e.g. the default port is taken: the demo goes on without a live explorer
        ctx.log(f"node daemon not started: {exc}")
        return {"explorer": f"not started ({exc})"}
    threading.Thread(target=daemon.serve, name="proofmesh-demo-node", daemon=True).start()
    deadline = time.monotonic() + 30
    while not daemon.serving and time.monotonic() < deadline:
        time.sleep(0.05)
    health = httpx.get(f"{daemon.url}/health", timeout=10).json()
    overview = httpx.get(f"{daemon.url}/api/explorer/overview", timeout=30).json()
    ctx.data["explorer_url"] = daemon.url + "/"
    ctx.data["node_daemon"] = daemon
    ctx.log(f"node daemon on {daemon.url}: explorer at {daemon.url}/, JSON-RPC at {daemon.url}/rpc, "
            f"metrics at {daemon.url}/metrics")
    ctx.log(f"it has indexed {overview['events']} events of {len(overview['contracts'])} contracts up to block "
            f"{overview['head']}; services: {', '.join(health['services'])}")
    return {"explorer": daemon.url + "/", "head": overview["head"], "events": overview["events"],
            "services": ", ".join(health["services"])}
