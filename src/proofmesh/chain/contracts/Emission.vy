# pragma version ~=0.4.3
"""
@title Emission
@notice Mints a decaying amount of MESH per epoch into role reward pools that it
        holds itself, split by governance-set weights; domain contracts granted a
        pool pay rewards out of it. Emission never crosses the token's cap: the
        last epochs are clipped to what the cap leaves.
@dev Books: token.balanceOf(self) == sum(pool_balance) at all times.
"""

from snekmate.auth import ownable
initializes: ownable

exports: (ownable.owner, ownable.transfer_ownership)

interface IMintableToken:
    def mint(owner: address, amount: uint256): nonpayable
    def transfer(to: address, amount: uint256) -> bool: nonpayable
    def transferFrom(owner: address, to: address, amount: uint256) -> bool: nonpayable
    def totalSupply() -> uint256: view
    def cap() -> uint256: view

NUM_POOLS: public(constant(uint256)) = 6
_BPS: constant(uint256) = 10_000
# Epochs minted per `distribute` call, so one call's gas stays bounded.
_MAX_EPOCHS_PER_CALL: constant(uint256) = 64

token: public(immutable(IMintableToken))
# @notice Seconds per epoch and the timestamp of epoch 0.
epoch_length: public(immutable(uint256))
start_time: public(immutable(uint256))
# @notice Per-epoch decay of the emission, in basis points.
decay_bps: public(uint256)
# @notice Emission of the next epoch to distribute.
current_emission: public(uint256)
# @notice Number of epochs already distributed.
epochs_distributed: public(uint256)
# @notice Total minted by this contract.
total_emitted: public(uint256)
pool_weight: public(HashMap[uint256, uint256])
total_weight: public(uint256)
pool_balance: public(HashMap[uint256, uint256])
# @notice Which contract may pay from which pool.
pool_payer: public(HashMap[address, HashMap[uint256, bool]])

event Distributed:
    epoch: indexed(uint256)
    amount: uint256

event PoolCredited:
    pool: indexed(uint256)
    amount: uint256
    source: address

event RewardPaid:
    pool: indexed(uint256)
    payer: indexed(address)
    recipient: indexed(address)
    amount: uint256

event WeightsChanged:
    weights: DynArray[uint256, NUM_POOLS]

event PoolPayerSet:
    payer: indexed(address)
    pool: indexed(uint256)
    allowed: bool

event DecayChanged:
    decay_bps: uint256


@deploy
def __init__(token_: IMintableToken, epoch_length_: uint256, initial_emission_: uint256,
             decay_bps_: uint256, weights_: DynArray[uint256, NUM_POOLS]):
    """
    @notice Deploy the emission schedule; epoch 0 starts now.
    @param token_ The MESH token (this contract must be its minter).
    @param epoch_length_ Seconds per epoch (> 0).
    @param initial_emission_ MESH minted in epoch 0.
    @param decay_bps_ Per-epoch decay in basis points (< 10000).
    @param weights_ Weight of each pool, index = pool id.
    """
    assert epoch_length_ > 0, "Emission: zero epoch length"
    assert decay_bps_ < _BPS, "Emission: decay must be below 100%"
    ownable.__init__()
    token = token_
    epoch_length = epoch_length_
    start_time = block.timestamp
    self.current_emission = initial_emission_
    self.decay_bps = decay_bps_
    self._set_weights(weights_)


@view
@external
def current_epoch() -> uint256:
    """@notice Index of the epoch in progress."""
    return (block.timestamp - start_time) // epoch_length


@external
def distribute() -> uint256:
    """
    @notice Mint the emission of every finished epoch not yet distributed (at most
            64 per call) and credit it to the pools by weight. Anyone may call.
    @return The amount minted.
    """
    finished: uint256 = (block.timestamp - start_time) // epoch_length
    minted: uint256 = 0
    room: uint256 = staticcall token.cap() - staticcall token.totalSupply()
    for i: uint256 in range(_MAX_EPOCHS_PER_CALL):
        if self.epochs_distributed >= finished:
            break
        amount: uint256 = min(self.current_emission, room - minted)
        self._credit_by_weight(amount)
        log Distributed(epoch=self.epochs_distributed, amount=amount)
        minted += amount
        self.epochs_distributed += 1
        self.current_emission = self.current_emission * (_BPS - self.decay_bps) // _BPS
    self.total_emitted += minted
    if minted > 0:
        extcall token.mint(self, minted)
    return minted


@external
def fund_pool(pool: uint256, amount: uint256):
    """
    @notice Add MESH to a pool from the caller's balance (fees, grants).
    @param pool Pool id (< NUM_POOLS).
    @param amount Amount in wei (> 0); approve this contract first.
    """
    assert pool < NUM_POOLS, "Emission: unknown pool"
    assert amount > 0, "Emission: zero amount"
    self.pool_balance[pool] += amount
    log PoolCredited(pool=pool, amount=amount, source=msg.sender)
    assert extcall token.transferFrom(msg.sender, self, amount), "Emission: transfer failed"


@external
def pay_reward(pool: uint256, recipient: address, amount: uint256):
    """
    @notice Pay `amount` from `pool` to `recipient`. Only a contract granted the pool.
    @param pool Pool id.
    @param recipient Who earned it.
    @param amount Amount in wei (<= the pool's balance).
    """
    assert self.pool_payer[msg.sender][pool], "Emission: caller may not pay from this pool"
    assert recipient != empty(address), "Emission: recipient is the zero address"
    assert amount <= self.pool_balance[pool], "Emission: pool balance too low"
    self.pool_balance[pool] -= amount
    log RewardPaid(pool=pool, payer=msg.sender, recipient=recipient, amount=amount)
    assert extcall token.transfer(recipient, amount), "Emission: transfer failed"


@external
def set_weights(weights_: DynArray[uint256, NUM_POOLS]):
    """@notice Set the pools' weights (applies to later epochs). Owner only."""
    ownable._check_owner()
    self._set_weights(weights_)


@external
def set_decay_bps(decay_bps_: uint256):
    """@notice Set the per-epoch decay (< 10000). Owner only."""
    ownable._check_owner()
    assert decay_bps_ < _BPS, "Emission: decay must be below 100%"
    self.decay_bps = decay_bps_
    log DecayChanged(decay_bps=decay_bps_)


@external
def set_pool_payer(payer: address, pool: uint256, allowed: bool):
    """@notice Grant or revoke a contract's right to pay from a pool. Owner only."""
    ownable._check_owner()
    assert pool < NUM_POOLS, "Emission: unknown pool"
    self.pool_payer[payer][pool] = allowed
    log PoolPayerSet(payer=payer, pool=pool, allowed=allowed)


@internal
def _set_weights(weights_: DynArray[uint256, NUM_POOLS]):
    assert len(weights_) == NUM_POOLS, "Emission: one weight per pool"
    total: uint256 = 0
    for i: uint256 in range(NUM_POOLS):
        self.pool_weight[i] = weights_[i]
        total += weights_[i]
    assert total > 0, "Emission: weights sum to zero"
    self.total_weight = total
    log WeightsChanged(weights=weights_)


@internal
def _credit_by_weight(amount: uint256):
    # Rounding dust goes to the pool with the highest weight so that every minted
    # wei is booked (books == balance).
    given: uint256 = 0
    top: uint256 = 0
    for i: uint256 in range(NUM_POOLS):
        share: uint256 = amount * self.pool_weight[i] // self.total_weight
        self.pool_balance[i] += share
        given += share
        if self.pool_weight[i] > self.pool_weight[top]:
            top = i
    self.pool_balance[top] += amount - given
