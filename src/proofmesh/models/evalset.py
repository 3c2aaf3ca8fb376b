"""Held-out evaluation sets: records, their root, and the commit–reveal around them.

An eval set is a JSONL file, one record per line. Each record is hashed on its canonical
JSON form (sorted keys, no spaces), so reformatting the file does not change it; the
eval-set root is an OpenZeppelin-style Merkle root over ``leaf_hash(["bytes32"],
[record_hash])``. The commitment put on chain before anything is trained is
``keccak256(abi.encode(root, salt, committer))``: the salt hides the root (a guessable
small set cannot be brute-forced), the committer makes a copied commitment useless.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from eth_abi import encode as abi_encode

from proofmesh.crypto.keccak import keccak256
from proofmesh.crypto.merkle import MerkleTree, leaf_hash
from proofmesh.errors import InputError

MAX_RECORDS = 1_000_000


def canonical(record: dict) -> bytes:
    """The bytes a record is hashed on."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: dict) -> bytes:
    """keccak256 of the record's canonical JSON."""
    return keccak256(canonical(record))


@dataclass
class EvalSet:
    """A loaded eval set: its records and root."""

    records: list[dict]
    root: bytes

    @property
    def size(self) -> int:
        return len(self.records)


def load(path: str | Path) -> EvalSet:
    """Read and hash a JSONL eval set; a clear error names the bad line."""
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read eval set ({exc})", fix="give a UTF-8 JSONL file, one record per line") from exc
    records: list[dict] = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{p}:{i}: not valid JSON ({exc.args[0]})", fix="one JSON object per line") from exc
        if not isinstance(rec, dict):
            raise InputError(f"{p}:{i}: a record must be a JSON object", fix='e.g. {"input_ids": [1, 2, 3]}')
        records.append(rec)
    if not records:
        raise InputError(f"{p}: the eval set is empty", fix="add at least one record")
    if len(records) > MAX_RECORDS:
        raise InputError(f"{p}: {len(records)} records (max {MAX_RECORDS})", fix="split the eval set")
    return EvalSet(records, root_of(records))


def root_of(records: list[dict]) -> bytes:
    """Merkle root over the records' hashes."""
    return MerkleTree([leaf_hash(["bytes32"], [record_hash(r)]) for r in records]).root


def new_salt() -> bytes:
    """32 random bytes for a commitment."""
    return os.urandom(32)


def commitment(root: bytes, salt: bytes, committer: str) -> bytes:
    """keccak256(abi.encode(root, salt, committer)), as ModelEvaluation.reveal_eval_set checks."""
    return keccak256(abi_encode(["bytes32", "bytes32", "address"], [root, salt, committer]))
