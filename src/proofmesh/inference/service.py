"""Node service adapter: the node daemon serves a registered model when the node holds INFERENCE.

What to serve is declared in ``<home>/inference/serve.json``::

    {"version": 3, "onnx": "/path/model.onnx", "price": "0.01", "epoch_seconds": 600}

(optional ``"circuit": "/path/to/circuit-dir"`` for ZK mode; by default the circuit
built in this home for that ONNX and registered verifying key is used, as
``proofmesh serve`` does). The node's routes (``/v1/infer``, ``/v1/info``, …) are
mounted at the daemon's root, because routers find nodes by their registry endpoint
and call ``<endpoint>/v1/...``. Without the file the service declines (the daemon's
``/health`` says why).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from proofmesh.errors import ConfigError
from proofmesh.plugins import service_spec

ROLES = 4  # NodeRegistry INFERENCE


class InferenceService:
    """An :class:`~proofmesh.inference.server.InferenceNode` as a NodeService."""

    name = "inference"
    prefix = ""  # /v1/... at the node's registered endpoint

    def __init__(self, ctx: Any, spec: dict[str, Any]) -> None:
        from proofmesh.chain.core import to_wei
        from proofmesh.inference.registry import InferenceRegistry
        from proofmesh.inference.server import InferenceNode, NodeConfig
        from proofmesh.payments import Ledger, PaymentChannels

        try:
            version, onnx = int(spec["version"]), Path(spec["onnx"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"inference/serve.json: {exc!r} is missing or invalid",
                              fix='write {"version": N, "onnx": "/path/model.onnx"}') from None
        self.ctx = ctx
        self.epoch_seconds = float(spec.get("epoch_seconds", 600))
        reg = InferenceRegistry(ctx.chain)
        circuit = Path(spec["circuit"]) if spec.get("circuit") else self._registered_circuit(reg, version, onnx)
        price = to_wei(spec.get("price", "0"))
        workdir = ctx.home.dir("inference") / f"node-{ctx.account.address}-{version}"
        workdir.mkdir(parents=True, exist_ok=True)
        ledger = Ledger(PaymentChannels(ctx.chain), ctx.account.address, path=workdir / "ledger.json") if price else None
        # InferenceNode refuses to start if the file is not the one the registry pins
        self.node = InferenceNode(NodeConfig(version, onnx, workdir, price=price, circuit_dir=circuit),
                                  ctx.account, domain=reg.domain, registry=reg, ledger=ledger)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.epochs_committed = 0
        self.epoch_errors = 0

    def _registered_circuit(self, reg: Any, version: int, onnx: Path) -> Path | None:
        rec = reg.circuit(version)
        if not rec.registered:
            return None
        from proofmesh.inference.cli import find_circuit
        from proofmesh.inference.model import file_sha256

        found = find_circuit(self.ctx.home.dir("inference") / "circuits", file_sha256(onnx), rec.vk_hash)
        return found.dir if found else None

    def router(self) -> Any:
        from proofmesh.inference.server import create_app

        return create_app(self.node)

    def start(self) -> None:
        if self.node.circuit is not None:
            self._thread = threading.Thread(target=self._epochs, name="proofmesh-inference-epochs", daemon=True)
            self._thread.start()

    def _epochs(self) -> None:
        while not self._stop.wait(self.epoch_seconds):
            self._commit()

    def _commit(self) -> None:
        try:
            if self.node.commit_epoch() is not None:
                self.epochs_committed += 1
        except Exception:  # the leaves stay queued for the next try
            self.epoch_errors += 1

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout / 2)
            # hand back: commit what was proven since the last epoch so its receipts settle
            self._commit()

    def health(self) -> dict[str, Any]:
        return {"version": self.node.config.version, "zk": self.node.circuit is not None, "served": self.node.served}

    def metrics(self) -> dict[str, float]:
        return {"inference_served": float(self.node.served), "inference_epochs": float(self.epochs_committed),
                "inference_epoch_errors": float(self.epoch_errors)}


def create(ctx: Any) -> InferenceService | None:
    """Serve what ``<home>/inference/serve.json`` names; decline if there is no such file."""
    spec = service_spec(ctx, "InferenceRegistry", "inference/serve.json")
    return None if spec is None else InferenceService(ctx, spec)
