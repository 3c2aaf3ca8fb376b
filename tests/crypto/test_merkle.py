"""OpenZeppelin StandardMerkleTree compatibility and proof properties."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from proofmesh.crypto import merkle
from proofmesh.crypto.keccak import double_hash_32, hash_pairs_sorted, keccak256, keccak_pairs_sorted
from proofmesh.crypto.merkle import (MerkleTree, hash_pair, leaf_hash, process_proof, verify_multiproof,
                                     verify_proof)
from proofmesh.errors import InputError, VerificationError


def test_openzeppelin_readme_vector():
    # @openzeppelin/merkle-tree README: StandardMerkleTree.of(values, ["address", "uint256"])
    values = [["0x1111111111111111111111111111111111111111", 5000000000000000000],
              ["0x2222222222222222222222222222222222222222", 2500000000000000000]]
    tree = MerkleTree([leaf_hash(["address", "uint256"], v) for v in values])
    assert tree.root.hex() == "d4dee0beab2d53f2cc83e567171bd2820e49898130a22622b10ead383e90bd77"
    assert [p.hex() for p in tree.proof(0)] == ["b92c48e9d7abe27fd8dfd6b5dfdbfb1c9a463f80c712b66f3a5180a090cccafc"]


# OpenZeppelin/merkle-tree test/dumps/standard-v1.{sorted,unsorted}.1_0_6.json: full tree
# dumps of StandardMerkleTree.of([["a"], …, ["f"]], ["string"]) with and without sortLeaves.
OZ_SORTED = {
    "tree": ["6deb52b5da8fd108f79fab00341f38d2587896634c646ee52e49f845680a70c8",
             "52426e0f1f65ff7e209a13b8c29cffe82e3acaf3dad0a9b9088f3b9a61a929c3",
             "fd3cf45654e88d1cc5d663578c82c76f4b5e3826bacaa1216441443504538f51",
             "8076923e76cf01a7c048400a2304c9a9c23bbbdac3a98ea3946340fdafbba34f",
             "965b92c6cf08303cc4feb7f3e0819c436c2cec17c6f0688a6af139c9a368707c",
             "eba909cf4bb90c6922771d7f126ad0fd11dfde93f3937a196274e1ac20fd2f5b",
             "c62a8cfa41edc0ef6f6ae27a2985b7d39c7fea770787d7e104696c6e81f64848",
             "9cf5a63718145ba968a01c1d557020181c5b252f665cf7386d370eddb176517b",
             "9c15a6a0eaeed500fd9eed4cbeab71f797cefcc67bfd46683e4d2e6ff7f06d1c",
             "9a4f64e953595df82d1b4f570d34c4f4f0cfaf729a61e9d60e83e579e1aa283e",
             "19ba6c6333e0e9a15bf67523e0676e2f23eb8e574092552d5e888c64a4bb3681"],
    "tree_index": [8, 10, 7, 5, 9, 6],
}
OZ_UNSORTED = {
    "tree": ["23be0977360f08bb0bd7f709a7d543d2cd779c79c66d74e0441919871647de2b",
             "8f7234e8cfe39c08ca84a3a3e3274f574af26fd15165fe29e09cbab742daccd9",
             "7b0c6cd04b82bfc0e250030a5d2690c52585e0cc6a4f3bc7909d7723b0236ece",
             "03707d7802a71ca56a8ad8028da98c4f1dbec55b31b4a25d536b5309cc20eda9",
             "fa914d99a18dc32d9725b3ef1c50426deb40ec8d0885dac8edcc5bfd6d030016",
             "c62a8cfa41edc0ef6f6ae27a2985b7d39c7fea770787d7e104696c6e81f64848",
             "9a4f64e953595df82d1b4f570d34c4f4f0cfaf729a61e9d60e83e579e1aa283e",
             "eba909cf4bb90c6922771d7f126ad0fd11dfde93f3937a196274e1ac20fd2f5b",
             "9cf5a63718145ba968a01c1d557020181c5b252f665cf7386d370eddb176517b",
             "19ba6c6333e0e9a15bf67523e0676e2f23eb8e574092552d5e888c64a4bb3681",
             "9c15a6a0eaeed500fd9eed4cbeab71f797cefcc67bfd46683e4d2e6ff7f06d1c"],
    "tree_index": [10, 9, 8, 7, 6, 5],
}


@pytest.mark.parametrize("sort,dump", [(True, OZ_SORTED), (False, OZ_UNSORTED)], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("numba", [False, True], ids=["python", "numba"])
def test_openzeppelin_tree_dumps(sort, dump, numba, monkeypatch):
    monkeypatch.setattr(merkle, "_NUMBA_MIN_LEAVES", 1 if numba else 10**9)
    leaves = [leaf_hash(["string"], [c]) for c in "abcdef"]
    tree = MerkleTree(leaves, sort_leaves=sort)
    assert [n.hex() for n in tree.nodes()] == dump["tree"]
    assert [tree.tree_index(i) for i in range(6)] == dump["tree_index"]


def test_numba_kernels_match_pysha3():
    rows = np.frombuffer(os.urandom(32 * 512), np.uint8).reshape(-1, 32)
    as_bytes = [r.tobytes() for r in rows]
    assert [r.tobytes() for r in hash_pairs_sorted(rows)] == keccak_pairs_sorted(as_bytes)
    assert [r.tobytes() for r in double_hash_32(rows)] == [keccak256(keccak256(b)) for b in as_bytes]
    # abi.encode of one bytes32 is the word itself, so this is the OZ leaf of a bytes32 value
    assert double_hash_32(rows[:1])[0].tobytes() == leaf_hash(["bytes32"], [as_bytes[0]])


@pytest.mark.parametrize("n", [2, 3, 5, 2047, 2048, 2049, 5000])
def test_numba_and_python_builds_agree(n, monkeypatch):
    leaves = [os.urandom(32) for _ in range(n)]
    monkeypatch.setattr(merkle, "_NUMBA_MIN_LEAVES", 10**9)
    a = MerkleTree(leaves)
    monkeypatch.setattr(merkle, "_NUMBA_MIN_LEAVES", 1)
    b = MerkleTree(leaves)
    assert a.nodes() == b.nodes()


def test_sort_ties_use_full_key():
    leaves = np.zeros((50, 32), np.uint8)
    leaves[:, 0] = 7                       # identical first 8 bytes everywhere
    leaves[:, 31] = np.random.default_rng(1).permutation(50)
    tree = MerkleTree(leaves)
    ordered = sorted(range(50), key=lambda i: leaves[i].tobytes())
    assert [tree.tree_index(i) for i in ordered] == [98 - k for k in range(50)]


leaf_lists = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70)


@settings(max_examples=60, deadline=None)
@given(leaves=leaf_lists, data=st.data())
def test_every_proof_verifies_and_tampering_fails(leaves, data):
    tree = MerkleTree(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    proof = tree.proof(i)
    assert verify_proof(proof, tree.root, leaves[i])
    # wrong leaf
    other = bytes(32) if leaves[i] != bytes(32) else b"\x01" * 32
    if other not in leaves:
        assert not verify_proof(proof, tree.root, other)
    # flipped bit in one proof element
    if proof:
        j = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[j] = bytes([bad[j][0] ^ 1]) + bad[j][1:]
        assert not verify_proof(bad, tree.root, leaves[i])
        # truncated proof
        assert not verify_proof(proof[:-1], tree.root, leaves[i])


def test_single_leaf_tree():
    leaf = leaf_hash(["uint256"], [1])
    tree = MerkleTree([leaf])
    assert tree.root == leaf and tree.proof(0) == []
    assert verify_proof([], tree.root, leaf)


def test_inner_node_cannot_pass_as_leaf():
    """The double-hashed leaf: an inner node's 64-byte preimage is never a leaf preimage."""
    leaves = [leaf_hash(["uint256"], [i]) for i in range(4)]
    tree = MerkleTree(leaves, sort_leaves=False)
    inner = tree.nodes()[1]           # parent of two leaves
    proof_of_inner = [tree.nodes()[2]]
    assert process_proof(proof_of_inner, inner) == tree.root  # the raw tree accepts it…
    # …but nobody can produce values whose leaf_hash equals it (that needs a keccak preimage)
    assert inner not in {leaf_hash(["uint256"], [i]) for i in range(1000)}


@settings(max_examples=60, deadline=None)
@given(leaves=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40, unique=True),
       data=st.data())
def test_multiproof(leaves, data):
    tree = MerkleTree(leaves)
    idx = data.draw(st.lists(st.integers(0, len(leaves) - 1), unique=True, max_size=len(leaves)))
    mp = tree.multiproof(idx)
    assert sorted(mp.indices) == sorted(idx)
    assert [leaves[i] for i in mp.indices] == mp.leaves
    assert verify_multiproof(mp.proof, mp.proof_flags, tree.root, mp.leaves)
    if mp.leaves:
        bad = list(mp.leaves)
        bad[0] = bytes([bad[0][0] ^ 0x80]) + bad[0][1:]
        assert not verify_multiproof(mp.proof, mp.proof_flags, tree.root, bad)
    if mp.proof_flags:
        flipped = list(mp.proof_flags)
        flipped[-1] = not flipped[-1]
        assert not verify_multiproof(mp.proof, flipped, tree.root, mp.leaves)


def test_multiproof_malformed_is_rejected():
    leaves = [os.urandom(32) for _ in range(8)]
    tree = MerkleTree(leaves)
    mp = tree.multiproof([0, 3])
    # lengths that do not add up
    assert not verify_multiproof(mp.proof + [os.urandom(32)], mp.proof_flags, tree.root, mp.leaves)
    with pytest.raises(VerificationError):
        merkle.process_multiproof(mp.proof, mp.proof_flags[:-1], mp.leaves)


def test_bad_input():
    with pytest.raises(InputError, match="at least one leaf"):
        MerkleTree([])
    with pytest.raises(InputError, match="32 bytes"):
        MerkleTree([b"short"])
    tree = MerkleTree([os.urandom(32)])
    with pytest.raises(InputError, match="out of range"):
        tree.proof(1)
    with pytest.raises(InputError, match="types"):
        leaf_hash(["uint256"], [1, 2])
    with pytest.raises(InputError, match="do not match"):
        leaf_hash(["uint8"], [300])
    with pytest.raises(InputError, match="duplicated"):
        MerkleTree([os.urandom(32), os.urandom(32)]).multiproof([1, 1])


def test_hash_pair_is_commutative():
    a, b = os.urandom(32), os.urandom(32)
    assert hash_pair(a, b) == hash_pair(b, a) == keccak256(min(a, b) + max(a, b))
