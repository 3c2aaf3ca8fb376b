# pragma version ~=0.4.3
"""
@title TypedSigVerifier (test contract)
@notice Recovers the signer of an EIP-712 `Reading` with snekmate's
        eip712_domain_separator and ecdsa modules (the ones every proofmesh contract
        uses), so tests can show that `proofmesh.crypto.eip712` and the contracts agree on
        hashes, signers and which signatures are refused. Holds only its immutable domain;
        never part of a deployment.
"""

from snekmate.utils import ecdsa
from snekmate.utils import eip712_domain_separator as eip712

initializes: eip712

_READING_TYPEHASH: constant(bytes32) = keccak256(
    "Reading(address device,int256 reading,uint64 nonce,bytes32 data,string unit)"
)


@deploy
def __init__(name_: String[50], version_: String[20]):
    """
    @notice Fixes the EIP-712 domain (name, version, this chain, this address).
    @param name_ The domain name.
    @param version_ The domain version.
    """
    eip712.__init__(name_, version_)


@internal
@view
def _digest(device: address, reading: int256, nonce: uint64, data: bytes32, unit: String[64]) -> bytes32:
    struct_hash: bytes32 = keccak256(
        abi_encode(_READING_TYPEHASH, device, reading, nonce, data, keccak256(unit))
    )
    return eip712._hash_typed_data_v4(struct_hash)


@external
@view
def digest(device: address, reading: int256, nonce: uint64, data: bytes32, unit: String[64]) -> bytes32:
    """
    @notice The EIP-712 digest of a Reading in this contract's domain.
    @param device The device address.
    @param reading The measured value.
    @param nonce The device's nonce.
    @param data A 32-byte payload hash.
    @param unit A unit string.
    @return bytes32 The digest that the device signs.
    """
    return self._digest(device, reading, nonce, data, unit)


@external
@view
def signer_of(device: address, reading: int256, nonce: uint64, data: bytes32, unit: String[64],
              signature: Bytes[65]) -> address:
    """
    @notice The signer of a Reading; reverts on malformed or malleable (high-s) signatures.
    @param device The device address.
    @param reading The measured value.
    @param nonce The device's nonce.
    @param data A 32-byte payload hash.
    @param unit A unit string.
    @param signature 65 bytes r || s || v.
    @return address The recovered signer.
    """
    return ecdsa._recover_sig(self._digest(device, reading, nonce, data, unit), signature)
