"""PaymentChannels on a real EVM: open, pay with vouchers, redeem once, attacks refused."""

from __future__ import annotations

import pytest

from proofmesh.chain.core import Token
from proofmesh.errors import ContractRevert, InputError, VerificationError
from proofmesh.payments import Ledger, PaymentChannels, Voucher, Wallet, recover_voucher, sign_voucher

PRICE = 10**15


@pytest.fixture
def pc(chain):
    return PaymentChannels(chain)


@pytest.fixture
def parties(accounts):
    return accounts[1], accounts[2]  # payer, payee


def advance_to(chain, timestamp: int) -> None:
    """Move the dev chain's clock to ``timestamp`` (the embedded chain's block times can
    run ahead of its clock after many fast blocks, so one increase_time may fall short)."""
    while chain.timestamp() < timestamp:
        chain.increase_time(timestamp - chain.timestamp() + 1)


def _books(chain, pc) -> None:
    """The contract holds exactly the open channels' deposits."""
    assert Token(chain).balance(pc.address) == chain.call(pc.contract.functions.total_deposits())


def test_voucher_digest_matches_contract(chain, pc, parties):
    payer, payee = parties
    cid = pc.channel_id(payer.address, payee.address)
    v = Voucher(cid, 123, 7)
    assert v.digest(pc.domain) == bytes(chain.call(pc.contract.functions.voucher_digest(
        cid, 123, 7, v.oracle, v.condition)))
    signed = sign_voucher(payer, pc.domain, v)
    assert recover_voucher(pc.domain, signed) == payer.address


def test_pay_many_settle_once(chain, pc, parties):
    payer, payee = parties
    token = Token(chain)
    wallet = Wallet(pc, payer)
    ledger = Ledger(pc, payee.address)
    cid = wallet.ensure_channel(payee.address, 100 * PRICE)
    _books(chain, pc)
    before = token.balance(payee.address)
    for _ in range(50):
        v = wallet.pay(payee.address, PRICE)
        ledger.accept(v, PRICE)
    assert ledger.unsettled() == 50 * PRICE
    paid = ledger.settle(sender=payee)           # one transaction for 50 requests
    assert paid == 50 * PRICE
    assert token.balance(payee.address) - before == 50 * PRICE
    assert ledger.settle(sender=payee) == 0      # nothing new: no second payment
    st = pc.state(cid)
    assert st.paid == 50 * PRICE and st.deposit == 50 * PRICE and st.nonce == 50
    _books(chain, pc)


def test_replayed_and_older_vouchers_refused(chain, pc, parties):
    payer, payee = parties
    wallet = Wallet(pc, payer)
    wallet.ensure_channel(payee.address, 10 * PRICE)
    v1 = wallet.pay(payee.address, PRICE)
    v2 = wallet.pay(payee.address, PRICE)
    assert pc.redeem(v2, sender=payee) == 2 * PRICE
    with pytest.raises(ContractRevert, match="replayed or older"):
        pc.redeem(v2, sender=payee)             # replay
    with pytest.raises(ContractRevert, match="replayed or older"):
        pc.redeem(v1, sender=payee)             # older
    ledger = Ledger(pc, payee.address)
    with pytest.raises(VerificationError, match="not above"):
        ledger.accept(v2, PRICE)                # off-chain check refuses the same


def test_forged_signer_and_wrong_payee_refused(chain, pc, parties, accounts):
    payer, payee = parties
    mallory = accounts[3]
    wallet = Wallet(pc, payer)
    cid = wallet.ensure_channel(payee.address, 10 * PRICE)
    forged = sign_voucher(mallory, pc.domain, Voucher(cid, 5 * PRICE, 1))
    with pytest.raises(ContractRevert, match="not signed by the payer"):
        pc.redeem(forged, sender=payee)
    with pytest.raises(VerificationError, match="not the channel's payer"):
        Ledger(pc, payee.address).accept(forged, PRICE)
    good = wallet.pay(payee.address, PRICE)
    with pytest.raises(ContractRevert, match="only the payee"):
        pc.redeem(good, sender=mallory)         # someone else cannot collect it
    tampered = Voucher(cid, 9 * PRICE, good.nonce, signature=good.signature)
    with pytest.raises(ContractRevert, match="not signed by the payer"):
        pc.redeem(tampered, sender=payee)       # amount changed after signing


def test_never_more_than_deposited(chain, pc, parties):
    payer, payee = parties
    wallet = Wallet(pc, payer)
    cid = wallet.ensure_channel(payee.address, 3 * PRICE)
    over = wallet.pay(payee.address, 5 * PRICE)
    with pytest.raises(ContractRevert, match="exceeds the deposit"):
        pc.redeem(over, sender=payee)
    with pytest.raises(VerificationError, match="exceeds the channel deposit"):
        Ledger(pc, payee.address).accept(over, 5 * PRICE)
    assert pc.state(cid).paid == 0
    _books(chain, pc)


def test_voucher_from_another_chain_or_contract_refused(chain, pc, parties):
    payer, payee = parties
    from proofmesh.payments.voucher import voucher_domain
    wallet = Wallet(pc, payer)
    cid = wallet.ensure_channel(payee.address, 3 * PRICE)
    other_chain = sign_voucher(payer, voucher_domain(chain.chain_id + 1, pc.address), Voucher(cid, PRICE, 1))
    with pytest.raises(ContractRevert, match="not signed by the payer"):
        pc.redeem(other_chain, sender=payee)
    other_contract = sign_voucher(payer, voucher_domain(chain.chain_id, payee.address), Voucher(cid, PRICE, 1))
    with pytest.raises(ContractRevert, match="not signed by the payer"):
        pc.redeem(other_contract, sender=payee)


def test_withdraw_after_delay_minus_claims_and_channel_dies(chain, pc, parties):
    payer, payee = parties
    token = Token(chain)
    wallet = Wallet(pc, payer)
    cid = wallet.ensure_channel(payee.address, 10 * PRICE)
    v = wallet.pay(payee.address, 4 * PRICE)
    unlock_at = pc.request_withdrawal(cid, sender=payer)
    with pytest.raises(ContractRevert, match="delay not over"):
        pc.withdraw(cid, sender=payer)
    with pytest.raises(ContractRevert, match="only the payer"):
        pc.request_withdrawal(cid, sender=payee)
    assert pc.redeem(v, sender=payee) == 4 * PRICE   # payee redeems during the delay
    advance_to(chain, unlock_at)
    before = token.balance(payer.address)
    assert pc.withdraw(cid, sender=payer) == 6 * PRICE
    assert token.balance(payer.address) - before == 6 * PRICE
    assert not pc.state(cid).open
    # a re-opened channel for the same pair has a new id: the old vouchers are dead
    later = sign_voucher(payer, pc.domain, Voucher(cid, 8 * PRICE, 9))
    with pytest.raises(ContractRevert, match="no such open channel"):
        pc.redeem(later, sender=payee)
    cid2 = wallet.ensure_channel(payee.address, PRICE)
    assert cid2 != cid
    _books(chain, pc)


def _zk_receipt_in_epoch(chain, node):
    """A real oracle condition: a zk receipt signed by a bonded inference node and committed
    in its epoch root; InferenceRegistry.is_fulfilled(digest) turns true once the epoch's
    challenge window has passed and the leaf is settled. Returns (settle, digest, window)."""
    import os

    from proofmesh.chain.core import MESH, Registry
    from proofmesh.crypto.merkle import MerkleTree, leaf_hash
    from proofmesh.inference.receipt import COMMIT_ZK, Receipt
    from proofmesh.inference.registry import InferenceRegistry

    reg = InferenceRegistry(chain)
    Registry(chain).register("http://127.0.0.1:1", 4, sender=node)
    Registry(chain).stake(300 * MESH, sender=node)
    reg.post_bond(reg.min_bond(), sender=node)
    rc = Receipt(1, os.urandom(32), os.urandom(32), 1, PRICE, COMMIT_ZK).signed(node, reg.domain)
    digest, proof_hash = rc.digest(reg.domain), os.urandom(32)
    tree = MerkleTree([leaf_hash(["bytes32", "bytes32"], [digest, proof_hash]),
                       leaf_hash(["bytes32", "bytes32"], [os.urandom(32), os.urandom(32)])])
    epoch = reg.commit_epoch(tree.root, 2, sender=node)
    window = chain.call(reg.c.functions.challenge_window())

    def settle():
        reg.settle_from_epoch(epoch, rc, proof_hash, tree.proof(0), sender=node)
    return reg, settle, digest, window


def test_conditional_voucher_waits_for_oracle(chain, pc, parties):
    """A zk answer's payment: redeemable only once the oracle says the proof was delivered."""
    payer, payee = parties
    reg, prove, condition, window = _zk_receipt_in_epoch(chain, payee)
    wallet = Wallet(pc, payer)
    ledger = Ledger(pc, payee.address)
    cid = wallet.ensure_channel(payee.address, 10 * PRICE)
    ledger.accept(wallet.pay(payee.address, PRICE), PRICE)
    cv = wallet.pay(payee.address, 2 * PRICE, oracle=reg.address, condition=condition)
    assert cv.cumulative == 2 * PRICE                 # its own lane: only this condition's amount
    ledger.accept(cv, 2 * PRICE)
    with pytest.raises(VerificationError, match="already accepted"):
        ledger.accept(cv, 2 * PRICE)
    with pytest.raises(ContractRevert, match="condition not fulfilled"):
        pc.redeem(cv, sender=payee)
    # settle() skips the unfulfilled conditional voucher and redeems the unconditional one
    assert ledger.settle(sender=payee) == PRICE
    # the proof is delivered (settled from the node's epoch): the lane pays, once
    advance_to(chain, chain.timestamp() + window + 1)
    prove()
    assert wallet.release(payee.address, condition) == 2 * PRICE
    assert wallet.committed(payee.address) == PRICE   # not folded into the unconditional total
    ledger.accept(wallet.pay(payee.address, PRICE), PRICE)
    assert ledger.settle(sender=payee) == 3 * PRICE
    with pytest.raises(ContractRevert, match="pays nothing new"):
        pc.redeem(cv, sender=payee)
    assert pc.lane_paid(cid, condition) == 2 * PRICE
    _books(chain, pc)
    with pytest.raises(InputError, match="needs an oracle"):
        Voucher(cid, 1, 1, condition=condition)


def test_audit_m4_later_vouchers_do_not_void_a_conditional_one(chain, pc, parties):
    """Audit M4, second half: the payer pays a zk answer with a conditional voucher, then
    keeps paying plain answers with later (higher-nonce) vouchers, which the node redeems
    before the proof is settled. The conditional voucher must still pay once the proof is
    delivered - before the fix, the later redemption had raised the channel nonce past it."""
    payer, payee = parties
    reg, prove, condition, window = _zk_receipt_in_epoch(chain, payee)
    token = Token(chain)
    wallet = Wallet(pc, payer)
    ledger = Ledger(pc, payee.address)
    cid = wallet.ensure_channel(payee.address, 10 * PRICE)
    zk_voucher = wallet.pay(payee.address, PRICE, oracle=reg.address, condition=condition)
    ledger.accept(zk_voucher, PRICE)
    for _ in range(3):                                  # later plain answers, higher nonces
        ledger.accept(wallet.pay(payee.address, PRICE), PRICE)
    assert ledger.settle(sender=payee) == 3 * PRICE     # redeemed first: channel nonce now 4
    assert pc.state(cid).nonce > zk_voucher.nonce
    advance_to(chain, chain.timestamp() + window + 1)
    prove()
    before = token.balance(payee.address)
    assert pc.redeem(zk_voucher, sender=payee) == PRICE  # still payable: its own lane
    assert token.balance(payee.address) - before == PRICE
    # and only once; a lane never pays past the deposit either
    with pytest.raises(ContractRevert, match="pays nothing new"):
        pc.redeem(zk_voucher, sender=payee)
    big = wallet.pay(payee.address, 100 * PRICE, oracle=reg.address, condition=b"\x07" * 32)
    with pytest.raises(VerificationError, match="exceeds the channel deposit"):
        ledger.accept(big, PRICE)
    _books(chain, pc)


def test_bad_inputs_leave_no_state(chain, pc, parties, accounts):
    payer, payee = parties
    with pytest.raises(InputError, match="positive"):
        pc.open(payee.address, 0, sender=payer)
    with pytest.raises(InputError, match="holds"):
        pc.open(payee.address, 10**30, sender=payer)
    cid = pc.channel_id(payer.address, payee.address)
    assert not pc.state(cid).open
    with pytest.raises(ContractRevert, match="cannot pay itself"):
        chain.transact(pc.contract.functions.open(payer.address, 1), sender=payer)
    pc.open(payee.address, PRICE, sender=payer)
    with pytest.raises(InputError, match="already open"):
        pc.open(payee.address, PRICE, sender=payer)
    _books(chain, pc)


def test_wallet_persists_nonces(chain, pc, parties, tmp_path):
    payer, payee = parties
    w = Wallet(pc, payer, tmp_path / "wallet.json")
    w.ensure_channel(payee.address, 10 * PRICE)
    w.pay(payee.address, PRICE)
    w.close()
    w2 = Wallet(pc, payer, tmp_path / "wallet.json")  # a restarted payer never re-uses a nonce
    v = w2.pay(payee.address, PRICE)
    assert v.nonce == 2 and v.cumulative == 2 * PRICE
    w2.close()


def test_audit_m4_payer_cannot_close_before_a_conditional_voucher_can_settle(chain, pc, parties):
    """Audit M4: a payer takes a ZK answer paid with a conditional voucher and requests its
    withdrawal at once. The channel must stay open until the receipt's epoch could be
    committed and settled past InferenceRegistry's challenge + response windows."""
    payer, payee = parties
    reg = chain.contract("InferenceRegistry")
    settle_by = chain.call(reg.functions.challenge_window()) + chain.call(reg.functions.response_window())
    # a delay shorter than the settlement window is refused at deployment (it was 3600 s)
    with pytest.raises(Exception, match="withdraw delay too short"):
        chain.deploy("PaymentChannels", Token(chain).c.address, 3600)
    wallet = Wallet(pc, payer)
    cid = wallet.ensure_channel(payee.address, 10 * PRICE)
    wallet.pay(payee.address, 2 * PRICE, oracle=reg.address, condition=b"\x42" * 32)
    start = chain.timestamp()
    unlock_at = pc.request_withdrawal(cid, sender=payer)           # the attack: close at once
    assert unlock_at - start >= settle_by + 600                    # + one node epoch (600 s default)
    advance_to(chain, start + settle_by + 600)
    with pytest.raises(ContractRevert, match="delay not over"):
        pc.withdraw(cid, sender=payer)
    assert pc.state(cid).open                                      # the payee can still redeem
