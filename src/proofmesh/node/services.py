"""Node services: the plug-in interface between the daemon and the domain packages.

A *service* is the long-running part of a capability that a node runs because of its
on-chain roles: a compute worker loop, an inference server, an edge gateway, a tool
provider, an evaluator. The daemon knows none of them by name. It imports each
module listed in :data:`SERVICE_MODULES` (a missing module is skipped, so a domain
that has not shipped a service yet does not break the node), and calls its factory::

    # proofmesh/<domain>/service.py
    from proofmesh.node.services import NodeContext, NodeService

    ROLES = 2                                   # NodeRegistry role bits that enable it (any of them)

    def create(ctx: NodeContext) -> NodeService | None:
        return WorkerService(ctx)               # or None: nothing to run on this node

The returned object follows :class:`NodeService`: ``router()`` (an ``APIRouter`` or a
FastAPI app whose routes are mounted under ``/svc/<name>``, or under the service's
``prefix`` attribute if it has one, e.g. ``""`` for inference's ``/v1/...``; or ``None``), ``start()`` (spawn background work and return
quickly), ``stop(timeout)`` (finish or hand back in-flight work within ``timeout``
seconds), ``health()`` and ``metrics()`` (numbers exported as Prometheus gauges
``proofmesh_service_<metric>{service="<name>"}``).

Optionally ``asgi_routes()`` returns ``{path prefix: ASGI callable}``: requests whose path
starts with a prefix go straight to that callable, ahead of the daemon's FastAPI stack
(no per-request logging or routing), for hot paths such as inference's ``/v1/``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from proofmesh.config import Home
from proofmesh.errors import ProofmeshError
from proofmesh.plugins import import_optional

# Optional domain service modules, in start order (stopped in reverse).
SERVICE_MODULES = [
    "proofmesh.data.service",
    "proofmesh.models.service",
    "proofmesh.compute.service",
    "proofmesh.inference.service",
    "proofmesh.edge.service",
    "proofmesh.agents.service",
]


@dataclass
class NodeContext:
    """What a service gets from the daemon.

    ``chain`` signs as the node's key (``account``; ``None`` when the home has no
    key, in which case services that need to sign should return ``None`` from
    ``create``). ``stopping`` is set when the daemon begins to shut down, so loops
    can check it between units of work.
    """

    home: Home
    chain: Any                       # proofmesh.chain.client.Chain, or None without a deployment
    account: Any                     # eth_account LocalAccount, or None
    roles: int                       # NodeRegistry roles of ``account`` (0 if not registered)
    store: Any                       # proofmesh.store.blobstore.BlobStore
    base_url: str                    # where this daemon listens, e.g. http://127.0.0.1:8700
    admin_token: str = ""            # secret in <home>/node/admin.token: local admin calls (e.g. `proofmesh serve`)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("proofmesh.node"))
    stopping: threading.Event = field(default_factory=threading.Event)


@runtime_checkable
class NodeService(Protocol):
    """The interface every node service implements."""

    name: str

    def router(self) -> Any | None:
        """A FastAPI ``APIRouter`` mounted at ``/svc/<name>``, or ``None``."""

    def start(self) -> None:
        """Start background work; must return within a few seconds."""

    def stop(self, timeout: float) -> None:
        """Finish or hand back in-flight work, then stop, within ``timeout`` seconds."""

    def health(self) -> dict[str, Any]:
        """A small JSON-able status, e.g. ``{"ok": True, "jobs": 2}``."""

    def metrics(self) -> dict[str, float]:
        """Numeric gauges for ``/metrics``."""


class ServiceError(ProofmeshError):
    """A node service could not be loaded or started."""


@dataclass
class LoadedService:
    """A service the daemon runs, with the module that provided it."""

    module: str
    service: NodeService
    started: bool = False
    error: str | None = None


def load_services(ctx: NodeContext, modules: list[str] | None = None) -> tuple[list[LoadedService], list[dict[str, Any]]]:
    """Create the services ``ctx.roles`` enable.

    Returns ``(services, skipped)``; ``skipped`` says for each module why it is not
    running (not shipped, role not held, declined), which ``/health`` reports so an
    operator sees why e.g. no worker runs.
    """
    services: list[LoadedService] = []
    skipped: list[dict[str, Any]] = []
    for module_name in SERVICE_MODULES if modules is None else modules:
        try:
            module = import_optional(module_name)
        except ModuleNotFoundError as exc:
            raise ServiceError(f"{module_name} failed to import: {exc}",
                               fix=f"install what {exc.name} needs, or remove it from SERVICE_MODULES") from exc
        if module is None:
            continue  # the domain ships no service
        create = getattr(module, "create", None)
        if create is None:
            raise ServiceError(f"{module_name} has no create(ctx) factory",
                               fix="define `def create(ctx: NodeContext) -> NodeService | None` in it")
        needed = int(getattr(module, "ROLES", 0))
        if needed and not (ctx.roles & needed):
            skipped.append({"module": module_name, "reason": f"needs one of roles 0b{needed:b}, node has 0b{ctx.roles:b}"})
            continue
        try:
            service = create(ctx)
        except ProofmeshError:
            raise  # already says what is wrong and how to fix it
        except Exception as exc:
            raise ServiceError(f"{module_name} could not create its service: {type(exc).__name__}: {exc}",
                               fix=f"check that service's configuration in {ctx.home.path}, or the node's roles") from exc
        if service is None:
            skipped.append({"module": module_name, "reason": "declined (nothing to run on this node)"})
            continue
        if not isinstance(service, NodeService):
            raise ServiceError(f"{module_name}.create returned {type(service).__name__}, not a NodeService",
                               fix="return an object with name, router(), start(), stop(), health(), metrics()")
        services.append(LoadedService(module=module_name, service=service))
    return services, skipped
