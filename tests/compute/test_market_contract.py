"""JobMarket + OptimisticVerifier on a real EVM: every phase, every attack, books to the wei."""

from __future__ import annotations

import os

import pytest

from proofmesh.chain.core import MESH, Registry, Token
from proofmesh.compute.market import commitment
from proofmesh.errors import ContractRevert, InputError

from .conftest import PROFILE, random_trace

BOND = 50 * MESH


def stake(market, who) -> int:
    return Registry(market.chain).info(who).stake


def bonded(market, who) -> int:
    return market.chain.call(market.chain.contract("NodeRegistry").functions.bonded_by(
        market.client.c.address, who))


# ------------------------------------------------------------------ replicated

def _commit_reveal(market, job_id, results: dict) -> None:
    salts = {}
    for addr, (wr, tr) in results.items():
        salts[addr] = market.client.commit(job_id, wr, tr, sender=market.account(addr))
    for addr, (wr, tr) in results.items():
        market.client.reveal(job_id, wr, tr, salts[addr], "bafkmanifest", "bafkresult",
                             sender=market.account(addr))


def test_replicated_unanimous_pays_all_and_registers_child(market):
    job = market.post()
    t = Token(market.chain)
    before = {w.address: t.balance(w.address) for w in market.workers}
    workers = market.assign(job, market.workers[:4])           # 4 apply, 3 drawn
    assert len(workers) == 3 and len(set(workers)) == 3
    dropped = [w.address for w in market.workers[:4] if w.address not in workers]
    assert bonded(market, dropped[0]) == 0                     # loser of the draw got its bond back
    wr, tr = os.urandom(32), os.urandom(32)
    _commit_reveal(market, job, {w: (wr, tr) for w in workers})
    market.client.finalize_replicated(job)
    info = market.client.job(job)
    assert info.status == "settled" and info.weights_root == "0x" + wr.hex()
    for w in workers:
        assert bonded(market, w) == 0
    paid = sorted(t.balance(w) - before[w] for w in workers)
    assert sum(paid) == 30 * MESH and paid[0] == 10 * MESH
    # Registered once, as a child of the base version, owned by the poster, linked to the job.
    models = market.chain.contract("ModelRegistry")
    vid = info.version_id
    v = market.chain.call(models.functions.versions(vid))
    assert v[0] == wr and v[2] == market.base_version and v[5] == market.poster.address and v[7] == job
    with pytest.raises(ContractRevert, match="job is not in its reveal phase"):
        market.client.finalize_replicated(job)                 # double settle
    market.assert_books()


def test_replicated_cheater_slashed_after_referee(market):
    job = market.post()
    workers = market.assign(job, market.workers[:3])
    honest, cheat = workers[:2], workers[2]
    wr, tr = os.urandom(32), os.urandom(32)
    results = {w: (wr, tr) for w in honest}
    results[cheat] = (os.urandom(32), tr)                      # perturbed weights
    _commit_reveal(market, job, results)
    stake0 = stake(market, cheat)
    t = Token(market.chain)
    h0 = t.balance(honest[0])
    market.client.finalize_replicated(job)
    assert market.client.job(job).status == "disputed"
    with pytest.raises(ContractRevert, match="not the referee"):
        market.client.rule_replicated(job, honest, sender=market.account(honest[0]))
    market.client.rule_replicated(job, honest, sender=market.referee)
    assert market.client.job(job).status == "settled"
    assert stake(market, cheat) == stake0 - BOND
    # 15 MESH reward + half of the 50 MESH bond (the other half is burned).
    assert t.balance(honest[0]) - h0 == 15 * MESH + BOND // 2
    market.assert_books()


def test_copied_commitment_does_not_open_for_the_copier(market):
    job = market.post()
    a, b, c = market.assign(job, market.workers[:3])
    wr, tr, salt = os.urandom(32), os.urandom(32), os.urandom(32)
    comm = commitment(job, a, wr, tr, salt)
    market.chain.transact(market.client.c.functions.commit(job, comm), sender=market.account(a))
    market.chain.transact(market.client.c.functions.commit(job, comm), sender=market.account(b))   # copy
    market.client.commit(job, wr, tr, sender=market.account(c))
    market.client.reveal(job, wr, tr, salt, "m", "r", sender=market.account(a))
    with pytest.raises(ContractRevert, match="reveal does not match commitment"):
        market.client.reveal(job, wr, tr, salt, "m", "r", sender=market.account(b))
    with pytest.raises(ContractRevert, match="reveal does not match commitment"):
        market.client.reveal(job, os.urandom(32), tr, salt, "m", "r", sender=market.account(c))


def test_silent_replica_slashed_and_slot_reassigned(market):
    job = market.post()
    workers = market.assign(job, market.workers[:3])
    wr, tr = os.urandom(32), os.urandom(32)
    salts = {w: market.client.commit(job, wr, tr, sender=market.account(w)) for w in workers[:2]}
    silent = workers[2]
    s0 = stake(market, silent)
    with pytest.raises(ContractRevert, match="work deadline not passed"):
        market.client.reassign(job)
    market.chain.increase_time(601)
    market.client.reassign(job)
    assert stake(market, silent) == s0 - BOND
    info = market.client.job(job)
    assert info.status == "open" and info.round == 1 and info.committed == 2
    with pytest.raises(ContractRevert, match="already applied"):
        market.client.apply(job, PROFILE, sender=market.account(silent))
    new = market.workers[3]
    market.client.apply(job, PROFILE, sender=new)
    market.client.close_applications(job)
    market.chain.mine(3)
    assert new.address in market.client.draw(job)
    salts[new.address] = market.client.commit(job, wr, tr, sender=new)
    for w, s in salts.items():
        market.client.reveal(job, wr, tr, s, "m", "r", sender=market.account(w))
    market.client.finalize_replicated(job)
    assert market.client.job(job).status == "settled"
    market.assert_books()


def test_committed_but_unrevealed_loses_bond(market):
    job = market.post()
    workers = market.assign(job, market.workers[:3])
    wr, tr = os.urandom(32), os.urandom(32)
    salts = {w: market.client.commit(job, wr, tr, sender=market.account(w)) for w in workers}
    for w in workers[:2]:
        market.client.reveal(job, wr, tr, salts[w], "m", "r", sender=market.account(w))
    with pytest.raises(ContractRevert, match="reveal phase still running"):
        market.client.finalize_replicated(job)
    market.chain.increase_time(601)
    s0 = stake(market, workers[2])
    market.client.finalize_replicated(job)                     # 2 of 3 agree: majority settles
    assert stake(market, workers[2]) == s0 - BOND
    assert market.client.job(job).status == "settled"
    market.assert_books()


# ------------------------------------------------------------------ bad input

def test_bad_input_refused_before_escrow(market, accounts):
    t = Token(market.chain)
    b0 = t.balance(market.poster.address)
    with pytest.raises(InputError, match="below the market minimum"):
        market.post(reward=1)
    with pytest.raises(InputError, match="odd number of replicas"):
        market.post(replicas=2)
    with pytest.raises(InputError, match="only 5 active COMPUTE"):
        market.post(replicas=7)
    market.base_version = 999
    with pytest.raises(InputError, match="unknown base model version"):
        market.post()
    # And the contract refuses the same things on its own (a client that skips checks).
    c = market.client.c
    now = market.chain.timestamp()
    with pytest.raises(ContractRevert, match="unknown base model version"):
        market.chain.transact(c.functions.post("s", "n", 999, [b"\x01" * 32], 0, 3, 4, PROFILE, 10 * MESH, 60,
                                               60, now + 999), sender=market.poster)
    with pytest.raises(ContractRevert, match="reward below minimum"):
        market.chain.transact(c.functions.post("s", "n", 1, [b"\x01" * 32], 0, 3, 4, PROFILE, 1, 60, 60,
                                               now + 999), sender=market.poster)
    assert t.balance(market.poster.address) == b0 and market.client.total_escrowed() == 0


def test_apply_rules(market, accounts):
    job = market.post()
    w = market.workers[0]
    with pytest.raises(ContractRevert, match="profile does not match"):
        market.client.apply(job, b"\x01" * 32, sender=w)
    market.client.apply(job, PROFILE, sender=w)
    with pytest.raises(ContractRevert, match="already applied"):
        market.client.apply(job, PROFILE, sender=w)
    with pytest.raises(ContractRevert, match="not a COMPUTE node"):
        market.client.apply(job, PROFILE, sender=accounts[7])
    Registry(market.chain).register("", 2, sender=accounts[7])       # registered, no stake
    with pytest.raises(ContractRevert, match="not an active node"):
        market.client.apply(job, PROFILE, sender=accounts[7])
    with pytest.raises(ContractRevert, match="applications still open"):
        market.client.close_applications(job)
    market.chain.increase_time(61)
    with pytest.raises(ContractRevert, match="not enough applicants"):
        market.client.close_applications(job)


def test_draw_waits_for_the_future_block(market):
    job = market.post()
    for w in market.workers[:3]:
        market.client.apply(job, PROFILE, sender=w)
    market.chain.increase_time(61)
    market.client.close_applications(job)
    with pytest.raises(ContractRevert, match="seed block not mined yet"):
        market.client.draw(job)
    with pytest.raises(ContractRevert, match="not taking applications"):
        market.client.apply(job, PROFILE, sender=market.workers[3])


def test_cancel_and_expire_refund_and_release(market):
    t = Token(market.chain)
    b0 = t.balance(market.poster.address)
    job = market.post()
    market.client.apply(job, PROFILE, sender=market.workers[0])
    with pytest.raises(ContractRevert, match="only the poster"):
        market.client.cancel(job, sender=market.workers[0])
    market.client.cancel(job, sender=market.poster)
    assert t.balance(market.poster.address) == b0 and bonded(market, market.workers[0].address) == 0
    with pytest.raises(ContractRevert, match="no longer cancellable"):
        market.client.cancel(job, sender=market.poster)
    job2 = market.post(deadline_in=3600)
    market.client.apply(job2, PROFILE, sender=market.workers[1])
    with pytest.raises(ContractRevert, match="deadline not passed"):
        market.client.expire(job2)
    market.chain.increase_time(3601)
    market.client.expire(job2)
    assert market.client.job(job2).status == "refunded"
    assert t.balance(market.poster.address) == b0 and bonded(market, market.workers[1].address) == 0
    market.assert_books()


def test_draw_is_stake_weighted_capped_and_reproducible(market, accounts):
    # A whale with 10x everyone's stake: the contract's picks equal the off-chain
    # recomputation from the seed block's hash, stakes and the 40% cap.
    from proofmesh.compute.market import expected_draw

    Registry(market.chain).stake(9000 * MESH, sender=market.workers[0])
    job = market.post()
    applicants = [w.address for w in market.workers]
    for w in market.workers:
        market.client.apply(job, PROFILE, sender=w)
    market.chain.increase_time(61)
    market.client.close_applications(job)
    seed_block = market.client.job(job).seed_block
    market.chain.mine(3)
    stakes = [stake(market, a) for a in applicants]
    drawn = market.client.draw(job)
    seed_hash = market.chain.w3.eth.get_block(seed_block)["hash"]
    assert drawn == expected_draw(bytes(seed_hash), job, 0, applicants, stakes,
                                  market.client.param("max_share_bps"), 3)
    # The cap is what the contract applied: with it removed the same seed may pick differently,
    # but the whale can never hold two slots of one job.
    assert len(set(drawn)) == 3


def test_h1_stake_added_after_the_seed_does_not_weigh_in_the_draw(market, accounts):
    """Audit H1 (JobMarket): weights are each applicant's stake *at application*, so stake
    added once the seed block is known cannot buy a seat."""
    from proofmesh.compute.market import expected_draw

    job = market.post()
    applicants = [w.address for w in market.workers]
    for w in market.workers:
        market.client.apply(job, PROFILE, sender=w)
    at_apply = [market.client.slot(job, a)["stake_at_apply"] for a in applicants]
    assert at_apply == [stake(market, a) for a in applicants]
    market.chain.increase_time(61)
    market.client.close_applications(job)
    seed_block = market.client.job(job).seed_block
    market.chain.mine(3)
    # the seed is public now: one applicant piles on stake
    Registry(market.chain).stake(50_000 * MESH, sender=market.workers[-1])
    drawn = market.client.draw(job)
    seed_hash = bytes(market.chain.w3.eth.get_block(seed_block)["hash"])
    assert drawn == expected_draw(seed_hash, job, 0, applicants, at_apply, market.client.param("max_share_bps"), 3)
    market.assert_books()


# ------------------------------------------------------------------ optimistic

def _optimistic(market, n=8):
    job = market.post(mode="optimistic", replicas=1, n_segments=n)
    (worker,) = market.assign(job, market.workers[:3])
    trace = random_trace(n)
    wr = os.urandom(32)
    market.client.submit(job, wr, trace, "bafkmanifest", "bafkresult", sender=market.account(worker))
    return job, worker, trace, wr


def test_optimistic_honest_path_with_audit(market):
    job, worker, trace, wr = _optimistic(market)
    t = Token(market.chain)
    b0 = t.balance(worker)
    with pytest.raises(ContractRevert, match="challenge window still open"):
        market.client.finalize_optimistic(job)
    market.chain.increase_time(1801)
    market.chain.mine(2)
    market.client.finalize_optimistic(job)                    # draws the audit (rate 100%): waits
    g = market.client.game(job)
    assert g["audit"]["drawn"] and g["audit"]["pending"] and len(g["audit"]["segments"]) == 8
    assert market.client.job(job).status == "submitted"
    with pytest.raises(ContractRevert, match="audit pending"):
        market.client.finalize_optimistic(job)
    market.client.rule_audit_pass(job, sender=market.referee)
    market.client.finalize_optimistic(job)
    info = market.client.job(job)
    assert info.status == "settled" and t.balance(worker) - b0 == 30 * MESH and info.version_id > 0
    market.assert_books()


def test_optimistic_false_result_disputed_and_lost(market):
    job, worker, trace, wr = _optimistic(market)
    challenger = next(w for w in market.workers if w.address != worker)
    s_worker, t = stake(market, worker), Token(market.chain)
    c0, p0 = t.balance(challenger.address), t.balance(market.poster.address)
    market.client.challenge(job, sender=challenger)
    with pytest.raises(ContractRevert, match="not the challenger's turn"):
        market.client.bisect_respond(job, True, sender=challenger)
    # The challenger's honest trace agrees up to checkpoint 5 and differs from 6 on.
    while market.client.game(job)["dispute"]["turn"] == "worker":
        market.client.bisect_reveal(job, trace, sender=market.account(worker))
        d = market.client.game(job)["dispute"]
        mid = (d["lo"] + d["hi"]) // 2
        market.client.bisect_respond(job, mid <= 5, sender=challenger)
    d = market.client.game(job)["dispute"]
    assert (d["lo"], d["hi"], d["turn"]) == (5, 6, "referee")
    assert d["h_lo"] == "0x" + trace.hashes[5].hex() and d["h_hi"] == "0x" + trace.hashes[6].hex()
    market.client.rule_segment(job, False, sender=market.referee)
    assert market.client.job(job).status == "refunded"
    assert stake(market, worker) == s_worker - BOND
    assert t.balance(challenger.address) - c0 == BOND // 2
    assert t.balance(market.poster.address) - p0 == 30 * MESH
    market.assert_books()


def test_optimistic_false_challenge_costs_the_challenger(market):
    job, worker, trace, wr = _optimistic(market, n=1)         # one segment: straight to the referee
    challenger = next(w for w in market.workers if w.address != worker)
    s0 = stake(market, challenger.address)
    market.client.challenge(job, sender=challenger)
    assert market.client.game(job)["dispute"]["turn"] == "referee"
    market.client.rule_segment(job, True, sender=market.referee)
    assert stake(market, challenger.address) == s0 - 50 * MESH
    market.chain.increase_time(1801)
    market.chain.mine(2)
    market.client.finalize_optimistic(job)
    market.client.rule_audit_pass(job, sender=market.referee)
    market.client.finalize_optimistic(job)
    assert market.client.job(job).status == "settled"
    market.assert_books()


def test_bisection_bad_proof_and_silent_worker(market):
    job, worker, trace, wr = _optimistic(market)
    challenger = next(w for w in market.workers if w.address != worker)
    market.client.challenge(job, sender=challenger)
    forged = random_trace(8)
    with pytest.raises(ContractRevert, match="bad proof for midpoint"):
        market.client.bisect_reveal(job, forged, sender=market.account(worker))
    with pytest.raises(ContractRevert, match="turn still running"):
        market.client.timeout_turn(job)
    market.chain.increase_time(601)
    s0 = stake(market, worker)
    market.client.timeout_turn(job)
    assert stake(market, worker) == s0 - BOND and market.client.job(job).status == "refunded"
    market.assert_books()


def test_audit_failure_slashes_worker(market):
    job, worker, trace, wr = _optimistic(market)
    market.chain.increase_time(1801)
    market.chain.mine(2)
    market.client.finalize_optimistic(job)
    seg = market.client.game(job)["audit"]["segments"][0]
    with pytest.raises(ContractRevert, match="bad proof for h_lo"):
        market.client.rule_audit_fail(job, seg, random_trace(8), sender=market.referee)
    s0 = stake(market, worker)
    market.client.rule_audit_fail(job, seg, trace, sender=market.referee)
    assert stake(market, worker) == s0 - BOND and market.client.job(job).status == "refunded"
    market.assert_books()


def test_submit_rules(market):
    job = market.post(mode="optimistic", replicas=1, n_segments=4)
    (worker,) = market.assign(job, market.workers[:2])
    other = next(w for w in market.workers if w.address != worker)
    trace = random_trace(4)
    with pytest.raises(ContractRevert, match="not the assigned worker"):
        market.client.submit(job, os.urandom(32), trace, "m", "r", sender=other)
    bad = random_trace(5)   # proof of the last checkpoint at the wrong index
    with pytest.raises(ContractRevert, match="bad proof for last checkpoint"):
        market.client.submit(job, os.urandom(32), bad, "m", "r", sender=market.account(worker))
    market.client.submit(job, os.urandom(32), trace, "m", "r", sender=market.account(worker))
    with pytest.raises(ContractRevert, match="already submitted"):
        market.client.submit(job, os.urandom(32), trace, "m", "r", sender=market.account(worker))
    with pytest.raises(ContractRevert, match="worker cannot challenge itself"):
        market.client.challenge(job, sender=market.account(worker))
