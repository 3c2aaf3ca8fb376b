"""A batch on disk: its records, manifest and Merkle commitment.

``batch_root`` is the one function that computes a batch root: leaves are
``leaf_hash(["uint256", "bytes32"], [i, record_hash])`` (OpenZeppelin StandardMerkleTree),
inlined here as keccak(keccak(i_be32 ‖ record_hash)) because abi.encode of a static
(uint256, bytes32) pair is exactly those 64 bytes (tested equal to ``leaf_hash``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from proofmesh.crypto.keccak import keccak256
from proofmesh.crypto.merkle import MerkleTree
from proofmesh.errors import InputError


def record_leaf(index: int, record_hash: bytes) -> bytes:
    """The Merkle leaf of the record at ``index``."""
    return keccak256(keccak256(index.to_bytes(32, "big") + record_hash))


def batch_tree(record_hashes: list[bytes]) -> MerkleTree:
    if not record_hashes:
        raise InputError("a batch needs at least one record", fix="ingest a corpus with new records")
    return MerkleTree([record_leaf(i, h) for i, h in enumerate(record_hashes)])


def batch_root(record_hashes: list[bytes]) -> bytes:
    """The batch root committed on chain (zero bytes for an empty batch)."""
    if not record_hashes:
        return b"\x00" * 32
    return batch_tree(record_hashes).root


@dataclass
class LocalBatch:
    """A batch directory written by :func:`proofmesh.data.pipeline.ingest`."""

    path: Path

    @classmethod
    def open(cls, path: str | Path) -> "LocalBatch":
        p = Path(path)
        if not (p / "batch.json").exists():
            raise InputError(f"{p} is not a batch directory (no batch.json)",
                             fix="pass the folder printed by `proofmesh data ingest`")
        return cls(p)

    @property
    def info(self) -> dict:
        return json.loads((self.path / "batch.json").read_text())

    def save_info(self, info: dict) -> None:
        tmp = self.path / "batch.json.tmp"
        tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False))
        tmp.replace(self.path / "batch.json")

    def records(self):
        with open(self.path / "records.jsonl", encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)

    def record_hashes(self) -> list[bytes]:
        return [bytes.fromhex(r["record_hash"]) for r in self.records()]

    def tree(self) -> MerkleTree:
        return batch_tree(self.record_hashes())

    def sketch(self) -> dict[str, np.ndarray]:
        with np.load(self.path / "sketch.npz") as z:
            return {k: z[k] for k in z.files}

    def manifest(self):
        with open(self.path / "manifest.jsonl", encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)
