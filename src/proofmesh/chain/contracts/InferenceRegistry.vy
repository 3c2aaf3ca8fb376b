# pragma version ~=0.4.3
"""
@title InferenceRegistry
@custom:contract-name InferenceRegistry
@license Apache-2.0
@notice Verifiable inference: serving terms and zk circuits per model version,
        node service bonds, epoch commitments of (receipt, proof) pairs,
        on-demand proof challenges and redundant-execution fraud disputes.

        A node signs an EIP-712 `Receipt` for every answer. Two commitment kinds:
        - ZK (1): `input_hash` is the circuit's Poseidon hash of the quantised input
          (its first public instance) and `output_hash` = keccak256(abi_encode(
          uint256[] output instances)); a proof for the registered circuit settles it.
        - VALUES (0): `output_hash` = keccak256 of the outputs in fixed point (x 1e6)
          as packed 8-byte big-endian int64s; two receipts for the same input whose
          outputs differ by more than the version's tolerance are a fraud proof,
          settled in InferenceDisputes (its `arbiter`): bonded nodes re-execute
          and vote, or a zk proof decides where the version has a circuit.

        Proofs are verified on chain only when needed: nodes commit a Merkle root of
        (receipt digest, proof hash) per epoch; anyone may challenge a ZK receipt and
        the node must answer with a valid proof before the deadline or be slashed.
        Unchallenged receipts in an epoch count as proven once its window has passed.
        A challenge is committed, then revealed in a later block (audit M8): the
        commitment binds the challenger, so copying a reveal from the mempool earns
        nothing. A verifier's code hash is pinned at registration and checked on
        every use (audit L6).
@dev Books: this contract holds exactly the sum of open challengers' deposits.
"""

from ethereum.ercs import IERC20
from snekmate.auth import ownable
from snekmate.utils import ecdsa
from snekmate.utils import eip712_domain_separator as eip712
from snekmate.utils import merkle_proof_verification as mpv
from .interfaces import INodeRegistry

initializes: ownable
initializes: eip712

exports: (ownable.owner, ownable.transfer_ownership, eip712.eip712Domain)


interface IRegistryParams:
    def max_challenge_window() -> uint256: view

interface IModelRegistry:
    def owner_of(version_id: uint256) -> address: view


ROLE_INFERENCE: constant(uint256) = 4
COMMIT_VALUES: public(constant(uint8)) = 0
COMMIT_ZK: public(constant(uint8)) = 1
MAX_PROOF: constant(uint256) = 16384
MAX_INSTANCES: constant(uint256) = 257
MAX_MERKLE: constant(uint256) = 32
VERIFY_SELECTOR: constant(Bytes[4]) = method_id("verifyProof(bytes,uint256[])", output_type=Bytes[4])
VK_HASH_SELECTOR: constant(Bytes[4]) = method_id("vkHash()", output_type=Bytes[4])

RECEIPT_TYPEHASH: public(constant(bytes32)) = keccak256(
    "Receipt(uint256 version,bytes32 input_hash,bytes32 output_hash,uint256 nonce,uint256 price,uint8 commitment)"
)


struct Receipt:
    version: uint256
    input_hash: bytes32
    output_hash: bytes32
    nonce: uint256
    price: uint256
    commitment: uint8


struct Model:
    onnx_hash: bytes32        # sha256 of the ONNX file nodes must serve
    tolerance: uint256        # max |difference| per output, fixed point x 1e6 (VALUES receipts)
    registered: bool


struct Circuit:
    onnx_hash: bytes32        # the ONNX the circuit was compiled from
    settings_hash: bytes32    # sha256 of ezkl settings.json
    vk_hash: bytes32          # sha256 of the verifying key
    srs_hash: bytes32         # sha256 of the SRS (structured reference string)
    verifier: address         # generated Halo2 verifier contract
    verifier_codehash: bytes32  # its extcodehash at registration (audit L6)
    dev_srs: bool             # True: locally generated SRS; its maker can forge proofs
    batch: uint256            # inputs per proof
    registered: bool


struct Epoch:
    node: address
    root: bytes32
    count: uint256
    committed_at: uint256
    finalized: bool


struct Challenge:
    node: address
    challenger: address
    receipt: bytes32
    version: uint256
    input_hash: bytes32
    output_hash: bytes32
    deposit: uint256
    deadline: uint256
    state: uint8              # 1 open, 2 answered (node proved), 3 expired (node slashed)


token: public(immutable(IERC20))
registry: public(immutable(INodeRegistry))
model_registry: public(immutable(IModelRegistry))
allow_dev_srs: public(immutable(bool))        # False on production networks

challenge_window: public(uint256)     # how long an epoch's receipts can be challenged
bond_unlock_at: public(HashMap[address, uint256])  # when a requested bond withdrawal may run (0: none)
response_window: public(uint256)      # how long a node has to answer a challenge
challenge_deposit: public(uint256)    # challenger's stake, paid to the node if it proves
min_bond: public(uint256)             # service bond a node needs to commit epochs / vote
slash_amount: public(uint256)         # slashed per proven fault (capped by the bond)
vote_window: public(uint256)          # how long bonded nodes may vote on a dispute
quorum: public(uint256)               # minimum winning vote weight (bond) to resolve
committee_size: public(uint256)       # expected number of nodes drawn to vote on a dispute
voter_penalty_bps: public(uint256)    # share of its vote weight a wrong or silent voter loses

models: public(HashMap[uint256, Model])
circuits: public(HashMap[uint256, Circuit])
service_bond: public(HashMap[address, uint256])
# @notice Sum of all service bonds: InferenceDisputes draws each dispute's committee with
#         probability proportional to a node's share of it (kept exact on bond, withdrawal, slash)
total_bond: public(uint256)
# @notice Block of a node's last `post_bond`: a dispute's draw counts only bonds posted in a
#         block before the dispute's seed block, so nobody bonds more once the seed is known
bonded_at: public(HashMap[address, uint256])
open_cases: public(HashMap[address, uint256])      # open challenges/disputes against a node
pending_epochs: public(HashMap[address, uint256])  # epochs not yet finalized

epochs: public(HashMap[uint256, Epoch])
epoch_count: public(uint256)
challenges: public(HashMap[uint256, Challenge])
challenge_count: public(uint256)
challenged: public(HashMap[bytes32, uint256])      # receipt digest -> open/last challenge id
failed: public(HashMap[bytes32, bool])             # receipt whose proof never came
proven: public(HashMap[bytes32, bool])             # receipt digest -> proof accepted
total_deposits: public(uint256)
# challenge commitments (audit M8): keccak256(abi_encode(challenger, receipt digest, salt)) -> block
commitments: public(HashMap[bytes32, uint256])
# InferenceDisputes: opens/closes cases against nodes and slashes losers (set once)
arbiter: public(address)


event ModelRegistered:
    version: indexed(uint256)
    onnx_hash: bytes32
    tolerance: uint256

event CircuitRegistered:
    version: indexed(uint256)
    verifier: indexed(address)
    settings_hash: bytes32
    vk_hash: bytes32
    srs_hash: bytes32
    dev_srs: bool
    batch: uint256

event BondPosted:
    node: indexed(address)
    amount: uint256
    bond: uint256

event BondWithdrawn:
    node: indexed(address)
    amount: uint256
    bond: uint256

event EpochCommitted:
    epoch: indexed(uint256)
    node: indexed(address)
    root: bytes32
    count: uint256

event EpochFinalized:
    epoch: indexed(uint256)
    node: indexed(address)

event ProofAccepted:
    receipt: indexed(bytes32)
    version: indexed(uint256)
    submitter: indexed(address)
    instances: uint256

event SettledFromEpoch:
    receipt: indexed(bytes32)
    epoch: indexed(uint256)

event Challenged:
    challenge: indexed(uint256)
    node: indexed(address)
    receipt: indexed(bytes32)
    challenger: address
    deadline: uint256

event ChallengeAnswered:
    challenge: indexed(uint256)
    node: indexed(address)
    paid_to_node: uint256

event ChallengeExpired:
    challenge: indexed(uint256)
    node: indexed(address)
    slashed: uint256

event ChallengeCommitted:
    commitment: indexed(bytes32)
    sender: indexed(address)

event ArbiterSet:
    arbiter: indexed(address)

event CaseChanged:
    node: indexed(address)
    open_cases: uint256

event CommitteeChanged:
    committee_size: uint256
    voter_penalty_bps: uint256

event ParametersChanged:
    challenge_window: uint256
    response_window: uint256
    challenge_deposit: uint256
    min_bond: uint256
    slash_amount: uint256
    vote_window: uint256
    quorum: uint256


@deploy
def __init__(token_: address, registry_: address, model_registry_: address, allow_dev_srs_: bool,
             challenge_window_: uint256, response_window_: uint256,
             challenge_deposit_: uint256, min_bond_: uint256, slash_amount_: uint256, vote_window_: uint256,
             quorum_: uint256):
    """
    @param token_ MESH token (challenge deposits).
    @param registry_ NodeRegistry (bonds and slashing); this contract must be an authorised domain.
    @param model_registry_ ModelRegistry: a version's owner sets its serving terms and circuit.
    @param allow_dev_srs_ Accept circuits whose SRS was generated locally (dev chains only).
    @param challenge_window_ Seconds during which an epoch's receipts can be challenged.
    @param response_window_ Seconds a node has to answer a challenge with a proof.
    @param challenge_deposit_ MESH a challenger locks; paid to the node if it proves.
    @param min_bond_ Service bond a node needs to commit epochs and vote.
    @param slash_amount_ Slashed per proven fault (capped by the node's bond here).
    @param vote_window_ Seconds bonded nodes may vote on a redundant-execution dispute.
    @param quorum_ Minimum winning vote weight (bonded MESH) to resolve a dispute.
    """
    assert token_ != empty(address) and registry_ != empty(address) and model_registry_ != empty(address), \
        "InferenceRegistry: zero address"
    ownable.__init__()
    eip712.__init__("proofmesh Inference", "1")
    token = IERC20(token_)
    registry = INodeRegistry(registry_)
    model_registry = IModelRegistry(model_registry_)
    allow_dev_srs = allow_dev_srs_
    self._set_params(challenge_window_, response_window_, challenge_deposit_, min_bond_, slash_amount_,
                     vote_window_, quorum_)
    self._set_committee(16, 1_000)


@internal
def _set_committee(committee_size_: uint256, voter_penalty_bps_: uint256):
    assert committee_size_ > 0, "InferenceRegistry: committee size is zero"
    assert voter_penalty_bps_ <= 10_000, "InferenceRegistry: penalty above 100%"
    self.committee_size = committee_size_
    self.voter_penalty_bps = voter_penalty_bps_
    log CommitteeChanged(committee_size=committee_size_, voter_penalty_bps=voter_penalty_bps_)


@external
def set_committee(committee_size_: uint256, voter_penalty_bps_: uint256):
    """
    @notice Set the dispute committee parameters (owner = governance timelock), read by
            the arbiter: the expected committee size of disputes opened from now on, and
            the voter penalty applied from now on.
    @param committee_size_ Expected number of nodes drawn per dispute (at least 1).
    @param voter_penalty_bps_ Share of its vote weight a voter loses for revealing the
           losing side or not revealing, in basis points (at most 10,000).
    """
    ownable._check_owner()
    self._set_committee(committee_size_, voter_penalty_bps_)


@internal
def _set_params(challenge_window_: uint256, response_window_: uint256, challenge_deposit_: uint256,
                min_bond_: uint256, slash_amount_: uint256, vote_window_: uint256, quorum_: uint256):
    assert response_window_ > 0 and challenge_window_ > 0 and vote_window_ > 0, "InferenceRegistry: zero window"
    # a node must not escape a slash by unstaking: every case must close before unbonding ends
    max_window: uint256 = staticcall IRegistryParams(registry.address).max_challenge_window()
    assert challenge_window_ + response_window_ <= max_window, "InferenceRegistry: challenge window too long"
    assert vote_window_ <= max_window, "InferenceRegistry: vote window too long"
    assert slash_amount_ > 0 and min_bond_ >= slash_amount_, "InferenceRegistry: min_bond must cover a slash"
    assert quorum_ > 0, "InferenceRegistry: quorum is zero"
    self.challenge_window = challenge_window_
    self.response_window = response_window_
    self.challenge_deposit = challenge_deposit_
    self.min_bond = min_bond_
    self.slash_amount = slash_amount_
    self.vote_window = vote_window_
    self.quorum = quorum_
    log ParametersChanged(challenge_window=challenge_window_, response_window=response_window_,
                          challenge_deposit=challenge_deposit_, min_bond=min_bond_, slash_amount=slash_amount_,
                          vote_window=vote_window_, quorum=quorum_)


@external
def set_params(challenge_window_: uint256, response_window_: uint256, challenge_deposit_: uint256,
               min_bond_: uint256, slash_amount_: uint256, vote_window_: uint256, quorum_: uint256):
    """
    @notice Change the challenge/dispute parameters (owner = governance timelock).
    """
    ownable._check_owner()
    self._set_params(challenge_window_, response_window_, challenge_deposit_, min_bond_, slash_amount_,
                     vote_window_, quorum_)


@external
def set_arbiter(arbiter_: address):
    """
    @notice Name the disputes contract, once (owner; done at deployment).
    """
    ownable._check_owner()
    assert self.arbiter == empty(address) and arbiter_ != empty(address), "InferenceRegistry: arbiter set"
    self.arbiter = arbiter_
    log ArbiterSet(arbiter=arbiter_)


@external
def arbiter_case(node: address, opened: bool):
    """
    @notice The arbiter opens (`opened`) or closes a case against `node` (a dispute it
            is a party to, or a committee vote it may be penalised for); open cases
            block its bond withdrawal.
    """
    assert msg.sender == self.arbiter, "InferenceRegistry: not the arbiter"
    if opened:
        self.open_cases[node] += 1
    else:
        self.open_cases[node] -= 1
    log CaseChanged(node=node, open_cases=self.open_cases[node])


@external
def arbiter_slash(node: address, to: address, amount: uint256) -> (uint256, uint256):
    """
    @notice The arbiter slashes `node`'s service bond, paying `to` what NodeRegistry does
            not burn: `slash_amount` for a lost dispute (`amount` 0), or `amount` (a
            committee voter's penalty). Capped by the bond.
    @return (slashed, paid to `to`).
    """
    assert msg.sender == self.arbiter, "InferenceRegistry: not the arbiter"
    if amount == 0:
        return self._slash(node, to, self.slash_amount)
    return self._slash(node, to, amount)


# --- model versions and circuits ----------------------------------------------

@external
def register_model(version: uint256, onnx_hash: bytes32, tolerance: uint256):
    """
    @notice Pin the ONNX file (sha256) nodes must serve for ModelRegistry version
            `version` and the output tolerance (x 1e6) within which redundant
            answers agree. Only the version's owner; set once, so nobody can
            change a served model afterwards.
    """
    assert msg.sender == staticcall model_registry.owner_of(version), "InferenceRegistry: not the model owner"
    assert onnx_hash != empty(bytes32), "InferenceRegistry: empty hash"
    assert not self.models[version].registered, "InferenceRegistry: model version already registered"
    self.models[version] = Model(onnx_hash=onnx_hash, tolerance=tolerance, registered=True)
    log ModelRegistered(version=version, onnx_hash=onnx_hash, tolerance=tolerance)


@external
def register_circuit(version: uint256, settings_hash: bytes32, vk_hash: bytes32, srs_hash: bytes32,
                     verifier: address, dev_srs: bool, batch: uint256):
    """
    @notice Bind an ezkl circuit (settings, verifying key, SRS, verifier contract)
            to a registered model version. `dev_srs` marks a locally generated
            SRS, which is insecure (its maker can forge proofs); clients flag it.
            A verifier that names its verifying key (`vkHash()`: a Halo2VkaBinding
            of the reusable verifier and a VK artifact) must name `vk_hash`.
            Only the version's owner; set once per version.
    """
    assert msg.sender == staticcall model_registry.owner_of(version), "InferenceRegistry: not the model owner"
    assert allow_dev_srs or not dev_srs, "InferenceRegistry: dev SRS not allowed on this network"
    m: Model = self.models[version]
    assert m.registered, "InferenceRegistry: unknown model version"
    assert not self.circuits[version].registered, "InferenceRegistry: circuit already registered"
    assert verifier.is_contract, "InferenceRegistry: verifier is not a contract"
    assert settings_hash != empty(bytes32) and vk_hash != empty(bytes32) and srs_hash != empty(bytes32), \
        "InferenceRegistry: empty hash"
    assert batch > 0, "InferenceRegistry: batch is zero"
    # a Halo2VkaBinding (reusable verifier + VK artifact) names the verifying key its VKA was
    # generated from: refuse one made for another key (a dedicated verifier has no vkHash())
    named: Bytes[32] = b""
    has_vk: bool = False
    has_vk, named = raw_call(verifier, VK_HASH_SELECTOR, max_outsize=32, is_static_call=True,
                             revert_on_failure=False)
    assert not has_vk or len(named) != 32 or convert(named, bytes32) == vk_hash, \
        "InferenceRegistry: the verifier's VK artifact is for another verifying key"
    self.circuits[version] = Circuit(onnx_hash=m.onnx_hash, settings_hash=settings_hash, vk_hash=vk_hash,
                                     srs_hash=srs_hash, verifier=verifier, verifier_codehash=verifier.codehash,
                                     dev_srs=dev_srs, batch=batch, registered=True)
    log CircuitRegistered(version=version, verifier=verifier, settings_hash=settings_hash, vk_hash=vk_hash,
                          srs_hash=srs_hash, dev_srs=dev_srs, batch=batch)


# --- receipts -------------------------------------------------------------------

@external
@view
def receipt_digest(r: Receipt) -> bytes32:
    """
    @notice EIP-712 digest of a receipt (domain: this contract and chain id).
    """
    return self._digest(r)


@internal
@view
def _digest(r: Receipt) -> bytes32:
    return eip712._hash_typed_data_v4(keccak256(abi_encode(
        RECEIPT_TYPEHASH, r.version, r.input_hash, r.output_hash, r.nonce, r.price, r.commitment)))


@internal
@view
def _signer(r: Receipt, signature: Bytes[65]) -> address:
    assert len(signature) == 65, "InferenceRegistry: signature must be 65 bytes"
    signer: address = ecdsa._recover_sig(self._digest(r), signature)
    assert signer != empty(address), "InferenceRegistry: bad signature"
    return signer


@external
@view
def is_fulfilled(condition: bytes32) -> bool:
    """
    @notice Payment-channel oracle: true once the receipt with digest `condition`
            has a proof accepted on chain or settled from an unchallenged epoch.
    """
    return self.proven[condition]


# --- service bond ---------------------------------------------------------------

@external
def post_bond(amount: uint256):
    """
    @notice Lock `amount` of the caller's free stake in NodeRegistry as its
            inference service bond (what faults are slashed from).
    """
    assert amount > 0, "InferenceRegistry: amount is zero"
    assert staticcall registry.has_role(msg.sender, ROLE_INFERENCE), "InferenceRegistry: not an inference node"
    self.service_bond[msg.sender] += amount
    self.total_bond += amount
    self.bonded_at[msg.sender] = block.number
    log BondPosted(node=msg.sender, amount=amount, bond=self.service_bond[msg.sender])
    extcall registry.lock_bond(msg.sender, amount)


@external
def request_bond_withdrawal():
    """
    @notice Start a service-bond withdrawal (audit M3): `withdraw_bond` works only
            after challenge + response + vote windows, so fraud proofs against
            receipts served before now still find the bond. Clients stop using
            the node from now on.
    """
    assert self.service_bond[msg.sender] > 0, "InferenceRegistry: no bond"
    self.bond_unlock_at[msg.sender] = block.timestamp + self.challenge_window + self.response_window + self.vote_window


@external
def withdraw_bond(amount: uint256):
    """
    @notice Release `amount` of the caller's service bond once a requested withdrawal
            has waited out its delay; only with no open challenge or dispute against
            it and no epoch still challengeable.
    """
    unlock: uint256 = self.bond_unlock_at[msg.sender]
    assert unlock != 0 and block.timestamp >= unlock, "InferenceRegistry: bond withdrawal not requested or delay not over"
    self.bond_unlock_at[msg.sender] = 0
    assert amount > 0 and amount <= self.service_bond[msg.sender], "InferenceRegistry: amount exceeds bond"
    assert self.open_cases[msg.sender] == 0, "InferenceRegistry: open challenge or dispute"
    assert self.pending_epochs[msg.sender] == 0, "InferenceRegistry: epochs not finalized"
    self.service_bond[msg.sender] -= amount
    self.total_bond -= amount
    log BondWithdrawn(node=msg.sender, amount=amount, bond=self.service_bond[msg.sender])
    extcall registry.release_bond(msg.sender, amount)


@internal
def _slash(node: address, to: address, wanted: uint256) -> (uint256, uint256):
    # (slashed, paid to `to`): NodeRegistry burns its share and transfers the rest
    amount: uint256 = min(wanted, self.service_bond[node])
    if amount == 0:
        return 0, 0
    self.service_bond[node] -= amount
    self.total_bond -= amount
    burned: uint256 = 0
    paid: uint256 = 0
    burned, paid = extcall registry.slash(node, amount, to)
    return amount, paid


# --- epochs of (receipt, proof) -------------------------------------------------

@external
def commit_epoch(root: bytes32, count: uint256) -> uint256:
    """
    @notice Commit the Merkle root of this node's (receipt digest, proof hash)
            leaves for one epoch; its receipts are challengeable for
            `challenge_window` seconds.
    @return The epoch id.
    """
    assert root != empty(bytes32) and count > 0, "InferenceRegistry: empty epoch"
    assert self.service_bond[msg.sender] >= self.min_bond, "InferenceRegistry: service bond below minimum"
    eid: uint256 = self.epoch_count + 1
    self.epoch_count = eid
    self.epochs[eid] = Epoch(node=msg.sender, root=root, count=count, committed_at=block.timestamp,
                             finalized=False)
    self.pending_epochs[msg.sender] += 1
    log EpochCommitted(epoch=eid, node=msg.sender, root=root, count=count)
    return eid


@external
def finalize_epoch(epoch_id: uint256):
    """
    @notice Close an epoch whose challenge window has passed (anyone).
    """
    e: Epoch = self.epochs[epoch_id]
    assert e.node != empty(address), "InferenceRegistry: unknown epoch"
    assert not e.finalized, "InferenceRegistry: epoch already finalized"
    assert block.timestamp >= e.committed_at + self.challenge_window, "InferenceRegistry: epoch still challengeable"
    self.epochs[epoch_id].finalized = True
    self.pending_epochs[e.node] -= 1
    log EpochFinalized(epoch=epoch_id, node=e.node)


@external
def settle_from_epoch(epoch_id: uint256, r: Receipt, signature: Bytes[65], proof_hash: bytes32,
                      merkle_proof: DynArray[bytes32, MAX_MERKLE]) -> bytes32:
    """
    @notice Mark a ZK receipt proven because its (receipt digest, proof hash) leaf is
            in an epoch committed by the node that signed it, and the epoch's
            challenge window passed without a successful challenge.
    @return The receipt digest.
    """
    e: Epoch = self.epochs[epoch_id]
    assert e.node != empty(address), "InferenceRegistry: unknown epoch"
    assert r.commitment == COMMIT_ZK, "InferenceRegistry: not a zk receipt"
    # only the signer's own epoch counts: nobody can vouch for another node's receipt
    assert self._signer(r, signature) == e.node, "InferenceRegistry: receipt not signed by the epoch's node"
    assert block.timestamp >= e.committed_at + self.challenge_window, "InferenceRegistry: epoch still challengeable"
    receipt: bytes32 = self._digest(r)
    assert not self.failed[receipt], "InferenceRegistry: receipt failed its challenge"
    cid: uint256 = self.challenged[receipt]
    assert cid == 0 or self.challenges[cid].state != 1, "InferenceRegistry: receipt under challenge"
    # OpenZeppelin StandardMerkleTree leaf, as proofmesh.crypto.merkle.leaf_hash builds it
    leaf: bytes32 = keccak256(concat(keccak256(abi_encode(receipt, proof_hash)), b""))
    assert mpv._verify(merkle_proof, e.root, leaf), "InferenceRegistry: leaf not in epoch root"
    if not self.proven[receipt]:
        self.proven[receipt] = True
        log SettledFromEpoch(receipt=receipt, epoch=epoch_id)
    return receipt


# --- proofs ---------------------------------------------------------------------

@internal
@view
def _check_proof(version: uint256, input_hash: bytes32, output_hash: bytes32,
                 proof: Bytes[MAX_PROOF], instances: DynArray[uint256, MAX_INSTANCES]) -> bool:
    """Does `proof` verify for the version's circuit with instances matching the receipt?"""
    c: Circuit = self.circuits[version]
    assert c.registered, "InferenceRegistry: no circuit for this model version"
    # the code at the verifier's address must still be the registered code (audit L6)
    assert c.verifier.codehash == c.verifier_codehash, "InferenceRegistry: verifier code changed"
    assert len(instances) >= 2, "InferenceRegistry: instances must hold the input hash and outputs"
    assert instances[0] == convert(input_hash, uint256), "InferenceRegistry: proof is for another input"
    outputs: DynArray[uint256, MAX_INSTANCES] = []
    for i: uint256 in range(1, MAX_INSTANCES):
        if i >= len(instances):
            break
        outputs.append(instances[i])
    assert keccak256(abi_encode(outputs)) == output_hash, "InferenceRegistry: proof is for another output"
    ok: bool = False
    res: Bytes[32] = b""
    # the generated verifier reverts on a bad proof: catch it as "invalid"
    ok, res = raw_call(c.verifier, abi_encode(proof, instances, method_id=VERIFY_SELECTOR),
                       max_outsize=32, is_static_call=True, revert_on_failure=False)
    return ok and len(res) == 32 and convert(res, uint256) == 1


@external
@view
def proof_ok(version: uint256, input_hash: bytes32, output_hash: bytes32, proof: Bytes[MAX_PROOF],
             instances: DynArray[uint256, MAX_INSTANCES]) -> bool:
    """
    @notice Does `proof` verify for the version's registered circuit (pinned verifier
            code) with instances committing to `input_hash` (instance 0) and
            `output_hash` (keccak of the others)? The arbiter settles circuit
            disputes with it, so every proof goes through this one check.
    """
    return self._check_proof(version, input_hash, output_hash, proof, instances)


@external
def submit_proof(r: Receipt, signature: Bytes[65], proof: Bytes[MAX_PROOF],
                 instances: DynArray[uint256, MAX_INSTANCES]) -> bytes32:
    """
    @notice Verify a proof for a node-signed ZK receipt on chain and mark the
            receipt proven (pays any conditional voucher on it). Anyone may call.
    @return The receipt digest.
    """
    assert r.commitment == COMMIT_ZK, "InferenceRegistry: not a zk receipt"
    signer: address = self._signer(r, signature)
    assert staticcall registry.has_role(signer, ROLE_INFERENCE), "InferenceRegistry: receipt not signed by a node"
    assert self._check_proof(r.version, r.input_hash, r.output_hash, proof, instances), \
        "InferenceRegistry: invalid proof"
    digest: bytes32 = self._digest(r)
    self.proven[digest] = True
    log ProofAccepted(receipt=digest, version=r.version, submitter=msg.sender, instances=len(instances))
    return digest


@external
def commit_challenge(commitment: bytes32):
    """
    @notice First step of a challenge (audit M8): commit to
            keccak256(abi_encode(sender, receipt digest, salt)); reveal with
            `challenge` in a later block.
    @param commitment The hash; it binds the sender, so nobody else can reveal it.
    """
    assert commitment != empty(bytes32) and self.commitments[commitment] == 0, "InferenceRegistry: commitment exists"
    self.commitments[commitment] = block.number
    log ChallengeCommitted(commitment=commitment, sender=msg.sender)


@external
def challenge(r: Receipt, signature: Bytes[65], salt: bytes32) -> uint256:
    """
    @notice Reveal a committed challenge of a node-signed ZK receipt: the node must
            submit a valid proof before `response_window` ends or be slashed. The
            caller locks `challenge_deposit` MESH (returned if the node fails, paid
            to the node if it proves), so challenging honest nodes costs money.
    @param salt The commitment's salt.
    @return The challenge id.
    """
    assert r.commitment == COMMIT_ZK, "InferenceRegistry: not a zk receipt"
    assert self.circuits[r.version].registered, "InferenceRegistry: no circuit for this model version"
    node: address = self._signer(r, signature)
    assert node != msg.sender, "InferenceRegistry: a node cannot challenge itself"
    assert self.service_bond[node] > 0, "InferenceRegistry: signer has no service bond"
    digest: bytes32 = self._digest(r)
    commitment: bytes32 = keccak256(abi_encode(msg.sender, digest, salt))
    committed: uint256 = self.commitments[commitment]
    assert committed != 0 and block.number > committed, "InferenceRegistry: no earlier commitment from this sender"
    self.commitments[commitment] = max_value(uint256)   # spent
    assert not self.proven[digest], "InferenceRegistry: receipt already proven"
    assert not self.failed[digest], "InferenceRegistry: receipt already failed"
    prev: uint256 = self.challenged[digest]
    assert prev == 0 or self.challenges[prev].state != 1, "InferenceRegistry: receipt already challenged"
    cid: uint256 = self.challenge_count + 1
    self.challenge_count = cid
    deadline: uint256 = block.timestamp + self.response_window
    dep: uint256 = self.challenge_deposit
    self.challenges[cid] = Challenge(node=node, challenger=msg.sender, receipt=digest, version=r.version,
                                     input_hash=r.input_hash, output_hash=r.output_hash, deposit=dep,
                                     deadline=deadline, state=1)
    self.challenged[digest] = cid
    self.open_cases[node] += 1
    self.total_deposits += dep
    log Challenged(challenge=cid, node=node, receipt=digest, challenger=msg.sender, deadline=deadline)
    if dep > 0:
        assert extcall token.transferFrom(msg.sender, self, dep, default_return_value=True), \
            "InferenceRegistry: deposit transfer failed"
    return cid


@external
def answer_challenge(challenge_id: uint256, proof: Bytes[MAX_PROOF], instances: DynArray[uint256, MAX_INSTANCES]):
    """
    @notice Answer an open challenge with a valid proof (anyone may relay it);
            the challenger's deposit goes to the node and the receipt is proven.
    """
    c: Challenge = self.challenges[challenge_id]
    assert c.state == 1, "InferenceRegistry: challenge not open"
    assert block.timestamp <= c.deadline, "InferenceRegistry: challenge deadline passed"
    assert self._check_proof(c.version, c.input_hash, c.output_hash, proof, instances), \
        "InferenceRegistry: invalid proof"
    self.challenges[challenge_id].state = 2
    self.open_cases[c.node] -= 1
    self.total_deposits -= c.deposit
    self.proven[c.receipt] = True
    log ChallengeAnswered(challenge=challenge_id, node=c.node, paid_to_node=c.deposit)
    log ProofAccepted(receipt=c.receipt, version=c.version, submitter=msg.sender, instances=len(instances))
    if c.deposit > 0:
        assert extcall token.transfer(c.node, c.deposit, default_return_value=True), \
            "InferenceRegistry: transfer failed"


@external
def expire_challenge(challenge_id: uint256) -> uint256:
    """
    @notice After the deadline of an unanswered challenge (anyone): slash the node,
            pay the challenger its deposit back plus the slash reward.
    @return The amount slashed.
    """
    c: Challenge = self.challenges[challenge_id]
    assert c.state == 1, "InferenceRegistry: challenge not open"
    assert block.timestamp > c.deadline, "InferenceRegistry: challenge still answerable"
    self.challenges[challenge_id].state = 3
    self.open_cases[c.node] -= 1
    self.total_deposits -= c.deposit
    self.failed[c.receipt] = True
    slashed: uint256 = 0
    paid: uint256 = 0
    slashed, paid = self._slash(c.node, c.challenger, self.slash_amount)
    log ChallengeExpired(challenge=challenge_id, node=c.node, slashed=slashed)
    if c.deposit > 0:
        assert extcall token.transfer(c.challenger, c.deposit, default_return_value=True), \
            "InferenceRegistry: transfer failed"
    return slashed
