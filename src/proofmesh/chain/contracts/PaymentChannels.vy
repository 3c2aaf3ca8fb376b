# pragma version ~=0.4.3
"""
@title PaymentChannels
@custom:contract-name PaymentChannels
@license Apache-2.0
@notice Unidirectional MESH payment channels, one per (payer, payee) pair.
        The payer deposits tokens; for every paid request it signs an EIP-712
        voucher carrying the *cumulative* amount owed and a strictly increasing
        nonce. The payee redeems only the latest voucher, in one transaction, for
        the difference to what it already redeemed - so many requests settle in one
        transaction. A voucher never pays more than it signs nor more than the
        deposit; a replayed or older voucher (nonce not above the last redeemed)
        is refused. A voucher may carry a condition checked by an oracle contract
        the payer names (e.g. "the zk proof of receipt X was delivered"), so the
        payment is redeemable only once the condition holds. A conditional voucher
        is its own lane (audit M4): its `cumulative` counts only that condition's
        payments and it is redeemed against the lane's own total, never against
        the unconditional nonce, so redeeming later vouchers cannot void it - a
        payee that delivers the proof is always payable while the deposit lasts.
        The payer recovers the
        unclaimed deposit after a delay that lets the payee redeem first; the
        channel then closes and its vouchers die with it (a new channel with the
        same pair gets a new id).
"""

from ethereum.ercs import IERC20
from snekmate.utils import ecdsa
from snekmate.utils import eip712_domain_separator as eip712

initializes: eip712
exports: eip712.eip712Domain


interface IConditionOracle:
    def is_fulfilled(condition: bytes32) -> bool: view


struct Channel:
    payer: address
    payee: address
    deposit: uint256    # tokens held for this channel right now
    paid: uint256       # cumulative amount redeemed so far
    nonce: uint256      # nonce of the last redeemed voucher
    unlock_at: uint256  # 0 = no withdrawal requested; else earliest withdrawal time
    open: bool


struct Voucher:
    channel: bytes32
    cumulative: uint256
    nonce: uint256
    oracle: address
    condition: bytes32
    signature: Bytes[65]


VOUCHER_TYPEHASH: public(constant(bytes32)) = keccak256(
    "Voucher(bytes32 channel,uint256 cumulative,uint256 nonce,address oracle,bytes32 condition)"
)
MAX_BATCH: constant(uint256) = 64
# Audit M4: a payer's close must wait out the longest settlement window a payee needs
# (InferenceRegistry: a 24 h challenge window + 1 h response window), or a conditional
# voucher dies with the channel before its condition can be fulfilled.
MIN_WITHDRAW_DELAY: public(constant(uint256)) = 90000

token: public(immutable(IERC20))
withdraw_delay: public(immutable(uint256))

channels: public(HashMap[bytes32, Channel])
# conditional lanes: channel -> condition -> cumulative redeemed on that lane
lane_paid: public(HashMap[bytes32, HashMap[bytes32, uint256]])
# generation of the (payer, payee) pair: bumps on every close so that a new
# channel for the same pair has a fresh id and old vouchers cannot be replayed on it
generation: public(HashMap[address, HashMap[address, uint256]])
# the books: sum of all open channels' deposits == tokens this contract holds
total_deposits: public(uint256)


event ChannelOpened:
    channel: indexed(bytes32)
    payer: indexed(address)
    payee: indexed(address)
    amount: uint256

event Deposited:
    channel: indexed(bytes32)
    payer: indexed(address)
    amount: uint256
    deposit: uint256

event Redeemed:
    channel: indexed(bytes32)
    payee: indexed(address)
    amount: uint256
    cumulative: uint256
    nonce: uint256
    condition: bytes32

event WithdrawalRequested:
    channel: indexed(bytes32)
    payer: indexed(address)
    unlock_at: uint256

event WithdrawalCancelled:
    channel: indexed(bytes32)
    payer: indexed(address)

event ChannelClosed:
    channel: indexed(bytes32)
    payer: indexed(address)
    refunded: uint256
    paid: uint256


@deploy
def __init__(token_: address, withdraw_delay_: uint256):
    """
    @param token_ The MESH token channels are denominated in.
    @param withdraw_delay_ Seconds between a withdrawal request and the refund;
           the payee's window to redeem its latest voucher (>= MIN_WITHDRAW_DELAY,
           at least the oracles' challenge + response windows).
    """
    assert token_ != empty(address), "PaymentChannels: token is zero"
    assert withdraw_delay_ >= MIN_WITHDRAW_DELAY, "PaymentChannels: withdraw delay too short"
    eip712.__init__("proofmesh PaymentChannels", "1")
    token = IERC20(token_)
    withdraw_delay = withdraw_delay_


@external
@view
def channel_id(payer: address, payee: address) -> bytes32:
    """
    @notice Id of the current (or next) channel between `payer` and `payee`.
    @dev keccak256(abi_encode(this contract, payer, payee, generation)): binds the
         contract and the generation, so ids never repeat after a close.
    """
    return self._channel_id(payer, payee)


@internal
@view
def _channel_id(payer: address, payee: address) -> bytes32:
    return keccak256(abi_encode(self, payer, payee, self.generation[payer][payee]))


@external
@view
def voucher_digest(channel: bytes32, cumulative: uint256, nonce: uint256, oracle: address,
                   condition: bytes32) -> bytes32:
    """
    @notice The EIP-712 digest the payer signs for a voucher (chain id and this
            contract are in the domain separator).
    """
    return self._voucher_digest(channel, cumulative, nonce, oracle, condition)


@internal
@view
def _voucher_digest(channel: bytes32, cumulative: uint256, nonce: uint256, oracle: address,
                    condition: bytes32) -> bytes32:
    return eip712._hash_typed_data_v4(
        keccak256(abi_encode(VOUCHER_TYPEHASH, channel, cumulative, nonce, oracle, condition)))


@external
@view
def redeemable(channel: bytes32, cumulative: uint256) -> uint256:
    """
    @notice What a voucher for `cumulative` would pay now (0 if it would revert
            for its amount); signature and condition are not checked here.
    """
    ch: Channel = self.channels[channel]
    if not ch.open or cumulative <= ch.paid or cumulative - ch.paid > ch.deposit:
        return 0
    return cumulative - ch.paid


@external
def open(payee: address, amount: uint256) -> bytes32:
    """
    @notice Open a channel from the caller to `payee` with `amount` MESH
            (the caller must have approved this contract).
    @return The channel id.
    """
    assert payee != empty(address), "PaymentChannels: payee is zero"
    assert payee != msg.sender, "PaymentChannels: payer cannot pay itself"
    assert amount > 0, "PaymentChannels: amount is zero"
    cid: bytes32 = self._channel_id(msg.sender, payee)
    assert not self.channels[cid].open, "PaymentChannels: channel already open; deposit into it"
    self.channels[cid] = Channel(payer=msg.sender, payee=payee, deposit=amount, paid=0, nonce=0,
                                 unlock_at=0, open=True)
    self.total_deposits += amount
    log ChannelOpened(channel=cid, payer=msg.sender, payee=payee, amount=amount)
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True), \
        "PaymentChannels: transferFrom failed"
    return cid


@external
def deposit(channel: bytes32, amount: uint256):
    """
    @notice Add `amount` MESH to an open channel of the caller. A pending
            withdrawal request stays pending (cancel it explicitly).
    """
    assert amount > 0, "PaymentChannels: amount is zero"
    ch: Channel = self.channels[channel]
    assert ch.open, "PaymentChannels: no such open channel"
    assert ch.payer == msg.sender, "PaymentChannels: only the payer deposits"
    self.channels[channel].deposit = ch.deposit + amount
    self.total_deposits += amount
    log Deposited(channel=channel, payer=msg.sender, amount=amount, deposit=ch.deposit + amount)
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True), \
        "PaymentChannels: transferFrom failed"


@internal
def _redeem(v: Voucher) -> uint256:
    ch: Channel = self.channels[v.channel]
    assert ch.open, "PaymentChannels: no such open channel"
    assert ch.payee == msg.sender, "PaymentChannels: only the payee redeems"
    conditional: bool = v.condition != empty(bytes32)
    # the lane's total so far: the channel's unconditional `paid`, or the condition's own lane
    before: uint256 = ch.paid
    if conditional:
        before = self.lane_paid[v.channel][v.condition]
    else:
        assert v.nonce > ch.nonce, "PaymentChannels: voucher replayed or older than the last redeemed"
    assert v.cumulative > before, "PaymentChannels: voucher pays nothing new"
    amount: uint256 = v.cumulative - before
    assert amount <= ch.deposit, "PaymentChannels: voucher exceeds the deposit"
    # 64-byte EIP-2098 signatures would be a second encoding of the same voucher;
    # replay is keyed on the nonce/lane total, not the signature, so both would be safe,
    # but accepting one canonical form keeps off-chain bookkeeping simple.
    assert len(v.signature) == 65, "PaymentChannels: signature must be 65 bytes"
    digest: bytes32 = self._voucher_digest(v.channel, v.cumulative, v.nonce, v.oracle, v.condition)
    signer: address = ecdsa._recover_sig(digest, v.signature)
    assert signer != empty(address) and signer == ch.payer, "PaymentChannels: voucher not signed by the payer"
    if conditional:
        assert v.oracle != empty(address), "PaymentChannels: conditional voucher without oracle"
        assert staticcall IConditionOracle(v.oracle).is_fulfilled(v.condition), \
            "PaymentChannels: voucher condition not fulfilled"
        self.lane_paid[v.channel][v.condition] = v.cumulative
    else:
        self.channels[v.channel].paid = v.cumulative
        self.channels[v.channel].nonce = v.nonce
    self.channels[v.channel].deposit = ch.deposit - amount
    self.total_deposits -= amount
    log Redeemed(channel=v.channel, payee=msg.sender, amount=amount, cumulative=v.cumulative,
                 nonce=v.nonce, condition=v.condition)
    return amount


@external
def redeem(channel: bytes32, cumulative: uint256, nonce: uint256, oracle: address,
           condition: bytes32, signature: Bytes[65]) -> uint256:
    """
    @notice Redeem the payer's latest voucher on `channel` (or a conditional
            voucher on its own lane); pays the caller (the payee) `cumulative` less
            what its lane already redeemed. Reverts on a replayed/older nonce, a
            forged signer, an amount above the deposit, or an unmet condition.
    @return The amount paid.
    """
    amount: uint256 = self._redeem(Voucher(channel=channel, cumulative=cumulative, nonce=nonce,
                                           oracle=oracle, condition=condition, signature=signature))
    assert extcall token.transfer(msg.sender, amount, default_return_value=True), \
        "PaymentChannels: transfer failed"
    return amount


@external
def redeem_batch(vouchers: DynArray[Voucher, MAX_BATCH]) -> uint256:
    """
    @notice Redeem up to 64 vouchers (the latest unconditional one per channel and
            any fulfilled conditional lanes, all paying the caller) in one
            transaction and one token transfer. All or nothing.
    @return The total amount paid.
    """
    total: uint256 = 0
    for v: Voucher in vouchers:
        total += self._redeem(v)
    if total > 0:
        assert extcall token.transfer(msg.sender, total, default_return_value=True), \
            "PaymentChannels: transfer failed"
    return total


@external
def request_withdrawal(channel: bytes32):
    """
    @notice Start the delay after which the payer gets back what vouchers have
            not claimed. The payee keeps redeeming during the delay.
    """
    ch: Channel = self.channels[channel]
    assert ch.open, "PaymentChannels: no such open channel"
    assert ch.payer == msg.sender, "PaymentChannels: only the payer withdraws"
    assert ch.unlock_at == 0, "PaymentChannels: withdrawal already requested"
    unlock_at: uint256 = block.timestamp + withdraw_delay
    self.channels[channel].unlock_at = unlock_at
    log WithdrawalRequested(channel=channel, payer=msg.sender, unlock_at=unlock_at)


@external
def cancel_withdrawal(channel: bytes32):
    """
    @notice Cancel a pending withdrawal request (keep the channel in use).
    """
    ch: Channel = self.channels[channel]
    assert ch.open, "PaymentChannels: no such open channel"
    assert ch.payer == msg.sender, "PaymentChannels: only the payer cancels"
    assert ch.unlock_at != 0, "PaymentChannels: no withdrawal requested"
    self.channels[channel].unlock_at = 0
    log WithdrawalCancelled(channel=channel, payer=msg.sender)


@external
def withdraw(channel: bytes32) -> uint256:
    """
    @notice After the delay, refund the unclaimed deposit to the payer and close
            the channel; its vouchers can never be redeemed again.
    @return The amount refunded.
    """
    ch: Channel = self.channels[channel]
    assert ch.open, "PaymentChannels: no such open channel"
    assert ch.payer == msg.sender, "PaymentChannels: only the payer withdraws"
    assert ch.unlock_at != 0, "PaymentChannels: request a withdrawal first"
    assert block.timestamp >= ch.unlock_at, "PaymentChannels: withdrawal delay not over"
    refund: uint256 = ch.deposit
    self.channels[channel].deposit = 0
    self.channels[channel].open = False
    self.generation[ch.payer][ch.payee] += 1
    self.total_deposits -= refund
    log ChannelClosed(channel=channel, payer=msg.sender, refunded=refund, paid=ch.paid)
    if refund > 0:
        assert extcall token.transfer(msg.sender, refund, default_return_value=True), \
            "PaymentChannels: transfer failed"
    return refund
