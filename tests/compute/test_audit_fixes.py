"""Regression tests for the security audit's compute findings (docs/security-audit.md)."""

from __future__ import annotations

import os

import pytest

from proofmesh.chain.core import MESH, Registry, Token
from proofmesh.errors import ContractRevert

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
