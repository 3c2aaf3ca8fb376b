"""Job inputs and results as content-addressed blobs.

A job's inputs (spec, base weights, data records) and a worker's outputs (merged
weights, their per-tensor manifest, every checkpoint, and a *result bundle* that
lists them with the trace) live in the blob store by CID. Anything fetched from a
peer is re-hashed by :func:`proofmesh.store.fetch.fetch`, and here additionally
checked against what the chain or the spec says it must be (weights root, checkpoint
hash), so a peer can withhold data but never substitute it.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from proofmesh.compute.market import Trace
from proofmesh.compute.training import (Checkpoint, JobSpec, TrainResult, load_records, weights_from_bytes,
                                        weights_to_bytes)
from proofmesh.errors import StoreError, VerificationError
from proofmesh.store.blobstore import BlobStore
from proofmesh.store.fetch import fetch

BUNDLE_FORMAT = "proofmesh-train-result/1"


@dataclass
class ResultBundle:
    """What a worker publishes for a job: weights, manifest, trace and checkpoint CIDs."""

    job_id: int
    weights_cid: str
    manifest_cid: str
    weights_root: str
    trace: list[str]
    checkpoints: list[str]
    format: str = BUNDLE_FORMAT

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> "ResultBundle":
        try:
            d = json.loads(raw)
            b = cls(**d)
        except (ValueError, TypeError) as exc:
            raise VerificationError(f"result bundle is malformed: {exc}", fix="fetch it from another node") from exc
        if b.format != BUNDLE_FORMAT or len(b.trace) != len(b.checkpoints):
            raise VerificationError("result bundle has an unknown format or a trace/checkpoint mismatch",
                                    fix="the worker published a bad bundle")
        return b


class Blobs:
    """A local store plus the peers to fetch missing blobs from (``min_rate_kbps``: the
    fetches' minimum rate, None for the settings of ``PROOFMESH_HOME``; a node daemon passes
    its own home's)."""

    def __init__(self, store: BlobStore, peers: Sequence[str] = (), *, min_rate_kbps: float | None = None) -> None:
        self.store = store
        self.peers = list(peers)
        self.min_rate_kbps = min_rate_kbps

    def get(self, cid: str, peers: Sequence[str] | None = None) -> bytes:
        if not self.store.has(cid):
            fetch(cid, list(peers if peers is not None else self.peers), self.store, timeout=30.0,
                  min_rate_kbps=self.min_rate_kbps)
        return self.store.get_bytes(cid)

    def put(self, data: bytes) -> str:
        return self.store.put_bytes(data)


def weights_manifest(weights: dict[str, torch.Tensor]) -> tuple[bytes, bytes, bytes]:
    """(safetensors bytes, weights root, manifest bytes) with the models capability's hashing."""
    from proofmesh.models.weights import manifest

    raw = weights_to_bytes(weights)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "model.safetensors"
        p.write_bytes(raw)
        m = manifest(p)
    return raw, m.root, m.to_bytes()


def publish_result(blobs: Blobs, job_id: int, result: TrainResult) -> tuple[ResultBundle, Trace, str]:
    """Store weights, manifest, checkpoints and the bundle; returns (bundle, trace, bundle CID)."""
    assert result.weights is not None
    raw, root, manifest_bytes = weights_manifest(result.weights)
    bundle = ResultBundle(job_id=job_id, weights_cid=blobs.put(raw), manifest_cid=blobs.put(manifest_bytes),
                          weights_root="0x" + root.hex(), trace=["0x" + h.hex() for h in result.trace],
                          checkpoints=[blobs.put(ck.to_bytes()) for ck in result.checkpoints])
    return bundle, Trace(result.trace), blobs.put(bundle.to_bytes())


def load_inputs(blobs: Blobs, spec_cid: str) -> tuple[JobSpec, dict[str, torch.Tensor], list[bytes]]:
    """Fetch and check a job's spec, base weights and data records."""
    spec = JobSpec.from_bytes(blobs.get(spec_cid))
    base = weights_from_bytes(blobs.get(spec.base_weights_cid))
    records: list[bytes] = []
    for d in spec.data:
        records.extend(load_records(blobs.get(d.cid)))
    return spec, base, records


def load_bundle(blobs: Blobs, result_cid: str, peers: Sequence[str]) -> ResultBundle:
    return ResultBundle.from_bytes(blobs.get(result_cid, peers))


def load_checkpoint(blobs: Blobs, bundle: ResultBundle, index: int, peers: Sequence[str]) -> Checkpoint:
    """Checkpoint ``index`` of a bundle, checked against the bundle's own trace hash."""
    ck = Checkpoint.from_bytes(blobs.get(bundle.checkpoints[index], peers))
    if "0x" + ck.hash.hex() != bundle.trace[index]:
        raise VerificationError(f"checkpoint {index} does not hash to the trace entry",
                                fix="the worker published a checkpoint that is not its trace's")
    return ck


def load_weights(blobs: Blobs, bundle: ResultBundle, peers: Sequence[str]) -> dict[str, torch.Tensor]:
    """The bundle's weights, checked against its weights root."""
    raw = blobs.get(bundle.weights_cid, peers)
    w = weights_from_bytes(raw)
    _, root, _ = weights_manifest(w)
    if "0x" + root.hex() != bundle.weights_root:
        raise VerificationError("weights blob does not match the bundle's weights root",
                                fix="the worker published weights that are not its result")
    return w


def missing(exc: Exception) -> bool:
    """Whether an error means the data was withheld (a fault of whoever had to serve it)."""
    return isinstance(exc, (StoreError, VerificationError))
