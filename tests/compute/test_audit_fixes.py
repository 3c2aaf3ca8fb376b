"""Regression tests for the security audit's compute findings (docs/security-audit.md)."""

from __future__ import annotations

import os

import pytest

from proofmesh.chain.core import MESH, Registry, Token
from proofmesh.errors import ContractRevert, InputError

from .conftest import PROFILE, random_trace

BOND = 50 * MESH


def bonded(market, who) -> int:
    return market.chain.call(market.chain.contract("NodeRegistry").functions.bonded_by(
        market.client.c.address, who))


def test_h4_disputed_job_voided_after_referee_window(market):
    """H4: a replicated dispute the referee never rules on no longer locks escrow and bonds."""
    job = market.post(mode="replicated", replicas=3)
    workers = market.assign(job, market.workers[:3])
    results = {w: (os.urandom(32), os.urandom(32)) for w in workers}     # all differ -> dispute
    salts = {w: market.client.commit(job, wr, tr, sender=market.account(w)) for w, (wr, tr) in results.items()}
    for w, (wr, tr) in results.items():
        market.client.reveal(job, wr, tr, salts[w], "m", "r", sender=market.account(w))
    market.client.finalize_replicated(job)
    assert market.client.job(job).status == "disputed"
    with pytest.raises(ContractRevert, match="referee window still open"):
        market.client.timeout_dispute(job)
    market.chain.increase_time(1801)                                      # referee_window passes
    market.chain.mine()
    with pytest.raises(ContractRevert, match="referee window passed"):
        market.client.rule_replicated(job, [workers[0]], sender=market.referee)
    t = Token(market.chain)
    p0 = t.balance(market.poster.address)
    market.client.timeout_dispute(job, sender=market.account(workers[1]))  # anyone may call
    assert market.client.job(job).status == "refunded"
    assert t.balance(market.poster.address) - p0 == 30 * MESH
    assert market.client.total_escrowed() == 0
    for w in workers:
        assert bonded(market, w) == 0
    with pytest.raises(ContractRevert, match="no replicated dispute"):
        market.client.timeout_dispute(job)
    market.assert_books()


def test_h3_sybil_self_dispute_cannot_run_out_challenge_window_or_audit(market):
    """H3: the worker's sybil holds the dispute slot until the windows would have closed;
    they are now extended by the time disputed, so the honest challenger and the referee still act."""
    job = market.post(mode="optimistic", replicas=1, n_segments=8)
    (worker,) = market.assign(job, market.workers[:3])
    W = market.account(worker)
    others = [w for w in market.workers if w.address != worker]
    sybil, honest = others[0], others[1]
    trace = random_trace(8)                                   # fabricated: no training done
    market.client.submit(job, os.urandom(32), trace, "m", "r", sender=W)
    market.chain.mine(2)
    market.client.draw_audit(job, sender=W)
    g = market.client.game(job)
    assert g["audit"]["pending"]
    market.client.challenge(job, sender=sybil)                # sybil occupies the dispute slot
    with pytest.raises(ContractRevert, match="no pending audit"):
        market.client.rule_audit_fail(job, g["audit"]["segments"][0], trace, sender=market.referee)
    market.chain.increase_time(590); market.client.bisect_reveal(job, trace, sender=W)
    market.chain.increase_time(590); market.client.bisect_respond(job, True, sender=sybil)
    market.chain.increase_time(590); market.client.bisect_reveal(job, trace, sender=W)
    market.chain.increase_time(601); market.chain.mine()
    market.client.timeout_turn(job)                           # sybil "loses" by silence
    g2 = market.client.game(job)
    now = market.chain.timestamp()
    assert g2["status"] == "open"
    assert g2["challenge_deadline"] > now and g2["audit"]["deadline"] > now
    # The honest challenger is no longer locked out (was "challenge window closed")...
    market.client.challenge(job, sender=honest)
    assert market.client.game(job)["dispute"]["challenger"] == honest.address
    market.chain.increase_time(601); market.chain.mine()
    s0 = Registry(market.chain).info(worker).stake
    market.client.timeout_turn(job)                           # ...and the cheating worker loses
    assert market.client.job(job).status == "refunded"
    assert Registry(market.chain).info(worker).stake == s0 - BOND
    market.assert_books()


def test_h2_cheap_sybils_cannot_shut_out_a_better_staked_node(market, accounts):
    """H2: applicants must be active (staked >= min_stake), and a full list admits a
    better-staked node by displacing the lowest-stake applicant."""
    from eth_account import Account

    from proofmesh.chain.core import fund

    chain, reg = market.chain, Registry(market.chain)
    min_stake = chain.call(chain.contract("NodeRegistry").functions.min_stake())
    job = market.post(mode="replicated", replicas=3)
    cheap = Account.create()                                  # the audit's sybil: one bond of stake
    fund(chain, cheap.address, mesh=BOND, eth=10**17, sender=accounts[9])
    reg.register("", 2, sender=cheap)
    reg.stake(BOND, sender=cheap)
    with pytest.raises(ContractRevert, match="not an active node"):
        market.client.apply(job, PROFILE, sender=cheap)
    sybils = [Account.create() for _ in range(32)]            # each now costs min_stake
    for s in sybils:
        fund(chain, s.address, mesh=min_stake, eth=10**17, sender=accounts[9])
        reg.register("", 2, sender=s)
        reg.stake(min_stake, sender=s)
        market.client.apply(job, PROFILE, sender=s)
    assert len(chain.call(market.client.c.functions.applicants_of(job))) == 32
    late = Account.create()                                   # no more stake than the sybils
    fund(chain, late.address, mesh=min_stake, eth=10**17, sender=accounts[9])
    reg.register("", 2, sender=late)
    reg.stake(min_stake, sender=late)
    with pytest.raises(ContractRevert, match="too many applicants"):
        market.client.apply(job, PROFILE, sender=late)
    honest = market.workers[0]                                # 1,000 MESH staked
    market.client.apply(job, PROFILE, sender=honest)          # was "too many applicants"
    applicants = chain.call(market.client.c.functions.applicants_of(job))
    assert len(applicants) == 32 and honest.address in applicants
    out = [s.address for s in sybils if s.address not in applicants]
    assert len(out) == 1 and bonded(market, out[0]) == 0      # displaced sybil's bond released
    assert market.client.slot(job, out[0])["state"] == "dropped"
    market.assert_books()


def test_l1_zero_windows_are_refused(market):
    """L1: a zero reveal or referee window (which would void every replicated job at once and,
    with a lapsed referee, lock escrow) is refused even from governance; a positive one applies."""
    from web3.exceptions import ContractLogicError

    from proofmesh.chain.core import GovernanceClient
    from proofmesh.errors import ProofmeshError

    chain, c = market.chain, market.client.c
    gov = chain.addresses["Governance"]
    for name in ("reveal_window", "referee_window", "min_reward", "worker_bond", "max_share_bps"):
        before = chain.call(getattr(c.functions, name)())
        fn = c.functions.set_parameter(name, 0)
        with pytest.raises(ContractLogicError, match="parameter must be > 0"):
            fn.call({"from": gov})
        with pytest.raises(ProofmeshError):
            GovernanceClient(chain).apply_now(fn, salt=os.urandom(32))
        assert chain.call(getattr(c.functions, name)()) == before
    GovernanceClient(chain).apply_now(c.functions.set_parameter("reveal_window", 900))
    assert chain.call(c.functions.reveal_window()) == 900


# ------------------------------------------------------------------ L2: front-running the result's registration

def _front_run(market, attacker, root: bytes, name: str = "squat"):
    """The audit's attacker: register a revealed weights root under a lineage of its own."""
    models = market.chain.contract("ModelRegistry")
    return market.chain.transact(models.functions.register(name, root, 0, 0, 0, [], 0, "", ""), sender=attacker)


def _registered(market, job) -> tuple:
    """(ok, version id) of the job's ResultRegistered event."""
    ev = market.chain.events("JobMarket", "ResultRegistered", from_block=0, argument_filters={"job_id": job})
    assert len(ev) == 1
    return ev[0]["args"]["ok"], ev[0]["args"]["version_id"]


def test_l2_revealed_root_and_name_cannot_be_taken_before_settlement(market, accounts):
    """L2 (replicated): between the first reveal and settlement an outsider tries to register the
    revealed root and to squat the job's lineage name. Both revert, and the job's result is
    registered to the poster, under the job's name, as a child of the base version."""
    attacker = accounts[8]
    models = market.chain.contract("ModelRegistry")
    job = market.post(name="l2-lineage")
    # The name is the poster's from the post on (locators() exposes it to everyone).
    assert market.chain.call(models.functions.name_owner(market.chain.w3.keccak(text="l2-lineage"))) == \
        market.poster.address
    with pytest.raises(ContractRevert, match="name is owned by another account"):
        _front_run(market, attacker, os.urandom(32), name="l2-lineage")
    workers = market.assign(job, market.workers[:3])
    wr, tr = os.urandom(32), os.urandom(32)
    salts = {w: market.client.commit(job, wr, tr, sender=market.account(w)) for w in workers}
    market.client.reveal(job, wr, tr, salts[workers[0]], "bafkmanifest", "bafkresult",
                         sender=market.account(workers[0]))
    # The root is public now (Revealed event): the registry holds it for this job.
    assert tuple(market.chain.call(models.functions.hold_of(wr))) == (market.client.c.address, job)
    with pytest.raises(ContractRevert, match=f"weights held for compute job {job} until it closes"):
        _front_run(market, attacker, wr)
    # ...also through a registrar-looking path: only the holding registrar, for this job.
    with pytest.raises(ContractRevert, match="not a registrar"):
        market.chain.transact(models.functions.hold_root(wr, 999), sender=attacker)
    with pytest.raises(ContractRevert, match="not a registrar"):
        market.chain.transact(models.functions.reserve_name(attacker.address, "l2-lineage"), sender=attacker)
    for w in workers[1:]:
        market.client.reveal(job, wr, tr, salts[w], "bafkmanifest", "bafkresult", sender=market.account(w))
    with pytest.raises(ContractRevert, match="weights held for compute job"):
        _front_run(market, attacker, wr)                     # the last moment before settlement
    market.client.finalize_replicated(job, sender=attacker)
    info = market.client.job(job)
    assert info.status == "settled"
    ok, vid = _registered(market, job)
    assert ok and vid == info.version_id and vid > 0
    v = market.chain.call(models.functions.versions(vid))
    assert v[0] == wr and v[2] == market.base_version and v[5] == market.poster.address
    assert v[6] == market.client.c.address and v[7] == job
    assert v[1] == market.chain.w3.keccak(text="l2-lineage")
    assert market.chain.call(models.functions.version_of_root(wr)) == vid
    # Settled: the hold is gone, and the root is simply a registered duplicate now.
    assert tuple(market.chain.call(models.functions.hold_of(wr)))[1] == 0
    with pytest.raises(ContractRevert, match=f"duplicate weights, already version {vid}"):
        _front_run(market, attacker, wr)
    market.assert_books()


def test_l2_optimistic_submitted_root_is_held_for_the_job(market, accounts):
    """L2 (optimistic): the root submitted to the OptimisticVerifier is held during the whole
    challenge window and audit; the settled result is the poster's version."""
    attacker = accounts[8]
    job = market.post(mode="optimistic", replicas=1, n_segments=4, name="l2-opt")
    (worker,) = market.assign(job, market.workers[:3])
    wr = os.urandom(32)
    trace = random_trace(4)
    market.client.submit(job, wr, trace, "bafkmanifest", "bafkresult", sender=market.account(worker))
    with pytest.raises(ContractRevert, match=f"weights held for compute job {job}"):
        _front_run(market, attacker, wr)
    market.chain.increase_time(1801)
    market.chain.mine(2)
    market.client.finalize_optimistic(job)                    # draws the audit (rate 100%)
    with pytest.raises(ContractRevert, match=f"weights held for compute job {job}"):
        _front_run(market, attacker, wr)
    market.client.rule_audit_pass(job, sender=market.referee)
    market.client.finalize_optimistic(job)
    info = market.client.job(job)
    ok, vid = _registered(market, job)
    assert info.status == "settled" and ok and vid == info.version_id > 0
    v = market.chain.call(market.chain.contract("ModelRegistry").functions.versions(vid))
    assert v[0] == wr and v[5] == market.poster.address and v[7] == job
    market.assert_books()


def test_l2_hold_lapses_for_rejected_and_refunded_results(market, accounts):
    """A hold binds only while the job can still settle with that root: a replica's root the
    referee rejected, and every root of a refunded job, are free once the job closes."""
    attacker = accounts[8]
    models = market.chain.contract("ModelRegistry")
    job = market.post(name="l2-dispute")
    workers = market.assign(job, market.workers[:3])
    good, bad, tr = os.urandom(32), os.urandom(32), os.urandom(32)
    results = {workers[0]: (good, tr), workers[1]: (good, tr), workers[2]: (bad, tr)}
    salts = {w: market.client.commit(job, wr, t, sender=market.account(w)) for w, (wr, t) in results.items()}
    for w, (wr, t) in results.items():
        market.client.reveal(job, wr, t, salts[w], "m", "r", sender=market.account(w))
    market.client.finalize_replicated(job)
    assert market.client.job(job).status == "disputed"
    with pytest.raises(ContractRevert, match="weights held for compute job"):
        _front_run(market, attacker, bad)                     # still held while the referee decides
    market.client.rule_replicated(job, workers[:2], "m", "r", sender=market.referee)
    ok, vid = _registered(market, job)
    assert ok and market.chain.call(models.functions.owner_of(vid)) == market.poster.address
    _front_run(market, attacker, bad)                         # the rejected root is anyone's now
    # A refunded job frees its roots too.
    job2 = market.post(name="l2-dispute")                     # same poster: the name is already theirs
    w2 = market.assign(job2, market.workers[:3])
    roots = {w: os.urandom(32) for w in w2}
    salts = {w: market.client.commit(job2, roots[w], tr, sender=market.account(w)) for w in w2}
    for w in w2:
        market.client.reveal(job2, roots[w], tr, salts[w], "m", "r", sender=market.account(w))
    market.client.finalize_replicated(job2)
    with pytest.raises(ContractRevert, match=f"weights held for compute job {job2}"):
        _front_run(market, attacker, roots[w2[0]])
    market.chain.increase_time(1801)
    market.chain.mine()
    market.client.timeout_dispute(job2)
    assert not market.chain.call(market.client.c.functions.job_open(job2))
    _front_run(market, attacker, roots[w2[0]])
    market.assert_books()


def test_l2_post_under_someone_elses_name_is_refused_before_escrow(market, accounts):
    """The name is claimed at post, so a name owned by another account is refused up front
    (client: InputError; contract: revert), with nothing escrowed."""
    other = accounts[8]
    _front_run(market, other, os.urandom(32), name="taken")
    t = Token(market.chain)
    b0, jobs0 = t.balance(market.poster.address), market.client.job_count()
    with pytest.raises(InputError, match="lineage 'taken' is owned by"):
        market.post(name="taken")
    with pytest.raises(InputError, match="lineage name '' must be 1-64 bytes"):
        market.post(name="")
    c = market.client.c
    now = market.chain.timestamp()
    market.client.token.ensure_allowance(c.address, 30 * MESH, sender=market.poster)
    for name, reason in (("taken", "name is owned by another account"), ("", "empty name")):
        with pytest.raises(ContractRevert, match=reason):
            market.chain.transact(c.functions.post("s", name, market.base_version, [b"\x01" * 32], 0, 3, 4, PROFILE,
                                                   30 * MESH, 60, 60, now + 999), sender=market.poster)
    assert t.balance(market.poster.address) == b0 and market.client.total_escrowed() == 0
    assert market.client.job_count() == jobs0


def test_l2_registry_client_refuses_a_held_result_before_any_transaction(market, accounts, tmp_path):
    """Someone who fetched a job's revealed weights (the result bundle is public) and tries to
    register them gets an InputError naming the job, and no transaction is sent."""
    from proofmesh.compute.training import build_base_weights, weights_to_bytes
    from proofmesh.models.registry import ModelRegistryClient

    path = tmp_path / "result.safetensors"
    path.write_bytes(weights_to_bytes(build_base_weights(seed=5)))
    from proofmesh.models.weights import manifest

    m = manifest(path)
    job = market.post(mode="optimistic", replicas=1, n_segments=4, name="l2-client")
    (worker,) = market.assign(job, market.workers[:3])
    market.client.submit(job, m.root, random_trace(4), "m", "r", sender=market.account(worker))
    attacker = accounts[8]
    client = ModelRegistryClient(market.chain.with_account(attacker), blobs=None)
    nonce = market.chain.w3.eth.get_transaction_count(attacker.address)
    with pytest.raises(InputError, match=f"result of compute job {job}"):
        client.register_version("mine", m, sender=attacker)
    assert market.chain.w3.eth.get_transaction_count(attacker.address) == nonce


def test_l2_hold_is_scoped_to_the_job_that_revealed_the_root_first(market, accounts):
    """The hold's key is (registrar, job): a second job that later submits the same root cannot
    register it while the first job is open (logged, payment unaffected), and the first job's
    poster gets the version."""
    from proofmesh.chain.core import Token

    other_poster = accounts[7]
    models = market.chain.contract("ModelRegistry")
    job_a = market.post(name="l2-first")
    workers = market.assign(job_a, market.workers[:3])
    wr, tr = os.urandom(32), os.urandom(32)
    salts = {w: market.client.commit(job_a, wr, tr, sender=market.account(w)) for w in workers}
    for w in workers:
        market.client.reveal(job_a, wr, tr, salts[w], "m", "r", sender=market.account(w))
    now = market.chain.timestamp()
    job_b = market.client.post(spec_cid="bafkspec", name="l2-copy", base_version=market.base_version,
                               batches=[b"\x07" * 32], mode="optimistic", replicas=1, n_segments=4,
                               profile_id=PROFILE, reward=30 * MESH, apply_seconds=60, work_seconds=600,
                               deadline=now + 7200, sender=other_poster)
    (worker_b,) = market.assign(job_b, market.workers[3:5])
    market.client.submit(job_b, wr, random_trace(4), "m", "r", sender=market.account(worker_b))
    assert tuple(market.chain.call(models.functions.hold_of(wr))) == (market.client.c.address, job_a)
    market.chain.increase_time(1801)
    market.chain.mine(2)
    market.client.finalize_optimistic(job_b)
    market.client.rule_audit_pass(job_b, sender=market.referee)
    t = Token(market.chain)
    b0 = t.balance(worker_b)
    market.client.finalize_optimistic(job_b)
    assert market.client.job(job_b).status == "settled" and t.balance(worker_b) - b0 == 30 * MESH
    assert _registered(market, job_b) == (False, 0)
    market.client.finalize_replicated(job_a)
    ok, vid = _registered(market, job_a)
    assert ok and market.chain.call(models.functions.owner_of(vid)) == market.poster.address
    assert market.chain.call(models.functions.version_of_root(wr)) == vid
    market.assert_books()
