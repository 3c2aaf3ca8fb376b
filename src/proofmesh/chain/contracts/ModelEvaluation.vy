# pragma version ~=0.4.3
"""
@title ModelEvaluation
@notice Measured, not claimed, performance of model versions, and the release gate.
        1. A lineage owner commits a held-out eval set as a hash (bound to its
           sender) and reveals it later; only versions registered *before* the
           reveal may be evaluated on it, so none can have trained on it.
        2. Anyone requests an evaluation of a version on a revealed eval set. The
           evaluators are drawn stake-weighted from the staked EVALUATOR nodes of
           NodeRegistry with the hash of a block mined *after* the request, so
           neither the owner nor anyone at registration time knows who will judge.
        3. Each drawn evaluator signs an EIP-712 Attestation (request id, version,
           eval-set root, metric, fixed-point value, deadline); anyone may submit it.
           A signature names its request, so it counts once, for that request only:
           no per-evaluator nonce orders an evaluator's concurrent requests.
           Non-evaluators, stale, replayed and second attestations revert. When the
           quorum is in, the median is final; evaluators far from it lose
           reputation, the others gain reputation and `eval_reward` MESH from
           the Emission EVALUATION pool (while the pool holds enough).
        4. A lineage policy (metric, direction, tolerance, quorum) gates releases:
           a version is released only with its quorum median on an eval set and no
           regression beyond tolerance against the best released ancestor measured
           on the same eval set; otherwise the call reverts with the numbers.
@dev Values are fixed-point integers with 6 decimals (VALUE_SCALE) chosen by the client.
"""

from snekmate.auth import ownable
from snekmate.utils import ecdsa
from snekmate.utils import eip712_domain_separator as eip712

initializes: ownable
initializes: eip712
exports: (ownable.owner, ownable.transfer_ownership, eip712.eip712Domain)

from .interfaces import IEmission
from .interfaces import INodeRegistry


interface IModelRegistry:
    def exists(version_id: uint256) -> bool: view
    def parent_of(version_id: uint256) -> uint256: view
    def owner_of(version_id: uint256) -> address: view
    def name_id_of(version_id: uint256) -> bytes32: view
    def registered_block_of(version_id: uint256) -> uint256: view
    def name_owner(name_id: bytes32) -> address: view


ROLE_EVALUATOR: constant(uint256) = 32
POOL_EVALUATION: public(constant(uint256)) = 5
MAX_QUORUM: constant(uint256) = 9
MAX_CANDIDATES: constant(uint256) = 256
MAX_ANCESTORS: constant(uint256) = 64
SEED_DELAY: public(constant(uint256)) = 1          # blocks between request and the seed block
BLOCKHASH_WINDOW: constant(uint256) = 256          # the EVM only knows the last 256 block hashes
_BPS: constant(uint256) = 10_000
# @notice Smallest quorum whose evaluators are paid `eval_reward` (a lone evaluator is
#         always "near the median", so smaller quorums would farm the pool).
MIN_REWARD_QUORUM: public(constant(uint256)) = 3

ATTESTATION_TYPEHASH: public(constant(bytes32)) = keccak256(
    "Attestation(uint256 requestId,uint256 version,bytes32 evalSetRoot,bytes32 metric,uint256 value,uint256 deadline)"
)

struct EvalSet:
    name_id: bytes32
    committer: address
    commitment: bytes32
    committed_block: uint256
    root: bytes32
    cid: String[128]
    size: uint256
    revealed_block: uint256

struct Policy:
    metric: bytes32
    higher_is_better: bool
    tolerance: uint256
    quorum: uint256
    is_set: bool

struct Request:
    version_id: uint256
    eval_set_id: uint256
    metric: bytes32
    quorum: uint256
    seed_block: uint256
    deadline: uint256
    drawn: bool
    count: uint256
    finalized: bool
    median: uint256

struct Result:
    request_id: uint256
    median: uint256
    metric: bytes32
    quorum: uint256
    finalized: bool

registry: public(immutable(IModelRegistry))
nodes: public(immutable(INodeRegistry))
emission: public(immutable(IEmission))

eval_sets: public(HashMap[uint256, EvalSet])
eval_set_count: public(uint256)
policies: public(HashMap[bytes32, Policy])
requests: public(HashMap[uint256, Request])
request_count: public(uint256)
# @notice Open request of (version, eval set), 0 if none.
request_of: public(HashMap[uint256, HashMap[uint256, uint256]])
# @notice Final quorum median of (version, eval set).
results: public(HashMap[uint256, HashMap[uint256, Result]])
# @notice Whether an address was drawn for a request, and its attested value.
is_drawn: public(HashMap[uint256, HashMap[address, bool]])
has_attested: public(HashMap[uint256, HashMap[address, bool]])
attested_value: public(HashMap[uint256, HashMap[address, uint256]])
# @notice Evaluator reputation: +1 per attestation near the median, -1 per outlier.
reputation: public(HashMap[address, int256])
# @notice Released versions and the eval set / value they were released on.
released: public(HashMap[uint256, bool])
released_on: public(HashMap[uint256, uint256])
released_count: public(HashMap[bytes32, uint256])
# @notice Requests whose no-shows have been penalised (after the window closed without a quorum).
expired: public(HashMap[uint256, bool])
# @notice Seconds evaluators have after the draw to attest.
attest_window: public(uint256)
# @notice An attestation further than this from the median (bps of the median, or
#         `min_deviation` absolute if larger) costs its evaluator reputation.
max_deviation_bps: public(uint256)
min_deviation: public(uint256)
# @notice MESH paid from the EVALUATION pool to each attestation near the median.
eval_reward: public(uint256)

_drawn_list: HashMap[uint256, DynArray[address, MAX_QUORUM]]
# Candidates and stakes fixed at request time (before the seed exists).
_snap_nodes: HashMap[uint256, DynArray[address, MAX_CANDIDATES]]
_snap_stakes: HashMap[uint256, DynArray[uint256, MAX_CANDIDATES]]

event SeedRecommitted:
    request_id: indexed(uint256)
    seed_block: uint256

event EvalSetCommitted:
    eval_set_id: indexed(uint256)
    name_id: indexed(bytes32)
    committer: indexed(address)
    commitment: bytes32

event EvalSetRevealed:
    eval_set_id: indexed(uint256)
    root: bytes32
    cid: String[128]
    size: uint256

event PolicySet:
    name_id: indexed(bytes32)
    metric: bytes32
    higher_is_better: bool
    tolerance: uint256
    quorum: uint256

event EvaluationRequested:
    request_id: indexed(uint256)
    version_id: indexed(uint256)
    eval_set_id: indexed(uint256)
    metric: bytes32
    quorum: uint256
    seed_block: uint256

event EvaluatorsDrawn:
    request_id: indexed(uint256)
    evaluators: DynArray[address, MAX_QUORUM]
    seed: bytes32
    deadline: uint256

event Attested:
    request_id: indexed(uint256)
    evaluator: indexed(address)
    value: uint256

event EvaluationFinalized:
    request_id: indexed(uint256)
    version_id: indexed(uint256)
    eval_set_id: indexed(uint256)
    metric: bytes32
    median: uint256

event ReputationChanged:
    evaluator: indexed(address)
    request_id: indexed(uint256)
    delta: int256
    reputation: int256

event Released:
    version_id: indexed(uint256)
    eval_set_id: indexed(uint256)
    name_id: indexed(bytes32)
    median: uint256
    best_ancestor: uint256
    best_ancestor_value: uint256

event EvaluatorRewarded:
    evaluator: indexed(address)
    request_id: indexed(uint256)
    amount: uint256

event ParameterChanged:
    name: String[32]
    value: uint256


@deploy
def __init__(registry_: IModelRegistry, nodes_: INodeRegistry, emission_: IEmission, attest_window_: uint256,
             max_deviation_bps_: uint256, min_deviation_: uint256, eval_reward_: uint256):
    """
    @notice Deploy the evaluation contract.
    @param registry_ The ModelRegistry.
    @param nodes_ The NodeRegistry (evaluators and their stakes).
    @param emission_ Emission (pays evaluators from the EVALUATION pool).
    @param attest_window_ Seconds evaluators have after the draw.
    @param max_deviation_bps_ Relative distance from the median beyond which an attestation is an outlier.
    @param min_deviation_ Absolute distance (fixed-point) always tolerated.
    @param eval_reward_ MESH (wei) per attestation near the median.
    """
    assert attest_window_ > 0, "ModelEvaluation: zero attest window"
    assert max_deviation_bps_ <= _BPS, "ModelEvaluation: deviation above 100%"
    ownable.__init__()
    eip712.__init__("proofmesh ModelEvaluation", "1")
    registry = registry_
    nodes = nodes_
    emission = emission_
    self.eval_reward = eval_reward_
    self.attest_window = attest_window_
    self.max_deviation_bps = max_deviation_bps_
    self.min_deviation = min_deviation_


@external
def set_parameters(attest_window_: uint256, max_deviation_bps_: uint256, min_deviation_: uint256,
                   eval_reward_: uint256):
    """
    @notice Change the evaluation parameters (owner = Governance timelock only).
    @param attest_window_ Seconds evaluators have after the draw (> 0).
    @param max_deviation_bps_ Outlier threshold in bps of the median (<= 10000).
    @param min_deviation_ Absolute outlier threshold floor.
    @param eval_reward_ MESH (wei) per attestation near the median.
    """
    ownable._check_owner()
    assert attest_window_ > 0, "ModelEvaluation: zero attest window"
    assert max_deviation_bps_ <= _BPS, "ModelEvaluation: deviation above 100%"
    self.attest_window = attest_window_
    self.max_deviation_bps = max_deviation_bps_
    self.min_deviation = min_deviation_
    self.eval_reward = eval_reward_
    log ParameterChanged(name="attest_window", value=attest_window_)
    log ParameterChanged(name="max_deviation_bps", value=max_deviation_bps_)
    log ParameterChanged(name="min_deviation", value=min_deviation_)
    log ParameterChanged(name="eval_reward", value=eval_reward_)


# ---------------------------------------------------------------- eval sets

@external
def commit_eval_set(name_id: bytes32, commitment: bytes32) -> uint256:
    """
    @notice Commit a held-out eval set of a lineage as a hash; only the lineage owner.
    @param name_id The lineage (keccak256 of its name).
    @param commitment keccak256(abi.encode(root, salt, msg.sender)): binds the committer.
    @return The eval set id.
    """
    assert staticcall registry.name_owner(name_id) == msg.sender, "ModelEvaluation: caller does not own the lineage"
    assert commitment != empty(bytes32), "ModelEvaluation: empty commitment"
    esid: uint256 = self.eval_set_count + 1
    self.eval_set_count = esid
    self.eval_sets[esid] = EvalSet(name_id=name_id, committer=msg.sender, commitment=commitment,
                                   committed_block=block.number, root=empty(bytes32), cid="",
                                   size=0, revealed_block=0)
    log EvalSetCommitted(eval_set_id=esid, name_id=name_id, committer=msg.sender, commitment=commitment)
    return esid


@external
def reveal_eval_set(eval_set_id: uint256, root: bytes32, salt: bytes32, cid: String[128], size: uint256):
    """
    @notice Reveal a committed eval set. Versions registered from now on cannot be evaluated on it.
    @param eval_set_id The eval set.
    @param root Merkle root of the eval records.
    @param salt The salt used in the commitment.
    @param cid CID of the eval set file (so evaluators can fetch and re-hash it).
    @param size Number of records.
    """
    es: EvalSet = self.eval_sets[eval_set_id]
    assert es.committer == msg.sender, "ModelEvaluation: only the committer can reveal"
    assert es.revealed_block == 0, "ModelEvaluation: eval set already revealed"
    assert keccak256(abi_encode(root, salt, msg.sender)) == es.commitment, "ModelEvaluation: reveal does not match the commitment"
    assert size > 0, "ModelEvaluation: empty eval set"
    self.eval_sets[eval_set_id].root = root
    self.eval_sets[eval_set_id].cid = cid
    self.eval_sets[eval_set_id].size = size
    self.eval_sets[eval_set_id].revealed_block = block.number
    log EvalSetRevealed(eval_set_id=eval_set_id, root=root, cid=cid, size=size)


# ---------------------------------------------------------------- policy

@external
def set_policy(name_id: bytes32, metric: bytes32, higher_is_better: bool, tolerance: uint256, quorum: uint256):
    """
    @notice Set a lineage's release policy; only the lineage owner, and only before
            its first release (rules cannot be loosened once releases exist).
    @param name_id The lineage.
    @param metric Metric name as bytes32 (e.g. "accuracy", "perplexity").
    @param higher_is_better Direction of the metric.
    @param tolerance Largest allowed regression vs the best released ancestor (fixed-point).
    @param quorum Number of evaluators drawn per evaluation (1..9).
    """
    assert staticcall registry.name_owner(name_id) == msg.sender, "ModelEvaluation: caller does not own the lineage"
    assert self.released_count[name_id] == 0, "ModelEvaluation: policy is locked after the first release"
    assert metric != empty(bytes32), "ModelEvaluation: empty metric"
    assert quorum >= 1 and quorum <= MAX_QUORUM, "ModelEvaluation: quorum must be 1..9"
    self.policies[name_id] = Policy(metric=metric, higher_is_better=higher_is_better, tolerance=tolerance,
                                    quorum=quorum, is_set=True)
    log PolicySet(name_id=name_id, metric=metric, higher_is_better=higher_is_better, tolerance=tolerance,
                  quorum=quorum)


# ---------------------------------------------------------------- requests and draws

@external
def request_evaluation(version_id: uint256, eval_set_id: uint256) -> uint256:
    """
    @notice Ask for an evaluation of a version on a revealed eval set of its lineage,
            with the lineage policy's metric and quorum. The evaluators are drawn later
            from the hash of block `block.number + SEED_DELAY`. Only the version's owner
            or the lineage owner may ask (evaluations cost evaluators work and the pool
            rewards: no one else can spend them).
    @param version_id The version under test.
    @param eval_set_id A revealed eval set of the same lineage.
    @return The request id.
    """
    assert staticcall registry.exists(version_id), "ModelEvaluation: version does not exist"
    es: EvalSet = self.eval_sets[eval_set_id]
    assert es.revealed_block != 0, "ModelEvaluation: eval set not revealed"
    name_id: bytes32 = staticcall registry.name_id_of(version_id)
    assert msg.sender == staticcall registry.owner_of(version_id) or msg.sender == staticcall registry.name_owner(name_id), "ModelEvaluation: only the version or lineage owner may request"
    assert es.name_id == name_id, "ModelEvaluation: eval set belongs to another lineage"
    assert staticcall registry.registered_block_of(version_id) < es.revealed_block, "ModelEvaluation: version registered after the eval set was revealed"
    policy: Policy = self.policies[name_id]
    assert policy.is_set, "ModelEvaluation: lineage has no policy"
    assert not self.results[version_id][eval_set_id].finalized, "ModelEvaluation: already evaluated on this eval set"
    open_id: uint256 = self.request_of[version_id][eval_set_id]
    if open_id != 0:
        # A request may be replaced only once its attestation window closed without a
        # quorum (an undrawn one can always still be drawn: not drawing cannot re-roll).
        old: Request = self.requests[open_id]
        assert old.drawn and block.timestamp > old.deadline, "ModelEvaluation: an evaluation request is already open"
    rid: uint256 = self.request_count + 1
    self.request_count = rid
    # Snapshot the candidates (active EVALUATORs other than the owner) and their stakes now.
    owner: address = staticcall registry.owner_of(version_id)
    candidates: DynArray[address, MAX_CANDIDATES] = []
    weights: DynArray[uint256, MAX_CANDIDATES] = []
    n: uint256 = min(staticcall nodes.active_count(), MAX_CANDIDATES)
    for i: uint256 in range(n, bound=MAX_CANDIDATES):
        node: address = staticcall nodes.active_at(i)
        if node == owner or node == empty(address):
            continue      # nobody judges their own model
        if not staticcall nodes.has_role(node, ROLE_EVALUATOR):
            continue
        if not staticcall nodes.is_active(node):
            continue
        st: uint256 = staticcall nodes.stake_of(node)
        if st == 0:
            continue
        candidates.append(node)
        weights.append(st)
    assert len(candidates) >= policy.quorum, concat("ModelEvaluation: only ", uint2str(len(candidates)), " eligible evaluators for a quorum of ", uint2str(policy.quorum))
    self._snap_nodes[rid] = candidates
    self._snap_stakes[rid] = weights
    self.requests[rid] = Request(version_id=version_id, eval_set_id=eval_set_id, metric=policy.metric,
                                 quorum=policy.quorum, seed_block=block.number + SEED_DELAY, deadline=0,
                                 drawn=False, count=0, finalized=False, median=0)
    self.request_of[version_id][eval_set_id] = rid
    log EvaluationRequested(request_id=rid, version_id=version_id, eval_set_id=eval_set_id, metric=policy.metric,
                            quorum=policy.quorum, seed_block=block.number + SEED_DELAY)
    return rid


@external
def draw(request_id: uint256) -> DynArray[address, MAX_QUORUM]:
    """
    @notice Draw the request's evaluators, stake-weighted without replacement, from the
            active EVALUATOR nodes other than the version's owner, as snapshotted at
            request time. Anyone may call once the seed block is mined. If its hash is
            gone (> 256 blocks), the request re-commits to the next block (emits
            SeedRecommitted, returns no evaluators): call again once it is mined.
    @param request_id The request.
    @return The drawn evaluators.
    """
    req: Request = self.requests[request_id]
    assert req.version_id != 0, "ModelEvaluation: unknown request"
    assert not req.drawn, "ModelEvaluation: already drawn"
    assert block.number > req.seed_block, "ModelEvaluation: seed block not mined yet"
    if block.number > req.seed_block + BLOCKHASH_WINDOW:
        # never a hash the caller could time: commit to the next block instead
        self.requests[request_id].seed_block = block.number + 1
        log SeedRecommitted(request_id=request_id, seed_block=block.number + 1)
        return []
    seed: bytes32 = keccak256(abi_encode(blockhash(req.seed_block), request_id))
    candidates: DynArray[address, MAX_CANDIDATES] = self._snap_nodes[request_id]
    weights: DynArray[uint256, MAX_CANDIDATES] = self._snap_stakes[request_id]
    total: uint256 = 0
    for w0: uint256 in weights:
        total += w0

    chosen: DynArray[address, MAX_QUORUM] = []
    for k: uint256 in range(req.quorum, bound=MAX_QUORUM):
        r: uint256 = convert(keccak256(abi_encode(seed, k)), uint256) % total
        acc: uint256 = 0
        for j: uint256 in range(len(candidates), bound=MAX_CANDIDATES):
            w: uint256 = weights[j]
            if w == 0:
                continue
            acc += w
            if r < acc:
                chosen.append(candidates[j])
                total -= w
                weights[j] = 0      # without replacement
                break
    self.requests[request_id].drawn = True
    self.requests[request_id].deadline = block.timestamp + self.attest_window
    self._drawn_list[request_id] = chosen
    for e: address in chosen:
        self.is_drawn[request_id][e] = True
    log EvaluatorsDrawn(request_id=request_id, evaluators=chosen, seed=seed, deadline=block.timestamp + self.attest_window)
    return chosen


# ---------------------------------------------------------------- attestations

@view
@external
def attestation_digest(request_id: uint256, version_id: uint256, eval_set_root: bytes32, metric: bytes32,
                       metric_value: uint256, deadline: uint256) -> bytes32:
    """
    @notice The EIP-712 digest an evaluator signs.
    @param request_id The evaluation request the attestation is for.
    @param version_id The version evaluated.
    @param eval_set_root Root of the eval set used.
    @param metric The metric.
    @param metric_value Fixed-point value.
    @param deadline Last timestamp the signature is valid.
    @return The digest.
    """
    return self._digest(request_id, version_id, eval_set_root, metric, metric_value, deadline)


@view
@internal
def _digest(request_id: uint256, version_id: uint256, eval_set_root: bytes32, metric: bytes32,
            metric_value: uint256, deadline: uint256) -> bytes32:
    struct_hash: bytes32 = keccak256(abi_encode(ATTESTATION_TYPEHASH, request_id, version_id, eval_set_root,
                                                metric, metric_value, deadline))
    return eip712._hash_typed_data_v4(struct_hash)


@external
def attest(request_id: uint256, metric_value: uint256, deadline: uint256, signature: Bytes[65]):
    """
    @notice Submit a drawn evaluator's signed attestation (anyone may relay it). The
            last attestation of the quorum finalizes the median and the reputations.
    @param request_id The request.
    @param metric_value Fixed-point metric value.
    @param deadline Signature expiry (timestamp).
    @param signature 65-byte EIP-712 signature over the Attestation.
    """
    req: Request = self.requests[request_id]
    assert req.drawn, "ModelEvaluation: evaluators not drawn"
    assert not req.finalized, "ModelEvaluation: evaluation already finalized"
    assert block.timestamp <= req.deadline, "ModelEvaluation: attestation window closed"
    assert block.timestamp <= deadline, "ModelEvaluation: stale attestation (deadline passed)"
    root: bytes32 = self.eval_sets[req.eval_set_id].root
    signer: address = ecdsa._recover_sig(self._digest(request_id, req.version_id, root, req.metric, metric_value,
                                                      deadline), signature)
    assert signer != empty(address), "ModelEvaluation: invalid signature"
    assert self.is_drawn[request_id][signer], "ModelEvaluation: signer is not a drawn evaluator"
    # (request, signer) is the uniqueness key: a replay, or a second value, is refused here
    assert not self.has_attested[request_id][signer], "ModelEvaluation: evaluator already attested"
    self.has_attested[request_id][signer] = True
    self.attested_value[request_id][signer] = metric_value
    count: uint256 = req.count + 1
    self.requests[request_id].count = count
    log Attested(request_id=request_id, evaluator=signer, value=metric_value)
    if count == req.quorum:
        self._finalize(request_id)


@internal
def _finalize(request_id: uint256):
    req: Request = self.requests[request_id]
    drawn: DynArray[address, MAX_QUORUM] = self._drawn_list[request_id]
    vals: DynArray[uint256, MAX_QUORUM] = []
    for e: address in drawn:
        vals.append(self.attested_value[request_id][e])
    # insertion sort: at most MAX_QUORUM values
    n: uint256 = len(vals)
    for i: uint256 in range(1, MAX_QUORUM):
        if i >= n:
            break
        x: uint256 = vals[i]
        j: uint256 = i
        for _: uint256 in range(MAX_QUORUM):
            if j == 0 or vals[j - 1] <= x:
                break
            vals[j] = vals[j - 1]
            j -= 1
        vals[j] = x
    med: uint256 = vals[n // 2]
    if n % 2 == 0:
        med = (vals[n // 2 - 1] + vals[n // 2]) // 2
    self.requests[request_id].finalized = True
    self.requests[request_id].median = med
    self.results[req.version_id][req.eval_set_id] = Result(request_id=request_id, median=med, metric=req.metric,
                                                           quorum=req.quorum, finalized=True)
    log EvaluationFinalized(request_id=request_id, version_id=req.version_id, eval_set_id=req.eval_set_id,
                            metric=req.metric, median=med)
    allowed: uint256 = max(med * self.max_deviation_bps // _BPS, self.min_deviation)
    honest: DynArray[address, MAX_QUORUM] = []
    for e: address in drawn:
        v: uint256 = self.attested_value[request_id][e]
        dev: uint256 = v - med if v > med else med - v
        delta: int256 = 1
        if dev > allowed:
            delta = -1
        else:
            honest.append(e)
        self.reputation[e] += delta
        log ReputationChanged(evaluator=e, request_id=request_id, delta=delta, reputation=self.reputation[e])
    # Interactions last: rewards only while the pool can pay all of them (no partial payouts).
    reward: uint256 = self.eval_reward
    if reward > 0 and len(honest) > 0 and req.quorum >= MIN_REWARD_QUORUM:
        if staticcall emission.pool_balance(POOL_EVALUATION) >= reward * len(honest):
            for e: address in honest:
                log EvaluatorRewarded(evaluator=e, request_id=request_id, amount=reward)
                extcall emission.pay_reward(POOL_EVALUATION, e, reward)


@external
def expire(request_id: uint256):
    """
    @notice After a request's window closed without a quorum, every drawn evaluator that
            did not attest loses one reputation point. Anyone may call, once per request.
    @param request_id The expired request.
    """
    req: Request = self.requests[request_id]
    assert req.drawn, "ModelEvaluation: evaluators not drawn"
    assert not req.finalized, "ModelEvaluation: evaluation finalized"
    assert block.timestamp > req.deadline, "ModelEvaluation: attestation window still open"
    assert not self.expired[request_id], "ModelEvaluation: already expired"
    self.expired[request_id] = True
    for e: address in self._drawn_list[request_id]:
        if not self.has_attested[request_id][e]:
            self.reputation[e] -= 1
            log ReputationChanged(evaluator=e, request_id=request_id, delta=-1, reputation=self.reputation[e])


# ---------------------------------------------------------------- release gate

@view
@internal
def _gate(version_id: uint256, eval_set_id: uint256) -> (bool, String[400], uint256, uint256, uint256):
    """Returns (ok, reason, median, best_ancestor, best_value)."""
    if not staticcall registry.exists(version_id):
        return False, "version does not exist", 0, 0, 0
    if self.released[version_id]:
        return False, "version already released", 0, 0, 0
    name_id: bytes32 = staticcall registry.name_id_of(version_id)
    policy: Policy = self.policies[name_id]
    if not policy.is_set:
        return False, "lineage has no release policy", 0, 0, 0
    res: Result = self.results[version_id][eval_set_id]
    if not res.finalized or res.metric != policy.metric or res.quorum < policy.quorum:
        return False, "no quorum median for this version on this eval set", 0, 0, 0
    best_anc: uint256 = 0
    best: uint256 = 0
    nearest_checked: bool = False
    # Ancestors within the lineage only: a fork under another name has its own owner,
    # policy and eval sets, and starts its own release history.
    a: uint256 = staticcall registry.parent_of(version_id)
    for _: uint256 in range(MAX_ANCESTORS):
        if a == 0 or staticcall registry.name_id_of(a) != name_id:
            break
        if self.released[a]:
            ar: Result = self.results[a][eval_set_id]
            if not nearest_checked:
                nearest_checked = True
                if not (ar.finalized and ar.metric == policy.metric):
                    return False, concat("nearest released ancestor ", uint2str(a), " has no median on this eval set"), res.median, a, 0
            if ar.finalized and ar.metric == policy.metric:
                if best_anc == 0 or (policy.higher_is_better and ar.median > best) or (not policy.higher_is_better and ar.median < best):
                    best_anc = a
                    best = ar.median
        a = staticcall registry.parent_of(a)
    if best_anc != 0:
        if policy.higher_is_better and res.median + policy.tolerance < best:
            return False, concat("regression: median ", uint2str(res.median), " < best released ancestor ", uint2str(best_anc), " at ", uint2str(best), " - tolerance ", uint2str(policy.tolerance)), res.median, best_anc, best
        if not policy.higher_is_better and res.median > best + policy.tolerance:
            return False, concat("regression: median ", uint2str(res.median), " > best released ancestor ", uint2str(best_anc), " at ", uint2str(best), " + tolerance ", uint2str(policy.tolerance)), res.median, best_anc, best
    return True, "", res.median, best_anc, best


@view
@external
def check_release(version_id: uint256, eval_set_id: uint256) -> (bool, String[400], uint256, uint256, uint256):
    """
    @notice Dry-run of the release gate.
    @param version_id The version.
    @param eval_set_id The eval set whose quorum median is used.
    @return (ok, reason, median, best released ancestor, its median on the eval set).
    """
    return self._gate(version_id, eval_set_id)


@external
def release(version_id: uint256, eval_set_id: uint256):
    """
    @notice Release a version: requires its quorum median on `eval_set_id` and no
            regression beyond the lineage tolerance vs the best released ancestor on
            the same eval set. Only the version owner may call.
    @param version_id The version.
    @param eval_set_id The eval set.
    """
    assert staticcall registry.owner_of(version_id) == msg.sender, "ModelEvaluation: caller does not own the version"
    ok: bool = False
    reason: String[400] = ""
    med: uint256 = 0
    best_anc: uint256 = 0
    best: uint256 = 0
    ok, reason, med, best_anc, best = self._gate(version_id, eval_set_id)
    assert ok, concat("ModelEvaluation: ", reason)
    name_id: bytes32 = staticcall registry.name_id_of(version_id)
    self.released[version_id] = True
    self.released_on[version_id] = eval_set_id
    self.released_count[name_id] += 1
    log Released(version_id=version_id, eval_set_id=eval_set_id, name_id=name_id, median=med,
                 best_ancestor=best_anc, best_ancestor_value=best)


# ---------------------------------------------------------------- views

@view
@external
def evaluators_of(request_id: uint256) -> DynArray[address, MAX_QUORUM]:
    """
    @notice The evaluators drawn for a request.
    @param request_id The request.
    @return Drawn evaluators (empty before the draw).
    """
    return self._drawn_list[request_id]
