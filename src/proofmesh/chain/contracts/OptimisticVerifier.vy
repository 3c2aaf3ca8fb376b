# pragma version ~=0.4.3
# pragma optimize codesize
"""
@title OptimisticVerifier
@notice Verification of optimistic fine-tuning jobs of the JobMarket: one worker
        submits its weights root and the Merkle root of its checkpoint trace
        (leaves (index, checkpoint_hash) for index 0..n, one checkpoint every K
        steps). During the challenge window any active staked node may challenge
        with a bond; a bisection game (worker reveals the midpoint checkpoint with
        a proof against its own trace root, challenger agrees or disagrees) narrows
        the dispute to one segment of K steps, which the referee re-executes from
        the agreed checkpoint. The loser is slashed and the winner paid. A silent
        mover loses by timeout. Independently, the hash of the block after
        submission decides whether the job is audited (`audit_rate_bps`) and which
        `audit_segments` segments the referee must re-execute; a failed audit
        slashes the worker. Only when the window closed, no dispute stands and the
        audit passed does the JobMarket settle.
@dev Challenger bonds are locked and slashed here (this contract is a NodeRegistry
     domain); the worker's bond belongs to the JobMarket, which slashes it on
     OUTCOME_FAULT. This contract never holds tokens.
"""

from snekmate.auth import ownable
from snekmate.utils import merkle_proof_verification

initializes: ownable
exports: (ownable.owner, ownable.transfer_ownership)

from .interfaces import INodeRegistry

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

interface IJobMarket:
    def jobs(job_id: uint256) -> Job: view
    def referee() -> address: view
    def on_submit(job_id: uint256, worker: address, weights_root: bytes32, trace_root: bytes32,
                  manifest_cid_: String[128], result_cid_: String[128]): nonpayable
    def on_outcome(job_id: uint256, outcome: uint8, to: address, reason: String[32]): nonpayable

interface IRegistryBounds:
    def max_challenge_window() -> uint256: view

OUTCOME_VERIFIED: constant(uint8) = 1
OUTCOME_FAULT: constant(uint8) = 2
OUTCOME_VOID: constant(uint8) = 3

# Game status
G_NONE: constant(uint8) = 0
G_OPEN: public(constant(uint8)) = 1        # challenge window / audit
G_DISPUTED: public(constant(uint8)) = 2    # bisection running
G_CLOSED: public(constant(uint8)) = 3

# Bisection turn
T_NONE: constant(uint8) = 0
T_WORKER: public(constant(uint8)) = 1
T_CHALLENGER: public(constant(uint8)) = 2
T_REFEREE: public(constant(uint8)) = 3

MAX_PROOF: constant(uint256) = 16
MAX_SEGMENTS: constant(uint256) = 256
MAX_AUDIT: constant(uint256) = 32
_BPS: constant(uint256) = 10_000

struct Game:
    worker: address
    status: uint8
    n_segments: uint256
    trace_root: bytes32
    h_first: bytes32
    h_last: bytes32
    challenge_deadline: uint256

struct Dispute:
    challenger: address
    bond: uint256
    lo: uint256
    hi: uint256
    h_lo: bytes32
    h_hi: bytes32
    h_mid: bytes32
    turn: uint8
    turn_deadline: uint256

struct Audit:
    block: uint256
    drawn: bool
    pending: bool
    seed: bytes32
    deadline: uint256

market: public(immutable(IJobMarket))
registry: public(immutable(INodeRegistry))

# @notice Per-job game, open dispute and audit draw.
games: public(HashMap[uint256, Game])
disputes: public(HashMap[uint256, Dispute])
audits: public(HashMap[uint256, Audit])
# When the running dispute opened: the challenge window and audit deadline pause while disputed.
_dispute_opened: HashMap[uint256, uint256]

# --- parameters (owner = Governance timelock) ---
challenge_bond: public(uint256)
challenge_window: public(uint256)
turn_window: public(uint256)
referee_window: public(uint256)
audit_rate_bps: public(uint256)
audit_segments: public(uint256)

event ResultSubmitted:
    job_id: indexed(uint256)
    worker: indexed(address)
    trace_root: bytes32
    challenge_deadline: uint256
    audit_block: uint256

event DisputeOpened:
    job_id: indexed(uint256)
    challenger: indexed(address)
    bond: uint256
    lo: uint256
    hi: uint256

event BisectionStep:
    job_id: indexed(uint256)
    lo: uint256
    hi: uint256
    mid: uint256
    h_mid: bytes32
    turn: uint8
    turn_deadline: uint256

event DisputeResolved:
    job_id: indexed(uint256)
    worker_right: bool
    segment: uint256
    by_timeout: bool

event ChallengerSlashed:
    job_id: indexed(uint256)
    challenger: indexed(address)
    amount: uint256
    paid_to: address

event AuditDrawn:
    job_id: indexed(uint256)
    audited: bool
    seed: bytes32
    deadline: uint256

event AuditResolved:
    job_id: indexed(uint256)
    passed: bool
    segment: uint256

event GameClosed:
    job_id: indexed(uint256)
    outcome: uint8

event ParameterChanged:
    name: String[32]
    value: uint256


@deploy
def __init__(market_: IJobMarket, registry_: INodeRegistry):
    """
    @notice Deploy the verifier for `market_` with default parameters.
    @param market_ The JobMarket (must then call set_verifier with this address).
    @param registry_ NodeRegistry (challenger bonds; this contract must be a domain).
    """
    ownable.__init__()
    market = market_
    registry = registry_
    self.challenge_bond = 50 * 10**18
    self.challenge_window = 1800
    self.turn_window = 600
    self.referee_window = 1800
    self.audit_rate_bps = 10_000
    self.audit_segments = 8


# ================================================================ worker

@external
@nonreentrant
def submit(job_id: uint256, weights_root: bytes32, trace_root: bytes32, h_first: bytes32,
           proof_first: DynArray[bytes32, MAX_PROOF], h_last: bytes32, proof_last: DynArray[bytes32, MAX_PROOF],
           manifest_cid_: String[128], result_cid_: String[128]):
    """
    @notice The optimistic worker's result: weights root, trace root, and the first
            and last checkpoint hashes with Merkle proofs (they anchor a dispute).
            Opens the challenge window and commits to the audit seed block.
    @param job_id The job (drawn to the caller, before its work deadline).
    @param weights_root Weights root of the trained model (ModelRegistry's per-tensor root).
    @param trace_root Merkle root over leaves (index, checkpoint_hash), index 0..n_segments.
    @param h_first Checkpoint hash at step 0.
    @param proof_first Its proof.
    @param h_last Checkpoint hash after the last step.
    @param proof_last Its proof.
    @param manifest_cid_ CID of the per-tensor weights manifest.
    @param result_cid_ CID of the result bundle (weights, trace, checkpoint CIDs).
    """
    assert self.games[job_id].status == G_NONE, "OptimisticVerifier: result already submitted"
    n: uint256 = (staticcall market.jobs(job_id)).n_segments
    assert self._in_trace(trace_root, 0, h_first, proof_first), "OptimisticVerifier: bad proof for checkpoint 0"
    assert self._in_trace(trace_root, n, h_last, proof_last), "OptimisticVerifier: bad proof for last checkpoint"
    deadline: uint256 = block.timestamp + self.challenge_window
    self.games[job_id] = Game(worker=msg.sender, status=G_OPEN, n_segments=n, trace_root=trace_root,
                              h_first=h_first, h_last=h_last, challenge_deadline=deadline)
    self.audits[job_id] = Audit(block=block.number + 1, drawn=False, pending=False, seed=empty(bytes32),
                                deadline=0)
    log ResultSubmitted(job_id=job_id, worker=msg.sender, trace_root=trace_root, challenge_deadline=deadline,
                        audit_block=block.number + 1)
    # The market checks the caller is the drawn worker, the mode and the deadline.
    extcall market.on_submit(job_id, msg.sender, weights_root, trace_root, manifest_cid_, result_cid_)


# ================================================================ challenge + bisection

@external
@nonreentrant
def challenge(job_id: uint256):
    """
    @notice Dispute a result during its challenge window: locks `challenge_bond`
            of the caller's free stake and starts the bisection over the whole
            trace. Any active staked node except the worker; one dispute at a time.
    @param job_id The job.
    """
    g: Game = self.games[job_id]
    assert g.status == G_OPEN, "OptimisticVerifier: no open result to challenge"
    assert block.timestamp <= g.challenge_deadline, "OptimisticVerifier: challenge window closed"
    assert msg.sender != g.worker, "OptimisticVerifier: worker cannot challenge itself"
    assert staticcall registry.is_active(msg.sender), "OptimisticVerifier: challenger is not an active staked node"
    bond: uint256 = self.challenge_bond
    turn: uint8 = T_WORKER
    window: uint256 = self.turn_window
    if g.n_segments == 1:
        turn = T_REFEREE
        window = self.referee_window
    self.disputes[job_id] = Dispute(challenger=msg.sender, bond=bond, lo=0, hi=g.n_segments,
                                    h_lo=g.h_first, h_hi=g.h_last, h_mid=empty(bytes32), turn=turn,
                                    turn_deadline=block.timestamp + window)
    self.games[job_id].status = G_DISPUTED
    self._dispute_opened[job_id] = block.timestamp
    log DisputeOpened(job_id=job_id, challenger=msg.sender, bond=bond, lo=0, hi=g.n_segments)
    extcall registry.lock_bond(msg.sender, bond)


@external
def bisect_reveal(job_id: uint256, h_mid: bytes32, proof: DynArray[bytes32, MAX_PROOF]):
    """
    @notice Worker's move: reveal its checkpoint hash at the midpoint of the
            disputed range, proven against its own trace root.
    @param job_id The job.
    @param h_mid Checkpoint hash at index (lo + hi) / 2.
    @param proof Merkle proof of (mid, h_mid) in the trace.
    """
    g: Game = self.games[job_id]
    d: Dispute = self.disputes[job_id]
    assert g.status == G_DISPUTED and d.turn == T_WORKER, "OptimisticVerifier: not the worker's turn"
    assert msg.sender == g.worker, "OptimisticVerifier: caller is not the worker"
    assert block.timestamp <= d.turn_deadline, "OptimisticVerifier: turn deadline passed"
    mid: uint256 = (d.lo + d.hi) // 2
    assert self._in_trace(g.trace_root, mid, h_mid, proof), "OptimisticVerifier: bad proof for midpoint"
    self.disputes[job_id].h_mid = h_mid
    self.disputes[job_id].turn = T_CHALLENGER
    self.disputes[job_id].turn_deadline = block.timestamp + self.turn_window
    log BisectionStep(job_id=job_id, lo=d.lo, hi=d.hi, mid=mid, h_mid=h_mid, turn=T_CHALLENGER,
                      turn_deadline=block.timestamp + self.turn_window)


@external
def bisect_respond(job_id: uint256, agree: bool):
    """
    @notice Challenger's move: agree (its own re-execution reaches the same
            checkpoint at the midpoint: the fault is later) or disagree (the fault
            is at or before it). With one segment left, the referee rules.
    @param job_id The job.
    @param agree Whether the challenger's checkpoint at the midpoint equals h_mid.
    """
    d: Dispute = self.disputes[job_id]
    assert self.games[job_id].status == G_DISPUTED and d.turn == T_CHALLENGER, \
        "OptimisticVerifier: not the challenger's turn"
    assert msg.sender == d.challenger, "OptimisticVerifier: caller is not the challenger"
    assert block.timestamp <= d.turn_deadline, "OptimisticVerifier: turn deadline passed"
    mid: uint256 = (d.lo + d.hi) // 2
    lo: uint256 = d.lo
    hi: uint256 = d.hi
    if agree:
        lo = mid
        self.disputes[job_id].h_lo = d.h_mid
    else:
        hi = mid
        self.disputes[job_id].h_hi = d.h_mid
    turn: uint8 = T_WORKER
    window: uint256 = self.turn_window
    if hi - lo == 1:
        turn = T_REFEREE
        window = self.referee_window
    self.disputes[job_id].lo = lo
    self.disputes[job_id].hi = hi
    self.disputes[job_id].turn = turn
    self.disputes[job_id].turn_deadline = block.timestamp + window
    log BisectionStep(job_id=job_id, lo=lo, hi=hi, mid=mid, h_mid=d.h_mid, turn=turn,
                      turn_deadline=block.timestamp + window)


@external
@nonreentrant
def rule_segment(job_id: uint256, worker_right: bool):
    """
    @notice Referee's ruling on the one segment (lo, hi) the bisection left: it
            re-executed K steps from the checkpoint hashing to h_lo and compared
            the state with h_hi (for the last segment, also the weights root),
            within the job's declared tolerance. Referee only.
    @param job_id The job.
    @param worker_right True if the worker's checkpoint h_hi is correct.
    """
    assert msg.sender == staticcall market.referee(), "OptimisticVerifier: caller is not the referee"
    d: Dispute = self.disputes[job_id]
    assert self.games[job_id].status == G_DISPUTED and d.turn == T_REFEREE, \
        "OptimisticVerifier: no segment to rule on"
    assert block.timestamp <= d.turn_deadline, "OptimisticVerifier: referee window passed"
    self._end_dispute(job_id, worker_right, False)


@external
@nonreentrant
def timeout_turn(job_id: uint256):
    """
    @notice End a bisection whose current mover let its deadline pass: a silent
            worker or challenger loses; a silent referee voids the job (poster
            refunded, both bonds released). Anyone may call.
    @param job_id The job.
    """
    d: Dispute = self.disputes[job_id]
    assert self.games[job_id].status == G_DISPUTED, "OptimisticVerifier: no dispute"
    assert block.timestamp > d.turn_deadline, "OptimisticVerifier: turn still running"
    if d.turn == T_REFEREE:
        log DisputeResolved(job_id=job_id, worker_right=False, segment=d.hi, by_timeout=True)
        self._release_challenger(job_id)
        self._close(job_id, OUTCOME_VOID, empty(address), "referee timed out")
        return
    self._end_dispute(job_id, d.turn == T_CHALLENGER, True)


@internal
def _end_dispute(job_id: uint256, worker_right: bool, by_timeout: bool):
    d: Dispute = self.disputes[job_id]
    log DisputeResolved(job_id=job_id, worker_right=worker_right, segment=d.hi, by_timeout=by_timeout)
    if worker_right:
        # Back to the challenge window, extended (as the audit deadline) by the time the
        # dispute ran: a self-dispute cannot run the clock out on challengers or the referee.
        g: Game = self.games[job_id]
        paused: uint256 = block.timestamp - self._dispute_opened[job_id]
        self.games[job_id].status = G_OPEN
        self.games[job_id].challenge_deadline = g.challenge_deadline + paused
        if self.audits[job_id].drawn:
            self.audits[job_id].deadline += paused
        self.disputes[job_id].bond = 0
        self.disputes[job_id].turn = T_NONE
        log ChallengerSlashed(job_id=job_id, challenger=d.challenger, amount=d.bond, paid_to=g.worker)
        extcall registry.slash(d.challenger, d.bond, g.worker)
        return
    self._release_challenger(job_id)
    self._close(job_id, OUTCOME_FAULT, d.challenger, "lost dispute")


# ================================================================ audits

@external
def draw_audit(job_id: uint256):
    """
    @notice Draw whether a submitted job is audited (and its audit seed) from the
            hash of the block after submission. Anyone may call; finalize draws it
            too, so an audit cannot be skipped.
    @param job_id The job.
    """
    assert self.games[job_id].status != G_NONE, "OptimisticVerifier: no submitted result"
    assert not self.audits[job_id].drawn, "OptimisticVerifier: audit already drawn"
    self._draw_audit(job_id)


@internal
def _draw_audit(job_id: uint256):
    a: Audit = self.audits[job_id]
    assert block.number > a.block, "OptimisticVerifier: audit seed block not mined yet"
    if block.number - a.block > 256:
        # The seed block's hash is no longer available: commit to a new future block.
        self.audits[job_id].block = block.number + 1
        return
    seed: bytes32 = keccak256(abi_encode(blockhash(a.block), job_id))
    audited: bool = convert(seed, uint256) % _BPS < self.audit_rate_bps
    deadline: uint256 = block.timestamp + self.referee_window
    self.audits[job_id] = Audit(block=a.block, drawn=True, pending=audited, seed=seed, deadline=deadline)
    log AuditDrawn(job_id=job_id, audited=audited, seed=seed, deadline=deadline)


@view
@external
def audit_plan(job_id: uint256) -> DynArray[uint256, MAX_AUDIT]:
    """
    @notice Segments (1-based: segment i runs from checkpoint i-1 to i) the referee
            must re-execute for a drawn audit: min(audit_segments, n) distinct ones.
    @param job_id The job.
    @return Segment indices (empty if no audit was drawn).
    """
    return self._audit_plan(job_id)


@view
@internal
def _audit_plan(job_id: uint256) -> DynArray[uint256, MAX_AUDIT]:
    a: Audit = self.audits[job_id]
    out: DynArray[uint256, MAX_AUDIT] = []
    if not a.drawn:
        return out
    n: uint256 = self.games[job_id].n_segments
    m: uint256 = min(self.audit_segments, n)
    nonce: uint256 = 0
    for _: uint256 in range(4 * MAX_AUDIT):
        if len(out) == m:
            break
        seg: uint256 = convert(keccak256(abi_encode(a.seed, nonce)), uint256) % n + 1
        nonce += 1
        if seg not in out:
            out.append(seg)
    # Fill in order if hashing kept colliding (only when m is close to n).
    for s: uint256 in range(1, MAX_SEGMENTS + 1):
        if len(out) == m:
            break
        if s not in out:
            out.append(s)
    return out


@external
@nonreentrant
def rule_audit(job_id: uint256, passed: bool, segment: uint256, h_lo: bytes32,
               proof_lo: DynArray[bytes32, MAX_PROOF], h_hi: bytes32, proof_hi: DynArray[bytes32, MAX_PROOF]):
    """
    @notice Referee's audit result. A failure names one drawn segment and the
            worker's own checkpoint hashes around it, proven against its trace
            root, that re-execution did not reproduce: the worker is slashed and
            the poster refunded. Referee only.
    @param job_id The job.
    @param passed True if every drawn segment re-executed to the worker's checkpoints.
    @param segment For a failure: the failing segment (must be in audit_plan).
    @param h_lo For a failure: the worker's checkpoint hash at segment - 1.
    @param proof_lo Its proof.
    @param h_hi For a failure: the worker's checkpoint hash at segment.
    @param proof_hi Its proof.
    """
    assert msg.sender == staticcall market.referee(), "OptimisticVerifier: caller is not the referee"
    g: Game = self.games[job_id]
    assert g.status == G_OPEN and self.audits[job_id].pending, "OptimisticVerifier: no pending audit"
    assert block.timestamp <= self.audits[job_id].deadline, "OptimisticVerifier: audit window passed"
    self.audits[job_id].pending = False
    if passed:
        log AuditResolved(job_id=job_id, passed=True, segment=0)
        return
    assert segment in self._audit_plan(job_id), "OptimisticVerifier: segment was not drawn for audit"
    assert self._in_trace(g.trace_root, segment - 1, h_lo, proof_lo), "OptimisticVerifier: bad proof for h_lo"
    assert self._in_trace(g.trace_root, segment, h_hi, proof_hi), "OptimisticVerifier: bad proof for h_hi"
    log AuditResolved(job_id=job_id, passed=False, segment=segment)
    self._close(job_id, OUTCOME_FAULT, empty(address), "failed audit")


# ================================================================ settlement

@external
@nonreentrant
def finalize(job_id: uint256):
    """
    @notice Settle a job once its challenge window closed with no dispute standing
            and its audit (drawn here if nobody drew it) passed, or the referee let
            the audit window lapse. If this call draws an audit, the job waits for
            the referee instead. Anyone may call.
    @param job_id The job.
    """
    g: Game = self.games[job_id]
    assert g.status == G_OPEN, "OptimisticVerifier: no open result"
    assert block.timestamp > g.challenge_deadline, "OptimisticVerifier: challenge window still open"
    if not self.audits[job_id].drawn:
        self._draw_audit(job_id)
        if not self.audits[job_id].drawn or self.audits[job_id].pending:
            return
    a: Audit = self.audits[job_id]
    assert not a.pending or block.timestamp > a.deadline, "OptimisticVerifier: audit pending"
    self._close(job_id, OUTCOME_VERIFIED, empty(address), "verified")


# ================================================================ internals

@view
@internal
def _in_trace(root: bytes32, index: uint256, h: bytes32, proof: DynArray[bytes32, MAX_PROOF]) -> bool:
    # OpenZeppelin StandardMerkleTree leaf of (uint256 index, bytes32 checkpoint_hash).
    leaf: bytes32 = keccak256(concat(keccak256(abi_encode(index, h)), b""))
    return merkle_proof_verification._verify(proof, root, leaf)


@internal
def _release_challenger(job_id: uint256):
    d: Dispute = self.disputes[job_id]
    if d.bond > 0:
        self.disputes[job_id].bond = 0
        extcall registry.release_bond(d.challenger, d.bond)


@internal
def _close(job_id: uint256, outcome: uint8, to: address, reason: String[32]):
    self.games[job_id].status = G_CLOSED
    self.disputes[job_id].turn = T_NONE
    log GameClosed(job_id=job_id, outcome=outcome)
    extcall market.on_outcome(job_id, outcome, to, reason)


# ================================================================ governance

@external
def set_parameter(name: String[32], new_value: uint256):
    """
    @notice Change one parameter. Owner (Governance timelock) only. Names:
            challenge_bond (> 0), challenge_window (<= NodeRegistry.max_challenge_window),
            turn_window, referee_window, audit_rate_bps (<= 10000), audit_segments (1..32).
    @param name Parameter name.
    @param new_value New value.
    """
    ownable._check_owner()
    h: bytes32 = keccak256(name)
    if h == keccak256("challenge_bond"):
        assert new_value > 0, "OptimisticVerifier: challenge_bond must be > 0"
        self.challenge_bond = new_value
    elif h == keccak256("challenge_window"):
        assert new_value <= staticcall IRegistryBounds(registry.address).max_challenge_window(), \
            "OptimisticVerifier: window above the registry's bound"
        self.challenge_window = new_value
    elif h == keccak256("turn_window"):
        assert new_value > 0, "OptimisticVerifier: turn_window must be > 0"
        self.turn_window = new_value
    elif h == keccak256("referee_window"):
        assert new_value > 0, "OptimisticVerifier: referee_window must be > 0"
        self.referee_window = new_value
    elif h == keccak256("audit_rate_bps"):
        assert new_value <= _BPS, "OptimisticVerifier: audit rate above 100%"
        self.audit_rate_bps = new_value
    elif h == keccak256("audit_segments"):
        assert new_value > 0 and new_value <= MAX_AUDIT, "OptimisticVerifier: audit_segments must be 1..32"
        self.audit_segments = new_value
    else:
        raise "OptimisticVerifier: unknown parameter"
    log ParameterChanged(name=name, value=new_value)
