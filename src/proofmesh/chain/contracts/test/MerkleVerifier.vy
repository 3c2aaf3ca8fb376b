# pragma version ~=0.4.3
"""
@title MerkleVerifier (test contract)
@notice Exposes snekmate's Merkle proof verification, which follows OpenZeppelin's
        MerkleProof, so tests can show that proofs built by `proofmesh.crypto.merkle`
        verify on chain. It holds no state and is never part of a deployment.
"""

from snekmate.utils import merkle_proof_verification

# snekmate's bound for proof arrays (max_value(uint8)): deep enough for 2**255 leaves.
_BOUND: constant(uint8) = max_value(uint8)


@external
@pure
def verify(proof: DynArray[bytes32, _BOUND], root: bytes32, leaf: bytes32) -> bool:
    """
    @notice True if `proof` proves `leaf` is in the tree with `root` (sorted-pair keccak).
    @param proof Sibling hashes from the leaf up to the root.
    @param root The Merkle root.
    @param leaf The leaf hash (already double-hashed, as OpenZeppelin's StandardMerkleTree).
    @return bool Whether the proof is valid.
    """
    return merkle_proof_verification._verify(proof, root, leaf)


@external
@pure
def multi_proof_verify(proof: DynArray[bytes32, _BOUND], proof_flags: DynArray[bool, _BOUND],
                       root: bytes32, leaves: DynArray[bytes32, _BOUND]) -> bool:
    """
    @notice True if the multi-proof proves all `leaves` against `root`
            (OpenZeppelin's multiProofVerify semantics).
    @param proof Sibling hashes not computable from the leaves.
    @param proof_flags For each hash step: take the next leaf/hash (True) or proof element (False).
    @param root The Merkle root.
    @param leaves Leaf hashes in the order `MerkleTree.multiproof` returns them.
    @return bool Whether the multi-proof is valid.
    """
    return merkle_proof_verification._multi_proof_verify(proof, proof_flags, root, leaves)


@external
@pure
def leaf_of(account: address, amount: uint256) -> bytes32:
    """
    @notice The OpenZeppelin StandardMerkleTree leaf of (account, amount), computed on chain:
            keccak256(keccak256(abi.encode(account, amount))).
    @param account An address.
    @param amount An amount.
    @return bytes32 The leaf hash.
    """
    return keccak256(keccak256(abi_encode(account, amount)))
