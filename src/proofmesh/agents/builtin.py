"""proofmesh's own capabilities as paid MCP tools, so any MCP client can use the network.

Each tool is a thin adapter over the domain's own client (no logic of its own beyond
turning results into JSON): the provider node answers from the chain it is connected
to, and the domain code does the checking.

- ``verify_data_record`` — is this record (hash) at this position of a published data
  batch? Checked by the DataRegistry contract itself (Merkle proof on chain).
- ``model_lineage`` — the ancestors, descendants, data batches and evaluations of a
  registered model version (ModelRegistry / ModelEvaluation).
- ``verified_inference`` — an answer from the inference network for a registered
  model version, checked by the inference Router (signed receipt, and with
  ``verify="redundant"`` agreement of several staked nodes, fraud proof on conflict).
"""

from __future__ import annotations

from typing import Any, Literal

from proofmesh.agents.schema import ToolSpec, tool_from_function
from proofmesh.errors import InputError


def _b32(value: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise InputError(f"{what} is not hex", fix="pass 0x + 64 hex digits") from None
    if len(raw) != 32:
        raise InputError(f"{what} must be 32 bytes", fix="pass 0x + 64 hex digits")
    return raw


def builtin_tools(home, chain, *, wallet=None, inference_deposit: int = 10**18) -> list[ToolSpec]:
    """The built-in tools bound to ``chain`` (and, for paid inference, the provider's ``wallet``)."""

    def verify_data_record(batch_id: int, index: int, record_hash: str, proof: list[str]) -> dict:
        """Check on chain that a record hash sits at `index` of published data batch `batch_id`
        (Merkle proof verified by the DataRegistry contract); returns the batch's source and contributor."""
        from proofmesh.data.client import DataRegistryClient
        client = DataRegistryClient(chain)
        b = client.batch(batch_id)
        ok = client.verify_onchain(batch_id, index, _b32(record_hash, "record_hash"),
                                   [_b32(p, "proof element") for p in proof])
        return {"verified_on_chain": ok, "batch_id": batch_id, "index": index, "root": b.root,
                "source_id": b.source_id, "contributor": b.contributor}

    def model_lineage(version_id: int) -> dict:
        """The lineage of a registered model version: every ancestor and descendant with weights
        root, kind, job, data batches, evaluations and release status."""
        from proofmesh.models.lineage import build
        from proofmesh.models.registry import ModelRegistryClient
        return build(ModelRegistryClient(chain), version_id).to_json()

    def verified_inference(version: int, input: Any,
                           verify: Literal["none", "redundant"] = "redundant", k: int = 2) -> dict:
        """Run a registered model version on the inference network; the answer is checked against
        the node's signed receipt and, with verify='redundant', against k staked nodes."""
        import numpy as np

        from proofmesh.inference.router import Router
        router = Router(chain, version, wallet=wallet, deposit=inference_deposit)
        try:
            ans = router.infer(input, verify=verify, k=k)
        finally:
            router.close()
        return {"output": np.asarray(ans.output).tolist(), "node": ans.node, "mode": ans.mode,
                "agreeing": list(ans.agreeing), "dispute": ans.dispute, "failovers": ans.failovers,
                "receipt": ans.receipt.to_json() if hasattr(ans.receipt, "to_json") else None}

    return [tool_from_function(verify_data_record), tool_from_function(model_lineage),
            tool_from_function(verified_inference)]
