# pragma version ~=0.4.3
"""
@title InferenceDisputes
@custom:contract-name InferenceDisputes
@license Apache-2.0
@notice Redundant-execution fraud proofs for InferenceRegistry (its `arbiter`).

        Two nodes signed VALUES receipts for the same model version and input whose
        outputs (fixed point x 1e6) differ by more than the version's tolerance.
        Bonded inference nodes re-execute and vote (weighted by service bond); the
        side with less weight is slashed in InferenceRegistry and the slash reward
        goes to the disputer.

        Where the version has a zk circuit, nodes sign CIRCUIT (2) value receipts:
        `input_hash` = keccak256(raw input hash ++ the circuit's Poseidon input
        instance), so two receipts with the same `input_hash` also commit the same
        circuit input. Such a dispute is settled at once, without a vote, by anyone
        submitting an ezkl proof (checked by InferenceRegistry.proof_ok through the
        pinned verifier) whose input instance is that Poseidon hash: each receipt
        whose values differ from the proven outputs (dequantised with the version's
        output scale) by more than the tolerance + 1 (rounding) is slashed. A node
        that commits a wrong Poseidon hash has a different `input_hash` than an
        honest node, so the pair is refused at opening (and clients refuse its
        answer: they recompute the hash); the vote stays as the fallback.

        Value receipts commit their outputs in chunks of 64 (inference/values.py): up to
        64 values, keccak256 of the packed values; more, keccak256(0x01 ++ uint256(count)
        ++ root), root the Merkle root of the chunks' hashes padded with zero words to a
        power of two. A dispute opens one chunk of each receipt (the first where they
        disagree) with its Merkle path, so any output size can be disputed in bounded
        calldata and gas; votes and proofs are compared on that chunk and on the count.
        The contract keeps only keccak256 of each side's packed chunk (one word each) and
        logs the chunks in `Disputed`; `reveal_vote` and `settle_by_proof` take them back
        as calldata and check them against those hashes (storing the values cost most of
        a dispute's gas).

        Opening a dispute is commit-reveal (audit M8): the disputer commits to
        keccak256(abi_encode(sender, digest_a, digest_b, salt)) and reveals in a
        later block, so a front-runner (e.g. the liar's own sybil) copying the
        reveal from the mempool has no commitment and earns nothing.

        Votes are commit-reveal too (audit I3): during the vote window a voter
        commits keccak256(abi_encode(voter, dispute, count, values, salt)); in the
        reveal window that follows it reveals, so nobody can copy another's vote
        instead of re-executing. Voting pays: of the loser's slash paid out (after
        NodeRegistry's burn), half goes to the disputer and half to the voters of
        the winning side pro rata to their weight, claimed with `claim_vote_reward`.

        The committee is drawn, not open to every bonded node (Algorand-style
        self-selection, no loop over nodes): a node may commit a vote iff
        uint256(keccak256(abi_encode(seed, node))) < 2**256 * min(1, bond / bond_per_seat),
        `bond_per_seat` = total bond / `committee_size` (InferenceRegistry's) when the
        dispute opened, so about `committee_size` nodes are drawn, each with probability
        proportional to its bond; a node's bond must have been posted before the
        dispute's block. Its vote weighs its bond at commit time (frozen; less if
        slashed before the reveal).
        Voting costs if wrong: once a vote resolved the dispute, a voter that committed
        and never revealed, or revealed for the losing side, loses `voter_penalty_bps`
        of its vote weight (`penalise_voter`, anyone); what NodeRegistry does not burn
        joins the winning voters' reward. A voter's bond stays locked (an open case in
        InferenceRegistry) until it is penalised, claims, or is released.
@dev Split out of InferenceRegistry to keep both under EIP-170. Bonds, open-case
     counts and slashing stay in InferenceRegistry, which accepts them only from
     this contract (`arbiter_case`, `arbiter_slash`).
"""

from ethereum.ercs import IERC20
from snekmate.utils import ecdsa


struct Receipt:
    version: uint256
    input_hash: bytes32
    output_hash: bytes32
    nonce: uint256
    price: uint256
    commitment: uint8


struct Model:
    onnx_hash: bytes32
    tolerance: uint256
    registered: bool


interface IModelRegistry:
    def owner_of(version_id: uint256) -> address: view


interface IInferenceRegistry:
    def models(version: uint256) -> Model: view
    def service_bond(node: address) -> uint256: view
    def min_bond() -> uint256: view
    def vote_window() -> uint256: view
    def quorum() -> uint256: view
    def receipt_digest(r: Receipt) -> bytes32: view
    def arbiter_case(node: address, opened: bool): nonpayable
    def arbiter_slash(node: address, to: address, amount: uint256) -> (uint256, uint256): nonpayable
    def total_bond() -> uint256: view
    def bonded_at(node: address) -> uint256: view
    def committee_size() -> uint256: view
    def voter_penalty_bps() -> uint256: view
    def model_registry() -> address: view
    def token() -> address: view
    def proof_ok(version: uint256, input_hash: bytes32, output_hash: bytes32, proof: Bytes[MAX_PROOF],
                 instances: DynArray[uint256, MAX_INSTANCES]) -> bool: view


struct Dispute:
    version: uint256
    input_hash: bytes32
    node_a: address
    node_b: address
    disputer: address
    deadline: uint256
    weight_a: uint256
    weight_b: uint256
    reveal_deadline: uint256  # votes are revealed after `deadline`, until this
    state: uint8              # 1 open, 2 resolved, 3 void (no majority)
    commitment: uint8         # the receipts' kind: VALUES, or CIRCUIT (settleable by proof)
    chunk: uint256            # the opened chunk (values chunk*64 ..)
    count_a: uint256          # how many values each receipt committed
    count_b: uint256
    opened: uint256           # block of the opening: its hash seeds the committee draw
    bond_per_seat: uint256    # total bond / committee_size at opening (drawn for sure at this bond)
    seed: bytes32             # keccak256(blockhash(opened), id), stored by the first vote commitment
    winner: uint8             # the side a vote found right (1 a, 2 b); 0: open, void or settled by proof


struct Vote:
    side: uint8               # 1 = a, 2 = b, 0 = neither (or not revealed: see `voted`)
    weight: uint256           # bond at commit (frozen), lowered at reveal if slashed since
    paid: uint256             # reward paid so far (the pool grows with penalties)
    settled: bool             # its case in InferenceRegistry is closed (penalised, claimed, released)


struct Opening:
    count: uint256                        # values the receipt committed
    index: uint256                        # the chunk opened
    packed: Bytes[MAX_PACKED]             # its values, packed 8-byte big-endian int64s
    proof: DynArray[bytes32, MAX_DEPTH]   # sibling hashes, leaf level first (empty for count <= 64)


COMMIT_VALUES: constant(uint8) = 0
COMMIT_CIRCUIT: constant(uint8) = 2
MAX_VALUES: constant(uint256) = 64
MAX_PACKED: constant(uint256) = 8 * MAX_VALUES
MAX_DEPTH: constant(uint256) = 20          # 2**20 chunks: 67M values
MAX_PROOF: constant(uint256) = 16384
MAX_INSTANCES: constant(uint256) = 257
# BN254 scalar field: a negative circuit value v is the element p - |v|
FIELD_P: constant(uint256) = 21888242871839275222246405745257275088548364400416034343698204186575808495617
FIXED_POINT: constant(int256) = 10**6
BPS: constant(uint256) = 10_000
NOT_DRAWABLE: constant(String[100]) = "InferenceDisputes: committee not drawable (from the block after the opening, within 256 blocks)"

inference: public(immutable(IInferenceRegistry))

disputes: public(HashMap[uint256, Dispute])
dispute_count: public(uint256)
# @notice keccak256 of the disputed chunk of each receipt's values, packed as `Disputed`
#         logs them (what `reveal_vote` and `settle_by_proof` are given back)
chunk_hash_a: public(HashMap[uint256, bytes32])
chunk_hash_b: public(HashMap[uint256, bytes32])
# @notice Receipts already used in a dispute (each backs at most one; audit M2).
receipt_disputed: public(HashMap[bytes32, bool])
voted: public(HashMap[uint256, HashMap[address, bool]])
# @notice keccak256(abi_encode(voter, dispute, count, values, salt)) per dispute and voter
vote_commitments: public(HashMap[uint256, HashMap[address, bytes32]])
# @notice Revealed votes (side, weight, reward claimed)
votes: public(HashMap[uint256, HashMap[address, Vote]])
# @notice The voters' half of a resolved dispute's slash, shared by the winning side's weight
voter_reward: public(HashMap[uint256, uint256])
# @notice keccak256(abi_encode(disputer, digest_a, digest_b, salt)) -> block committed (max: spent)
commitments: public(HashMap[bytes32, uint256])
# @notice Per version: 1 + the circuit's output scale (outputs are felt / 2**scale); 0 = not set.
output_scale: public(HashMap[uint256, uint256])


event DisputeCommitted:
    commitment: indexed(bytes32)
    sender: indexed(address)

event Disputed:
    dispute: indexed(uint256)
    node_a: indexed(address)
    node_b: indexed(address)
    version: uint256
    input_hash: bytes32
    deadline: uint256
    chunk: uint256                  # the opened chunk (values chunk*64 ..)
    packed_a: Bytes[MAX_PACKED]     # its values in each receipt, packed 8-byte big-endian int64s
    packed_b: Bytes[MAX_PACKED]

event VoteCommitted:
    dispute: indexed(uint256)
    voter: indexed(address)
    weight: uint256           # its bond now, frozen for the vote

event CommitteeDrawn:
    dispute: indexed(uint256)
    seed: bytes32

event VoterPenalised:
    dispute: indexed(uint256)
    voter: indexed(address)
    slashed: uint256          # taken from its bond
    to_pool: uint256          # what NodeRegistry did not burn: added to the winners' reward

event VoterReleased:
    dispute: indexed(uint256)
    voter: indexed(address)

event VoteRewardClaimed:
    dispute: indexed(uint256)
    voter: indexed(address)
    amount: uint256

event Voted:
    dispute: indexed(uint256)
    voter: indexed(address)
    side: uint8               # 1 = a, 2 = b, 0 = neither
    weight: uint256

event DisputeResolved:
    dispute: indexed(uint256)
    loser: indexed(address)
    slashed: uint256
    state: uint8

event SettledByProof:
    dispute: indexed(uint256)
    prover: indexed(address)
    a_wrong: bool
    b_wrong: bool
    slashed: uint256

event OutputScaleSet:
    version: indexed(uint256)
    scale: uint256


@deploy
def __init__(inference_: address):
    """
    @param inference_ InferenceRegistry (terms, bonds, receipts' EIP-712 domain); it must
           name this contract its arbiter.
    """
    assert inference_ != empty(address), "InferenceDisputes: zero address"
    inference = IInferenceRegistry(inference_)


@internal
@view
def _seed(dispute_id: uint256, stored: bytes32, opened: uint256) -> bytes32:
    # The draw's seed is the hash of the opening block itself, not of one before it: the
    # disputer picks the block its reveal lands in, so any hash it could see before sending
    # (the parent's, or prevrandao, which a block carries from before it is built; on the
    # embedded py-evm chain prevrandao is 0 in transactions, the mix hash is set at sealing)
    # would let it wait for a seed that draws its own nodes. The opening block's hash is
    # unknown to everyone but that block's producer, who can still bias it (grind contents,
    # or withhold the block): a disputer that is also the producer gets a choice of seeds.
    # It is readable from the next block for 256 blocks; the first vote stores it, so
    # empty means "not drawable": the opening block itself, or too late.
    if stored != empty(bytes32):
        return stored
    if block.number <= opened or block.number > opened + 256:
        return empty(bytes32)
    return keccak256(concat(blockhash(opened), convert(dispute_id, bytes32)))


@internal
@view
def _draw(dispute_id: uint256, voter: address) -> (uint8, uint256, bytes32):
    # (status, bond, seed): 0 drawn, 1 no readable seed, 2 bond below minimum, 3 bond
    # posted in or after the seed block, 4 not drawn. P(drawn) = min(1, bond /
    # bond_per_seat), bond_per_seat = total bond / committee size at opening: the hash is
    # uniform in [0, 2**256) and the threshold (2**256 / per_seat) * bond cannot overflow
    # while bond < per_seat. The bond is the one now: it cannot have grown since the seed
    # block (status 3), so it is at most the bond the dispute opened with.
    opened: uint256 = self.disputes[dispute_id].opened
    seed: bytes32 = self._seed(dispute_id, self.disputes[dispute_id].seed, opened)
    if seed == empty(bytes32):
        return 1, 0, seed
    bond: uint256 = staticcall inference.service_bond(voter)
    if bond < staticcall inference.min_bond():
        return 2, bond, seed
    if staticcall inference.bonded_at(voter) >= opened:
        return 3, bond, seed
    per_seat: uint256 = self.disputes[dispute_id].bond_per_seat
    if bond < per_seat and \
            convert(keccak256(abi_encode(seed, voter)), uint256) >= max_value(uint256) // per_seat * bond:
        return 4, bond, seed
    return 0, bond, seed


@internal
@view
def _penalisable(dispute_id: uint256, winner: uint8, voter: address) -> bool:
    # only after a vote picked a winner: a silent voter, or one that revealed the loser's
    # values (side 0 is not penalised: both nodes may have lied)
    if winner == 0:
        return False
    side: uint8 = self.votes[dispute_id][voter].side
    return not self.voted[dispute_id][voter] or (side != 0 and side != winner)


@external
@view
def eligible(dispute_id: uint256, voter: address) -> bool:
    """
    @notice Whether `voter` is drawn for the committee of open dispute `dispute_id`
            and may commit a vote: not a party, its bond at least `min_bond` and
            posted before the dispute's block, and keccak256(abi_encode(seed, voter))
            below 2**256 * bond / bond_per_seat. False while the seed is not readable
            (in the opening block, or 256 blocks later if no vote stored it).
    """
    if self.disputes[dispute_id].state != 1 or voter == self.disputes[dispute_id].node_a or \
            voter == self.disputes[dispute_id].node_b:
        return False
    return self._draw(dispute_id, voter)[0] == 0


@internal
@pure
def _within_packed(a: DynArray[int256, MAX_VALUES], packed: Bytes[MAX_PACKED], tol: uint256) -> bool:
    # whether `packed` holds as many values as `a`, each within `tol` of a's; read four
    # int64s per 32-byte word (a value is the word's top 8 bytes, sign-extended by the
    # arithmetic shift), the last word zero-padded
    n: uint256 = len(a)
    if len(packed) != 8 * n:
        return False
    padded: Bytes[MAX_PACKED + 32] = concat(packed, empty(bytes32))
    w: int256 = 0
    for i: uint256 in range(MAX_VALUES):
        if i >= n:
            break
        if i % 4 == 0:
            w = extract32(padded, i * 8, output_type=int256)
        if convert(abs(a[i] - (w >> 192)), uint256) > tol:
            return False
        w = w << 64
    return True


@internal
@pure
def _unpack(packed: Bytes[MAX_PACKED]) -> DynArray[int256, MAX_VALUES]:
    # a value receipt commits keccak256 of its fixed-point values as packed 8-byte
    # big-endian int64s (a quarter of abi_encode(int256[])'s bytes: the node hashes them
    # on every request); read as in _within_packed
    assert len(packed) % 8 == 0, "InferenceDisputes: packed values must be whole int64s"
    padded: Bytes[MAX_PACKED + 32] = concat(packed, empty(bytes32))
    values: DynArray[int256, MAX_VALUES] = []
    w: int256 = 0
    for i: uint256 in range(MAX_VALUES):
        if i * 8 >= len(packed):
            break
        if i % 4 == 0:
            w = extract32(padded, i * 8, output_type=int256)
        values.append(w >> 192)
        w = w << 64
    return values


@internal
@pure
def _opened(output_hash: bytes32, o: Opening) -> bytes32:
    # keccak256 of the chunk's packed values, if `o` opens chunk o.index of an o.count-value
    # commitment `output_hash`; the count fixes the tree depth, so no inner node passes as a leaf
    assert o.count <= MAX_VALUES << MAX_DEPTH, "InferenceDisputes: too many values"
    chunks: uint256 = max(1, (o.count + MAX_VALUES - 1) // MAX_VALUES)
    assert o.index < chunks, "InferenceDisputes: no such chunk"
    size: uint256 = MAX_VALUES
    if o.index == chunks - 1:
        size = o.count - MAX_VALUES * (chunks - 1)
    assert len(o.packed) == 8 * size, "InferenceDisputes: chunk has the wrong number of values"
    h: bytes32 = keccak256(o.packed)
    if o.count <= MAX_VALUES:
        assert len(o.proof) == 0 and h == output_hash, "InferenceDisputes: values do not match the receipt"
        return h
    depth: uint256 = 0
    for _: uint256 in range(MAX_DEPTH):
        if 1 << depth >= chunks:
            break
        depth += 1
    assert len(o.proof) == depth, "InferenceDisputes: Merkle path has the wrong length"
    leaf: bytes32 = h
    i: uint256 = o.index
    for sibling: bytes32 in o.proof:
        if i & 1 == 1:
            h = keccak256(concat(sibling, h))
        else:
            h = keccak256(concat(h, sibling))
        i = i >> 1
    assert keccak256(concat(b"\x01", convert(o.count, bytes32), h)) == output_hash, \
        "InferenceDisputes: values do not match the receipt"
    return leaf


@internal
@view
def _check_chunks(dispute_id: uint256, packed_a: Bytes[MAX_PACKED], packed_b: Bytes[MAX_PACKED]):
    # the disputed chunks as `Disputed` logged them (only their hashes are stored)
    assert keccak256(packed_a) == self.chunk_hash_a[dispute_id] and \
        keccak256(packed_b) == self.chunk_hash_b[dispute_id], \
        "InferenceDisputes: chunks are not the disputed ones (read them from the Disputed event)"


@internal
@view
def _signer(digest: bytes32, signature: Bytes[65]) -> address:
    assert len(signature) == 65, "InferenceDisputes: signature must be 65 bytes"
    signer: address = ecdsa._recover_sig(digest, signature)
    assert signer != empty(address), "InferenceDisputes: bad signature"
    return signer


@external
def commit_dispute(commitment: bytes32):
    """
    @notice First step of a dispute: commit to
            keccak256(abi_encode(sender, digest_a, digest_b, salt)) (receipt digests
            as InferenceRegistry.receipt_digest computes them); reveal with
            `dispute` in a later block.
    @param commitment The hash; it binds the sender, so nobody else can reveal it.
    """
    assert commitment != empty(bytes32) and self.commitments[commitment] == 0, "InferenceDisputes: commitment exists"
    self.commitments[commitment] = block.number
    log DisputeCommitted(commitment=commitment, sender=msg.sender)


@external
def dispute(ra: Receipt, sig_a: Bytes[65], open_a: Opening,
            rb: Receipt, sig_b: Bytes[65], open_b: Opening, salt: bytes32) -> uint256:
    """
    @notice Reveal a committed fraud proof: two nodes signed receipts for the same
            model version and input whose outputs (fixed point x 1e6) differ by more
            than the version's tolerance in the opened chunk, or in count. Opens a vote
            of bonded nodes that re-execute; the losing node is slashed. The committee
            is drawn from this block's hash (`eligible`).
    @param open_a The same chunk of receipt a's values (`Opening`), opened against its
           `output_hash`.
    @param open_b The same chunk of receipt b's values.
    @param salt The commitment's salt.
    @return The dispute id. The chunks are logged in `Disputed` (only their hashes are
            stored): voters and provers pass them back to `reveal_vote` and `settle_by_proof`.
    """
    assert ra.commitment == rb.commitment and (ra.commitment == COMMIT_VALUES or ra.commitment == COMMIT_CIRCUIT), \
        "InferenceDisputes: not value receipts of one kind"
    assert ra.version == rb.version and ra.input_hash == rb.input_hash, "InferenceDisputes: receipts are for different requests"
    digest_a: bytes32 = staticcall inference.receipt_digest(ra)
    digest_b: bytes32 = staticcall inference.receipt_digest(rb)
    commitment: bytes32 = keccak256(abi_encode(msg.sender, digest_a, digest_b, salt))
    committed: uint256 = self.commitments[commitment]
    assert committed != 0 and block.number > committed, "InferenceDisputes: no earlier commitment from this sender"
    self.commitments[commitment] = max_value(uint256)
    m: Model = staticcall inference.models(ra.version)
    assert m.registered, "InferenceDisputes: unknown model version"
    assert open_a.index == open_b.index, "InferenceDisputes: openings of different chunks"
    hash_a: bytes32 = self._opened(ra.output_hash, open_a)
    hash_b: bytes32 = self._opened(rb.output_hash, open_b)
    assert open_a.count != open_b.count or \
        not self._within_packed(self._unpack(open_a.packed), open_b.packed, m.tolerance), \
        "InferenceDisputes: outputs agree within tolerance"
    node_a: address = self._signer(digest_a, sig_a)
    node_b: address = self._signer(digest_b, sig_b)
    assert node_a != node_b, "InferenceDisputes: same node signed both receipts"
    assert staticcall inference.service_bond(node_a) > 0 and staticcall inference.service_bond(node_b) > 0, \
        "InferenceDisputes: signer has no service bond"
    assert not self.receipt_disputed[digest_a] and not self.receipt_disputed[digest_b], \
        "InferenceDisputes: receipt already disputed"
    self.receipt_disputed[digest_a] = True
    self.receipt_disputed[digest_b] = True
    did: uint256 = self.dispute_count + 1
    self.dispute_count = did
    window: uint256 = staticcall inference.vote_window()
    deadline: uint256 = block.timestamp + window
    self.disputes[did] = Dispute(version=ra.version, input_hash=ra.input_hash, node_a=node_a, node_b=node_b,
                                 disputer=msg.sender, deadline=deadline, weight_a=0, weight_b=0,
                                 reveal_deadline=deadline + window, state=1,
                                 commitment=ra.commitment, chunk=open_a.index, count_a=open_a.count,
                                 count_b=open_b.count, opened=block.number,
                                 bond_per_seat=max(1, staticcall inference.total_bond() // staticcall inference.committee_size()),
                                 seed=empty(bytes32), winner=0)
    self.chunk_hash_a[did] = hash_a
    self.chunk_hash_b[did] = hash_b
    log Disputed(dispute=did, node_a=node_a, node_b=node_b, version=ra.version, input_hash=ra.input_hash,
                 deadline=deadline, chunk=open_a.index, packed_a=open_a.packed, packed_b=open_b.packed)
    extcall inference.arbiter_case(node_a, True)
    extcall inference.arbiter_case(node_b, True)
    return did


@internal
def _store_seed(dispute_id: uint256, seed: bytes32):
    if self.disputes[dispute_id].seed == empty(bytes32):
        self.disputes[dispute_id].seed = seed
        log CommitteeDrawn(dispute=dispute_id, seed=seed)


@external
def draw(dispute_id: uint256) -> bytes32:
    """
    @notice Fix the committee of open dispute `dispute_id` (anyone; the disputer's client
            calls it in the block after the opening): store its seed,
            keccak256(blockhash(opening block) ++ id). `blockhash` reads the opening block
            only from the next block and for 256 blocks (1-8 minutes on a fast L2): a seed
            nobody stored by then (here or by the first `commit_vote`) is lost, and the
            dispute cannot be voted on and ends void. The seed is the same whoever stores
            it and whenever, so calling this chooses nothing. Once stored, drawn nodes
            commit until the vote window ends. Idempotent.
    @return The seed.
    """
    assert self.disputes[dispute_id].state == 1, "InferenceDisputes: dispute not open"
    seed: bytes32 = self._seed(dispute_id, self.disputes[dispute_id].seed, self.disputes[dispute_id].opened)
    assert seed != empty(bytes32), NOT_DRAWABLE
    self._store_seed(dispute_id, seed)
    return seed


@external
def commit_vote(dispute_id: uint256, commitment: bytes32):
    """
    @notice A bonded inference node drawn for the dispute's committee (`eligible`)
            that re-executed the disputed request commits to its vote during the
            vote window: keccak256(abi_encode(voter, dispute_id, count, values,
            salt)), `count` its output count and `values` the disputed chunk of its
            outputs (values chunk*64 ..). Its bond now is the vote's weight, and it
            stays locked until the voter is penalised, claims or is released.
    """
    # single fields, not the whole Dispute: each field is a cold storage read
    assert self.disputes[dispute_id].state == 1, "InferenceDisputes: dispute not open"
    assert block.timestamp <= self.disputes[dispute_id].deadline, "InferenceDisputes: voting closed"
    assert msg.sender != self.disputes[dispute_id].node_a and msg.sender != self.disputes[dispute_id].node_b, \
        "InferenceDisputes: parties cannot vote"
    assert commitment != empty(bytes32), "InferenceDisputes: empty vote commitment"
    assert self.vote_commitments[dispute_id][msg.sender] == empty(bytes32), "InferenceDisputes: already voted"
    status: uint8 = 0
    bond: uint256 = 0
    seed: bytes32 = empty(bytes32)
    status, bond, seed = self._draw(dispute_id, msg.sender)
    assert status != 1, NOT_DRAWABLE
    assert status != 2, "InferenceDisputes: voter bond below minimum"
    assert status != 3, "InferenceDisputes: bond posted after the dispute opened"
    assert status != 4, "InferenceDisputes: not drawn for this dispute's committee"
    self._store_seed(dispute_id, seed)
    self.vote_commitments[dispute_id][msg.sender] = commitment
    self.votes[dispute_id][msg.sender].weight = bond          # the other fields start empty
    log VoteCommitted(dispute=dispute_id, voter=msg.sender, weight=bond)
    extcall inference.arbiter_case(msg.sender, True)


@external
def reveal_vote(dispute_id: uint256, count: uint256, values: DynArray[int256, MAX_VALUES], salt: bytes32,
                packed_a: Bytes[MAX_PACKED], packed_b: Bytes[MAX_PACKED]) -> uint8:
    """
    @notice Reveal a committed vote after the vote window, before `reveal_deadline`;
            the voter's weight (its bond at commit, or less if slashed since) is
            added to the side with that count whose disputed chunk is within
            tolerance of `values`; within tolerance of both sides, to neither.
    @param count The voter's output count, as committed.
    @param values The disputed chunk of the voter's outputs, as committed.
    @param salt The vote commitment's salt.
    @param packed_a The disputed chunk of receipt a's values as `Disputed` logged it
           (checked against `chunk_hash_a`).
    @param packed_b The same for receipt b (checked against `chunk_hash_b`).
    @return 1 if it sided with node a, 2 with node b, 0 with neither (or both).
    """
    # single fields, not the whole Dispute: each field is a cold storage read
    assert self.disputes[dispute_id].state == 1, "InferenceDisputes: dispute not open"
    assert block.timestamp > self.disputes[dispute_id].deadline, \
        "InferenceDisputes: votes are revealed after the vote window"
    assert block.timestamp <= self.disputes[dispute_id].reveal_deadline, "InferenceDisputes: reveal window over"
    assert not self.voted[dispute_id][msg.sender], "InferenceDisputes: already revealed"
    c: bytes32 = self.vote_commitments[dispute_id][msg.sender]
    assert c != empty(bytes32) and c == keccak256(abi_encode(msg.sender, dispute_id, count, values, salt)), \
        "InferenceDisputes: vote does not match its commitment"
    self._check_chunks(dispute_id, packed_a, packed_b)
    # frozen at commit: bonding more since gains nothing; a slash since counts
    frozen: uint256 = self.votes[dispute_id][msg.sender].weight
    weight: uint256 = min(frozen, staticcall inference.service_bond(msg.sender))
    tol: uint256 = (staticcall inference.models(self.disputes[dispute_id].version)).tolerance
    # a re-execution within tolerance of both receipts shows neither wrong: it counts for
    # neither, not for whichever receipt the disputer put first (a biased but tolerated
    # node a would otherwise get an honest b slashed, and honest voters would side with a)
    in_a: bool = count == self.disputes[dispute_id].count_a and self._within_packed(values, packed_a, tol)
    in_b: bool = count == self.disputes[dispute_id].count_b and self._within_packed(values, packed_b, tol)
    side: uint8 = 0
    if in_a and not in_b:
        side = 1
        self.disputes[dispute_id].weight_a += weight
    elif in_b and not in_a:
        side = 2
        self.disputes[dispute_id].weight_b += weight
    self.voted[dispute_id][msg.sender] = True
    if side != 0:
        self.votes[dispute_id][msg.sender].side = side
    if weight != frozen:
        self.votes[dispute_id][msg.sender].weight = weight
    log Voted(dispute=dispute_id, voter=msg.sender, side=side, weight=weight)
    return side


@external
@nonreentrant
def resolve_dispute(dispute_id: uint256) -> address:
    """
    @notice After the reveal window (anyone): the side with less vote weight is
            slashed; of the slash paid out, half goes to the disputer and half to
            the winning side's voters (`claim_vote_reward`). Without a quorum
            majority the dispute is void and nobody is slashed.
    @return The slashed node (empty if void).
    """
    # single fields, not the whole Dispute: each field is a cold storage read
    assert self.disputes[dispute_id].state == 1, "InferenceDisputes: dispute not open"
    assert block.timestamp > self.disputes[dispute_id].reveal_deadline, "InferenceDisputes: voting still open"
    weight_a: uint256 = self.disputes[dispute_id].weight_a
    weight_b: uint256 = self.disputes[dispute_id].weight_b
    node_a: address = self.disputes[dispute_id].node_a
    node_b: address = self.disputes[dispute_id].node_b
    quorum: uint256 = staticcall inference.quorum()
    loser: address = empty(address)
    winner: uint8 = 0
    if weight_a > weight_b and weight_a >= quorum:
        loser = node_b
        winner = 1
    elif weight_b > weight_a and weight_b >= quorum:
        loser = node_a
        winner = 2
    state: uint8 = 3
    if loser != empty(address):
        state = 2
        self.disputes[dispute_id].winner = winner
    self.disputes[dispute_id].state = state
    extcall inference.arbiter_case(node_a, False)
    extcall inference.arbiter_case(node_b, False)
    slashed: uint256 = 0
    if loser != empty(address):
        paid: uint256 = 0
        # what NodeRegistry transferred here (it burns its share): it is the core contract
        slashed, paid = extcall inference.arbiter_slash(loser, self, 0)
        self.voter_reward[dispute_id] = paid - paid // 2
        assert extcall IERC20(staticcall inference.token()).transfer(self.disputes[dispute_id].disputer, paid // 2,
                                                                     default_return_value=True), \
            "InferenceDisputes: reward transfer failed"
    log DisputeResolved(dispute=dispute_id, loser=loser, slashed=slashed, state=state)
    return loser


@external
@nonreentrant
def claim_vote_reward(dispute_id: uint256) -> uint256:
    """
    @notice A voter of the winning side of a dispute resolved by vote takes what it
            is owed of the voters' reward (pro rata to its weight); the reward grows
            with `penalise_voter`, so a later call takes the growth. The first claim
            also releases the voter's bond (closes its case).
    @return The amount paid.
    """
    winner: uint8 = self.disputes[dispute_id].winner
    pool: uint256 = self.voter_reward[dispute_id]
    assert winner != 0 and pool > 0, "InferenceDisputes: no voter reward in this dispute"
    v: Vote = self.votes[dispute_id][msg.sender]
    assert v.side == winner, "InferenceDisputes: no vote on the winning side"
    total: uint256 = self.disputes[dispute_id].weight_a
    if winner == 2:
        total = self.disputes[dispute_id].weight_b
    amount: uint256 = pool * v.weight // total - v.paid
    assert amount > 0, "InferenceDisputes: reward already claimed (nothing more owed)"
    self.votes[dispute_id][msg.sender].paid = v.paid + amount
    log VoteRewardClaimed(dispute=dispute_id, voter=msg.sender, amount=amount)
    if not v.settled:
        self.votes[dispute_id][msg.sender].settled = True
        log VoterReleased(dispute=dispute_id, voter=msg.sender)
        extcall inference.arbiter_case(msg.sender, False)
    assert extcall IERC20(staticcall inference.token()).transfer(msg.sender, amount, default_return_value=True), \
        "InferenceDisputes: reward transfer failed"
    return amount


@external
@nonreentrant
def penalise_voter(dispute_id: uint256, voter: address) -> uint256:
    """
    @notice After a dispute resolved by vote (anyone): slash `voter_penalty_bps` of the
            vote weight of a voter that committed and never revealed, or revealed for
            the losing side; what NodeRegistry does not burn joins the winning voters'
            reward (no bounty: a voter penalising itself would get it back). Closes the
            voter's case. Once per voter and dispute; side-0 voters, void disputes and
            disputes settled by proof penalise nobody (`release_voter`).
    @return The amount slashed.
    """
    winner: uint8 = self.disputes[dispute_id].winner
    assert winner != 0, "InferenceDisputes: no penalties in this dispute (open, void or settled by proof)"
    assert self.vote_commitments[dispute_id][voter] != empty(bytes32), "InferenceDisputes: not a voter in this dispute"
    assert not self.votes[dispute_id][voter].settled, "InferenceDisputes: voter already settled"
    assert self._penalisable(dispute_id, winner, voter), \
        "InferenceDisputes: voter revealed for the winning side or neither"
    amount: uint256 = self.votes[dispute_id][voter].weight * staticcall inference.voter_penalty_bps() // BPS
    self.votes[dispute_id][voter].settled = True
    extcall inference.arbiter_case(voter, False)
    slashed: uint256 = 0
    paid: uint256 = 0
    if amount > 0:
        slashed, paid = extcall inference.arbiter_slash(voter, self, amount)
        self.voter_reward[dispute_id] += paid
    log VoterPenalised(dispute=dispute_id, voter=voter, slashed=slashed, to_pool=paid)
    return slashed


@external
def release_voter(dispute_id: uint256, voter: address):
    """
    @notice Once a dispute is no longer open (anyone): unlock the bond of a voter that
            is not penalised (revealed for the winner or for neither, or any voter of
            a void dispute or one settled by proof). Winners are also released by
            their first `claim_vote_reward`.
    """
    assert self.vote_commitments[dispute_id][voter] != empty(bytes32), "InferenceDisputes: not a voter in this dispute"
    assert self.disputes[dispute_id].state != 1, "InferenceDisputes: dispute not settled yet"
    assert not self.votes[dispute_id][voter].settled, "InferenceDisputes: voter already settled"
    assert not self._penalisable(dispute_id, self.disputes[dispute_id].winner, voter), \
        "InferenceDisputes: voter is to be penalised (penalise_voter)"
    self.votes[dispute_id][voter].settled = True
    log VoterReleased(dispute=dispute_id, voter=voter)
    extcall inference.arbiter_case(voter, False)


@external
def set_output_scale(version: uint256, scale: uint256):
    """
    @notice Record the output scale of the version's circuit (ezkl settings'
            model_output_scales, one for all outputs): proven outputs are
            felt / 2**scale. Only the version's owner in ModelRegistry; once.
            Nodes and routers check it against the registered settings file.
    """
    assert msg.sender == staticcall IModelRegistry(staticcall inference.model_registry()).owner_of(version), \
        "InferenceDisputes: not the model owner"
    assert self.output_scale[version] == 0, "InferenceDisputes: output scale already set"
    assert scale <= 64, "InferenceDisputes: scale too large"
    self.output_scale[version] = scale + 1
    log OutputScaleSet(version=version, scale=scale)


@external
@nonreentrant
def settle_by_proof(dispute_id: uint256, raw_input_hash: bytes32, proof: Bytes[MAX_PROOF],
                    instances: DynArray[uint256, MAX_INSTANCES], packed_a: Bytes[MAX_PACKED],
                    packed_b: Bytes[MAX_PACKED]) -> uint256:
    """
    @notice Settle an open CIRCUIT dispute with an ezkl proof of the registered
            circuit (anyone; the slash reward still goes to the disputer, so
            copying the proof earns nothing). Instance 0 must be the Poseidon
            input hash both receipts committed (with `raw_input_hash`, the
            receipts' `input_hash` preimage); each receipt whose values differ
            from the proven outputs by more than tolerance + 1 is slashed now.
    @param packed_a The disputed chunk of receipt a's values as `Disputed` logged it
           (checked against `chunk_hash_a`).
    @param packed_b The same for receipt b (checked against `chunk_hash_b`).
    @return 1 if receipt a was wrong, 2 if b, 3 if both.
    """
    d: Dispute = self.disputes[dispute_id]
    assert d.state == 1, "InferenceDisputes: dispute not open"
    assert d.commitment == COMMIT_CIRCUIT, "InferenceDisputes: not a circuit dispute"
    self._check_chunks(dispute_id, packed_a, packed_b)
    assert len(instances) >= 2, "InferenceDisputes: bad instance count"
    poseidon: bytes32 = convert(instances[0], bytes32)
    assert keccak256(concat(raw_input_hash, poseidon)) == d.input_hash, "InferenceDisputes: proof is for another input"
    scale: uint256 = self.output_scale[d.version]
    assert scale != 0, "InferenceDisputes: output scale not set"
    unit: int256 = convert(1 << (scale - 1), int256)
    felts: DynArray[uint256, MAX_INSTANCES] = []
    proven: DynArray[int256, MAX_VALUES] = []    # the disputed chunk of the proven outputs
    first: uint256 = d.chunk * MAX_VALUES
    for i: uint256 in range(1, MAX_INSTANCES):
        if i >= len(instances):
            break
        f: uint256 = instances[i]
        felts.append(f)
        if i - 1 >= first and i - 1 < first + MAX_VALUES:
            v: int256 = 0
            if f > FIELD_P // 2:
                v = -convert(FIELD_P - f, int256)
            else:
                v = convert(f, int256)
            proven.append(v * FIXED_POINT // unit)
    count: uint256 = len(felts)
    assert staticcall inference.proof_ok(d.version, poseidon, keccak256(abi_encode(felts)), proof, instances), \
        "InferenceDisputes: invalid proof"
    # the node's fixed-point value is rint(float(felt / 2**scale) * 1e6); truncation here
    # differs by at most one unit
    tol: uint256 = (staticcall inference.models(d.version)).tolerance + 1
    a_wrong: bool = d.count_a != count or not self._within_packed(proven, packed_a, tol)
    b_wrong: bool = d.count_b != count or not self._within_packed(proven, packed_b, tol)
    assert a_wrong or b_wrong, "InferenceDisputes: proof agrees with both receipts"
    self.disputes[dispute_id].state = 2
    extcall inference.arbiter_case(d.node_a, False)
    extcall inference.arbiter_case(d.node_b, False)
    slashed: uint256 = 0
    paid: uint256 = 0
    if a_wrong:
        slashed, paid = extcall inference.arbiter_slash(d.node_a, d.disputer, 0)
        log DisputeResolved(dispute=dispute_id, loser=d.node_a, slashed=slashed, state=2)
    if b_wrong:
        s: uint256 = 0
        s, paid = extcall inference.arbiter_slash(d.node_b, d.disputer, 0)
        log DisputeResolved(dispute=dispute_id, loser=d.node_b, slashed=s, state=2)
        slashed += s
    log SettledByProof(dispute=dispute_id, prover=msg.sender, a_wrong=a_wrong, b_wrong=b_wrong, slashed=slashed)
    result: uint256 = 0
    if a_wrong:
        result = 1
    if b_wrong:
        result += 2
    return result
