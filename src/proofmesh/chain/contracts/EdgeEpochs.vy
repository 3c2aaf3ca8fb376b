# pragma version ~=0.4.3
"""
@title EdgeEpochs
@notice Edge gateways publish, per epoch, a positional Merkle root of the device
        readings they accepted (sorted by device, then sequence number) and a root of
        per-device uptime counts. Anyone can prove a fault during the challenge period:
        a reading without a valid device signature or beacon nonce, leaves that break
        the sort order or the uptime arithmetic, a count its leaves contradict, an
        empty slot, or a reading the gateway acknowledged with a signed receipt but left
        out. A proven fault slashes the gateway's bond in NodeRegistry (the challenger
        gets the bounty) and voids the epoch. Every challenge is commit-reveal
        (`commit_challenge`, then the `challenge_*` call at least one block later): the
        commitment binds the challenger's address, so a proof copied from the mempool
        pays its copier nothing (audit M8). After the period, devices are paid from
        Emission pool EDGE, in proportion to uptime, scaled for crowded cells and
        capped by stake. A gateway back from downtime `skip`s the epochs it missed in
        one transaction: they count as published empty (a receipted reading in one is a
        provable omission, `challenge_skipped`) and pay no rewards.
@dev Leaves sit at their index in a fixed-depth tree padded with zero slots
     (node = keccak(left ++ right)), unlike the sorted-pair trees elsewhere: adjacency
     of two leaves must be provable, which sorted-pair trees cannot express.
     Beacon nonces: nonce(interval) = keccak(abi_encode(seed, interval)); the seed of
     epoch e is committed (hashed) when epoch e-1 is published and revealed with e.
     A skip of epochs [f, t) reveals the seed committed for f and commits t's, so the
     chain of commitments has no gap; the seeds of f+1 .. t-1 are never committed.
"""

from ethereum.ercs import IERC20
from snekmate.auth import ownable
from snekmate.utils import eip712_domain_separator as eip712
from snekmate.utils import merkle_proof_verification as merkle
from interfaces import INodeRegistry
from interfaces import IEmission

initializes: ownable
initializes: eip712

exports: (
    ownable.owner,
    ownable.transfer_ownership,
    eip712.eip712Domain,
)


interface INodeRegistryParams:
    def max_challenge_window() -> uint256: view


interface IDeviceRegistry:
    def key_valid_at(device: address, key: address, timestamp: uint64) -> bool: view
    def crowd_factor_bps(device: address) -> uint256: view
    def stake_of(device: address) -> uint256: view
    def stake_at(device: address, timestamp: uint256) -> uint256: view
    def owner_of(device: address) -> address: view
    def is_active(device: address) -> bool: view


struct Leaf:
    index: uint256
    device: address
    seq: uint64
    nonce: bytes32
    interval: uint64
    timestamp: uint64
    payload_hash: bytes32
    model_version: bytes32
    output_hash: bytes32
    v: uint8
    r: bytes32
    s: bytes32
    credit: uint64
    last_credit_interval: uint64

struct Gateway:
    bond: uint256
    next_epoch: uint64
    seed_hash: bytes32
    last_publish: uint64
    active: bool
    slashed: bool
    leaving_at: uint64

struct Epoch:
    root: bytes32
    counts_root: bytes32
    leaf_count: uint64
    depth: uint8
    seed: bytes32
    total_uptime: uint256
    published_at: uint64
    faulty: bool

struct Skip:
    end: uint64
    seed: bytes32
    skipped_at: uint64
    faulty: bool

event GatewayEnrolled:
    gateway: indexed(address)
    first_epoch: uint64
    bond: uint256

event EpochPublished:
    gateway: indexed(address)
    epoch: indexed(uint64)
    root: bytes32
    counts_root: bytes32
    leaf_count: uint64
    total_uptime: uint256

event EpochsSkipped:
    gateway: indexed(address)
    first_epoch: indexed(uint64)
    end_epoch: uint64

event FaultProven:
    gateway: indexed(address)
    epoch: indexed(uint64)
    challenger: indexed(address)
    kind: String[32]
    burned: uint256
    paid: uint256

event RewardPaid:
    device: indexed(address)
    epoch: indexed(uint64)
    gateway: indexed(address)
    owner: address
    uptime: uint256
    amount: uint256

event GatewayLeaving:
    gateway: indexed(address)

event BondWithdrawn:
    gateway: indexed(address)
    amount: uint256

event ChallengeCommitted:
    commitment: indexed(bytes32)
    challenger: indexed(address)

event ParametersChanged:
    challenge_period: uint256
    gateway_bond: uint256
    reward_per_interval: uint256
    stake_cap_bps: uint256

EDGE_GATEWAY_ROLE: public(constant(uint256)) = 8
EDGE_POOL: public(constant(uint256)) = 3
MAX_DEPTH: constant(uint256) = 32
READING_TYPEHASH: public(constant(bytes32)) = keccak256(
    "Reading(address device,uint64 seq,bytes32 nonce,uint64 timestamp,bytes32 payloadHash,bytes32 modelVersion,bytes32 outputHash)"
)
RECEIPT_TYPEHASH: public(constant(bytes32)) = keccak256("Receipt(bytes32 runsRoot)")
_MAX_S: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168

node_registry: public(immutable(INodeRegistry))
emission: public(immutable(IEmission))
device_registry: public(immutable(IDeviceRegistry))
epoch_length: public(immutable(uint64))
interval_length: public(immutable(uint64))

challenge_period: public(uint256)
gateway_bond: public(uint256)
reward_per_interval: public(uint256)
stake_cap_bps: public(uint256)

gateways: public(HashMap[address, Gateway])
epochs: public(HashMap[address, HashMap[uint64, Epoch]])
# A device is paid once per epoch, whichever gateway counted it.
claimed: public(HashMap[uint64, HashMap[address, bool]])
# Skipped ranges by their first epoch: epochs [first, end) published empty in one `skip`.
skips: public(HashMap[address, HashMap[uint64, Skip]])
# Challenge commitment -> block it was made in (0: none or spent).
challenge_commits: public(HashMap[bytes32, uint256])

# Challenge kinds, bound into commitments so one cannot be revealed as another.
_KIND_READING: constant(uint256) = 1
_KIND_PAIR: constant(uint256) = 2
_KIND_COUNT: constant(uint256) = 3
_KIND_OMISSION: constant(uint256) = 4
_KIND_EMPTY_SLOT: constant(uint256) = 5
_KIND_SKIPPED: constant(uint256) = 6


@deploy
def __init__(node_registry_: address, emission_: address, device_registry_: address,
             epoch_length_: uint64, interval_length_: uint64, challenge_period_: uint256,
             gateway_bond_: uint256, reward_per_interval_: uint256, stake_cap_bps_: uint256):
    """
    @param node_registry_ NodeRegistry (gateway role and bonds).
    @param emission_ Emission (pool EDGE pays rewards).
    @param device_registry_ DeviceRegistry (keys, stake, crowding).
    @param epoch_length_ Seconds per epoch (a multiple of interval_length_).
    @param interval_length_ Seconds per beacon interval (uptime unit).
    @param challenge_period_ Seconds after a publication during which faults can be proven.
    @param gateway_bond_ Bond locked per gateway, slashed on a proven fault.
    @param reward_per_interval_ Tokens per proven uptime interval before scaling.
    @param stake_cap_bps_ Per-epoch reward cap as basis points of the device stake.
    """
    ownable.__init__()
    eip712.__init__("proofmesh EdgeEpochs", "1")
    assert interval_length_ > 0 and epoch_length_ > 0, "EdgeEpochs: zero length"
    assert epoch_length_ % interval_length_ == 0, "EdgeEpochs: epoch not a multiple of interval"
    assert gateway_bond_ > 0, "EdgeEpochs: zero bond"
    assert challenge_period_ > 0, "EdgeEpochs: zero challenge period"
    assert challenge_period_ <= staticcall INodeRegistryParams(node_registry_).max_challenge_window(), "EdgeEpochs: challenge period too long"
    node_registry = INodeRegistry(node_registry_)
    emission = IEmission(emission_)
    device_registry = IDeviceRegistry(device_registry_)
    epoch_length = epoch_length_
    interval_length = interval_length_
    self.challenge_period = challenge_period_
    self.gateway_bond = gateway_bond_
    self.reward_per_interval = reward_per_interval_
    self.stake_cap_bps = stake_cap_bps_


# --- gateways ---------------------------------------------------------------------

@external
def enroll(first_epoch: uint64, seed_hash: bytes32):
    """
    @notice Start serving as an edge gateway: locks `gateway_bond` of the caller's
            NodeRegistry stake and commits the beacon seed of its first epoch.
    @param first_epoch The first epoch the gateway will publish (not in the past).
    @param seed_hash keccak256 of that epoch's secret beacon seed.
    """
    assert staticcall node_registry.has_role(msg.sender, EDGE_GATEWAY_ROLE), "EdgeEpochs: not an EDGE_GATEWAY node"
    g: Gateway = self.gateways[msg.sender]
    assert not g.active and g.bond == 0, "EdgeEpochs: already enrolled"
    assert not g.slashed, "EdgeEpochs: gateway was slashed"
    assert first_epoch >= self._current_epoch(), "EdgeEpochs: first epoch in the past"
    assert seed_hash != empty(bytes32), "EdgeEpochs: empty seed hash"
    bond: uint256 = self.gateway_bond
    self.gateways[msg.sender] = Gateway(bond=bond, next_epoch=first_epoch, seed_hash=seed_hash,
                                        last_publish=0, active=True, slashed=False, leaving_at=0)
    log GatewayEnrolled(gateway=msg.sender, first_epoch=first_epoch, bond=bond)
    extcall node_registry.lock_bond(msg.sender, bond)


@external
def publish(epoch: uint64, root: bytes32, counts_root: bytes32, leaf_count: uint64, depth: uint8,
            total_uptime: uint256, seed: bytes32, next_seed_hash: bytes32):
    """
    @notice Publish the caller's epoch: readings root, uptime-counts root, and the
            reveal of the epoch's beacon seed. Epochs are published in order, empty
            ones included (root = 0, leaf_count = 0), or skipped in a range (`skip`).
    @param epoch Must be the gateway's next epoch, and over.
    @param root Positional Merkle root of accepted-reading leaves (0 when empty).
    @param counts_root Sorted-pair Merkle root of (device, uptime) leaves.
    @param leaf_count Number of leaves; slots >= leaf_count are zero.
    @param depth Tree depth: the smallest d with 2**d >= leaf_count.
    @param total_uptime Sum of the per-device uptimes (informational).
    @param seed The epoch's beacon seed (hash committed earlier).
    @param next_seed_hash Commitment to the next epoch's seed.
    """
    g: Gateway = self.gateways[msg.sender]
    assert g.active, "EdgeEpochs: gateway not active"
    assert epoch == g.next_epoch, "EdgeEpochs: wrong epoch (publish in order)"
    assert block.timestamp >= convert(epoch + 1, uint256) * convert(epoch_length, uint256), "EdgeEpochs: epoch not over"
    assert keccak256(seed) == g.seed_hash, "EdgeEpochs: seed does not match commitment"
    assert next_seed_hash != empty(bytes32), "EdgeEpochs: empty next seed hash"
    assert convert(depth, uint256) <= MAX_DEPTH, "EdgeEpochs: depth too large"
    if leaf_count == 0:
        assert root == empty(bytes32) and depth == 0, "EdgeEpochs: empty epoch needs zero root"
    else:
        assert root != empty(bytes32), "EdgeEpochs: zero root"
        assert convert(leaf_count, uint256) <= 1 << convert(depth, uint256), "EdgeEpochs: depth too small"
        assert depth == 0 or convert(leaf_count, uint256) > 1 << convert(depth - 1, uint256), "EdgeEpochs: depth too large"
    self.epochs[msg.sender][epoch] = Epoch(root=root, counts_root=counts_root, leaf_count=leaf_count, depth=depth,
                                           seed=seed, total_uptime=total_uptime,
                                           published_at=convert(block.timestamp, uint64), faulty=False)
    self.gateways[msg.sender].next_epoch = epoch + 1
    self.gateways[msg.sender].seed_hash = next_seed_hash
    self.gateways[msg.sender].last_publish = convert(block.timestamp, uint64)
    log EpochPublished(gateway=msg.sender, epoch=epoch, root=root, counts_root=counts_root,
                       leaf_count=leaf_count, total_uptime=total_uptime)


@external
def skip(to_epoch: uint64, seed: bytes32, next_seed_hash: bytes32):
    """
    @notice Come back from downtime: every epoch from the caller's next epoch up to (not
            including) `to_epoch` counts as published empty, in one transaction, and the
            gateway continues at `to_epoch`. The skipped range pays no rewards and can be
            challenged for `challenge_period` like a published empty epoch: a reading the
            gateway receipted in it is an omission (`challenge_skipped`), so skipping cannot
            hide acknowledged readings.
    @dev Reveals the seed committed for the next epoch (the commitment chain stays
         unbroken; it is the first skipped epoch's seed) and commits `to_epoch`'s seed.
    @param to_epoch The epoch to continue at: after the next epoch, not after the current one.
    @param seed The beacon seed of the next epoch (hash committed earlier).
    @param next_seed_hash Commitment to `to_epoch`'s seed.
    """
    g: Gateway = self.gateways[msg.sender]
    assert g.active, "EdgeEpochs: gateway not active"
    assert to_epoch > g.next_epoch, "EdgeEpochs: skip must go past the next epoch"
    assert to_epoch <= self._current_epoch(), "EdgeEpochs: skip beyond the current epoch"
    assert keccak256(seed) == g.seed_hash, "EdgeEpochs: seed does not match commitment"
    assert next_seed_hash != empty(bytes32), "EdgeEpochs: empty next seed hash"
    now: uint64 = convert(block.timestamp, uint64)
    self.skips[msg.sender][g.next_epoch] = Skip(end=to_epoch, seed=seed, skipped_at=now, faulty=False)
    self.gateways[msg.sender].next_epoch = to_epoch
    self.gateways[msg.sender].seed_hash = next_seed_hash
    # The bond stays locked until the skip's challenge period is over (withdraw_bond).
    self.gateways[msg.sender].last_publish = now
    log EpochsSkipped(gateway=msg.sender, first_epoch=g.next_epoch, end_epoch=to_epoch)


@external
def leave():
    """
    @notice Stop publishing; the bond can be withdrawn once the challenge period
            of the last publication (and of leaving) has passed.
    """
    g: Gateway = self.gateways[msg.sender]
    assert g.active, "EdgeEpochs: gateway not active"
    self.gateways[msg.sender].active = False
    self.gateways[msg.sender].leaving_at = convert(block.timestamp, uint64)
    log GatewayLeaving(gateway=msg.sender)


@external
def withdraw_bond():
    """
    @notice Release a departed gateway's bond in NodeRegistry after the challenge period.
    """
    g: Gateway = self.gateways[msg.sender]
    assert not g.active and g.leaving_at > 0, "EdgeEpochs: call leave() first"
    assert g.bond > 0, "EdgeEpochs: no bond"
    last: uint256 = max(convert(g.leaving_at, uint256), convert(g.last_publish, uint256))
    assert block.timestamp >= last + self.challenge_period, "EdgeEpochs: challenge period not over"
    self.gateways[msg.sender].bond = 0
    log BondWithdrawn(gateway=msg.sender, amount=g.bond)
    extcall node_registry.release_bond(msg.sender, g.bond)


# --- challenges -------------------------------------------------------------------

@external
def commit_challenge(commitment: bytes32):
    """
    @notice First step of every challenge (audit M8): commit to
            keccak256(abi_encode(challenger, challenge_hash, salt)), where challenge_hash is
            keccak256(abi_encode(kind, gateway, epoch, data)) with the kind and data each
            `challenge_*` function documents. Reveal with that function, from the same
            address, in a later block and while the epoch's challenge period is open; only
            the committer can reveal, so only the committer is paid.
    @param commitment The commitment hash.
    """
    assert commitment != empty(bytes32), "EdgeEpochs: empty commitment"
    assert self.challenge_commits[commitment] == 0, "EdgeEpochs: commitment exists"
    self.challenge_commits[commitment] = block.number
    log ChallengeCommitted(commitment=commitment, challenger=msg.sender)


@external
def challenge_reading(gateway: address, epoch: uint64, leaf: Leaf, proof: DynArray[bytes32, MAX_DEPTH], salt: bytes32):
    """
    @notice Prove that a leaf in the root is not a valid reading: bad or malleable
            device signature, key not valid at its timestamp, a nonce that is not the
            gateway's beacon for its interval, or an interval/timestamp outside the epoch.
    @param gateway The publishing gateway.
    @param epoch The epoch.
    @param leaf The leaf's fields.
    @param proof Positional Merkle proof of the leaf at leaf.index.
    @param salt The commitment's salt (kind 1, data = leaf_hash(leaf)).
    """
    e: Epoch = self._open_epoch(gateway, epoch)
    self._reveal(_KIND_READING, gateway, epoch, self._leaf_hash(leaf), salt)
    self._check_leaf(e, leaf, proof)
    assert not self._reading_valid(e.seed, True, epoch, leaf), "EdgeEpochs: reading is valid"
    self._slash(gateway, epoch, "invalid-reading")


@external
def challenge_pair(gateway: address, epoch: uint64, has_a: bool, a: Leaf, a_proof: DynArray[bytes32, MAX_DEPTH],
                   has_b: bool, b: Leaf, b_proof: DynArray[bytes32, MAX_DEPTH], salt: bytes32):
    """
    @notice Prove that two adjacent leaves (or the first/last leaf) break the tree's
            rules: order by (device, seq), non-decreasing timestamps per device, or the
            running uptime count (credit) arithmetic.
    @param gateway The publishing gateway.
    @param epoch The epoch.
    @param has_a False when `b` is the first leaf (index 0).
    @param a The leaf at index i.
    @param a_proof Its proof.
    @param has_b False when `a` is the last leaf (index leaf_count - 1).
    @param b The leaf at index i + 1.
    @param b_proof Its proof.
    @param salt The commitment's salt (kind 2, data = keccak256(abi_encode(has_a, leaf_hash(a), has_b, leaf_hash(b)))).
    """
    e: Epoch = self._open_epoch(gateway, epoch)
    self._reveal(_KIND_PAIR, gateway, epoch, self._pair_hash(has_a, a, has_b, b), salt)
    self._check_pair(e, has_a, a, a_proof, has_b, b, b_proof)
    assert has_b, "EdgeEpochs: nothing to check after the last leaf"
    assert not self._pair_consistent(has_a, a, b), "EdgeEpochs: leaves are consistent"
    self._slash(gateway, epoch, "inconsistent-leaves")


@external
def challenge_count(gateway: address, epoch: uint64, device: address, uptime: uint256,
                    count_proof: DynArray[bytes32, 255], has_a: bool, a: Leaf, a_proof: DynArray[bytes32, MAX_DEPTH],
                    has_b: bool, b: Leaf, b_proof: DynArray[bytes32, MAX_DEPTH], salt: bytes32):
    """
    @notice Prove that a published uptime count is contradicted by the sorted leaves:
            either the device's last leaf (a, followed by another device or the end)
            carries a different running count, or the device has no leaf at all
            (a < device < b) yet a non-zero count.
    @param gateway The publishing gateway.
    @param epoch The epoch.
    @param device The device whose count is wrong.
    @param uptime The count the gateway published for it.
    @param count_proof Sorted-pair proof of (device, uptime) in counts_root.
    @param has_a False when the boundary is before the first leaf.
    @param a Leaf at index i.
    @param a_proof Its proof.
    @param has_b False when the boundary is after the last leaf.
    @param b Leaf at index i + 1.
    @param b_proof Its proof.
    @param salt The commitment's salt (kind 3, data = keccak256(abi_encode(device, uptime,
           keccak256(abi_encode(has_a, leaf_hash(a), has_b, leaf_hash(b)))))).
    """
    e: Epoch = self._open_epoch(gateway, epoch)
    self._reveal(_KIND_COUNT, gateway, epoch,
                 keccak256(abi_encode(device, uptime, self._pair_hash(has_a, a, has_b, b))), salt)
    count_leaf: bytes32 = keccak256(keccak256(abi_encode(device, uptime)))
    assert merkle._verify(count_proof, e.counts_root, count_leaf), "EdgeEpochs: count not in counts root"
    self._check_pair(e, has_a, a, a_proof, has_b, b, b_proof)
    a_is_device: bool = has_a and a.device == device
    b_is_device: bool = has_b and b.device == device
    fault: bool = False
    if a_is_device and not b_is_device:
        # a is the device's last leaf: its running count is the device's uptime.
        fault = convert(a.credit, uint256) != uptime
    elif not a_is_device and not b_is_device:
        # The device sorts strictly between a and b: it has no leaf in this epoch.
        below: bool = (not has_a) or convert(a.device, uint256) < convert(device, uint256)
        above: bool = (not has_b) or convert(device, uint256) < convert(b.device, uint256)
        assert below and above, "EdgeEpochs: device not between the leaves"
        fault = uptime > 0
    else:
        raise "EdgeEpochs: leaves do not bound the device"
    assert fault, "EdgeEpochs: count matches the leaves"
    self._slash(gateway, epoch, "wrong-count")


@external
def challenge_omission(gateway: address, epoch: uint64, reading: Leaf, first_seq: uint64, last_seq: uint64,
                       runs_root: bytes32, run_proof: DynArray[bytes32, 255], rv: uint8, rr: bytes32, rs: bytes32,
                       has_a: bool, a: Leaf, a_proof: DynArray[bytes32, MAX_DEPTH],
                       has_b: bool, b: Leaf, b_proof: DynArray[bytes32, MAX_DEPTH], salt: bytes32):
    """
    @notice Prove that the gateway acknowledged a valid reading but left it out of the
            root. A batch receipt is an EIP-712 Receipt(runsRoot) signed by the gateway,
            where runsRoot is a sorted-pair Merkle root of (device, epoch, firstSeq, lastSeq)
            runs of consecutive accepted seqs (one signature per batch). The reading's
            (device, seq) sorts strictly between the adjacent leaves a and b. The reading
            itself must be valid (device signature, key, beacon), so a gateway never has
            to include an invalid reading it acknowledged by mistake.
    @param gateway The publishing gateway (the receipt's signer).
    @param epoch The epoch named in the receipt.
    @param reading The omitted reading (index, credit and last_credit_interval are ignored).
    @param first_seq First sequence number the receipt acknowledges.
    @param last_seq Last sequence number the receipt acknowledges.
    @param runs_root The receipt's runs root.
    @param run_proof Proof of (device, epoch, first_seq, last_seq) in runs_root.
    @param rv Receipt signature v.
    @param rr Receipt signature r.
    @param rs Receipt signature s.
    @param has_a False when the gap is before the first leaf.
    @param a Leaf at index i.
    @param a_proof Its proof.
    @param has_b False when the gap is after the last leaf.
    @param b Leaf at index i + 1.
    @param b_proof Its proof.
    @param salt The commitment's salt (kind 4, data = keccak256(abi_encode(leaf_hash(reading),
           first_seq, last_seq, runs_root, keccak256(abi_encode(has_a, leaf_hash(a), has_b, leaf_hash(b)))))).
    """
    e: Epoch = self._open_epoch(gateway, epoch)
    self._reveal(_KIND_OMISSION, gateway, epoch, keccak256(abi_encode(
        self._leaf_hash(reading), first_seq, last_seq, runs_root, self._pair_hash(has_a, a, has_b, b))), salt)
    self._check_receipt(gateway, epoch, reading, first_seq, last_seq, runs_root, run_proof, rv, rr, rs)
    assert self._reading_valid(e.seed, True, epoch, reading), "EdgeEpochs: omitted reading is not valid"
    self._check_pair(e, has_a, a, a_proof, has_b, b, b_proof)
    below: bool = (not has_a) or self._key_lt(a.device, a.seq, reading.device, reading.seq)
    above: bool = (not has_b) or self._key_lt(reading.device, reading.seq, b.device, b.seq)
    assert below and above, "EdgeEpochs: reading is not missing between the leaves"
    self._slash(gateway, epoch, "omitted-reading")


@external
def challenge_skipped(gateway: address, first_epoch: uint64, epoch: uint64, reading: Leaf, first_seq: uint64,
                      last_seq: uint64, runs_root: bytes32, run_proof: DynArray[bytes32, 255], rv: uint8, rr: bytes32,
                      rs: bytes32, salt: bytes32):
    """
    @notice Prove that the gateway acknowledged a valid reading in an epoch it then skipped
            (declared empty with `skip`): the omission challenge of a skipped range. The
            receipt is checked as in `challenge_omission`; there are no leaves to bound the gap.
    @dev The reading's signature, key validity and interval/timestamp are checked; its
         beacon nonce only in the range's first epoch, the one skipped epoch whose seed is on
         chain. Later skipped epochs' seeds were never committed, so their nonces cannot be
         checked; the gateway's own signed receipt stands in for that check (it receipts
         only readings carrying its beacon), and requiring it would let a gateway that
         served those epochs dodge every omission by skipping them.
    @param gateway The skipping gateway (the receipt's signer).
    @param first_epoch First epoch of the skipped range (EpochsSkipped.first_epoch).
    @param epoch The epoch named in the receipt, inside the range.
    @param reading The omitted reading (index, credit and last_credit_interval are ignored).
    @param first_seq First sequence number the receipt acknowledges.
    @param last_seq Last sequence number the receipt acknowledges.
    @param runs_root The receipt's runs root.
    @param run_proof Proof of (device, epoch, first_seq, last_seq) in runs_root.
    @param rv Receipt signature v.
    @param rr Receipt signature r.
    @param rs Receipt signature s.
    @param salt The commitment's salt (kind 6, data = keccak256(abi_encode(leaf_hash(reading),
           first_seq, last_seq, runs_root, first_epoch))).
    """
    s: Skip = self.skips[gateway][first_epoch]
    assert s.skipped_at > 0, "EdgeEpochs: no skipped range starts at first_epoch"
    assert first_epoch <= epoch and epoch < s.end, "EdgeEpochs: epoch not in the skipped range"
    assert not s.faulty, "EdgeEpochs: skipped range already proven faulty"
    assert block.timestamp < convert(s.skipped_at, uint256) + self.challenge_period, "EdgeEpochs: challenge period over"
    self._reveal(_KIND_SKIPPED, gateway, epoch, keccak256(abi_encode(
        self._leaf_hash(reading), first_seq, last_seq, runs_root, first_epoch)), salt)
    self._check_receipt(gateway, epoch, reading, first_seq, last_seq, runs_root, run_proof, rv, rr, rs)
    assert self._reading_valid(s.seed, epoch == first_epoch, epoch, reading), "EdgeEpochs: omitted reading is not valid"
    self.skips[gateway][first_epoch].faulty = True
    self._slash(gateway, epoch, "skipped-reading")


@external
def challenge_empty_slot(gateway: address, epoch: uint64, index: uint256, proof: DynArray[bytes32, MAX_DEPTH],
                         salt: bytes32):
    """
    @notice Prove that a slot below leaf_count is empty (the published count lies).
    @param gateway The publishing gateway.
    @param epoch The epoch.
    @param index The slot index (< leaf_count).
    @param proof Positional proof of a zero slot at `index`.
    @param salt The commitment's salt (kind 5, data = bytes32(index)).
    """
    e: Epoch = self._open_epoch(gateway, epoch)
    self._reveal(_KIND_EMPTY_SLOT, gateway, epoch, convert(index, bytes32), salt)
    assert index < convert(e.leaf_count, uint256), "EdgeEpochs: slot beyond leaf count"
    assert len(proof) == convert(e.depth, uint256), "EdgeEpochs: proof length != depth"
    assert self._positional_root(empty(bytes32), index, proof) == e.root, "EdgeEpochs: bad proof"
    self._slash(gateway, epoch, "empty-slot")


# --- rewards ----------------------------------------------------------------------

@external
def claim(gateway: address, epoch: uint64, device: address, uptime: uint256, count_proof: DynArray[bytes32, 255]) -> uint256:
    """
    @notice Pay a device's owner for its proven uptime in an epoch not proven faulty whose
            challenge period is over: uptime * reward_per_interval, scaled by the cell's
            crowd factor, capped at stake * stake_cap_bps / 10000 (the lower of the stake at
            the epoch's start and at its end), limited by the pool. Only the epoch's own
            fault voids it (audit L5): a gateway slashed for a later epoch, or a device
            deregistered since, does not forfeit an honest epoch.
            Anyone may call; the owner is paid.
    @param gateway The gateway that counted the device.
    @param epoch The epoch.
    @param device The device ID.
    @param uptime The device's published uptime (intervals).
    @param count_proof Sorted-pair proof of (device, uptime) in the epoch's counts root.
    @return Amount paid.
    """
    e: Epoch = self.epochs[gateway][epoch]
    assert e.published_at > 0, "EdgeEpochs: epoch not published"
    assert not e.faulty, "EdgeEpochs: epoch proven faulty"
    assert block.timestamp >= convert(e.published_at, uint256) + self.challenge_period, "EdgeEpochs: challenge period not over"
    assert not self.claimed[epoch][device], "EdgeEpochs: already claimed"
    assert uptime > 0, "EdgeEpochs: no uptime"
    count_leaf: bytes32 = keccak256(keccak256(abi_encode(device, uptime)))
    assert merkle._verify(count_proof, e.counts_root, count_leaf), "EdgeEpochs: count not in counts root"
    owner: address = staticcall device_registry.owner_of(device)
    amount: uint256 = uptime * self.reward_per_interval * staticcall device_registry.crowd_factor_bps(device) // 10000
    # Only stake in place for the whole epoch counts: not a top-up after it started (audit M7),
    # not a device deregistered before it ended (its stake history then reads 0).
    start: uint256 = convert(epoch, uint256) * convert(epoch_length, uint256)
    stake: uint256 = min(staticcall device_registry.stake_at(device, start),
                         staticcall device_registry.stake_at(device, start + convert(epoch_length, uint256) - 1))
    cap: uint256 = stake * self.stake_cap_bps // 10000
    amount = min(amount, cap)
    amount = min(amount, staticcall emission.pool_balance(EDGE_POOL))
    self.claimed[epoch][device] = True
    log RewardPaid(device=device, epoch=epoch, gateway=gateway, owner=owner, uptime=uptime, amount=amount)
    if amount > 0:
        extcall emission.pay_reward(EDGE_POOL, owner, amount)
    return amount


@external
def set_parameters(challenge_period_: uint256, gateway_bond_: uint256, reward_per_interval_: uint256,
                   stake_cap_bps_: uint256):
    """
    @notice Change parameters (owner = governance timelock). A new bond applies to
            gateways enrolling afterwards.
    @param challenge_period_ Seconds during which a publication can be challenged
           (> 0 and <= NodeRegistry.max_challenge_window, so bonds cannot unbond first).
    @param gateway_bond_ Bond per gateway (> 0).
    @param reward_per_interval_ Tokens per uptime interval.
    @param stake_cap_bps_ Reward cap in basis points of stake.
    """
    ownable._check_owner()
    assert gateway_bond_ > 0, "EdgeEpochs: zero bond"
    assert challenge_period_ > 0, "EdgeEpochs: zero challenge period"
    assert challenge_period_ <= staticcall INodeRegistryParams(node_registry.address).max_challenge_window(), "EdgeEpochs: challenge period too long"
    self.challenge_period = challenge_period_
    self.gateway_bond = gateway_bond_
    self.reward_per_interval = reward_per_interval_
    self.stake_cap_bps = stake_cap_bps_
    log ParametersChanged(challenge_period=challenge_period_, gateway_bond=gateway_bond_,
                          reward_per_interval=reward_per_interval_, stake_cap_bps=stake_cap_bps_)


# --- views ------------------------------------------------------------------------

@view
@external
def current_epoch() -> uint64:
    """
    @notice The epoch that contains the current block's timestamp.
    @return Epoch number.
    """
    return self._current_epoch()


@view
@external
def reading_digest(device: address, seq: uint64, nonce: bytes32, timestamp: uint64, payload_hash: bytes32,
                   model_version: bytes32, output_hash: bytes32) -> bytes32:
    """
    @notice EIP-712 digest a device signs for a reading (for off-chain cross-checks).
    @return The digest.
    """
    return eip712._hash_typed_data_v4(keccak256(abi_encode(
        READING_TYPEHASH, device, seq, nonce, timestamp, payload_hash, model_version, output_hash)))


@pure
@external
def leaf_hash(leaf: Leaf) -> bytes32:
    """
    @notice The tree leaf of a reading (double keccak of its ABI encoding).
    @param leaf The leaf's fields.
    @return The leaf hash.
    """
    return self._leaf_hash(leaf)


# --- internals --------------------------------------------------------------------

@view
@internal
def _current_epoch() -> uint64:
    return convert(block.timestamp // convert(epoch_length, uint256), uint64)


@view
@internal
def _open_epoch(gateway: address, epoch: uint64) -> Epoch:
    e: Epoch = self.epochs[gateway][epoch]
    assert e.published_at > 0, "EdgeEpochs: epoch not published"
    assert not e.faulty, "EdgeEpochs: epoch already proven faulty"
    assert block.timestamp < convert(e.published_at, uint256) + self.challenge_period, "EdgeEpochs: challenge period over"
    return e


@pure
@internal
def _leaf_hash(l: Leaf) -> bytes32:
    # Double hashing (as OpenZeppelin's StandardMerkleTree) keeps leaves distinct from inner nodes.
    return keccak256(keccak256(abi_encode(
        l.index, l.device, l.seq, l.nonce, l.interval, l.timestamp, l.payload_hash, l.model_version,
        l.output_hash, l.v, l.r, l.s, l.credit, l.last_credit_interval)))


@pure
@internal
def _positional_root(leaf: bytes32, index: uint256, proof: DynArray[bytes32, MAX_DEPTH]) -> bytes32:
    node: bytes32 = leaf
    idx: uint256 = index
    for sibling: bytes32 in proof:
        if idx % 2 == 0:
            node = keccak256(concat(node, sibling))
        else:
            node = keccak256(concat(sibling, node))
        idx = idx // 2
    return node


@view
@internal
def _check_leaf(e: Epoch, leaf: Leaf, proof: DynArray[bytes32, MAX_DEPTH]):
    assert leaf.index < convert(e.leaf_count, uint256), "EdgeEpochs: index beyond leaf count"
    assert len(proof) == convert(e.depth, uint256), "EdgeEpochs: proof length != depth"
    assert self._positional_root(self._leaf_hash(leaf), leaf.index, proof) == e.root, "EdgeEpochs: leaf not in root"


@view
@internal
def _check_pair(e: Epoch, has_a: bool, a: Leaf, a_proof: DynArray[bytes32, MAX_DEPTH],
                has_b: bool, b: Leaf, b_proof: DynArray[bytes32, MAX_DEPTH]):
    if not has_a and not has_b:
        # Only an empty epoch has no boundary leaf at all.
        assert e.leaf_count == 0, "EdgeEpochs: no leaf given"
        return
    if has_a:
        self._check_leaf(e, a, a_proof)
    if has_b:
        self._check_leaf(e, b, b_proof)
    if has_a and has_b:
        assert b.index == a.index + 1, "EdgeEpochs: leaves not adjacent"
    elif has_b:
        assert b.index == 0, "EdgeEpochs: b is not the first leaf"
    else:
        assert a.index + 1 == convert(e.leaf_count, uint256), "EdgeEpochs: a is not the last leaf"


@pure
@internal
def _key_lt(d1: address, s1: uint64, d2: address, s2: uint64) -> bool:
    if d1 != d2:
        return convert(d1, uint256) < convert(d2, uint256)
    return s1 < s2


@view
@internal
def _credited(l: Leaf) -> bool:
    # A reading earns uptime only for the interval whose beacon it carries, and only if it
    # was made inside that interval: buffered readings signed with a stale beacon are kept
    # but earn nothing.
    return convert(l.timestamp, uint256) // convert(interval_length, uint256) == convert(l.interval, uint256)


@view
@internal
def _pair_consistent(has_a: bool, a: Leaf, b: Leaf) -> bool:
    same: bool = has_a and a.device == b.device
    if has_a and not self._key_lt(a.device, a.seq, b.device, b.seq):
        return False
    if same and a.timestamp > b.timestamp:
        return False
    prev_credit: uint64 = 0
    prev_interval: uint64 = 0
    if same:
        prev_credit = a.credit
        prev_interval = a.last_credit_interval
    new_interval: bool = self._credited(b) and (b.interval != prev_interval or prev_credit == 0)
    if new_interval:
        return b.credit == prev_credit + 1 and b.last_credit_interval == b.interval
    return b.credit == prev_credit and b.last_credit_interval == prev_interval


@view
@internal
def _reading_valid(seed: bytes32, check_nonce: bool, epoch: uint64, l: Leaf) -> bool:
    el: uint256 = convert(epoch_length, uint256)
    il: uint256 = convert(interval_length, uint256)
    start: uint256 = convert(epoch, uint256) * el
    if convert(l.interval, uint256) * il < start or convert(l.interval, uint256) * il >= start + el:
        return False
    if convert(l.timestamp, uint256) < convert(l.interval, uint256) * il or convert(l.timestamp, uint256) >= start + el:
        return False
    if check_nonce and l.nonce != keccak256(abi_encode(seed, l.interval)):
        return False
    if convert(l.s, uint256) > _MAX_S or (l.v != 27 and l.v != 28):
        return False
    digest: bytes32 = eip712._hash_typed_data_v4(keccak256(abi_encode(
        READING_TYPEHASH, l.device, l.seq, l.nonce, l.timestamp, l.payload_hash, l.model_version, l.output_hash)))
    signer: address = ecrecover(digest, l.v, l.r, l.s)
    if signer == empty(address):
        return False
    return staticcall device_registry.key_valid_at(l.device, signer, l.timestamp)


@view
@internal
def _check_receipt(gateway: address, epoch: uint64, reading: Leaf, first_seq: uint64, last_seq: uint64,
                   runs_root: bytes32, run_proof: DynArray[bytes32, 255], rv: uint8, rr: bytes32, rs: bytes32):
    assert first_seq <= reading.seq and reading.seq <= last_seq, "EdgeEpochs: seq outside the receipt"
    assert convert(rs, uint256) <= _MAX_S, "EdgeEpochs: malleable signature"
    run_leaf: bytes32 = keccak256(keccak256(abi_encode(reading.device, epoch, first_seq, last_seq)))
    assert merkle._verify(run_proof, runs_root, run_leaf), "EdgeEpochs: run not in the receipt"
    receipt_hash: bytes32 = keccak256(abi_encode(RECEIPT_TYPEHASH, runs_root))
    assert ecrecover(eip712._hash_typed_data_v4(receipt_hash), rv, rr, rs) == gateway, "EdgeEpochs: receipt not signed by gateway"


@internal
def _reveal(kind: uint256, gateway: address, epoch: uint64, data: bytes32, salt: bytes32):
    # The commitment binds msg.sender: a copied reveal hashes to a commitment nobody made.
    commitment: bytes32 = keccak256(abi_encode(msg.sender, keccak256(abi_encode(kind, gateway, epoch, data)), salt))
    committed: uint256 = self.challenge_commits[commitment]
    assert committed != 0, "EdgeEpochs: no commitment from this sender"
    assert block.number > committed, "EdgeEpochs: reveal in a later block than the commit"
    self.challenge_commits[commitment] = 0


@pure
@internal
def _pair_hash(has_a: bool, a: Leaf, has_b: bool, b: Leaf) -> bytes32:
    return keccak256(abi_encode(has_a, self._leaf_hash(a), has_b, self._leaf_hash(b)))


@internal
def _slash(gateway: address, epoch: uint64, kind: String[32]):
    amount: uint256 = self.gateways[gateway].bond
    self.epochs[gateway][epoch].faulty = True
    self.gateways[gateway].slashed = True
    self.gateways[gateway].active = False
    self.gateways[gateway].bond = 0
    burned: uint256 = 0
    paid: uint256 = 0
    if amount > 0:
        burned, paid = extcall node_registry.slash(gateway, amount, msg.sender)
    log FaultProven(gateway=gateway, epoch=epoch, challenger=msg.sender, kind=kind, burned=burned, paid=paid)
