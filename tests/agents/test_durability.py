"""Payment books: group commit off the request path, strict mode, fail-stop on a disk error."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from proofmesh.payments import DURABILITY_GROUP, BooksUnwritable, Ledger, PaymentChannels, Wallet

from .conftest import PRICE


def _crash_copy(path: Path) -> Path:
    """The books' file as a crash would leave it now, for a 'restarted' owner to open."""
    copy = path.with_name("restarted-" + path.name)
    shutil.copyfile(path, copy)
    return copy


def _channel(net, payee):
    agent = net.staked(5, 1)
    pc = PaymentChannels(agent)
    wallet = Wallet(pc, agent.account, net.tmp / "wallet.json", durability=DURABILITY_GROUP)
    wallet.ensure_channel(payee, 100 * PRICE)
    return pc, wallet


def test_group_commit_books_survive_reopen_and_refuse_replays(net):
    payee = net.staked(1)
    pc, wallet = _channel(net, payee.account.address)
    ledger = Ledger(PaymentChannels(payee), payee.account.address, net.tmp / "vouchers.json",
                    durability=DURABILITY_GROUP)
    vouchers = [wallet.pay(payee.account.address, PRICE) for _ in range(5)]
    for v in vouchers:
        ledger.accept(v, PRICE)
    mark = ledger.mark()
    ledger.wait_durable(mark)
    assert ledger.durable(mark)
    wallet.wait_durable(wallet.mark())
    # a fresh process reading the same files (as a crash now leaves them: copies, since the
    # live books keep their journals locked) knows every accepted voucher
    again = Ledger(PaymentChannels(payee), payee.account.address, _crash_copy(net.tmp / "vouchers.json"),
                   durability=DURABILITY_GROUP)
    assert again.owed(vouchers[-1].channel) == 5 * PRICE
    with pytest.raises(Exception, match="not above"):
        again.accept(vouchers[-1], PRICE)
    w2 = Wallet(pc, wallet.account, _crash_copy(net.tmp / "wallet.json"), durability=DURABILITY_GROUP)
    assert w2.committed(payee.account.address) == 5 * PRICE
    again.accept(w2.pay(payee.account.address, PRICE), PRICE)     # nonce 6 continues the sequence


def test_a_failed_sync_stops_the_books_before_anything_is_accepted(net, monkeypatch):
    payee = net.staked(1)
    _, wallet = _channel(net, payee.account.address)
    ledger = Ledger(PaymentChannels(payee), payee.account.address, net.tmp / "vouchers.json",
                    durability=DURABILITY_GROUP)
    ledger.accept(wallet.pay(payee.account.address, PRICE), PRICE)
    ledger.wait_durable(ledger.mark())
    v2, v3 = wallet.pay(payee.account.address, PRICE), wallet.pay(payee.account.address, PRICE)
    wallet.wait_durable(wallet.mark())

    # A disk that fails its flush (EIO): cannot be produced on demand here, so fdatasync is made to fail.
    def broken(fd):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(os, "fdatasync", broken)
    ledger.accept(v2, PRICE)                      # written to the OS; its sync fails in the committer
    with pytest.raises(BooksUnwritable, match="cannot be made durable"):
        ledger.wait_durable(ledger.mark())
    owed = ledger.owed(v2.channel)
    with pytest.raises(BooksUnwritable):
        ledger.accept(v3, PRICE)                  # fail-stop: nothing more is accepted ...
    assert ledger.owed(v2.channel) == owed        # ... and nothing of it was recorded
    # the payer's wallet finds out at its next sync (AgentClient waits for it before a call returns)
    wallet.pay(payee.account.address, PRICE)
    with pytest.raises(BooksUnwritable):
        wallet.wait_durable(wallet.mark())
    with pytest.raises(BooksUnwritable):
        wallet.pay(payee.account.address, PRICE)  # and from then on signs nothing


def test_strict_provider_releases_results_only_for_vouchers_on_disk(net):
    p = net.provider(1, strict_durability=True)
    agent = net.agent(5)
    res = agent.call_sync("word_count", {"text": "a b c"})
    assert res.result == 3
    assert p.ledger.durable(p.ledger.mark())
    assert agent.wallet.durable(agent.wallet.mark())


def test_agent_that_lost_its_newest_wallet_records_resumes_from_the_provider(net):
    p = net.provider(1)
    agent = net.agent(5)
    assert agent.call_sync("word_count", {"text": "a"}).result == 1
    wallet_file = net.tmp / "agent5" / "wallet.json"
    snapshot = wallet_file.read_bytes()
    for _ in range(3):
        agent.call_sync("word_count", {"text": "a b"})
    wallet_file.write_bytes(snapshot)          # an OS crash lost the last three wallet records
    again = net.agent(5)
    channel = again.wallet.channel_of(p.address)
    assert again.wallet.committed(p.address) == PRICE
    res = again.call_sync("word_count", {"text": "a b c"})   # refused as stale, resynced, paid
    assert res.result == 3 and res.receipt.nonce == 5
    assert p.ledger.owed(channel) == 5 * PRICE == again.wallet.committed(p.address)


def test_wallet_resyncs_only_from_its_own_newer_vouchers(net):
    payee = net.staked(1)
    pc, wallet = _channel(net, payee.account.address)
    v1, v2 = wallet.pay(payee.account.address, PRICE), wallet.pay(payee.account.address, PRICE)
    fresh = Wallet(pc, wallet.account)
    fresh.ensure_channel(payee.account.address, PRICE)           # knows nothing of v1, v2
    from proofmesh.payments.voucher import Voucher, sign_voucher
    forged = sign_voucher(net.accounts[6], pc.domain, Voucher(v2.channel, 0, 9))
    assert not fresh.resync(payee.account.address, forged)        # not this payer's signature
    assert fresh.resync(payee.account.address, v2)
    assert not fresh.resync(payee.account.address, v1)            # older than what it now knows
    assert fresh.committed(payee.account.address) == 2 * PRICE
    assert fresh.pay(payee.account.address, PRICE).nonce == 3


def test_write_behind_wallet_persists_at_its_sync(net):
    from proofmesh.payments import DURABILITY_BEHIND
    payee = net.staked(1)
    agent = net.staked(5, 1)
    pc = PaymentChannels(agent)
    path = net.tmp / "behind.json"
    wallet = Wallet(pc, agent.account, path, durability=DURABILITY_BEHIND, commit_interval_s=5.0)
    wallet.ensure_channel(payee.account.address, 100 * PRICE)
    wallet.wait_durable(wallet.mark())
    size = path.stat().st_size
    wallet.pay(payee.account.address, PRICE)
    assert path.stat().st_size == size                 # encoded, not yet written: nothing on the request path
    wallet.wait_durable(wallet.mark())                 # a waiter gets its sync at once, not after 5 s
    assert path.stat().st_size > size
    assert Wallet(pc, agent.account, _crash_copy(path)).committed(payee.account.address) == PRICE
