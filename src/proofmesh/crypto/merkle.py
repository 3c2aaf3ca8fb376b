"""Merkle trees whose proofs verify on chain, compatible with OpenZeppelin.

Layout, leaf hashing, proofs and multi-proofs follow ``@openzeppelin/merkle-tree``
(``StandardMerkleTree``) exactly, so that:

* a proof from :meth:`MerkleTree.proof` passes OpenZeppelin's ``MerkleProof.verify`` and
  snekmate's ``merkle_proof_verification._verify(proof, root, leaf)``;
* a multi-proof from :meth:`MerkleTree.multiproof` passes ``MerkleProof.multiProofVerify``
  and snekmate's ``_multi_proof_verify(proof, proof_flags, root, leaves)``;
* the root equals ``StandardMerkleTree.of(values, types).root`` for the same values.

Definitions (OpenZeppelin's):

* ``leaf_hash(types, values) = keccak256(keccak256(abi.encode(types, values)))``. The double
  hash makes a leaf preimage 32 bytes, never 64, so a leaf can never pass as an inner node
  (second-preimage attack);
* an inner node is ``keccak256(min(a, b) ‖ max(a, b))`` (sorted pair, so proofs carry no
  left/right bits);
* the tree is a complete binary tree stored in an array of ``2n-1`` nodes, leaves at the
  end in reverse order, node ``i`` having children ``2i+1`` and ``2i+2``; by default the
  leaves are first sorted by hash (``sortLeaves: true`` in OpenZeppelin).

The tree build is the hot loop (a 1,000,000-leaf tree is ~1,000,000 keccaks); it uses the
C keccak of ``safe-pysha3`` (``sha3.keccak_256``), ~6x faster per call than
``eth_hash``'s pycryptodome backend here, and a numba kernel for whole levels when numba is
available (see ``bench/crypto.py`` for the figures).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sys

import numpy as np
from eth_abi import encode as abi_encode

from proofmesh.crypto.keccak import build_tree, keccak256, keccak_pairs_sorted
from proofmesh.errors import InputError, VerificationError

# The numba kernels view rows as little-endian uint64 lanes (Keccak's lane order).
_NUMBA_OK = sys.byteorder == "little"

__all__ = [
    "MerkleTree",
    "MultiProof",
    "leaf_hash",
    "hash_pair",
    "verify_proof",
    "process_proof",
    "verify_multiproof",
    "process_multiproof",
]


def leaf_hash(types: Sequence[str], values: Sequence[Any]) -> bytes:
    """OpenZeppelin ``StandardMerkleTree`` leaf: ``keccak(keccak(abi.encode(types, values)))``.

    In Solidity/Vyper the same leaf is ``keccak256(bytes.concat(keccak256(abi.encode(...))))``
    / ``keccak256(concat(keccak256(abi_encode(...)), b""))``.
    """
    if len(types) != len(values):
        raise InputError(f"leaf_hash: {len(types)} types but {len(values)} values",
                         fix="give one ABI type per value, e.g. (['address', 'uint256'], [addr, amount])")
    try:
        encoded = abi_encode(list(types), list(values))
    except Exception as exc:  # eth_abi raises a family of encoding errors
        raise InputError(f"leaf_hash: values do not match types {list(types)}: {exc}",
                         fix="check each value against its ABI type") from exc
    return keccak256(keccak256(encoded))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """Inner node: keccak of the two children in ascending byte order."""
    return keccak256(a + b if a < b else b + a)


def _check_node(h: bytes, what: str) -> bytes:
    if not isinstance(h, (bytes, bytearray)) or len(h) != 32:
        raise InputError(f"{what} must be 32 bytes, got {h!r:.80}",
                         fix="hash leaves with leaf_hash() (or pass 32-byte hashes)")
    return bytes(h)


@dataclass(frozen=True)
class MultiProof:
    """A multi-proof in OpenZeppelin's format.

    ``leaves`` are in the order the verifier must receive them (descending tree index, as
    OpenZeppelin returns them), ``indices`` the matching positions in the caller's original
    leaf list.
    """

    leaves: list[bytes]
    proof: list[bytes]
    proof_flags: list[bool]
    indices: list[int]


class MerkleTree:
    """An OpenZeppelin-compatible Merkle tree over 32-byte leaf hashes.

    ``MerkleTree(leaf_hashes)`` sorts the leaves by hash like ``StandardMerkleTree.of``
    (pass ``sort_leaves=False`` for the order given). ``proof(i)`` and ``multiproof([i…])``
    take indices into ``leaf_hashes`` as given, whatever the internal order.
    """

    def __init__(self, leaf_hashes: Sequence[bytes] | np.ndarray, *,
                 sort_leaves: bool = True) -> None:
        leaves = _leaf_array(leaf_hashes)
        n = leaves.shape[0]
        if sort_leaves:
            order = _sort_order(leaves)
        else:
            order = np.arange(n)
        tree = np.empty((2 * n - 1, 32), np.uint8)
        # Leaves occupy the last n rows in reverse order (OpenZeppelin's makeMerkleTree).
        tree[n - 1:] = leaves[order[::-1]]
        tree_index = np.empty(n, np.int64)
        tree_index[order] = 2 * n - 2 - np.arange(n)
        _build_inner(tree, n)
        self._tree = tree
        self._tree_index = tree_index
        self._n = n

    # --- queries ---------------------------------------------------------------------
    @property
    def root(self) -> bytes:
        """The 32-byte root (``bytes32`` on chain)."""
        return self._tree[0].tobytes()

    def _node(self, i: int) -> bytes:
        return self._tree[i].tobytes()

    def __len__(self) -> int:
        return self._n

    def leaf(self, index: int) -> bytes:
        """The leaf hash at position ``index`` of the original list."""
        return self._node(int(self._tree_index[self._check_index(index)]))

    def _check_index(self, index: int) -> int:
        if not isinstance(index, int) or not 0 <= index < self._n:
            raise InputError(f"leaf index {index!r} out of range for a tree of {self._n} leaves",
                             fix=f"use an index from 0 to {self._n - 1}")
        return index

    def tree_index(self, index: int) -> int:
        """Position of leaf ``index`` in the array-tree (OpenZeppelin's ``treeIndex``)."""
        return int(self._tree_index[self._check_index(index)])

    def nodes(self) -> list[bytes]:
        """All ``2n-1`` nodes in array order (OpenZeppelin's ``dump().tree``)."""
        return [r.tobytes() for r in self._tree]

    def proof(self, index: int) -> list[bytes]:
        """Sibling hashes from the leaf up to (not including) the root."""
        i = int(self._tree_index[self._check_index(index)])
        out = []
        while i > 0:
            out.append(self._node(i + 1 if i % 2 else i - 1))
            i = (i - 1) // 2
        return out

    def multiproof(self, indices: Sequence[int]) -> MultiProof:
        """A multi-proof for several leaves (OpenZeppelin ``getMultiProof``)."""
        for i in indices:
            self._check_index(i)
        if len(set(indices)) != len(indices):
            raise InputError("multiproof: duplicated leaf index",
                             fix="list each leaf at most once")
        tree_idx = sorted((int(self._tree_index[i]) for i in indices), reverse=True)
        by_tree = {self._tree_index[i]: i for i in indices}
        # A deque would save the O(k) pops; multi-proofs are small (k ≪ n), keep it simple.
        stack = list(tree_idx)
        proof: list[bytes] = []
        flags: list[bool] = []
        head = 0
        while head < len(stack) and stack[head] > 0:
            j = stack[head]
            head += 1
            s = j + 1 if j % 2 else j - 1
            p = (j - 1) // 2
            if head < len(stack) and stack[head] == s:
                flags.append(True)
                head += 1
            else:
                flags.append(False)
                proof.append(self._node(s))
            stack.append(p)
        if not tree_idx:
            proof.append(self._node(0))
        return MultiProof(leaves=[self._node(t) for t in tree_idx], proof=proof,
                          proof_flags=flags, indices=[by_tree[t] for t in tree_idx])


# Below this many leaves the pure-Python build beats the (already compiled) numba kernel's
# call overhead, and it spares small callers numba's import time.
_NUMBA_MIN_LEAVES = 2048


def _leaf_array(leaf_hashes: Sequence[bytes] | np.ndarray) -> np.ndarray:
    if isinstance(leaf_hashes, np.ndarray):
        if leaf_hashes.dtype != np.uint8 or leaf_hashes.ndim != 2 or leaf_hashes.shape[1] != 32:
            raise InputError(f"leaf array must be (n, 32) uint8, got {leaf_hashes.dtype} {leaf_hashes.shape}",
                             fix="pass a list of 32-byte hashes or an (n, 32) uint8 array")
        arr = np.ascontiguousarray(leaf_hashes)
    else:
        for i, h in enumerate(leaf_hashes):
            if not isinstance(h, (bytes, bytearray)) or len(h) != 32:
                _check_node(h, f"leaf {i}")
        arr = np.frombuffer(b"".join(leaf_hashes), np.uint8).reshape(-1, 32)
    if arr.shape[0] == 0:
        raise InputError("a Merkle tree needs at least one leaf",
                         fix="build the tree only when there is something to commit to")
    return arr


def _sort_order(leaves: np.ndarray) -> np.ndarray:
    """Stable ascending byte order of the rows (OpenZeppelin compares leaves as bytes).

    Sorting on the first 8 bytes as a big-endian integer is ~10x faster than a 32-byte key
    sort; only when two leaves share those 8 bytes do we need the full key.
    """
    words = leaves.view(">u8")
    order = np.argsort(words[:, 0], kind="stable")
    first = words[order, 0]
    if first.shape[0] > 1 and np.any(first[1:] == first[:-1]):
        order = np.lexsort((words[:, 3], words[:, 2], words[:, 1], words[:, 0]))
    return order


def _build_inner(tree: np.ndarray, n: int) -> None:
    """Fill inner rows ``0 … n-2`` of the array-tree (node ``i`` = pair of ``2i+1, 2i+2``)."""
    if n < 2:
        return
    if n >= _NUMBA_MIN_LEAVES and _NUMBA_OK:
        build_tree(tree, n)
        return
    nodes = [r.tobytes() for r in tree]
    # Depth d holds indices 2**d-1 … 2**(d+1)-2, all children at depth d+1: one batch each.
    last_inner = n - 2
    depth = (last_inner + 1).bit_length() - 1
    while depth >= 0:
        lo = (1 << depth) - 1
        hi = min((1 << (depth + 1)) - 2, last_inner)
        nodes[lo: hi + 1] = keccak_pairs_sorted(nodes[2 * lo + 1: 2 * hi + 3])
        depth -= 1
    tree[: n - 1] = np.frombuffer(b"".join(nodes[: n - 1]), np.uint8).reshape(-1, 32)


def process_proof(proof: Sequence[bytes], leaf: bytes) -> bytes:
    """The root implied by ``leaf`` and ``proof`` (OpenZeppelin ``processProof``)."""
    h = _check_node(leaf, "leaf")
    for i, sib in enumerate(proof):
        h = hash_pair(h, _check_node(sib, f"proof[{i}]"))
    return h


def verify_proof(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """True when ``proof`` proves ``leaf`` is in the tree with ``root``."""
    return process_proof(proof, leaf) == _check_node(root, "root")


def process_multiproof(proof: Sequence[bytes], proof_flags: Sequence[bool],
                       leaves: Sequence[bytes]) -> bytes:
    """Root implied by a multi-proof (OpenZeppelin ``processMultiProof``).

    Raises :class:`~proofmesh.errors.VerificationError` on a malformed proof, with the same
    checks as OpenZeppelin ≥ 4.9.2/5.x (lengths must match, every proof element consumed).
    """
    leaves = [_check_node(x, f"leaves[{i}]") for i, x in enumerate(leaves)]
    proof = [_check_node(x, f"proof[{i}]") for i, x in enumerate(proof)]
    total = len(proof_flags)
    if len(leaves) + len(proof) != total + 1:
        raise VerificationError("invalid multiproof: leaves + proof != flags + 1",
                                fix="pass leaves, proof and flags exactly as multiproof() returned them")
    hashes: list[bytes] = []
    leaf_pos = hash_pos = proof_pos = 0
    for flag in proof_flags:
        if leaf_pos < len(leaves):
            a = leaves[leaf_pos]
            leaf_pos += 1
        elif hash_pos < len(hashes):
            a = hashes[hash_pos]
            hash_pos += 1
        else:
            raise VerificationError("invalid multiproof: flags consume more hashes than exist")
        if flag:
            if leaf_pos < len(leaves):
                b = leaves[leaf_pos]
                leaf_pos += 1
            elif hash_pos < len(hashes):
                b = hashes[hash_pos]
                hash_pos += 1
            else:
                raise VerificationError("invalid multiproof: flags consume more hashes than exist")
        else:
            if proof_pos >= len(proof):
                raise VerificationError("invalid multiproof: proof too short")
            b = proof[proof_pos]
            proof_pos += 1
        hashes.append(hash_pair(a, b))
    if total > 0:
        if proof_pos != len(proof):
            raise VerificationError("invalid multiproof: unused proof elements")
        return hashes[total - 1]
    if leaves:
        return leaves[0]
    return proof[0]


def verify_multiproof(proof: Sequence[bytes], proof_flags: Sequence[bool], root: bytes,
                      leaves: Sequence[bytes]) -> bool:
    """True when the multi-proof proves all ``leaves`` against ``root``; False otherwise
    (malformed proofs included)."""
    root = _check_node(root, "root")
    try:
        return process_multiproof(proof, proof_flags, leaves) == root
    except VerificationError:
        return False
