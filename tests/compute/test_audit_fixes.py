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
