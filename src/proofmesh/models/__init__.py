"""proofmesh.models — model lineage on chain.

- :mod:`~proofmesh.models.weights` — ``weights_root(path)``: Merkle root over per-tensor
  sha256 of safetensors (file, sharded folder, PEFT adapter) or ONNX initializers;
- :mod:`~proofmesh.models.registry` — ``ModelRegistryClient`` (ModelRegistry + ModelEvaluation);
- :mod:`~proofmesh.models.evalset` — held-out eval sets, their root and commitment;
- :mod:`~proofmesh.models.attestation` — the EIP-712 evaluation attestation;
- :mod:`~proofmesh.models.evaluate` — real evaluation with torch / onnxruntime;
- :mod:`~proofmesh.models.lineage` — lineage graphs (tree, JSON, DOT, Mermaid);
- :mod:`~proofmesh.models.hf` — ``ProofmeshCallback`` (TrainerCallback) and model cards.
"""

from proofmesh.models.weights import weights_root

__all__ = ["weights_root"]
