# pragma version ~=0.4.3
"""
@title ModelRegistry
@notice The on-chain record of model versions: what the weights are (a Merkle root
        over per-tensor hashes), where they came from (parent version, base model of
        a LoRA adapter, training data batch roots, the compute job) and who owns them.
        A lineage is a name; the first account to register a version under a name
        owns it, and only that owner adds versions to it (directly, or through an
        authorised registrar such as the compute JobMarket acting on its behalf).
        Identical weights are registered once: a second registration reverts naming
        the existing version. Evaluation and release gating live in ModelEvaluation.
        A registrar reserves a job's result before it is public (audit L2): the
        lineage name is claimed for the job's owner when the job is posted
        (`reserve_name`), and a weights root is held for the job in the same
        transaction that first reveals it (`hold_root`). While the job can still
        settle, only that registrar may register the held root, and only for that job.
@dev Leaves of the weights tree are OpenZeppelin StandardMerkleTree leaves
     keccak256(keccak256(abi.encode(name, dtype, shape, sha256))), sorted-pair tree,
     so any single tensor can be proven with `verify_tensor`.
"""

from snekmate.auth import ownable
from snekmate.utils import merkle_proof_verification

initializes: ownable
exports: (ownable.owner, ownable.transfer_ownership)

KIND_FULL: public(constant(uint256)) = 0
KIND_LORA: public(constant(uint256)) = 1
MAX_BATCHES: constant(uint256) = 32
MAX_PROOF: constant(uint256) = 64
MAX_SHAPE: constant(uint256) = 8

struct Version:
    weights_root: bytes32
    name_id: bytes32
    parent: uint256
    base: uint256
    kind: uint256
    owner: address
    registrar: address
    job_id: uint256
    config_cid: String[128]
    manifest_cid: String[128]
    registered_block: uint256
    registered_at: uint256

# @notice Version records by id (ids start at 1; 0 means "none").
versions: public(HashMap[uint256, Version])
# @notice Number of versions registered (also the highest id).
version_count: public(uint256)
# @notice The version holding a weights root (0 if none).
version_of_root: public(HashMap[bytes32, uint256])
# @notice Owner of a lineage name (keccak256 of the name).
name_owner: public(HashMap[bytes32, address])
# @notice The human-readable name behind a name id.
name_of: public(HashMap[bytes32, String[64]])
# @notice Versions of a lineage, in registration order.
name_version_count: public(HashMap[bytes32, uint256])
name_version_at: public(HashMap[bytes32, HashMap[uint256, uint256]])
# @notice Direct children of a version (versions naming it as parent).
child_count: public(HashMap[uint256, uint256])
child_at: public(HashMap[uint256, HashMap[uint256, uint256]])
# @notice Contracts allowed to register versions on behalf of an owner.
is_registrar: public(HashMap[address, bool])
# @notice Where a version's weights can be fetched: the CID of its weights bundle (a
#         JSON list of file CIDs) in the nodes' blob stores, "" if never published.
#         Only a locator: fetchers re-hash every blob by CID and check the weights
#         root against `versions[id].weights_root` before trusting any byte.
weights_cid_of: public(HashMap[uint256, String[128]])

_batches: HashMap[uint256, DynArray[bytes32, MAX_BATCHES]]

struct Hold:
    registrar: address
    job_id: uint256

# @notice The job a registrar holds a weights root for (see `hold_root`); a hold lapses
#         once the registrar reports the job closed (`job_open`) or loses its role.
root_hold: public(HashMap[bytes32, Hold])


interface IRegistrar:
    def job_open(job_id: uint256) -> bool: view

event VersionRegistered:
    version_id: indexed(uint256)
    name_id: indexed(bytes32)
    parent: indexed(uint256)
    weights_root: bytes32
    owner: address
    registrar: address
    kind: uint256
    base: uint256
    job_id: uint256
    data_batches: DynArray[bytes32, MAX_BATCHES]
    config_cid: String[128]
    manifest_cid: String[128]

event NameClaimed:
    name_id: indexed(bytes32)
    owner: indexed(address)
    name: String[64]

event WeightsPublished:
    version_id: indexed(uint256)
    publisher: indexed(address)
    weights_cid: String[128]

event RegistrarSet:
    registrar: indexed(address)
    allowed: bool

event RootHeld:
    weights_root: indexed(bytes32)
    registrar: indexed(address)
    job_id: indexed(uint256)


@deploy
def __init__():
    """
    @notice Deploy an empty registry owned by the deployer (later: Governance).
    """
    ownable.__init__()


@external
def set_registrar(registrar: address, allowed: bool):
    """
    @notice Allow or forbid a contract (e.g. the compute JobMarket) to register versions
            on behalf of their owners. Only the owner (Governance) may call.
    @param registrar The contract address.
    @param allowed True to allow, False to revoke.
    """
    ownable._check_owner()
    assert registrar != empty(address), "ModelRegistry: registrar is the zero address"
    self.is_registrar[registrar] = allowed
    log RegistrarSet(registrar=registrar, allowed=allowed)


@external
def register(name: String[64], weights_root: bytes32, parent: uint256, kind: uint256, base: uint256,
             data_batches: DynArray[bytes32, MAX_BATCHES], job_id: uint256,
             config_cid: String[128], manifest_cid: String[128]) -> uint256:
    """
    @notice Register a model version owned by the caller.
    @param name Lineage name (1-64 bytes); claimed by the caller if new.
    @param weights_root Merkle root over the per-tensor hashes (non-zero, unique).
    @param parent Parent version id, or 0 for a root version.
    @param kind KIND_FULL (0) or KIND_LORA (1).
    @param base For KIND_LORA, the base model version the adapter applies to; else 0.
    @param data_batches Roots/ids of the training data batches (data capability).
    @param job_id Compute job that produced the weights, or 0.
    @param config_cid CID of the training/model config blob (may be empty).
    @param manifest_cid CID of the per-tensor manifest (lets anyone name a differing tensor).
    @return The new version id.
    """
    return self._register(msg.sender, name, weights_root, parent, kind, base, data_batches, job_id,
                          config_cid, manifest_cid)


@external
def register_for(owner: address, name: String[64], weights_root: bytes32, parent: uint256, kind: uint256,
                 base: uint256, data_batches: DynArray[bytes32, MAX_BATCHES], job_id: uint256,
                 config_cid: String[128], manifest_cid: String[128]) -> uint256:
    """
    @notice Register a version on behalf of `owner`; only an authorised registrar
            (e.g. the JobMarket settling a fine-tuning job) may call.
    @param owner The account that will own the version (must own the lineage name, if claimed).
    @param name Lineage name.
    @param weights_root Merkle root over the per-tensor hashes.
    @param parent Parent version id, or 0.
    @param kind KIND_FULL or KIND_LORA.
    @param base Base version for LoRA, else 0.
    @param data_batches Training data batch roots.
    @param job_id The compute job id.
    @param config_cid Config blob CID.
    @param manifest_cid Manifest blob CID.
    @return The new version id.
    """
    assert self.is_registrar[msg.sender], "ModelRegistry: caller is not a registrar"
    assert owner != empty(address), "ModelRegistry: owner is the zero address"
    return self._register(owner, name, weights_root, parent, kind, base, data_batches, job_id,
                          config_cid, manifest_cid)


@external
def reserve_name(owner: address, name: String[64]) -> bytes32:
    """
    @notice Claim a lineage name for `owner` ahead of a registration a registrar will
            make for it (the JobMarket calls this when a job is posted), so nobody
            can take the name between the job's post and its settlement. No-op if
            `owner` already owns it; reverts if another account does. Registrars only.
    @param owner The account the name is claimed for (the job's poster).
    @param name Lineage name (1-64 bytes).
    @return keccak256 of the name.
    """
    assert self.is_registrar[msg.sender], "ModelRegistry: caller is not a registrar"
    assert owner != empty(address), "ModelRegistry: owner is the zero address"
    return self._claim_name(owner, name)


@external
def hold_root(weights_root: bytes32, job_id: uint256) -> bool:
    """
    @notice Hold a weights root for a registrar's job while the job can still settle:
            `register` of that root reverts, and `register_for` accepts it only from
            this registrar for this job. The registrar calls this in the transaction
            that first makes the root public (a reveal or an optimistic submission), so
            nobody can register it first. No-op (returns False) if the root is
            registered already or held for a job that is still open.
    @param weights_root The revealed weights root (non-zero).
    @param job_id The registrar's job id.
    @return True if the root is now held for this job.
    """
    assert self.is_registrar[msg.sender], "ModelRegistry: caller is not a registrar"
    assert weights_root != empty(bytes32), "ModelRegistry: empty weights root"
    if self.version_of_root[weights_root] != 0:
        return False
    h: Hold = self._live_hold(weights_root)
    if h.registrar != empty(address):
        return h.registrar == msg.sender and h.job_id == job_id
    self.root_hold[weights_root] = Hold(registrar=msg.sender, job_id=job_id)
    log RootHeld(weights_root=weights_root, registrar=msg.sender, job_id=job_id)
    return True


@external
def publish_weights(version_id: uint256, weights_cid: String[128]):
    """
    @notice Say where a version's weights can be fetched (the CID of its weights
            bundle, served by the owner's node). Only the version's owner; may be
            updated (e.g. after moving the weights to another node).
    @param version_id The version.
    @param weights_cid CID of the weights bundle (non-empty).
    """
    assert version_id != 0 and version_id <= self.version_count, "ModelRegistry: version does not exist"
    assert self.versions[version_id].owner == msg.sender, "ModelRegistry: caller does not own the version"
    assert len(weights_cid) > 0, "ModelRegistry: empty weights CID"
    self.weights_cid_of[version_id] = weights_cid
    log WeightsPublished(version_id=version_id, publisher=msg.sender, weights_cid=weights_cid)


@internal
def _register(owner: address, name: String[64], weights_root: bytes32, parent: uint256, kind: uint256,
              base: uint256, data_batches: DynArray[bytes32, MAX_BATCHES], job_id: uint256,
              config_cid: String[128], manifest_cid: String[128]) -> uint256:
    assert weights_root != empty(bytes32), "ModelRegistry: empty weights root"
    existing: uint256 = self.version_of_root[weights_root]
    assert existing == 0, concat("ModelRegistry: duplicate weights, already version ", uint2str(existing))
    h: Hold = self.root_hold[weights_root]
    if h.registrar != empty(address):
        # Only the holding registrar, for the job it holds the root for, may register a
        # held root while that job is open; anyone may once the job has closed.
        if h.registrar != msg.sender or h.job_id != job_id:
            h = self._live_hold(weights_root)
            assert h.registrar == empty(address), concat(
                "ModelRegistry: weights held for compute job ", uint2str(h.job_id), " until it closes")
        self.root_hold[weights_root] = empty(Hold)
    assert parent <= self.version_count, "ModelRegistry: parent version does not exist"
    if kind == KIND_LORA:
        assert base != 0 and base <= self.version_count, "ModelRegistry: LoRA base version does not exist"
        assert self.versions[base].kind == KIND_FULL, "ModelRegistry: LoRA base must be a full model"
    else:
        assert kind == KIND_FULL, "ModelRegistry: kind must be 0 (full) or 1 (lora)"
        assert base == 0, "ModelRegistry: only a LoRA adapter has a base"
    name_id: bytes32 = self._claim_name(owner, name)

    vid: uint256 = self.version_count + 1
    self.version_count = vid
    self.versions[vid] = Version(
        weights_root=weights_root, name_id=name_id, parent=parent, base=base, kind=kind,
        owner=owner, registrar=msg.sender, job_id=job_id, config_cid=config_cid,
        manifest_cid=manifest_cid, registered_block=block.number, registered_at=block.timestamp)
    self.version_of_root[weights_root] = vid
    self._batches[vid] = data_batches
    n: uint256 = self.name_version_count[name_id]
    self.name_version_at[name_id][n] = vid
    self.name_version_count[name_id] = n + 1
    if parent != 0:
        c: uint256 = self.child_count[parent]
        self.child_at[parent][c] = vid
        self.child_count[parent] = c + 1
    log VersionRegistered(version_id=vid, name_id=name_id, parent=parent, weights_root=weights_root,
                          owner=owner, registrar=msg.sender, kind=kind, base=base, job_id=job_id,
                          data_batches=data_batches, config_cid=config_cid, manifest_cid=manifest_cid)
    return vid


@internal
def _claim_name(owner: address, name: String[64]) -> bytes32:
    assert len(name) > 0, "ModelRegistry: empty name"
    name_id: bytes32 = keccak256(name)
    current: address = self.name_owner[name_id]
    if current == empty(address):
        self.name_owner[name_id] = owner
        self.name_of[name_id] = name
        log NameClaimed(name_id=name_id, owner=owner, name=name)
    else:
        assert current == owner, "ModelRegistry: name is owned by another account"
    return name_id


@view
@internal
def _live_hold(weights_root: bytes32) -> Hold:
    # A hold binds only while its registrar still has the role and says the job may
    # still settle: a refunded job, or a replica's rejected root, frees the root.
    # The call reverts on failure rather than reading failure as "closed": a caller
    # who starved it of gas would otherwise slip past the hold.
    h: Hold = self.root_hold[weights_root]
    if h.registrar == empty(address) or not self.is_registrar[h.registrar]:
        return empty(Hold)
    if not staticcall IRegistrar(h.registrar).job_open(h.job_id):
        return empty(Hold)
    return h


# ---------------------------------------------------------------- views

@view
@external
def hold_of(weights_root: bytes32) -> (address, uint256):
    """
    @notice The registrar and job a weights root is held for, if that hold still binds.
    @param weights_root The weights root.
    @return (registrar, job id), or (zero address, 0) when anyone may register the root.
    """
    h: Hold = self._live_hold(weights_root)
    return h.registrar, h.job_id


@view
@external
def data_batches_of(version_id: uint256) -> DynArray[bytes32, MAX_BATCHES]:
    """
    @notice The training data batch roots of a version.
    @param version_id The version.
    @return The batch roots, in registration order.
    """
    return self._batches[version_id]


@view
@external
def exists(version_id: uint256) -> bool:
    """
    @notice Whether a version id has been registered.
    @param version_id The version.
    @return True if registered.
    """
    return version_id != 0 and version_id <= self.version_count


@view
@external
def parent_of(version_id: uint256) -> uint256:
    """
    @notice Parent of a version (0 for a root).
    @param version_id The version.
    @return The parent id.
    """
    return self.versions[version_id].parent


@view
@external
def owner_of(version_id: uint256) -> address:
    """
    @notice Owner of a version.
    @param version_id The version.
    @return The owner (zero address if unknown).
    """
    return self.versions[version_id].owner


@view
@external
def name_id_of(version_id: uint256) -> bytes32:
    """
    @notice Lineage (name id) of a version.
    @param version_id The version.
    @return keccak256 of the lineage name.
    """
    return self.versions[version_id].name_id


@view
@external
def registered_block_of(version_id: uint256) -> uint256:
    """
    @notice Block in which a version was registered.
    @param version_id The version.
    @return The block number (0 if unknown).
    """
    return self.versions[version_id].registered_block


@view
@external
def tensor_leaf(name: String[256], dtype: String[16], shape: DynArray[uint256, MAX_SHAPE],
                tensor_sha256: bytes32) -> bytes32:
    """
    @notice The Merkle leaf of one tensor, as the off-chain weights root computes it.
    @param name Tensor name.
    @param dtype safetensors dtype string, e.g. "F32".
    @param shape Tensor shape.
    @param tensor_sha256 sha256 of the tensor's raw bytes.
    @return keccak256(keccak256(abi.encode(name, dtype, shape, tensor_sha256))).
    """
    return keccak256(keccak256(abi_encode(name, dtype, shape, tensor_sha256)))


@view
@external
def verify_tensor(version_id: uint256, name: String[256], dtype: String[16],
                  shape: DynArray[uint256, MAX_SHAPE], tensor_sha256: bytes32,
                  proof: DynArray[bytes32, MAX_PROOF]) -> bool:
    """
    @notice Check that a version's weights contain exactly this tensor.
    @param version_id The version.
    @param name Tensor name.
    @param dtype safetensors dtype string.
    @param shape Tensor shape.
    @param tensor_sha256 sha256 of the tensor's raw bytes.
    @param proof Sorted-pair Merkle proof from the leaf to the version's weights root.
    @return True if the proof is valid for the registered root.
    """
    root: bytes32 = self.versions[version_id].weights_root
    if root == empty(bytes32):
        return False
    leaf: bytes32 = keccak256(keccak256(abi_encode(name, dtype, shape, tensor_sha256)))
    return merkle_proof_verification._verify(proof, root, leaf)
