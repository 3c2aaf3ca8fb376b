"""Inference fixtures: a tiny MLP exported to ONNX, a published version, real nodes.

Nodes are real FastAPI/uvicorn servers on 127.0.0.1 (threads of the test process, so
they share the embedded chain), registered in NodeRegistry with the INFERENCE role,
staked and bonded in InferenceRegistry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from proofmesh.chain.core import MESH, Registry
from proofmesh.inference.model import export_mlp  # noqa: F401  (re-exported for the tests)
from proofmesh.inference.publish import publish_model
from proofmesh.inference.registry import InferenceRegistry
from proofmesh.inference.server import InferenceNode, NodeConfig, ServerHandle, create_app

INFERENCE = 4


@pytest.fixture(scope="session")
def mlp_onnx(tmp_path_factory) -> Path:
    return export_mlp(tmp_path_factory.mktemp("model") / "mlp.onnx")


@pytest.fixture(scope="session")
def mlp_circuit(tmp_path_factory, mlp_onnx):
    """The tiny MLP's ezkl circuit at batch 1 (dev SRS) with its Solidity verifier compiled:
    built once per test process for every module that proves with it (a build is ~25-50 s)."""
    from proofmesh.inference.zk import Circuit

    work = tmp_path_factory.mktemp("mlp-circuit")
    (work / "home").mkdir()
    mp = pytest.MonkeyPatch()
    mp.setenv("HOME", str(work / "home"))      # ezkl's caches (the SRS itself lives in the circuit dir)
    try:
        circuit = Circuit.build(mlp_onnx, work / "circuits", batch=1, dev=True)
        circuit.verifier_artifact()             # Verifier.sol -> solcjs, once
    finally:
        mp.undo()
    return circuit


@pytest.fixture(scope="module")
def ezkl_home(tmp_path_factory):
    """ezkl writes ~/.ezkl and ~/.svm: HOME points at a temporary directory for the module."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HOME", str(tmp_path_factory.mktemp("ezkl-home")))
    yield
    mp.undo()


def advance_to(chain, timestamp: int) -> None:
    """Move the dev chain's clock to ``timestamp`` (block times may run ahead of its clock)."""
    while chain.timestamp() < timestamp:
        chain.increase_time(timestamp - chain.timestamp() + 1)


@dataclass
class RunningNode:
    account: object
    node: InferenceNode
    server: ServerHandle

    @property
    def url(self) -> str:
        return self.server.url


class Network:
    """Publishes the model and starts nodes; stops them all at teardown."""

    def __init__(self, chain, accounts, onnx: Path, workdir: Path, version: int | None = None) -> None:
        self.chain = chain
        self.accounts = accounts
        self.onnx = onnx
        self.workdir = workdir
        self.nodes: list[RunningNode] = []
        self.registry = InferenceRegistry(chain)
        self.version = version if version is not None else \
            publish_model(chain, f"mlp-{os.urandom(3).hex()}", onnx, tolerance=1e-3).version

    def start_node(self, account, *, price: int = 0, tamper: float = 0.0, delay_ms: int = 0,
                   circuit_dir: Path | None = None, onnx: Path | None = None, bond: bool = True,
                   **config) -> RunningNode:
        from proofmesh.payments import Ledger, PaymentChannels

        cfg = NodeConfig(self.version, onnx or self.onnx, self.workdir / account.address, price=price,
                         circuit_dir=circuit_dir, tamper=tamper, delay_ms=delay_ms, **config)
        ledger = Ledger(PaymentChannels(self.chain), account.address) if price else None
        node = InferenceNode(cfg, account, domain=self.registry.domain, registry=self.registry, ledger=ledger)
        server = ServerHandle(create_app(node))
        reg = Registry(self.chain)
        if not reg.info(account.address).registered:
            reg.register(server.url, INFERENCE, sender=account)
        else:
            reg.update(server.url, INFERENCE, sender=account)
        if reg.info(account.address).stake < 300 * MESH:
            reg.stake(300 * MESH, sender=account)
        if bond and self.registry.service_bond(account.address) == 0:
            self.registry.post_bond(self.registry.min_bond(), sender=account)
        server.start()
        rn = RunningNode(account, node, server)
        self.nodes.append(rn)
        return rn

    def bond_node(self, account, *, endpoint: str = "http://127.0.0.1:9") -> None:
        """Register ``account`` as an inference node (no server: it only votes or signs
        receipts by hand), stake and post the minimum service bond."""
        reg = Registry(self.chain)
        if not reg.info(account.address).registered:
            reg.register(endpoint, INFERENCE, sender=account)
        if reg.info(account.address).stake < 300 * MESH:
            reg.stake(300 * MESH, sender=account)
        if self.registry.service_bond(account.address) == 0:
            self.registry.post_bond(self.registry.min_bond(), sender=account)

    def stop(self) -> None:
        for n in self.nodes:
            n.server.stop()
            n.node.close()


@pytest.fixture
def network(chain, accounts, mlp_onnx, tmp_path):
    net = Network(chain, accounts, mlp_onnx, tmp_path / "nodes")
    yield net
    net.stop()


@pytest.fixture
def x1() -> np.ndarray:
    return np.random.default_rng(1).random((1, 4), dtype=np.float32)
