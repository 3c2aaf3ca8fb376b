"""proofmesh.crypto: hashes, content IDs, Merkle trees, signatures and keys.

* :mod:`~proofmesh.crypto.cid` — CIDv1 equal to ``ipfs add --cid-version=1 --raw-leaves``;
* :mod:`~proofmesh.crypto.merkle` — OpenZeppelin-compatible Merkle trees and (multi-)proofs;
* :mod:`~proofmesh.crypto.eip712` — EIP-712 hashing, signing, recovery (generic and fast);
* :mod:`~proofmesh.crypto.keys` — encrypted keystore files per home;
* :mod:`~proofmesh.crypto.keccak` — the one keccak256 every module uses (C / numba).
"""
