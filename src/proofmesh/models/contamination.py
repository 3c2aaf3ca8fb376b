"""Contamination check: does a version's training data overlap its held-out eval set?

The version's data batch roots (recorded on chain at registration) are resolved to the
data capability's on-chain batches; their records come from the blob store (re-hashed
against each batch root by the data capability's loader), and the data capability's
exact + near-duplicate overlap is run against the eval set's text records.
"""

from __future__ import annotations

from proofmesh.errors import InputError


def check(chain, store, version_id: int, eval_records: list[dict], *, threshold: float = 0.8,
          text_field: str = "text") -> dict:
    """Exact and near overlap of the eval records with the version's training batches."""
    from proofmesh.data.client import DataRegistryClient
    from proofmesh.data.overlap import load_texts, overlap
    from proofmesh.models.registry import ModelRegistryClient

    rec = ModelRegistryClient(chain, blobs=store).version(version_id)
    eval_texts = [r[text_field] for r in eval_records if isinstance(r.get(text_field), str)]
    if not eval_texts:
        raise InputError(f"the eval set has no {text_field!r} records to compare",
                         fix="the contamination check compares texts; token-id records cannot be matched to data batches")
    roots = set(rec.data_batches)
    data = DataRegistryClient(chain)
    found: dict[str, int] = {}
    for bid in range(1, data.batch_count() + 1):      # roots -> ids: the data registry has no reverse map
        root = data.batch(bid).root
        if root in roots and root not in found:
            found[root] = bid
    train: list[str] = []
    for root in sorted(found):
        _, texts = load_texts(f"batch:{found[root]}", text_field, store=store, client=data)
        train.extend(texts)
    res = overlap(train, eval_texts, threshold=threshold)
    return res | {"version": version_id, "batches": sorted(found.values()),
                  "unknown_batch_roots": sorted(roots - set(found))}
