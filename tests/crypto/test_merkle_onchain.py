"""Python Merkle proofs verify in a real contract (snekmate's OpenZeppelin-style verifier),
and tampered proofs fail — on the embedded py-evm chain and on anvil."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from proofmesh.crypto.merkle import MerkleTree, leaf_hash

@pytest.fixture
def verifier(any_chain):
    address = any_chain.deploy("test/MerkleVerifier")
    return any_chain, any_chain.contract("test/MerkleVerifier", address)


def _flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


def test_leaf_hash_matches_contract(verifier, accounts):
    chain, c = verifier
    for amount in (0, 1, 5 * 10**18, 2**256 - 1):
        addr = accounts[3].address
        assert chain.call(c.functions.leaf_of(addr, amount)) == leaf_hash(["address", "uint256"], [addr, amount])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 200), seed=st.integers(0, 2**32 - 1))
def test_random_trees_verify_on_chain(verifier, n, seed):
    chain, c = verifier
    rnd = random.Random(seed)
    values = [("0x" + rnd.randbytes(20).hex(), rnd.randrange(2**64)) for _ in range(n)]
    leaves = [leaf_hash(["address", "uint256"], list(v)) for v in values]
    tree = MerkleTree(leaves)
    i = rnd.randrange(n)
    proof = tree.proof(i)
    assert chain.call(c.functions.verify(proof, tree.root, leaves[i])) is True
    # a leaf for a different amount, a flipped proof element, a wrong root: all refused
    other = leaf_hash(["address", "uint256"], [values[i][0], values[i][1] + 1])
    assert chain.call(c.functions.verify(proof, tree.root, other)) is False
    if proof:
        j = rnd.randrange(len(proof))
        assert chain.call(c.functions.verify(proof[:j] + [_flip(proof[j])] + proof[j + 1:], tree.root,
                                             leaves[i])) is False
    assert chain.call(c.functions.verify(proof, _flip(tree.root), leaves[i])) is False


def test_ten_thousand_leaves(verifier):
    chain, c = verifier
    leaves = [os.urandom(32) for _ in range(10_000)]
    tree = MerkleTree(leaves)
    for i in (0, 1, 4_999, 9_998, 9_999):
        proof = tree.proof(i)
        assert len(proof) in (13, 14)
        assert chain.call(c.functions.verify(proof, tree.root, leaves[i])) is True
        assert chain.call(c.functions.verify(proof, tree.root, os.urandom(32))) is False
    # a proof for leaf 1 does not prove leaf 0
    assert chain.call(c.functions.verify(tree.proof(1), tree.root, leaves[0])) is False


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 60), data=st.data())
def test_multiproofs_verify_on_chain(verifier, n, data):
    chain, c = verifier
    leaves = [os.urandom(32) for _ in range(n)]
    tree = MerkleTree(leaves)
    idx = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    mp = tree.multiproof(idx)
    assert chain.call(c.functions.multi_proof_verify(mp.proof, mp.proof_flags, tree.root, mp.leaves)) is True
    bad = [_flip(mp.leaves[0])] + mp.leaves[1:]
    assert chain.call(c.functions.multi_proof_verify(mp.proof, mp.proof_flags, tree.root, bad)) is False
