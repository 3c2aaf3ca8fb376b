"""Keccak-256 (Ethereum's ``keccak256``), the fastest implementation available here.

Two paths:

* :func:`keccak256` — one message. ``safe-pysha3``'s C ``keccak_256`` costs ~1.7 µs per
  64-byte message on this machine, against ~9 µs for ``eth_hash`` (whose backend here is
  pycryptodome), so it is used when importable.
* batch kernels over numpy arrays, compiled with numba: :func:`hash_pairs_sorted` (one
  Merkle level), :func:`build_tree` (a whole OpenZeppelin array-tree) and
  :func:`double_hash_32` (OpenZeppelin leaves of single ``bytes32`` values). They avoid one
  Python call and one ``bytes`` object per hash, which is what dominates a million-leaf tree.
  The kernels are JIT-compiled on first use (a few seconds, cached on disk by numba).

Every keccak in ``proofmesh.crypto`` goes through this module so the choice is made once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

try:  # safe-pysha3: C implementation
    from sha3 import keccak_256 as _keccak_256

    def keccak256(data: bytes | bytearray | memoryview) -> bytes:
        """keccak256 of ``data`` (32 bytes)."""
        return _keccak_256(data).digest()

    BACKEND = "safe-pysha3"
except ImportError:  # pragma: no cover - fallback when the C extension is missing
    from eth_hash.auto import keccak as _eth_keccak

    _keccak_256 = None

    def keccak256(data: bytes | bytearray | memoryview) -> bytes:
        """keccak256 of ``data`` (32 bytes)."""
        return _eth_keccak(bytes(data))

    BACKEND = "eth-hash"

__all__ = ["keccak256", "keccak_pairs_sorted", "hash_pairs_sorted", "build_tree",
           "double_hash_32", "BACKEND"]


def keccak_pairs_sorted(nodes: Sequence[bytes]) -> list[bytes]:
    """``[keccak(sorted(nodes[0], nodes[1])), keccak(sorted(nodes[2], nodes[3])), …]``.

    One level of a sorted-pair Merkle tree, pure Python; ``len(nodes)`` must be even.
    """
    it = iter(nodes)
    if _keccak_256 is not None:
        k = _keccak_256
        return [k(a + b if a < b else b + a).digest() for a, b in zip(it, it)]
    return [keccak256(a + b if a < b else b + a) for a, b in zip(it, it)]


# --------------------------------------------------------------------------------------
# numba kernels. Keccak-f[1600] on 25 little-endian 64-bit lanes; a 32- or 64-byte message
# fits in one 136-byte block, so each hash is one permutation.
# --------------------------------------------------------------------------------------
_RC = np.array([
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
], dtype=np.uint64)
_ROTC = np.array([1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18,
                  39, 61, 20, 44], dtype=np.uint64)
_PILN = np.array([10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14,
                  22, 9, 6, 1], dtype=np.int64)

def _compile():
    """Import (and on first use JIT-compile) the numba kernels."""
    from proofmesh.crypto import _keccak_numba as k

    return k.pairs, k.tree, k.double32


def _as_rows(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.uint8)
    if a.ndim != 2 or a.shape[1] != 32:
        raise ValueError(f"expected an (n, 32) uint8 array, got shape {a.shape}")
    return a


def hash_pairs_sorted(nodes: np.ndarray) -> np.ndarray:
    """Batch version of :func:`keccak_pairs_sorted` on an ``(2m, 32)`` uint8 array."""
    nodes = _as_rows(nodes)
    if nodes.shape[0] % 2:
        raise ValueError("hash_pairs_sorted needs an even number of rows")
    pairs, _, _ = _compile()
    out = np.empty((nodes.shape[0] // 2, 32), np.uint8)
    pairs(nodes.view(np.uint64), nodes, out.view(np.uint64))
    return out


def build_tree(tree: np.ndarray, n: int) -> None:
    """Fill inner nodes ``0 … n-2`` of an OpenZeppelin array-tree of ``2n-1`` rows in place
    (the leaves must already be in rows ``n-1 … 2n-2``)."""
    if tree.dtype != np.uint8 or tree.shape != (2 * n - 1, 32) or not tree.flags.c_contiguous:
        raise ValueError("build_tree needs a C-contiguous (2n-1, 32) uint8 array")
    _, kernel, _ = _compile()
    kernel(tree.view(np.uint64), tree, n)


def double_hash_32(values: np.ndarray) -> np.ndarray:
    """``keccak(keccak(v))`` for each 32-byte row: the OpenZeppelin leaf of one ``bytes32``
    (or ``uint256``) value, since ``abi.encode`` of a single static word is the word."""
    values = _as_rows(values)
    _, _, kernel = _compile()
    out = np.empty_like(values)
    kernel(values.view(np.uint64), out.view(np.uint64))
    return out
