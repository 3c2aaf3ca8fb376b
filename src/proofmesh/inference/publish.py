"""Publishing a servable model: ModelRegistry version + serving terms + (optional) circuit.

The ONNX file's initializers (its weights) are hashed with the models capability's
per-tensor Merkle root and registered as a ModelRegistry version, so the lineage tools
see the served weights; the exact ONNX file (graph + weights) is pinned by sha256 in
InferenceRegistry, and nodes refuse to serve any other file. A zk circuit compiled from
that ONNX is registered with its settings, verifying-key and SRS hashes and a deployed
verifier contract.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from proofmesh.errors import InputError
from proofmesh.inference.model import file_sha256
from proofmesh.inference.receipt import FIXED_POINT
from proofmesh.inference.registry import InferenceRegistry, circuit_output_scale


def onnx_weights_file(onnx_path: Path, out_dir: Path) -> Path:
    """Write the ONNX initializers as a safetensors file (for the models weights root)."""
    import onnx
    from onnx import numpy_helper
    from safetensors.numpy import save_file

    model = onnx.load(str(onnx_path))
    tensors = {init.name: np.ascontiguousarray(numpy_helper.to_array(init)) for init in model.graph.initializer}
    if not tensors:
        raise InputError(f"{onnx_path} has no initializers (weights)", fix="export the model with its weights")
    out = out_dir / "weights.safetensors"
    save_file(tensors, str(out))
    return out


@dataclass(frozen=True)
class Published:
    version: int
    onnx_sha256: bytes
    weights_root: str


def publish_model(chain, name: str, onnx_path: str | Path, *, tolerance: float = 1e-3, sender=None) -> Published:
    """Register ``onnx_path`` as a new ModelRegistry version of ``name`` and pin it for serving."""
    from proofmesh.models.registry import ModelRegistryClient

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise InputError(f"{onnx_path} does not exist", fix="give the model's .onnx file")
    if tolerance < 0:
        raise InputError("tolerance must be >= 0", fix="e.g. 1e-3 (absolute, per output)")
    with tempfile.TemporaryDirectory() as tmp:
        weights = onnx_weights_file(onnx_path, Path(tmp))
        record, _ = ModelRegistryClient(chain).register_version(name, weights, sender=sender)
    reg = InferenceRegistry(chain)
    sha = file_sha256(onnx_path)
    reg.register_model(record.id, sha, int(round(tolerance * FIXED_POINT)), sender=sender)
    return Published(record.id, sha, record.weights_root)


VERIFIER_KINDS = ("auto", "dedicated", "reusable")


def publish_circuit(chain, version: int, circuit, *, sender=None, verifier: str = "auto") -> str:
    """Deploy the circuit's verifier and register the circuit for ``version``; returns the address
    InferenceRegistry calls (the verifier, or the circuit's Halo2VkaBinding).

    ``verifier``: ``dedicated`` (ezkl's verifier with the key inlined: cheapest to call, but
    over EIP-170 for batched circuits), ``reusable`` (the chain's shared reusable verifier +
    this circuit's VK artifact, see inference/reusable.py), or ``auto``: dedicated when its
    creation code fits EIP-170's 24,576 bytes, else reusable."""
    from proofmesh.inference import reusable

    if verifier not in VERIFIER_KINDS:
        raise InputError(f"unknown verifier kind {verifier!r}", fix=f"use one of {', '.join(VERIFIER_KINDS)}")
    reg = InferenceRegistry(chain)
    terms = reg.terms(version)
    if not terms.registered:
        raise InputError(f"version {version} has no serving terms", fix="publish the model first")
    if terms.onnx_hash != circuit.onnx_hash:
        raise InputError("the circuit was compiled from another ONNX file than the version pins",
                         fix="build the circuit from the registered ONNX")
    deployer = chain if sender is None else chain.with_account(sender)
    if verifier == "auto":
        verifier = "dedicated" if len(circuit.verifier_artifact()[1]) <= reusable.EIP170_LIMIT else "reusable"
    if verifier == "dedicated":
        verifier = circuit.deploy_verifier(deployer)
    else:
        verifier = reusable.deploy_bound_verifier(deployer, circuit).binding
    reg.register_circuit(version, circuit.settings_hash, circuit.vk_hash, circuit.srs_hash, verifier,
                         circuit.dev_srs, circuit.batch, sender=sender)
    reg.set_output_scale(version, circuit_output_scale(circuit), sender=sender)   # proof-settled disputes
    return verifier
