# pragma version ~=0.4.3
"""
@title DataRegistry
@notice Data sources with unique IDs, deduplicated batches committed as position-indexed
        Merkle roots, validator attestations, duplicate fraud proofs, takedowns, and
        rewards per unique token from Emission pool DATA.
@dev Lifecycle of a batch:
     1. The source owner publishes (root, record count, token count, manifest and records
        CIDs). A bond of max(min_batch_bond, record_count * bond_per_record) of the
        publisher's NodeRegistry stake is locked.
     2. Once the block after publication exists, anyone draws the validator committee:
        up to `committee_size` DATA_VALIDATOR nodes, sampled stake-weighted without
        replacement from the active nodes and stakes snapshotted at publication,
        with the hash of that block as seed (unknown when the batch was
        published). Committee members fetch the records at `sample_index(batch, i)`,
        check them against the root, and sign an EIP-712 Attestation (availability,
        quality score, share of near-duplicates they found); anyone submits it.
     3. During the challenge window, anyone proves a duplicate: the same record hash at
        two positions (two batches, or twice in one). Commit-reveal: the commitment binds
        the sender, so a revealed proof cannot be stolen from the mempool. The later
        position loses its share of the reward and the later batch's bond pays the
        challenger: NodeRegistry burns `slash_burn_bps` and pays the rest, so the bounty is
        never larger than the slash and challenging oneself loses money.
     4. After the window `finalize` releases the remaining bond and, with a quorum of
        available attestations and a live source, pays
        token_count * reward_per_token * live_records / record_count * quality * (1 - dup vote).
     Leaves: keccak256(keccak256(abi_encode(index, record_hash))) (OpenZeppelin
     StandardMerkleTree of (uint256, bytes32)), sorted-pair inner nodes; the position is
     inside the leaf, so a root commits to where each record sits and a repeat inside one
     batch is provable.
"""

from snekmate.auth import ownable
from snekmate.utils import eip712_domain_separator as eip712
from snekmate.utils import merkle_proof_verification as merkle
from interfaces import INodeRegistry
from interfaces import IEmission


interface INodeRegistryParams:
    def max_challenge_window() -> uint256: view

initializes: ownable
initializes: eip712

exports: (
    ownable.owner,
    ownable.transfer_ownership,
    eip712.eip712Domain,
)

DATA_VALIDATOR_ROLE: public(constant(uint256)) = 1
DATA_POOL: public(constant(uint256)) = 0
MAX_COMMITTEE: constant(uint256) = 16
MAX_SCAN: constant(uint256) = 256
MAX_PROOF: constant(uint256) = 64
SAMPLE_SIZE: public(constant(uint256)) = 16
BPS: constant(uint256) = 10_000
_MAX_S: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168
# @notice Upper bound on the average declared tokens per record.
MAX_TOKENS_PER_RECORD: public(constant(uint256)) = 1_000_000
ATTESTATION_TYPEHASH: public(constant(bytes32)) = keccak256(
    "Attestation(uint256 batchId,bytes32 root,uint256 tokenCount,bool available,uint16 qualityBps,uint16 duplicateBps,uint256 deadline)"
)

struct Source:
    owner: address
    uri: String[256]
    license: String[64]
    description: String[256]
    created_at: uint256
    withdrawn: bool

struct Batch:
    source_id: uint256
    contributor: address
    root: bytes32
    record_count: uint256
    token_count: uint256
    manifest_cid: String[96]
    records_cid: String[96]
    published_at: uint256
    publish_block: uint256
    bond: uint256
    duplicates: uint256
    taken_down: uint256
    seed: bytes32
    attestations: uint256
    available_votes: uint256
    quality_sum: uint256
    duplicate_vote_sum: uint256
    finalized: bool
    reward: uint256

event SourceRegistered:
    source_id: indexed(uint256)
    owner: indexed(address)
    uri_hash: indexed(bytes32)
    uri: String[256]
    license: String[64]

event SourceWithdrawn:
    source_id: indexed(uint256)
    owner: indexed(address)
    reason: String[256]

event BatchPublished:
    batch_id: indexed(uint256)
    source_id: indexed(uint256)
    contributor: indexed(address)
    root: bytes32
    record_count: uint256
    token_count: uint256
    manifest_cid: String[96]
    records_cid: String[96]
    bond: uint256

event CommitteeDrawn:
    batch_id: indexed(uint256)
    seed: bytes32
    members: DynArray[address, MAX_COMMITTEE]

event Attested:
    batch_id: indexed(uint256)
    validator: indexed(address)
    available: bool
    quality_bps: uint16
    duplicate_bps: uint16

event CandidatesSnapshot:
    batch_id: indexed(uint256)
    count: uint256
    total_stake: uint256

event SeedRecommitted:
    batch_id: indexed(uint256)
    seed_block: uint256

event ProofCommitted:
    commitment: indexed(bytes32)
    sender: indexed(address)

event DuplicateProven:
    batch_id: indexed(uint256)
    index: indexed(uint256)
    record_hash: indexed(bytes32)
    earlier_batch: uint256
    earlier_index: uint256
    challenger: address
    burned: uint256
    paid: uint256

event RecordTakenDown:
    batch_id: indexed(uint256)
    index: indexed(uint256)
    record_hash: indexed(bytes32)
    reason: String[256]

event BatchFinalized:
    batch_id: indexed(uint256)
    contributor: indexed(address)
    reward: uint256
    bond_released: uint256

event ParametersChanged:
    challenge_window: uint256
    min_batch_bond: uint256
    bond_per_record: uint256
    duplicate_slash: uint256
    reward_per_token: uint256
    committee_size: uint256

node_registry: public(immutable(INodeRegistry))
emission: public(immutable(IEmission))

challenge_window: public(uint256)
min_batch_bond: public(uint256)
bond_per_record: public(uint256)
duplicate_slash: public(uint256)
reward_per_token: public(uint256)
committee_size: public(uint256)

source_count: public(uint256)
sources: public(HashMap[uint256, Source])
source_id_of: public(HashMap[bytes32, uint256])       # keccak256(uri) -> id (0 = none)
batch_count: public(uint256)
batches: public(HashMap[uint256, Batch])
committee: HashMap[uint256, DynArray[address, MAX_COMMITTEE]]
attested: public(HashMap[uint256, HashMap[address, bool]])
duplicate_at: public(HashMap[uint256, HashMap[uint256, bool]])   # batch -> index -> proven
taken_down_at: public(HashMap[uint256, HashMap[uint256, bool]])
tombstone: public(HashMap[bytes32, bool])             # record_hash -> withdrawn by its owner
commitments: public(HashMap[bytes32, uint256])         # commitment -> block number
# @notice Committee candidates and their stakes, fixed when the batch is published
#         (before the seed exists), so nobody can join or stake after seeing the seed.
snapshot_nodes: HashMap[uint256, DynArray[address, MAX_SCAN]]
snapshot_stakes: HashMap[uint256, DynArray[uint256, MAX_SCAN]]
# @notice Block whose hash seeds the draw (publish block + 1, or a later re-commit).
seed_block_of: public(HashMap[uint256, uint256])


@deploy
def __init__(node_registry_: address, emission_: address, challenge_window_: uint256,
             min_batch_bond_: uint256, bond_per_record_: uint256, duplicate_slash_: uint256,
             reward_per_token_: uint256, committee_size_: uint256):
    """
    @param node_registry_ NodeRegistry (bonds, slashing, validator roles and stake).
    @param emission_ Emission (pool DATA pays rewards).
    @param challenge_window_ Seconds after publication for fraud proofs and attestations
           (1..NodeRegistry.max_challenge_window).
    @param min_batch_bond_ Smallest bond locked per batch.
    @param bond_per_record_ Bond per record (so large batches risk more).
    @param duplicate_slash_ Slash per proven duplicate (capped by the remaining bond).
    @param reward_per_token_ Reward per unique token, before quality scaling.
    @param committee_size_ Validators drawn per batch (1..16).
    """
    ownable.__init__()
    eip712.__init__("proofmesh DataRegistry", "1")
    node_registry = INodeRegistry(node_registry_)
    emission = IEmission(emission_)
    self._set_params(challenge_window_, min_batch_bond_, bond_per_record_, duplicate_slash_,
                     reward_per_token_, committee_size_,
                     staticcall INodeRegistryParams(node_registry_).max_challenge_window())


@external
def set_params(challenge_window_: uint256, min_batch_bond_: uint256, bond_per_record_: uint256,
               duplicate_slash_: uint256, reward_per_token_: uint256, committee_size_: uint256):
    """
    @notice Change the economic parameters (owner = Governance timelock only).
    @param challenge_window_ Seconds for fraud proofs and attestations (1..NodeRegistry.max_challenge_window).
    @param min_batch_bond_ Smallest bond per batch.
    @param bond_per_record_ Bond per record.
    @param duplicate_slash_ Slash per proven duplicate.
    @param reward_per_token_ Reward per unique token.
    @param committee_size_ Validators per batch.
    """
    ownable._check_owner()
    self._set_params(challenge_window_, min_batch_bond_, bond_per_record_, duplicate_slash_,
                     reward_per_token_, committee_size_,
                     staticcall INodeRegistryParams(node_registry.address).max_challenge_window())


@internal
def _set_params(challenge_window_: uint256, min_batch_bond_: uint256, bond_per_record_: uint256,
                duplicate_slash_: uint256, reward_per_token_: uint256, committee_size_: uint256,
                max_window: uint256):
    assert challenge_window_ > 0, "DataRegistry: zero challenge window"
    # Bonds must not be able to unbond in NodeRegistry before a fraud proof can still land.
    assert challenge_window_ <= max_window, "DataRegistry: challenge window too long"
    assert min_batch_bond_ > 0, "DataRegistry: zero bond"
    assert duplicate_slash_ > 0, "DataRegistry: zero duplicate slash"
    assert committee_size_ > 0 and committee_size_ <= MAX_COMMITTEE, "DataRegistry: committee size out of range"
    self.challenge_window = challenge_window_
    self.min_batch_bond = min_batch_bond_
    self.bond_per_record = bond_per_record_
    self.duplicate_slash = duplicate_slash_
    self.reward_per_token = reward_per_token_
    self.committee_size = committee_size_
    log ParametersChanged(challenge_window=challenge_window_, min_batch_bond=min_batch_bond_,
                          bond_per_record=bond_per_record_, duplicate_slash=duplicate_slash_,
                          reward_per_token=reward_per_token_, committee_size=committee_size_)


# ------------------------------------------------------------------------- sources

@external
def register_source(uri: String[256], license: String[64], description: String[256]) -> uint256:
    """
    @notice Register a data source; its URI can be registered only once, by anyone.
    @param uri Where the data comes from (URL, DOI, path); unique across the network.
    @param license SPDX licence identifier.
    @param description Free text.
    @return The new source ID (from 1).
    """
    assert len(uri) > 0, "DataRegistry: empty uri"
    assert len(license) > 0, "DataRegistry: empty license"
    h: bytes32 = keccak256(uri)
    existing: uint256 = self.source_id_of[h]
    assert existing == 0, concat("DataRegistry: source already registered as #", uint2str(existing))
    sid: uint256 = self.source_count + 1
    self.source_count = sid
    self.source_id_of[h] = sid
    self.sources[sid] = Source(owner=msg.sender, uri=uri, license=license, description=description,
                               created_at=block.timestamp, withdrawn=False)
    log SourceRegistered(source_id=sid, owner=msg.sender, uri_hash=h, uri=uri, license=license)
    return sid


@external
def withdraw_source(source_id: uint256, reason: String[256]):
    """
    @notice Take a whole source down (licence problem, personal data): its batches stop
            earning and nodes delete its content. The registration stays as a tombstone.
    @param source_id The source.
    @param reason Why (public).
    """
    s: Source = self.sources[source_id]
    assert s.owner != empty(address), "DataRegistry: unknown source"
    assert s.owner == msg.sender, "DataRegistry: not the source owner"
    assert not s.withdrawn, "DataRegistry: source already withdrawn"
    self.sources[source_id].withdrawn = True
    log SourceWithdrawn(source_id=source_id, owner=msg.sender, reason=reason)


# ------------------------------------------------------------------------- batches

@external
def publish_batch(source_id: uint256, root: bytes32, record_count: uint256, token_count: uint256,
                  manifest_cid: String[96], records_cid: String[96]) -> uint256:
    """
    @notice Publish a deduplicated batch of the caller's source and lock its bond.
    @param source_id A live source owned by the caller.
    @param root Merkle root of leaves (index, record_hash), index = 0..record_count-1.
    @param record_count Number of records (leaves).
    @param token_count Tokens of records long enough to earn (checked by validators).
    @param manifest_cid CID of the dedup manifest in the store.
    @param records_cid CID of the records file in the store.
    @return The new batch ID (from 1).
    """
    s: Source = self.sources[source_id]
    assert s.owner != empty(address), "DataRegistry: unknown source"
    assert s.owner == msg.sender, "DataRegistry: not the source owner"
    assert not s.withdrawn, "DataRegistry: source withdrawn"
    assert root != empty(bytes32), "DataRegistry: zero root"
    assert record_count > 0, "DataRegistry: empty batch"
    # Rewards scale with token_count; validators recount it from the records and sign
    # over it (see attest), and this bound caps the damage of a colluding committee.
    assert token_count <= record_count * MAX_TOKENS_PER_RECORD, "DataRegistry: token count above the per-record bound"
    assert len(records_cid) > 0, "DataRegistry: missing records cid"
    assert len(manifest_cid) > 0, "DataRegistry: missing manifest cid"
    bond: uint256 = max(self.min_batch_bond, record_count * self.bond_per_record)
    bid: uint256 = self.batch_count + 1
    self.batch_count = bid
    self.batches[bid] = Batch(source_id=source_id, contributor=msg.sender, root=root,
                              record_count=record_count, token_count=token_count,
                              manifest_cid=manifest_cid, records_cid=records_cid,
                              published_at=block.timestamp, publish_block=block.number, bond=bond,
                              duplicates=0, taken_down=0, seed=empty(bytes32), attestations=0,
                              available_votes=0, quality_sum=0, duplicate_vote_sum=0,
                              finalized=False, reward=0)
    log BatchPublished(batch_id=bid, source_id=source_id, contributor=msg.sender, root=root,
                       record_count=record_count, token_count=token_count,
                       manifest_cid=manifest_cid, records_cid=records_cid, bond=bond)
    self._snapshot(bid, msg.sender)
    self.seed_block_of[bid] = block.number + 1
    extcall node_registry.lock_bond(msg.sender, bond)
    return bid


@view
@external
def verify_record(batch_id: uint256, index: uint256, record_hash: bytes32,
                  proof: DynArray[bytes32, MAX_PROOF]) -> bool:
    """
    @notice Whether `record_hash` sits at `index` of the batch's root.
    @param batch_id The batch.
    @param index Position of the record.
    @param record_hash BLAKE3 hash of the normalised record text.
    @param proof Sorted-pair Merkle proof.
    @return True when the proof is valid.
    """
    b: Batch = self.batches[batch_id]
    if b.root == empty(bytes32) or index >= b.record_count:
        return False
    return merkle._verify(proof, b.root, self._leaf(index, record_hash))


@pure
@internal
def _leaf(index: uint256, record_hash: bytes32) -> bytes32:
    return keccak256(keccak256(abi_encode(index, record_hash)))


@internal
def _check_leaf(batch_id: uint256, index: uint256, record_hash: bytes32,
                proof: DynArray[bytes32, MAX_PROOF]) -> Batch:
    b: Batch = self.batches[batch_id]
    assert b.root != empty(bytes32), "DataRegistry: unknown batch"
    assert index < b.record_count, "DataRegistry: index out of range"
    assert merkle._verify(proof, b.root, self._leaf(index, record_hash)), "DataRegistry: invalid Merkle proof"
    return b


# ---------------------------------------------------------------- validator committee

@internal
def _snapshot(batch_id: uint256, exclude: address):
    """Record the active DATA_VALIDATORs (staked >= min_stake) and their stakes now."""
    cands: DynArray[address, MAX_SCAN] = []
    weights: DynArray[uint256, MAX_SCAN] = []
    total: uint256 = 0
    n: uint256 = min(staticcall node_registry.active_count(), MAX_SCAN)
    for i: uint256 in range(n, bound=MAX_SCAN):
        node: address = staticcall node_registry.active_at(i)
        if node == exclude or node == empty(address):
            continue
        if not staticcall node_registry.has_role(node, DATA_VALIDATOR_ROLE):
            continue
        if not staticcall node_registry.is_active(node):
            continue
        w: uint256 = staticcall node_registry.stake_of(node)
        if w == 0:
            continue
        cands.append(node)
        weights.append(w)
        total += w
    self.snapshot_nodes[batch_id] = cands
    self.snapshot_stakes[batch_id] = weights
    log CandidatesSnapshot(batch_id=batch_id, count=len(cands), total_stake=total)


@external
def draw_committee(batch_id: uint256):
    """
    @notice Fix the batch's validator committee from the hash of the block after its
            publication (unknown to the publisher when it published), among the
            candidates snapshotted at publication. If that hash is no longer available
            (more than 256 blocks old), re-commit to the next block instead (emits
            SeedRecommitted; call again once it is mined).
    @param batch_id The batch.
    """
    b: Batch = self.batches[batch_id]
    assert b.root != empty(bytes32), "DataRegistry: unknown batch"
    assert b.seed == empty(bytes32), "DataRegistry: committee already drawn"
    seed_block: uint256 = self.seed_block_of[batch_id]
    assert block.number > seed_block, "DataRegistry: wait one block after publication"
    if block.number - seed_block > 256:
        # blockhash only reaches 256 blocks back: commit to a future block, never to one
        # the caller could have timed
        self.seed_block_of[batch_id] = block.number + 1
        log SeedRecommitted(batch_id=batch_id, seed_block=block.number + 1)
        return
    seed: bytes32 = keccak256(abi_encode(blockhash(seed_block), batch_id))
    members: DynArray[address, MAX_COMMITTEE] = self._sample(seed, batch_id)
    self.batches[batch_id].seed = seed
    self.committee[batch_id] = members
    log CommitteeDrawn(batch_id=batch_id, seed=seed, members=members)


@view
@internal
def _sample(seed: bytes32, batch_id: uint256) -> DynArray[address, MAX_COMMITTEE]:
    """Stake-weighted sampling without replacement among the batch's snapshot."""
    cands: DynArray[address, MAX_SCAN] = self.snapshot_nodes[batch_id]
    weights: DynArray[uint256, MAX_SCAN] = self.snapshot_stakes[batch_id]
    total: uint256 = 0
    for w: uint256 in weights:
        total += w
    out: DynArray[address, MAX_COMMITTEE] = []
    k: uint256 = min(self.committee_size, len(cands))
    for j: uint256 in range(k, bound=MAX_COMMITTEE):
        r: uint256 = convert(keccak256(abi_encode(seed, j)), uint256) % total
        acc: uint256 = 0
        for i: uint256 in range(len(cands), bound=MAX_SCAN):
            if weights[i] == 0:
                continue
            acc += weights[i]
            if r < acc:
                out.append(cands[i])
                total -= weights[i]
                weights[i] = 0
                break
    return out


@view
@external
def committee_of(batch_id: uint256) -> DynArray[address, MAX_COMMITTEE]:
    """
    @notice The batch's validator committee (empty until drawn).
    @param batch_id The batch.
    @return Committee members.
    """
    return self.committee[batch_id]


@view
@external
def sample_index(batch_id: uint256, i: uint256) -> uint256:
    """
    @notice The i-th record position validators must fetch and check (i < SAMPLE_SIZE).
    @param batch_id The batch (committee drawn).
    @param i Sample number.
    @return A position in 0..record_count-1.
    """
    b: Batch = self.batches[batch_id]
    assert b.seed != empty(bytes32), "DataRegistry: committee not drawn"
    return convert(keccak256(abi_encode(b.seed, i, "sample")), uint256) % b.record_count


@external
def attest(batch_id: uint256, validator: address, available: bool, quality_bps: uint16,
           duplicate_bps: uint16, deadline: uint256, v: uint8, r: bytes32, s: bytes32):
    """
    @notice Submit a committee member's EIP-712 signed attestation (anyone may relay it).
    @param batch_id The batch.
    @param validator The signing committee member.
    @param available Whether the sampled records were fetched and matched the root.
    @param quality_bps Quality score 0..10000.
    @param duplicate_bps Share of sampled records the validator judged near-duplicates
           of earlier data (settles near-duplicate disputes that no on-chain proof can).
    @param deadline Signature expiry (unix seconds).
    @param v Signature v (27/28).
    @param r Signature r.
    @param s Signature s (low half only).
    """
    b: Batch = self.batches[batch_id]
    assert b.seed != empty(bytes32), "DataRegistry: committee not drawn"
    assert not b.finalized, "DataRegistry: batch finalized"
    assert block.timestamp < b.published_at + self.challenge_window, "DataRegistry: attestation window over"
    assert block.timestamp <= deadline, "DataRegistry: attestation expired"
    assert convert(quality_bps, uint256) <= BPS and convert(duplicate_bps, uint256) <= BPS, "DataRegistry: bps out of range"
    assert validator in self.committee[batch_id], "DataRegistry: not on the committee"
    assert not self.attested[batch_id][validator], "DataRegistry: already attested"
    assert convert(s, uint256) <= _MAX_S and (v == 27 or v == 28), "DataRegistry: malleable signature"
    digest: bytes32 = eip712._hash_typed_data_v4(keccak256(abi_encode(
        ATTESTATION_TYPEHASH, batch_id, b.root, b.token_count, available, quality_bps, duplicate_bps, deadline)))
    signer: address = ecrecover(digest, v, r, s)
    assert signer != empty(address) and signer == validator, "DataRegistry: signature is not the validator's"
    self.attested[batch_id][validator] = True
    self.batches[batch_id].attestations += 1
    if available:
        self.batches[batch_id].available_votes += 1
        self.batches[batch_id].quality_sum += convert(quality_bps, uint256)
        self.batches[batch_id].duplicate_vote_sum += convert(duplicate_bps, uint256)
    log Attested(batch_id=batch_id, validator=validator, available=available,
                 quality_bps=quality_bps, duplicate_bps=duplicate_bps)


# ------------------------------------------------------------ duplicate fraud proofs

@external
def commit_proof(commitment: bytes32):
    """
    @notice First step of a duplicate proof: commit to
            keccak256(abi_encode(sender, batch_a, index_a, batch_b, index_b, record_hash, salt)).
    @param commitment The hash; it binds the sender, so nobody else can reveal it.
    """
    assert commitment != empty(bytes32), "DataRegistry: empty commitment"
    assert self.commitments[commitment] == 0, "DataRegistry: commitment exists"
    self.commitments[commitment] = block.number
    log ProofCommitted(commitment=commitment, sender=msg.sender)


@external
def reveal_duplicate(batch_a: uint256, index_a: uint256, proof_a: DynArray[bytes32, MAX_PROOF],
                     batch_b: uint256, index_b: uint256, proof_b: DynArray[bytes32, MAX_PROOF],
                     record_hash: bytes32, salt: bytes32):
    """
    @notice Prove that `record_hash` sits at (batch_a, index_a) and again at the later
            position (batch_b, index_b). The later position loses its reward share and the
            later batch's bond pays the challenger (minus the burn).
    @param batch_a Earlier batch (or the same batch).
    @param index_a Position in batch_a.
    @param proof_a Merkle proof for batch_a.
    @param batch_b Later batch (>= batch_a; within its challenge window).
    @param index_b Position in batch_b (> index_a when the batches are equal).
    @param proof_b Merkle proof for batch_b.
    @param record_hash The repeated record hash.
    @param salt The commitment's salt.
    """
    commitment: bytes32 = keccak256(abi_encode(msg.sender, batch_a, index_a, batch_b, index_b, record_hash, salt))
    committed: uint256 = self.commitments[commitment]
    assert committed != 0, "DataRegistry: no such commitment from this sender"
    assert block.number > committed, "DataRegistry: reveal in a later block than the commit"
    assert batch_a < batch_b or (batch_a == batch_b and index_a < index_b), "DataRegistry: first position must come first"
    self._check_leaf(batch_a, index_a, record_hash, proof_a)
    b: Batch = self._check_leaf(batch_b, index_b, record_hash, proof_b)
    assert not b.finalized and block.timestamp < b.published_at + self.challenge_window, "DataRegistry: challenge window over"
    assert not self.duplicate_at[batch_b][index_b], "DataRegistry: duplicate already proven"
    # a taken-down position already stopped earning (counted in taken_down): never count it twice
    assert not self.taken_down_at[batch_b][index_b], "DataRegistry: position already taken down"
    # effects
    self.commitments[commitment] = 0
    self.duplicate_at[batch_b][index_b] = True
    self.batches[batch_b].duplicates += 1
    amount: uint256 = min(self.duplicate_slash, b.bond)
    self.batches[batch_b].bond = b.bond - amount
    burned: uint256 = 0
    paid: uint256 = 0
    # interaction last; NodeRegistry emits Slashed
    if amount > 0:
        burned, paid = extcall node_registry.slash(b.contributor, amount, msg.sender)
    log DuplicateProven(batch_id=batch_b, index=index_b, record_hash=record_hash, earlier_batch=batch_a,
                        earlier_index=index_a, challenger=msg.sender, burned=burned, paid=paid)


# ------------------------------------------------------------------------ takedown

@external
def takedown_record(batch_id: uint256, index: uint256, record_hash: bytes32,
                    proof: DynArray[bytes32, MAX_PROOF], reason: String[256]):
    """
    @notice The source owner withdraws one record: a tombstone stays on chain, nodes
            delete the content, and the record stops earning.
    @param batch_id The batch holding it.
    @param index Its position.
    @param record_hash Its hash.
    @param proof Merkle proof of (index, record_hash).
    @param reason Why (public).
    """
    b: Batch = self._check_leaf(batch_id, index, record_hash, proof)
    assert self.sources[b.source_id].owner == msg.sender, "DataRegistry: not the source owner"
    assert not self.taken_down_at[batch_id][index], "DataRegistry: already taken down"
    self.taken_down_at[batch_id][index] = True
    self.tombstone[record_hash] = True
    if not self.duplicate_at[batch_id][index]:
        self.batches[batch_id].taken_down += 1
    log RecordTakenDown(batch_id=batch_id, index=index, record_hash=record_hash, reason=reason)


# ------------------------------------------------------------------------ rewards

@view
@external
def pending_reward(batch_id: uint256) -> uint256:
    """
    @notice The reward `finalize` would pay now (0 without quorum or after takedown).
    @param batch_id The batch.
    @return Amount in wei (before the pool-balance cap).
    """
    return self._reward(batch_id)


@view
@internal
def _reward(batch_id: uint256) -> uint256:
    b: Batch = self.batches[batch_id]
    if b.root == empty(bytes32) or self.sources[b.source_id].withdrawn:
        return 0
    members: uint256 = len(self.committee[batch_id])
    if members == 0 or b.available_votes < members // 2 + 1:
        return 0
    live: uint256 = b.record_count - min(b.record_count, b.duplicates + b.taken_down)
    quality: uint256 = b.quality_sum // b.available_votes
    dup_vote: uint256 = b.duplicate_vote_sum // b.available_votes
    base: uint256 = b.token_count * self.reward_per_token * live // b.record_count
    return base * quality // BPS * (BPS - dup_vote) // BPS


@external
def finalize(batch_id: uint256):
    """
    @notice After the challenge window: release the remaining bond and pay the reward
            (capped by the DATA pool's balance). Anyone may call; funds go to the contributor.
    @param batch_id The batch.
    """
    b: Batch = self.batches[batch_id]
    assert b.root != empty(bytes32), "DataRegistry: unknown batch"
    assert not b.finalized, "DataRegistry: already finalized"
    assert block.timestamp >= b.published_at + self.challenge_window, "DataRegistry: challenge window not over"
    reward: uint256 = min(self._reward(batch_id), staticcall emission.pool_balance(DATA_POOL))
    self.batches[batch_id].finalized = True
    self.batches[batch_id].reward = reward
    self.batches[batch_id].bond = 0
    log BatchFinalized(batch_id=batch_id, contributor=b.contributor, reward=reward, bond_released=b.bond)
    if b.bond > 0:
        extcall node_registry.release_bond(b.contributor, b.bond)
    if reward > 0:
        extcall emission.pay_reward(DATA_POOL, b.contributor, reward)
