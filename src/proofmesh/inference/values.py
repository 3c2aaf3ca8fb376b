"""Value commitments: what a value receipt's ``output_hash`` commits to, and how one part
of it is opened for a dispute.

A node's outputs are committed in fixed point (round(y x 1e6)) as packed 8-byte big-endian
int64s. A dispute must reveal both nodes' values on chain, so the commitment is chunked:

* up to :data:`CHUNK` (64) values: ``keccak256(packed)`` — one chunk, no tree;
* more: the values are cut into chunks of 64 (the last may be shorter), each chunk's leaf is
  ``keccak256(packed chunk)``, the leaves are padded with zero words to a power of two and
  hashed pairwise (``keccak256(left ++ right)``) up to a root, and the commitment is
  ``keccak256(0x01 ++ uint256(count) ++ root)``.

The count fixes the tree's depth, so an opening (one chunk + its sibling path) cannot pass
an inner node off as a leaf; the 65-byte preimage of the tagged form is never a whole number
of int64s, so it cannot be confused with a single chunk's hash. A dispute reveals one chunk
of each receipt (the first where they disagree), so its calldata and gas stay bounded
whatever the output size (a batch-32 answer of a 10-class model is 320 values: 5 chunks).
InferenceDisputes checks openings exactly as :func:`verify_opening` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proofmesh.crypto.keccak import keccak256
from proofmesh.errors import InputError

CHUNK = 64                 # values per chunk (InferenceDisputes.MAX_VALUES)
MAX_DEPTH = 20             # tree depth the contract accepts: 2**20 chunks, 67M values
_TAG = b"\x01"
_ZERO = bytes(32)


def packed_values(values: "list[int] | np.ndarray") -> bytes:
    """The values as packed 8-byte big-endian int64s (InputError if one does not fit)."""
    if isinstance(values, np.ndarray) and values.dtype == np.int64:
        return values.astype(">i8").tobytes()
    try:
        return np.asarray([int(v) for v in values], dtype=np.int64).astype(">i8").tobytes()
    except OverflowError:
        raise InputError("a fixed-point value does not fit an int64", fix="outputs must be below 9.2e12") from None


def unpacked_values(packed: bytes) -> list[int]:
    """The inverse of :func:`packed_values`."""
    return np.frombuffer(bytes(packed), dtype=">i8").astype(np.int64).tolist()


def values_hash(values: "list[int] | np.ndarray") -> bytes:
    """The commitment a value receipt's ``output_hash`` holds (see the module docstring).

    Packed int64s rather than ``abi.encode(int256[])``: a node hashes them on every request,
    and keccak over a quarter of the bytes saved ~40 us of its per-request work at batch 32."""
    return _commit(packed_values(values))


def _commit(packed: bytes) -> bytes:
    count = len(packed) // 8
    if count <= CHUNK:
        return keccak256(packed)
    return keccak256(_TAG + count.to_bytes(32, "big") + _root(_leaves(packed)))


def _leaves(packed: bytes) -> list[bytes]:
    step = 8 * CHUNK
    return [keccak256(packed[i:i + step]) for i in range(0, len(packed), step)]


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    """Every level of the padded tree, leaves first, root last."""
    width = 1 << (len(leaves) - 1).bit_length()
    level = leaves + [_ZERO] * (width - len(leaves))
    levels = [level]
    while len(level) > 1:
        level = [keccak256(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
        levels.append(level)
    return levels


def _root(leaves: list[bytes]) -> bytes:
    return _levels(leaves)[-1][0]


def chunk_count(count: int) -> int:
    """How many chunks ``count`` values make (1 for 0..64: a lone chunk, possibly empty)."""
    return max(1, -(-count // CHUNK))


@dataclass(frozen=True)
class ValuesOpening:
    """Chunk ``index`` of a ``count``-value commitment with its Merkle path (empty for a
    commitment of one chunk): what InferenceDisputes takes per receipt."""

    count: int
    index: int
    packed: bytes
    proof: tuple[bytes, ...]

    def values(self) -> list[int]:
        return unpacked_values(self.packed)

    def as_tuple(self) -> tuple:
        """The contract's ``Opening`` struct argument."""
        return (int(self.count), int(self.index), bytes(self.packed), [bytes(p) for p in self.proof])


def open_values(values: "list[int] | np.ndarray", index: int) -> ValuesOpening:
    """Open chunk ``index`` of ``values``' commitment."""
    packed = packed_values(values)
    count = len(packed) // 8
    if not 0 <= index < chunk_count(count):
        raise InputError(f"chunk {index} does not exist in {count} values ({chunk_count(count)} chunks)",
                         fix="open a chunk below the chunk count")
    chunk = packed[8 * CHUNK * index: 8 * CHUNK * (index + 1)]
    if count <= CHUNK:
        return ValuesOpening(count, index, chunk, ())
    levels = _levels(_leaves(packed))
    proof, i = [], index
    for level in levels[:-1]:
        proof.append(level[i ^ 1])
        i >>= 1
    return ValuesOpening(count, index, chunk, tuple(proof))


def verify_opening(output_hash: bytes, opening: ValuesOpening) -> bool:
    """Whether ``opening`` is a chunk of the commitment ``output_hash`` (the contract's check)."""
    count, index = opening.count, opening.index
    chunks = chunk_count(count)
    if not 0 <= index < chunks or count > CHUNK << MAX_DEPTH:
        return False
    size = CHUNK if index < chunks - 1 else count - CHUNK * (chunks - 1)
    if len(opening.packed) != 8 * size:
        return False
    if count <= CHUNK:
        return not opening.proof and keccak256(opening.packed) == output_hash
    depth = (chunks - 1).bit_length()
    if len(opening.proof) != depth:
        return False
    h, i = keccak256(opening.packed), index
    for sibling in opening.proof:
        h = keccak256(sibling + h) if i & 1 else keccak256(h + sibling)
        i >>= 1
    return keccak256(_TAG + count.to_bytes(32, "big") + h) == output_hash


def disagreeing_chunk(a: "list[int] | np.ndarray", b: "list[int] | np.ndarray", tolerance: int) -> int | None:
    """The first chunk where ``a`` and ``b`` differ by more than ``tolerance`` (0 when their
    lengths differ: every commitment has chunk 0), or None when they agree."""
    # Python ints: the difference of two int64s can overflow int64
    a, b = np.asarray(a, dtype=np.int64).astype(object), np.asarray(b, dtype=np.int64).astype(object)
    if a.size != b.size:
        return 0
    off = np.flatnonzero(np.abs(a - b) > tolerance)
    return None if off.size == 0 else int(off[0]) // CHUNK
