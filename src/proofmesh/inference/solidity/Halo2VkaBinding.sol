// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @title Halo2VkaBinding
/// @notice One zk circuit's verifier under EIP-170: ezkl's shared reusable Halo2 verifier
///         (`Halo2VerifierReusable`, one per chain) plus this circuit's verifying-key
///         artifact (VKA: the fixed/permutation commitments, i.e. the weights, and the
///         circuit layout), stored as the code of a data contract (`0x00 || words`).
///         It answers the dedicated verifier's `verifyProof(bytes,uint256[])`, so
///         InferenceRegistry calls both kinds alike and pins this contract's
///         extcodehash; the immutables below are part of that code, so the pin covers
///         the reusable verifier's code hash and the VKA's address, code hash and digest.
/// @dev A proof for other weights fails the pairing check against this VKA; a VKA that
///      is not the one generated from the registered verifying key is refused by
///      clients (`proofmesh.inference.reusable.check_binding`), which regenerate it.
contract Halo2VkaBinding {
    bytes4 private constant VERIFY = bytes4(keccak256("verifyProof(bytes,uint256[],bytes32[])"));
    bytes4 private constant REGISTER = bytes4(keccak256("registerVka(bytes32[])"));

    /// @notice The shared reusable verifier.
    address public immutable verifier;
    /// @notice Its code hash when this binding was made; checked on every verification.
    bytes32 public immutable verifierCodehash;
    /// @notice The data contract holding this circuit's VKA.
    address public immutable vka;
    /// @notice Its code hash (keccak256(0x00 || VKA words)).
    bytes32 public immutable vkaCodehash;
    /// @notice keccak256 of the VKA words: the key under which the reusable verifier registered it.
    bytes32 public immutable vkaDigest;
    /// @notice Number of 32-byte words in the VKA.
    uint256 public immutable vkaWords;
    /// @notice sha256 of the ezkl verifying key the VKA was generated from (what InferenceRegistry records).
    bytes32 public immutable vkHash;

    /// @notice Emitted once, when the binding is made and the VKA registered with the verifier.
    event Bound(address indexed verifier, address indexed vka, bytes32 vkaDigest, bytes32 vkHash);

    /// @param verifier_ The chain's Halo2VerifierReusable.
    /// @param vka_ A data contract whose code is 0x00 followed by the VKA words.
    /// @param vkHash_ sha256 of the verifying key the VKA was generated from.
    constructor(address verifier_, address vka_, bytes32 vkHash_) {
        require(verifier_.code.length > 0, "Halo2VkaBinding: verifier is not a contract");
        bytes memory code = vka_.code;
        require(code.length > 32 && code[0] == 0x00 && (code.length - 1) % 32 == 0,
                "Halo2VkaBinding: not a VKA data contract (0x00 || 32-byte words)");
        require(vkHash_ != bytes32(0), "Halo2VkaBinding: empty vk hash");
        uint256 words = (code.length - 1) / 32;
        bytes32[] memory w = new bytes32[](words);
        for (uint256 i = 0; i < words; ++i) {
            bytes32 word;
            assembly { word := mload(add(add(code, 0x21), mul(i, 0x20))) }
            w[i] = word;
        }
        bytes32 digest = keccak256(abi.encodePacked(w));
        // the reusable verifier accepts only registered VKAs; registering is idempotent
        (bool ok, bytes memory ret) = verifier_.call(abi.encodeWithSelector(REGISTER, w));
        require(ok && ret.length >= 32 && abi.decode(ret, (bytes32)) == digest,
                "Halo2VkaBinding: the verifier did not register the VKA");
        verifier = verifier_;
        verifierCodehash = verifier_.codehash;
        vka = vka_;
        vkaCodehash = vka_.codehash;
        vkaDigest = digest;
        vkaWords = words;
        vkHash = vkHash_;
        emit Bound(verifier_, vka_, digest, vkHash_);
    }

    /// @notice Verify `proof` for `instances` against this circuit's VKA.
    /// @dev Reverts (with the verifier's revert data) on an invalid proof, like the dedicated verifier.
    /// @return True when the proof verifies.
    function verifyProof(bytes calldata proof, uint256[] calldata instances) external view returns (bool) {
        require(verifier.codehash == verifierCodehash, "Halo2VkaBinding: verifier code changed");
        require(vka.codehash == vkaCodehash, "Halo2VkaBinding: VKA code changed");
        // the reusable verifier requires a word-aligned proof (it checks the calldata layout)
        require(proof.length % 32 == 0, "Halo2VkaBinding: proof length is not a multiple of 32");
        address v = verifier;
        address a = vka;
        uint256 n = vkaWords;
        bytes4 sel = VERIFY;
        bool ok;
        assembly {
            // verifyProof(proof, instances, vka) in the standard ABI layout, the VKA words
            // copied straight from the data contract's code (no calldata, no per-word loop)
            let p := mload(0x40)
            let proofLen := proof.length
            let instBytes := mul(instances.length, 0x20)
            mstore(p, sel)
            let h := add(p, 4)
            mstore(h, 0x60)
            mstore(add(h, 0x20), add(0x80, proofLen))
            mstore(add(h, 0x40), add(add(0xa0, proofLen), instBytes))
            let q := add(h, 0x60)
            mstore(q, proofLen)
            calldatacopy(add(q, 0x20), proof.offset, proofLen)
            q := add(add(q, 0x20), proofLen)
            mstore(q, instances.length)
            calldatacopy(add(q, 0x20), instances.offset, instBytes)
            q := add(add(q, 0x20), instBytes)
            mstore(q, n)
            extcodecopy(a, add(q, 0x20), 1, mul(n, 0x20))
            let end := add(add(q, 0x20), mul(n, 0x20))
            ok := staticcall(gas(), v, p, sub(end, p), 0, 0x20)
            if iszero(ok) {
                returndatacopy(0, 0, returndatasize())
                revert(0, returndatasize())
            }
            ok := and(gt(returndatasize(), 0x1f), eq(mload(0), 1))
        }
        return ok;
    }
}
