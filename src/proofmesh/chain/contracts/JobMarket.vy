# pragma version ~=0.4.3
# pragma optimize codesize
"""
@title JobMarket
@notice A market for fine-tuning jobs. A poster escrows a MESH reward for a job
        spec (stored off chain by CID); staked COMPUTE nodes apply with a bond
        locked from their NodeRegistry stake; after applications close, the
        contract commits to a future block and draws the workers from the
        applicants, stake-weighted (each applicant's weight capped at
        `max_share_bps` of the applicants' total), with that block's hash, which
        nobody knew when they applied. Two verification modes:
        - REPLICATED (odd replicas >= 3): commit keccak(abi.encode(job, worker,
          weights_root, trace_root, salt)) -> reveal. Unanimous reveals by a majority pay;
          dissent goes to the referee, who re-executes the first disputed segment
          and names the replicas within tolerance; the others are slashed.
          A replica that does not commit in time loses its bond and the slot is
          re-drawn from new applicants; one that commits but does not reveal
          loses its bond.
        - OPTIMISTIC (one worker): the worker submits its weights root and the
          Merkle root of its checkpoint trace to the OptimisticVerifier, which runs
          the challenge window, the bisection game and random audits, and reports
          the outcome here (settle, or slash and refund).
        Settlement pays the worker(s) and registers the result once as a child
        model version in the ModelRegistry (if that fails, e.g. the weights are
        already registered, settlement still pays and logs why). Nobody can take
        the result first (audit L2): `post` claims the lineage name for the poster
        and every reveal/submission holds its weights root for this job, in the
        transaction that makes it public, until the job closes (`job_open`).
@dev Revert reasons carry no contract prefix (code-size budget); clients name the contract.
     Books: token.balanceOf(self) == total_escrowed at all times; bonds live in
     NodeRegistry (locked/released/slashed through it). The referee is a
     governance-appointed account: a declared trust assumption, bounded by the
     protocol to ruling on one segment (or the sampled audit segments).
"""

from snekmate.auth import ownable

initializes: ownable
exports: (ownable.owner, ownable.transfer_ownership)

from .interfaces import IMeshToken
from .interfaces import INodeRegistry

interface IModelRegistry:
    def version_count() -> uint256: view
    def version_of_root(root: bytes32) -> uint256: view
    # Return values (bytes32, bool) left undeclared: unused here, and unchecked is smaller.
    def reserve_name(owner: address, name: String[64]): nonpayable
    def hold_root(weights_root: bytes32, job_id: uint256): nonpayable

MODE_REPLICATED: public(constant(uint8)) = 0
MODE_OPTIMISTIC: public(constant(uint8)) = 1

# Job status
OPEN: public(constant(uint8)) = 1          # taking applications
ASSIGNING: public(constant(uint8)) = 2     # applications closed, waiting for the seed block
WORKING: public(constant(uint8)) = 3       # workers drawn: commit (replicated) / submit (optimistic)
REVEAL: public(constant(uint8)) = 4        # replicated: reveal phase
SUBMITTED: public(constant(uint8)) = 5     # optimistic: challenge window / audit
DISPUTED: public(constant(uint8)) = 6      # replicated: waiting for the referee
SETTLED: public(constant(uint8)) = 7
REFUNDED: public(constant(uint8)) = 8
CANCELLED: public(constant(uint8)) = 9

# Per-worker slot state
S_NONE: constant(uint8) = 0
S_APPLIED: constant(uint8) = 1
S_ASSIGNED: constant(uint8) = 2
S_COMMITTED: constant(uint8) = 3
S_REVEALED: constant(uint8) = 4
S_DONE: constant(uint8) = 5       # bond released or slashed; excluded from this job
S_DROPPED: constant(uint8) = 6    # applied, not drawn; bond released (may not re-apply)

ROLE_COMPUTE: constant(uint256) = 2
MAX_REPLICAS: constant(uint256) = 9
MAX_APPLICANTS: constant(uint256) = 32
MAX_BATCHES: constant(uint256) = 32
MAX_SEGMENTS: constant(uint256) = 256
MAX_ROUNDS: constant(uint256) = 3
SEED_DELAY: constant(uint256) = 2
_REGISTER_GAS: constant(uint256) = 1_000_000
_BPS: constant(uint256) = 10_000

struct Job:
    poster: address
    reward: uint256
    mode: uint8
    status: uint8
    replicas: uint256
    n_segments: uint256
    base_version: uint256
    profile: bytes32
    apply_close: uint256
    deadline: uint256
    work_seconds: uint256
    phase_deadline: uint256
    seed_block: uint256
    round: uint256
    committed: uint256
    revealed: uint256
    worker_bond: uint256
    weights_root: bytes32
    trace_root: bytes32
    version_id: uint256

struct Slot:
    state: uint8
    commitment: bytes32
    weights_root: bytes32
    trace_root: bytes32
    stake: uint256  # stake at application: the draw's weight, fixed before the seed exists

token: public(immutable(IMeshToken))
registry: public(immutable(INodeRegistry))
models: public(immutable(IModelRegistry))

# @notice Jobs by id (ids start at 1).
jobs: public(HashMap[uint256, Job])
job_count: public(uint256)
# @notice Spec CID, lineage name and result locators of each job.
spec_cid: HashMap[uint256, String[128]]
lineage: HashMap[uint256, String[64]]
manifest_cid: HashMap[uint256, String[128]]
result_cid: HashMap[uint256, String[128]]
_batches: HashMap[uint256, DynArray[bytes32, MAX_BATCHES]]
# @notice Per-job, per-node slot (application, commitment, reveal).
slots: public(HashMap[uint256, HashMap[address, Slot]])
_applicants: HashMap[uint256, DynArray[address, MAX_APPLICANTS]]
_workers: HashMap[uint256, DynArray[address, MAX_REPLICAS]]
# @notice Sum of all rewards held in escrow (== token balance of this contract).
total_escrowed: public(uint256)

# --- parameters (owner = Governance timelock) ---
referee: public(address)
# @notice The OptimisticVerifier contract (set once by the owner at deployment).
verifier: public(address)
min_reward: public(uint256)
worker_bond: public(uint256)
reveal_window: public(uint256)
referee_window: public(uint256)
max_share_bps: public(uint256)

event JobPosted:
    job_id: indexed(uint256)
    poster: indexed(address)
    mode: uint8
    replicas: uint256
    reward: uint256
    spec_cid: String[128]
    base_version: uint256
    profile: bytes32
    n_segments: uint256
    apply_close: uint256
    deadline: uint256

event JobCancelled:
    job_id: indexed(uint256)
    refunded: uint256

event Applied:
    job_id: indexed(uint256)
    node: indexed(address)
    bond: uint256

event ApplicationsClosed:
    job_id: indexed(uint256)
    seed_block: uint256
    applicants: uint256

event WorkerAssigned:
    job_id: indexed(uint256)
    worker: indexed(address)
    round: uint256
    phase_deadline: uint256

event ApplicantDropped:
    job_id: indexed(uint256)
    node: indexed(address)

event Committed:
    job_id: indexed(uint256)
    worker: indexed(address)
    commitment: bytes32

event RevealPhase:
    job_id: indexed(uint256)
    reveal_deadline: uint256

event Revealed:
    job_id: indexed(uint256)
    worker: indexed(address)
    weights_root: bytes32
    trace_root: bytes32
    result_cid: String[128]

event ResultSubmitted:
    job_id: indexed(uint256)
    worker: indexed(address)
    weights_root: bytes32
    trace_root: bytes32

event WorkerSlashed:
    job_id: indexed(uint256)
    worker: indexed(address)
    amount: uint256
    recipient: address
    reason: String[32]

event Reassigned:
    job_id: indexed(uint256)
    round: uint256
    open_slots: uint256
    apply_close: uint256

event ReplicaDispute:
    job_id: indexed(uint256)
    revealers: uint256
    referee_deadline: uint256

event JobSettled:
    job_id: indexed(uint256)
    weights_root: bytes32
    trace_root: bytes32
    paid_workers: uint256
    reward: uint256

event WorkerPaid:
    job_id: indexed(uint256)
    worker: indexed(address)
    amount: uint256

event ResultRegistered:
    job_id: indexed(uint256)
    version_id: uint256
    ok: bool
    reason: String[64]

event JobRefunded:
    job_id: indexed(uint256)
    poster: indexed(address)
    amount: uint256
    reason: String[32]

event ParameterChanged:
    name: String[32]
    value: uint256

event VerifierSet:
    verifier: indexed(address)

event RefereeChanged:
    referee: indexed(address)


@deploy
def __init__(token_: IMeshToken, registry_: INodeRegistry, models_: IModelRegistry, referee_: address):
    """
    @notice Deploy the market with default parameters (changed later through Governance).
    @param token_ The MESH token.
    @param registry_ NodeRegistry (bonds and slashing; this contract must be a domain there).
    @param models_ ModelRegistry (this contract must be a registrar there).
    @param referee_ Account that re-executes disputed segments and audits.
    """
    assert referee_ != empty(address), "referee is the zero address"
    ownable.__init__()
    token = token_
    registry = registry_
    models = models_
    self.referee = referee_
    self.min_reward = 10**18
    self.worker_bond = 50 * 10**18
    self.reveal_window = 600
    self.referee_window = 1800
    self.max_share_bps = 4_000


# ================================================================ poster

@external
@nonreentrant
def post(spec_cid_: String[128], name: String[64], base_version: uint256,
         batches: DynArray[bytes32, MAX_BATCHES], mode: uint8, replicas: uint256, n_segments: uint256,
         profile: bytes32, reward: uint256, apply_seconds: uint256, work_seconds: uint256,
         deadline: uint256) -> uint256:
    """
    @notice Post a fine-tuning job and escrow `reward` MESH (approve this contract first).
    @param spec_cid_ CID of the job spec blob.
    @param name Lineage name the result is registered under: claimed for the poster now
                (reverts if another account owns it).
    @param base_version ModelRegistry id of the base model (must exist).
    @param batches Data batch roots the job trains on (1..32).
    @param mode MODE_REPLICATED or MODE_OPTIMISTIC.
    @param replicas Odd, 3..9 for replicated; 1 for optimistic.
    @param n_segments Checkpoints in the trace (steps / K), 1..256.
    @param profile Execution profile id workers must match (keccak of threads + library versions).
    @param reward Escrowed reward in wei (>= min_reward).
    @param apply_seconds Seconds applications stay open before they can be closed.
    @param work_seconds Seconds a drawn worker has to commit (replicated) or submit (optimistic).
    @param deadline Unix time after which an unassigned job can be refunded.
    @return The job id.
    """
    assert len(spec_cid_) > 0, "empty spec CID"
    assert base_version != 0 and base_version <= staticcall models.version_count(), \
        "unknown base model version"
    assert len(batches) > 0, "no data batches"
    for b: bytes32 in batches:
        assert b != empty(bytes32), "empty data batch root"
    if mode == MODE_REPLICATED:
        assert replicas >= 3 and replicas <= MAX_REPLICAS and replicas % 2 == 1, \
            "replicas: odd, 3..9"
    else:
        assert mode == MODE_OPTIMISTIC, "unknown mode"
        assert replicas == 1, "optimistic: 1 replica"
    assert n_segments > 0 and n_segments <= MAX_SEGMENTS, "n_segments must be 1..256"
    assert profile != empty(bytes32), "empty execution profile"
    assert reward >= self.min_reward, "reward below minimum"
    assert work_seconds > 0, "zero work time"
    assert deadline > block.timestamp + apply_seconds, "deadline before apply close"

    job_id: uint256 = self.job_count + 1
    self.job_count = job_id
    self.jobs[job_id] = Job(
        poster=msg.sender, reward=reward, mode=mode, status=OPEN, replicas=replicas,
        n_segments=n_segments, base_version=base_version, profile=profile,
        apply_close=block.timestamp + apply_seconds, deadline=deadline, work_seconds=work_seconds,
        phase_deadline=0, seed_block=0, round=0, committed=0, revealed=0,
        worker_bond=self.worker_bond, weights_root=empty(bytes32), trace_root=empty(bytes32),
        version_id=0)
    self.spec_cid[job_id] = spec_cid_
    self.lineage[job_id] = name
    self._batches[job_id] = batches
    self.total_escrowed += reward
    log JobPosted(job_id=job_id, poster=msg.sender, mode=mode, replicas=replicas, reward=reward,
                  spec_cid=spec_cid_, base_version=base_version, profile=profile, n_segments=n_segments,
                  apply_close=block.timestamp + apply_seconds, deadline=deadline)
    # Audit L2: the name is public from now on; claim it before anyone can (also
    # checks it is non-empty and not someone else's).
    extcall models.reserve_name(msg.sender, name)
    assert extcall token.transferFrom(msg.sender, self, reward), "escrow transfer failed"
    return job_id


@external
@nonreentrant
def cancel(job_id: uint256):
    """
    @notice Cancel a job nobody has been drawn for yet and refund its escrow. Poster only.
    @param job_id The job.
    """
    job: Job = self.jobs[job_id]
    assert job.poster == msg.sender, "only the poster can cancel"
    assert job.status == OPEN and job.round == 0, "job is no longer cancellable"
    self._release_applicants(job_id)
    self.jobs[job_id].status = CANCELLED
    self._refund(job_id, "cancelled")
    log JobCancelled(job_id=job_id, refunded=job.reward)


# ================================================================ applications

@external
@nonreentrant
def apply(job_id: uint256, profile: bytes32):
    """
    @notice Apply to work on a job; locks `worker_bond` of the caller's free stake.
            The caller must be an active node (staked >= min_stake). When the list is
            full, the caller displaces the lowest-stake applicant if it has more stake
            (that applicant's bond is released): stake, not arrival, decides the list.
    @param job_id The job.
    @param profile The caller's execution profile id (must equal the job's).
    """
    job: Job = self.jobs[job_id]
    assert job.status == OPEN, "job is not taking applications"
    assert block.timestamp < job.deadline, "job deadline passed"
    assert msg.sender != job.poster, "poster cannot work on own job"
    assert profile == job.profile, "execution profile does not match the job"
    assert self.slots[job_id][msg.sender].state == S_NONE, "already applied"
    assert staticcall registry.has_role(msg.sender, ROLE_COMPUTE), "caller is not a COMPUTE node"
    assert staticcall registry.is_active(msg.sender), "caller is not an active node"
    mine: uint256 = self._stake(msg.sender)
    self.slots[job_id][msg.sender].state = S_APPLIED
    self.slots[job_id][msg.sender].stake = mine
    apps: DynArray[address, MAX_APPLICANTS] = self._applicants[job_id]
    if len(apps) == MAX_APPLICANTS:
        low: uint256 = 0
        low_stake: uint256 = max_value(uint256)
        for i: uint256 in range(MAX_APPLICANTS):
            st: uint256 = self._stake(apps[i])
            if st < low_stake:
                low = i
                low_stake = st
        assert mine > low_stake, "too many applicants"
        self._applicants[job_id][low] = msg.sender
        self._drop(job_id, apps[low], job.worker_bond)
    else:
        self._applicants[job_id].append(msg.sender)
    log Applied(job_id=job_id, node=msg.sender, bond=job.worker_bond)
    # Reverts with "insufficient free stake" for a node without enough stake.
    extcall registry.lock_bond(msg.sender, job.worker_bond)


@external
def close_applications(job_id: uint256):
    """
    @notice Close applications once `apply_close` passed and enough nodes applied,
            committing to block `block.number + 2` whose hash will draw the workers.
            Anyone may call.
    @param job_id The job.
    """
    job: Job = self.jobs[job_id]
    assert job.status == OPEN, "job is not taking applications"
    assert block.timestamp >= job.apply_close, "applications still open"
    need: uint256 = job.replicas - job.committed
    assert len(self._applicants[job_id]) >= need, "not enough applicants yet"
    self.jobs[job_id].status = ASSIGNING
    self.jobs[job_id].seed_block = block.number + SEED_DELAY
    log ApplicationsClosed(job_id=job_id, seed_block=block.number + SEED_DELAY,
                           applicants=len(self._applicants[job_id]))


@external
@nonreentrant
def draw(job_id: uint256):
    """
    @notice Draw the job's workers from the applicants, stake-weighted with a
            per-applicant cap, using the hash of the committed seed block. Releases
            the bonds of applicants not drawn. Anyone may call.
    @param job_id The job.
    """
    job: Job = self.jobs[job_id]
    assert job.status == ASSIGNING, "job is not waiting for a draw"
    assert block.number > job.seed_block, "seed block not mined yet"
    if block.number - job.seed_block > 256:
        # The seed block's hash is gone: commit to a new future block instead.
        self.jobs[job_id].seed_block = block.number + SEED_DELAY
        log ApplicationsClosed(job_id=job_id, seed_block=block.number + SEED_DELAY,
                               applicants=len(self._applicants[job_id]))
        return
    seed: bytes32 = keccak256(abi_encode(blockhash(job.seed_block), job_id, job.round))
    applicants: DynArray[address, MAX_APPLICANTS] = self._applicants[job_id]
    n: uint256 = len(applicants)
    weights: DynArray[uint256, MAX_APPLICANTS] = []
    total: uint256 = 0
    for a: address in applicants:
        # Weights snapshotted at application (audit H1): stake added after the seed
        # block is known cannot buy a seat.
        s: uint256 = self.slots[job_id][a].stake
        weights.append(s)
        total += s
    # Cap each weight so no single account holds more than max_share of the draw.
    cap: uint256 = max(total * self.max_share_bps // _BPS, 1)
    total = 0
    for i: uint256 in range(n, bound=MAX_APPLICANTS):
        weights[i] = min(weights[i], cap)
        total += weights[i]
    need: uint256 = job.replicas - job.committed
    picked: DynArray[bool, MAX_APPLICANTS] = []
    for i: uint256 in range(n, bound=MAX_APPLICANTS):
        picked.append(False)
    deadline: uint256 = block.timestamp + job.work_seconds
    for k: uint256 in range(need, bound=MAX_REPLICAS):
        r: uint256 = convert(keccak256(abi_encode(seed, k)), uint256) % max(total, 1)
        acc: uint256 = 0
        chosen: uint256 = n
        for i: uint256 in range(n, bound=MAX_APPLICANTS):
            if picked[i]:
                continue
            acc += weights[i]
            if r < acc:
                chosen = i
                break
        if chosen == n:
            # Only zero-weight applicants left: take the first unpicked one.
            for i: uint256 in range(n, bound=MAX_APPLICANTS):
                if not picked[i]:
                    chosen = i
                    break
        picked[chosen] = True
        total -= weights[chosen]
        w: address = applicants[chosen]
        self.slots[job_id][w].state = S_ASSIGNED
        self._workers[job_id].append(w)
        log WorkerAssigned(job_id=job_id, worker=w, round=job.round, phase_deadline=deadline)
    for i: uint256 in range(n, bound=MAX_APPLICANTS):
        if not picked[i]:
            self._drop(job_id, applicants[i], job.worker_bond)
    self._applicants[job_id] = []
    self.jobs[job_id].status = WORKING
    self.jobs[job_id].phase_deadline = deadline


# ================================================================ replicated mode

@external
def commit(job_id: uint256, commitment: bytes32):
    """
    @notice Commit to a result: keccak256(abi_encode(job_id, worker, weights_root,
            trace_root, salt)). Binding the sender means a copied commitment never
            opens for the copier.
    @param job_id The job.
    @param commitment The commitment hash.
    """
    job: Job = self.jobs[job_id]
    assert job.mode == MODE_REPLICATED, "not a replicated job"
    assert job.status == WORKING, "job is not in its commit phase"
    assert block.timestamp <= job.phase_deadline, "commit deadline passed"
    assert self.slots[job_id][msg.sender].state == S_ASSIGNED, "not an uncommitted worker"
    assert commitment != empty(bytes32), "empty commitment"
    self.slots[job_id][msg.sender].state = S_COMMITTED
    self.slots[job_id][msg.sender].commitment = commitment
    committed: uint256 = job.committed + 1
    self.jobs[job_id].committed = committed
    log Committed(job_id=job_id, worker=msg.sender, commitment=commitment)
    if committed == job.replicas:
        self.jobs[job_id].status = REVEAL
        self.jobs[job_id].phase_deadline = block.timestamp + self.reveal_window
        log RevealPhase(job_id=job_id, reveal_deadline=block.timestamp + self.reveal_window)


@external
def reveal(job_id: uint256, weights_root: bytes32, trace_root: bytes32, salt: bytes32,
           manifest_cid_: String[128], result_cid_: String[128]):
    """
    @notice Open the caller's commitment.
    @param job_id The job.
    @param weights_root Weights root of the trained model (ModelRegistry's per-tensor root).
    @param trace_root Merkle root of the checkpoint trace.
    @param salt The salt used in the commitment.
    @param manifest_cid_ CID of the per-tensor weights manifest.
    @param result_cid_ CID of the result bundle (weights, trace, checkpoint CIDs).
    """
    job: Job = self.jobs[job_id]
    assert job.status == REVEAL, "job is not in its reveal phase"
    assert block.timestamp <= job.phase_deadline, "reveal deadline passed"
    slot: Slot = self.slots[job_id][msg.sender]
    assert slot.state == S_COMMITTED, "caller has no open commitment"
    assert keccak256(abi_encode(job_id, msg.sender, weights_root, trace_root, salt)) == slot.commitment, \
        "reveal does not match commitment"
    assert weights_root != empty(bytes32), "empty weights root"
    self.slots[job_id][msg.sender] = Slot(state=S_REVEALED, commitment=slot.commitment,
                                          weights_root=weights_root, trace_root=trace_root, stake=slot.stake)
    self.jobs[job_id].revealed = job.revealed + 1
    if len(self.manifest_cid[job_id]) == 0:
        # First reveal's locators; replaced by the accepted result's if the referee rules.
        self.manifest_cid[job_id] = manifest_cid_
        self.result_cid[job_id] = result_cid_
    log Revealed(job_id=job_id, worker=msg.sender, weights_root=weights_root, trace_root=trace_root,
                 result_cid=result_cid_)
    # Audit L2: the root is public from this transaction on; hold it for the job.
    extcall models.hold_root(weights_root, job_id)


@external
@nonreentrant
def finalize_replicated(job_id: uint256):
    """
    @notice Close the reveal phase (all revealed, or deadline passed). Silent
            replicas lose their bond. Unanimous reveals by at least a majority
            settle the job; anything else goes to the referee. Anyone may call.
    @param job_id The job.
    """
    job: Job = self.jobs[job_id]
    assert job.status == REVEAL, "job is not in its reveal phase"
    assert job.revealed == job.replicas or block.timestamp > job.phase_deadline, \
        "reveal phase still running"
    workers: DynArray[address, MAX_REPLICAS] = self._workers[job_id]
    first_w: bytes32 = empty(bytes32)
    first_t: bytes32 = empty(bytes32)
    agree: bool = True
    revealers: uint256 = 0
    for w: address in workers:
        slot: Slot = self.slots[job_id][w]
        if slot.state == S_REVEALED:
            if revealers == 0:
                first_w = slot.weights_root
                first_t = slot.trace_root
            elif slot.weights_root != first_w or slot.trace_root != first_t:
                agree = False
            revealers += 1
        elif slot.state == S_COMMITTED:
            self._slash(job_id, w, empty(address), "no reveal")
    if revealers == 0:
        self.jobs[job_id].status = REFUNDED
        self._refund(job_id, "no replica revealed")
        return
    if agree and revealers * 2 > job.replicas:
        self._settle(job_id, first_w, first_t)
        return
    self.jobs[job_id].status = DISPUTED
    self.jobs[job_id].phase_deadline = block.timestamp + self.referee_window
    log ReplicaDispute(job_id=job_id, revealers=revealers, referee_deadline=block.timestamp + self.referee_window)


@external
@nonreentrant
def rule_replicated(job_id: uint256, accepted: DynArray[address, MAX_REPLICAS], manifest_cid_: String[128],
                    result_cid_: String[128]):
    """
    @notice Referee's ruling on a replicated dispute, after re-executing the first
            segment where the revealed traces diverge: `accepted` lists the
            replicas whose result is within tolerance of the re-execution (the
            first one's result is registered). Every other revealer is slashed,
            its slash paid to the accepted replicas in turn. Referee only.
    @param job_id The job.
    @param accepted Revealed replicas found correct (may be empty: all wrong).
    @param manifest_cid_ Weights manifest CID of accepted[0]'s result (registered with it).
    @param result_cid_ Result bundle CID of accepted[0] (as in its Revealed event).
    """
    assert msg.sender == self.referee, "caller is not the referee"
    job: Job = self.jobs[job_id]
    assert job.mode == MODE_REPLICATED and job.status == DISPUTED, "no replicated dispute"
    assert block.timestamp <= job.phase_deadline, "referee window passed"
    for i: uint256 in range(len(accepted), bound=MAX_REPLICAS):
        assert self.slots[job_id][accepted[i]].state == S_REVEALED, "accepted a non-revealer"
        for j: uint256 in range(i, bound=MAX_REPLICAS):
            assert accepted[i] != accepted[j], "duplicate in accepted"
    k: uint256 = 0
    for w: address in self._workers[job_id]:
        if self.slots[job_id][w].state == S_REVEALED and w not in accepted:
            to: address = empty(address)
            if len(accepted) > 0:
                to = accepted[k % len(accepted)]
                k += 1
            self._slash(job_id, w, to, "wrong result")
    if len(accepted) == 0:
        self.jobs[job_id].status = REFUNDED
        self._refund(job_id, "referee rejected all")
        return
    best: Slot = self.slots[job_id][accepted[0]]
    self.manifest_cid[job_id] = manifest_cid_
    self.result_cid[job_id] = result_cid_
    self._settle(job_id, best.weights_root, best.trace_root)


@external
@nonreentrant
def timeout_dispute(job_id: uint256):
    """
    @notice Void a replicated dispute the referee did not rule on within its window:
            release every revealer's bond and refund the poster. Anyone may call.
    @param job_id The job.
    """
    job: Job = self.jobs[job_id]
    assert job.status == DISPUTED, "no replicated dispute"
    assert block.timestamp > job.phase_deadline, "referee window still open"
    for w: address in self._workers[job_id]:
        if self.slots[job_id][w].state == S_REVEALED:
            self._release(job_id, w)
    self.jobs[job_id].status = REFUNDED
    self._refund(job_id, "referee timed out")


# ================================================================ optimistic mode hooks
# The challenge window, bisection game and audits live in OptimisticVerifier (kept
# apart so each contract stays under the 24 KB code-size limit); it reports here.

@external
def on_submit(job_id: uint256, worker: address, weights_root: bytes32, trace_root: bytes32,
              manifest_cid_: String[128], result_cid_: String[128]):
    """
    @notice Record an optimistic worker's result. OptimisticVerifier only.
    @param job_id The job.
    @param worker The submitting worker (must be the drawn one, before its deadline).
    @param weights_root Weights root of the result.
    @param trace_root Merkle root of its checkpoint trace.
    @param manifest_cid_ CID of the per-tensor weights manifest.
    @param result_cid_ CID of the result bundle.
    """
    assert msg.sender == self.verifier, "caller is not the verifier"
    job: Job = self.jobs[job_id]
    assert job.mode == MODE_OPTIMISTIC, "not an optimistic job"
    assert job.status == WORKING, "job is not waiting for a result"
    assert block.timestamp <= job.phase_deadline, "submit deadline passed"
    assert self.slots[job_id][worker].state == S_ASSIGNED, "caller is not the assigned worker"
    assert weights_root != empty(bytes32), "empty weights root"
    self.slots[job_id][worker] = Slot(state=S_REVEALED, commitment=empty(bytes32),
                                      weights_root=weights_root, trace_root=trace_root, stake=0)
    self.jobs[job_id].status = SUBMITTED
    self.jobs[job_id].weights_root = weights_root
    self.jobs[job_id].trace_root = trace_root
    self.manifest_cid[job_id] = manifest_cid_
    self.result_cid[job_id] = result_cid_
    log ResultSubmitted(job_id=job_id, worker=worker, weights_root=weights_root, trace_root=trace_root)
    extcall models.hold_root(weights_root, job_id)


OUTCOME_VERIFIED: public(constant(uint8)) = 1
OUTCOME_FAULT: public(constant(uint8)) = 2
OUTCOME_VOID: public(constant(uint8)) = 3


@external
@nonreentrant
def on_outcome(job_id: uint256, outcome: uint8, to: address, reason: String[32]):
    """
    @notice Close a submitted optimistic job. OptimisticVerifier only.
            OUTCOME_VERIFIED: window closed unchallenged (or every challenge lost) and
            the audit passed: settle. OUTCOME_FAULT: the worker lost a dispute or failed
            an audit: slash its bond (paid to `to`, or the treasury) and refund the
            poster. OUTCOME_VOID: the referee let a dispute lapse: release the bond and
            refund the poster.
    @param job_id The job.
    @param outcome One of OUTCOME_*.
    @param to For a fault: who proved it (zero address: treasury).
    @param reason Short reason for the event log.
    """
    assert msg.sender == self.verifier, "caller is not the verifier"
    job: Job = self.jobs[job_id]
    assert job.status == SUBMITTED, "no submitted result"
    if outcome == OUTCOME_VERIFIED:
        self._settle(job_id, job.weights_root, job.trace_root)
        return
    worker: address = self._workers[job_id][0]
    if outcome == OUTCOME_FAULT:
        self._slash(job_id, worker, to, reason)
    else:
        assert outcome == OUTCOME_VOID, "unknown outcome"
        self._release(job_id, worker)
    self.jobs[job_id].status = REFUNDED
    self._refund(job_id, reason)


# ================================================================ timeouts

@external
@nonreentrant
def reassign(job_id: uint256):
    """
    @notice After the work deadline: slash every drawn worker that did not commit
            (replicated) or submit (optimistic), and reopen applications for their
            slots; after MAX_ROUNDS rounds, refund the poster instead. Anyone may call.
    @param job_id The job.
    """
    job: Job = self.jobs[job_id]
    assert job.status == WORKING, "job is not in its work phase"
    assert block.timestamp > job.phase_deadline, "work deadline not passed"
    kept: DynArray[address, MAX_REPLICAS] = []
    for w: address in self._workers[job_id]:
        if self.slots[job_id][w].state == S_ASSIGNED:
            self._slash(job_id, w, empty(address), "missed deadline")
        else:
            kept.append(w)
    self._workers[job_id] = kept
    if job.round + 1 >= MAX_ROUNDS:
        for w: address in kept:
            self._release(job_id, w)
        self.jobs[job_id].status = REFUNDED
        self._refund(job_id, "workers missed deadlines")
        return
    close: uint256 = block.timestamp + job.work_seconds
    self.jobs[job_id].round = job.round + 1
    self.jobs[job_id].status = OPEN
    self.jobs[job_id].apply_close = block.timestamp
    self.jobs[job_id].deadline = max(job.deadline, close)
    log Reassigned(job_id=job_id, round=job.round + 1, open_slots=job.replicas - len(kept),
                   apply_close=block.timestamp)


@external
@nonreentrant
def expire(job_id: uint256):
    """
    @notice Refund a job that found too few applicants (or was never drawn) by its
            deadline, releasing every applicant's and committed worker's bond. Anyone may call.
    @param job_id The job.
    """
    job: Job = self.jobs[job_id]
    assert job.status == OPEN or job.status == ASSIGNING, "job is not waiting for workers"
    assert block.timestamp > job.deadline, "deadline not passed"
    self._release_applicants(job_id)
    for w: address in self._workers[job_id]:
        self._release(job_id, w)
    self.jobs[job_id].status = REFUNDED
    self._refund(job_id, "expired")


# ================================================================ internals

@internal
def _release_applicants(job_id: uint256):
    bond: uint256 = self.jobs[job_id].worker_bond
    for a: address in self._applicants[job_id]:
        self._drop(job_id, a, bond)
    self._applicants[job_id] = []


@internal
def _drop(job_id: uint256, a: address, bond: uint256):
    # An applicant not drawn (or displaced): bond released, may not re-apply.
    self.slots[job_id][a].state = S_DROPPED
    extcall registry.release_bond(a, bond)
    log ApplicantDropped(job_id=job_id, node=a)


@view
@internal
def _stake(a: address) -> uint256:
    return staticcall registry.stake_of(a)


@internal
def _release(job_id: uint256, w: address):
    st: uint8 = self.slots[job_id][w].state
    # A bond is released once: bonded_by is pooled across jobs in NodeRegistry.
    assert st == S_ASSIGNED or st == S_COMMITTED or st == S_REVEALED, "no bond to release"
    self.slots[job_id][w].state = S_DONE
    extcall registry.release_bond(w, self.jobs[job_id].worker_bond)


@internal
def _slash(job_id: uint256, w: address, to: address, reason: String[32]):
    st: uint8 = self.slots[job_id][w].state
    assert st == S_ASSIGNED or st == S_COMMITTED or st == S_REVEALED, "no bond to slash"
    self.slots[job_id][w].state = S_DONE
    amount: uint256 = self.jobs[job_id].worker_bond
    log WorkerSlashed(job_id=job_id, worker=w, amount=amount, recipient=to, reason=reason)
    extcall registry.slash(w, amount, to)


@internal
def _refund(job_id: uint256, reason: String[32]):
    job: Job = self.jobs[job_id]
    amount: uint256 = job.reward
    self.jobs[job_id].reward = 0
    self.total_escrowed -= amount
    log JobRefunded(job_id=job_id, poster=job.poster, amount=amount, reason=reason)
    assert extcall token.transfer(job.poster, amount), "refund transfer failed"


@internal
def _settle(job_id: uint256, weights_root: bytes32, trace_root: bytes32):
    job: Job = self.jobs[job_id]
    payees: DynArray[address, MAX_REPLICAS] = []
    for w: address in self._workers[job_id]:
        # Every remaining revealer is paid: unanimous replicas, the optimistic worker,
        # or replicas the referee accepted within tolerance (possibly other bits).
        if self.slots[job_id][w].state == S_REVEALED:
            payees.append(w)
    # Effects first: status, books, then every transfer.
    self.jobs[job_id].status = SETTLED
    self.jobs[job_id].weights_root = weights_root
    self.jobs[job_id].trace_root = trace_root
    self.jobs[job_id].reward = 0
    self.total_escrowed -= job.reward
    share: uint256 = job.reward // len(payees)
    dust: uint256 = job.reward - share * len(payees)
    log JobSettled(job_id=job_id, weights_root=weights_root, trace_root=trace_root,
                   paid_workers=len(payees), reward=job.reward)
    for i: uint256 in range(len(payees), bound=MAX_REPLICAS):
        amount: uint256 = share
        if i == 0:
            amount += dust
        self._release(job_id, payees[i])
        log WorkerPaid(job_id=job_id, worker=payees[i], amount=amount)
        assert extcall token.transfer(payees[i], amount), "payment failed"
    self._register(job_id, weights_root)


@internal
def _register(job_id: uint256, weights_root: bytes32):
    job: Job = self.jobs[job_id]
    existing: uint256 = staticcall models.version_of_root(weights_root)
    if existing != 0:
        self.jobs[job_id].version_id = existing
        log ResultRegistered(job_id=job_id, version_id=existing, ok=False, reason="weights already registered")
        return
    # Registration must never block payment (e.g. the lineage name belongs to
    # someone else): call without reverting and log the outcome.
    data: Bytes[2048] = abi_encode(job.poster, self.lineage[job_id], weights_root, job.base_version,
                                   convert(0, uint256), convert(0, uint256), self._batches[job_id], job_id,
                                   self.spec_cid[job_id], self.manifest_cid[job_id],
                                   method_id=method_id("register_for(address,string,bytes32,uint256,uint256,uint256,bytes32[],uint256,string,string)"))
    ok: bool = False
    out: Bytes[32] = b""
    # A fixed gas budget, and a check that it is there: otherwise a caller (or a gas
    # estimator) could starve the call so it fails and settle without registering.
    assert msg.gas > _REGISTER_GAS + _REGISTER_GAS // 32, "gas for registration"
    ok, out = raw_call(models.address, data, max_outsize=32, gas=_REGISTER_GAS, revert_on_failure=False)
    if ok and len(out) == 32:
        vid: uint256 = convert(out, uint256)
        self.jobs[job_id].version_id = vid
        log ResultRegistered(job_id=job_id, version_id=vid, ok=True, reason="")
    else:
        log ResultRegistered(job_id=job_id, version_id=0, ok=False, reason="register_for reverted")


# ================================================================ views

@view
@external
def workers_of(job_id: uint256) -> DynArray[address, MAX_REPLICAS]:
    """@notice The drawn workers of a job (current round included)."""
    return self._workers[job_id]


@view
@external
def applicants_of(job_id: uint256) -> DynArray[address, MAX_APPLICANTS]:
    """@notice Pending applicants of a job (emptied by the draw)."""
    return self._applicants[job_id]


@view
@external
def batches_of(job_id: uint256) -> DynArray[bytes32, MAX_BATCHES]:
    """@notice Data batch roots of a job."""
    return self._batches[job_id]


@view
@external
def locators(job_id: uint256) -> (String[128], String[64], String[128], String[128]):
    """@notice (spec CID, lineage name, weights manifest CID, result bundle CID) of a job."""
    return self.spec_cid[job_id], self.lineage[job_id], self.manifest_cid[job_id], self.result_cid[job_id]


@view
@external
def job_open(job_id: uint256) -> bool:
    """@notice Whether a job can still settle (ModelRegistry keeps its held roots until then)."""
    return self.jobs[job_id].reward != 0


@view
@external
def result_of(job_id: uint256) -> (bytes32, bytes32, uint256, bool):
    """@notice (weights_root, trace_root, registered version id, settled) of a job."""
    job: Job = self.jobs[job_id]
    return job.weights_root, job.trace_root, job.version_id, job.status == SETTLED


# ================================================================ governance

@external
def set_verifier(verifier_: address):
    """@notice Wire the OptimisticVerifier, once. Owner only (done at deployment)."""
    ownable._check_owner()
    assert self.verifier == empty(address), "verifier already set"
    assert verifier_ != empty(address), "verifier is the zero address"
    self.verifier = verifier_
    log VerifierSet(verifier=verifier_)


@external
def set_referee(referee_: address):
    """@notice Appoint the referee. Owner (Governance) only."""
    ownable._check_owner()
    assert referee_ != empty(address), "referee is the zero address"
    self.referee = referee_
    log RefereeChanged(referee=referee_)


@external
def set_parameter(name: String[32], new_value: uint256):
    """
    @notice Change one parameter. Owner (Governance timelock) only. Names:
            min_reward, worker_bond, reveal_window, referee_window, max_share_bps
            (1..10000). Every value must be > 0. The bond applies to jobs posted afterwards.
    @param name Parameter name.
    @param new_value The new value (> 0).
    """
    ownable._check_owner()
    # Audit L1: every parameter must be > 0 (a zero reveal or referee window would void
    # every replicated job at once and, with a lapsed referee, lock its escrow)
    assert new_value > 0, "parameter must be > 0"
    h: bytes32 = keccak256(name)
    if h == keccak256("min_reward"):
        self.min_reward = new_value
    elif h == keccak256("worker_bond"):
        self.worker_bond = new_value
    elif h == keccak256("reveal_window"):
        self.reveal_window = new_value
    elif h == keccak256("referee_window"):
        self.referee_window = new_value
    elif h == keccak256("max_share_bps"):
        assert new_value <= _BPS, "max_share_bps 1..10000"
        self.max_share_bps = new_value
    else:
        raise "unknown parameter"
    log ParameterChanged(name=name, value=new_value)
