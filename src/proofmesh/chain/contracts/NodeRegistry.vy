# pragma version ~=0.4.3
"""
@title NodeRegistry
@notice Nodes register an endpoint and a bitmask of roles and stake MESH.
        Domain contracts authorised by governance lock part of a node's stake as a
        bond for each claim it makes (so one stake cannot back unlimited concurrent
        work), release it when the claim settles, and slash it when a fault is
        proven. A slash burns `slash_burn_bps` of the amount and pays the rest to the
        challenger (or the treasury), never more than what that domain bonded.
        Unstaking goes through an unbonding period longer than any challenge window.
@dev Books: token.balanceOf(self) == sum(stake) + sum(unbonding) at all times.
"""

from snekmate.auth import ownable
initializes: ownable

exports: (ownable.owner, ownable.transfer_ownership)

from .interfaces import IMeshToken

ROLE_DATA_VALIDATOR: public(constant(uint256)) = 1
ROLE_COMPUTE: public(constant(uint256)) = 2
ROLE_INFERENCE: public(constant(uint256)) = 4
ROLE_EDGE_GATEWAY: public(constant(uint256)) = 8
ROLE_TOOL_PROVIDER: public(constant(uint256)) = 16
ROLE_EVALUATOR: public(constant(uint256)) = 32
_ALL_ROLES: constant(uint256) = 63
_BPS: constant(uint256) = 10_000

struct Node:
    endpoint: String[256]
    roles: uint256
    stake: uint256
    bonded: uint256
    unbonding: uint256
    unbond_at: uint256
    registered: bool

token: public(immutable(IMeshToken))

# @notice Per-node record.
nodes: public(HashMap[address, Node])
# @notice Registered nodes, in registration order (for enumeration).
node_at: public(HashMap[uint256, address])
node_count: public(uint256)
# @notice Nodes staked at least `min_stake`, compact (swap-and-pop), for draws:
#         registering costs nothing, so enumerating `node_at` lets unstaked sybils
#         crowd out real candidates; enumerating `active_at` does not. Entries are
#         refreshed whenever a node's stake changes (and by `poke` after a
#         `min_stake` change): callers must still check `is_active`.
active_at: public(HashMap[uint256, address])
active_count: public(uint256)
_active_slot: HashMap[address, uint256]  # index + 1; 0 = not in the list
# @notice Stake locked by `domain` for `node`.
bonded_by: public(HashMap[address, HashMap[address, uint256]])
# @notice Domain contracts allowed to bond and slash.
is_domain: public(HashMap[address, bool])
# @notice Receives the non-burned part of a slash when there is no challenger.
treasury: public(address)
# @notice Seconds between `request_unstake` and `withdraw`.
unbonding_period: public(uint256)
# @notice Upper bound on every domain's challenge window; always < unbonding_period.
max_challenge_window: public(uint256)
# @notice Share of each slash that is burned, in basis points.
slash_burn_bps: public(uint256)
# @notice Smallest `slash_burn_bps`: part of every slash is always burned, so a node
#         challenging its own fault never gets its whole bond back (audit I2).
MIN_SLASH_BURN_BPS: public(constant(uint256)) = 1_000
# @notice Minimum stake for a node to count as active.
min_stake: public(uint256)

event NodeRegistered:
    node: indexed(address)
    endpoint: String[256]
    roles: uint256

event NodeUpdated:
    node: indexed(address)
    endpoint: String[256]
    roles: uint256

event Staked:
    node: indexed(address)
    amount: uint256
    total: uint256

event UnstakeRequested:
    node: indexed(address)
    amount: uint256
    unbond_at: uint256

event Withdrawn:
    node: indexed(address)
    amount: uint256

event BondLocked:
    domain: indexed(address)
    node: indexed(address)
    amount: uint256

event BondReleased:
    domain: indexed(address)
    node: indexed(address)
    amount: uint256

event Slashed:
    domain: indexed(address)
    node: indexed(address)
    amount: uint256
    burned: uint256
    paid: uint256
    recipient: address

event ActiveChanged:
    node: indexed(address)
    active: bool

event DomainSet:
    domain: indexed(address)
    allowed: bool

event ParameterChanged:
    name: String[32]
    value: uint256

event TreasuryChanged:
    treasury: indexed(address)


@deploy
def __init__(token_: IMeshToken, treasury_: address, unbonding_period_: uint256,
             max_challenge_window_: uint256, slash_burn_bps_: uint256, min_stake_: uint256):
    """
    @notice Deploy the registry.
    @param token_ The MESH token.
    @param treasury_ Receives slashes without a challenger.
    @param unbonding_period_ Seconds an unstake waits; must exceed max_challenge_window_.
    @param max_challenge_window_ The longest challenge window any domain may use.
    @param slash_burn_bps_ Burned share of each slash (MIN_SLASH_BURN_BPS..10000).
    @param min_stake_ Minimum stake of an active node.
    """
    assert unbonding_period_ > max_challenge_window_, "NodeRegistry: unbonding must outlast challenges"
    assert slash_burn_bps_ <= _BPS, "NodeRegistry: burn share above 100%"
    assert slash_burn_bps_ >= MIN_SLASH_BURN_BPS, "NodeRegistry: burn share below 10%"
    assert treasury_ != empty(address), "NodeRegistry: treasury is the zero address"
    ownable.__init__()
    token = token_
    self.treasury = treasury_
    self.unbonding_period = unbonding_period_
    self.max_challenge_window = max_challenge_window_
    self.slash_burn_bps = slash_burn_bps_
    self.min_stake = min_stake_


# ---------------------------------------------------------------- node actions

@external
def register(endpoint: String[256], roles: uint256):
    """
    @notice Register the caller as a node.
    @param endpoint Base URL of the node's HTTP API (may be empty for pure clients).
    @param roles Bitmask of ROLE_* constants (non-zero).
    """
    assert not self.nodes[msg.sender].registered, "NodeRegistry: already registered"
    assert roles != 0 and roles & _ALL_ROLES == roles, "NodeRegistry: invalid roles bitmask"
    self.nodes[msg.sender].endpoint = endpoint
    self.nodes[msg.sender].roles = roles
    self.nodes[msg.sender].registered = True
    self.node_at[self.node_count] = msg.sender
    self.node_count += 1
    log NodeRegistered(node=msg.sender, endpoint=endpoint, roles=roles)


@external
def update(endpoint: String[256], roles: uint256):
    """
    @notice Change the caller's endpoint and roles.
    @param endpoint New endpoint URL.
    @param roles New roles bitmask (non-zero).
    """
    assert self.nodes[msg.sender].registered, "NodeRegistry: not registered"
    assert roles != 0 and roles & _ALL_ROLES == roles, "NodeRegistry: invalid roles bitmask"
    self.nodes[msg.sender].endpoint = endpoint
    self.nodes[msg.sender].roles = roles
    log NodeUpdated(node=msg.sender, endpoint=endpoint, roles=roles)


@external
def stake(amount: uint256):
    """
    @notice Add `amount` MESH to the caller's stake (approve the registry first).
    @param amount Amount in wei (> 0).
    """
    assert amount > 0, "NodeRegistry: zero amount"
    assert self.nodes[msg.sender].registered, "NodeRegistry: not registered"
    self.nodes[msg.sender].stake += amount
    self._refresh_active(msg.sender)
    log Staked(node=msg.sender, amount=amount, total=self.nodes[msg.sender].stake)
    assert extcall token.transferFrom(msg.sender, self, amount), "NodeRegistry: transfer failed"


@external
def request_unstake(amount: uint256):
    """
    @notice Start unbonding `amount` of free (unbonded) stake. Restarts the timer
            for everything already unbonding.
    @param amount Amount in wei (> 0, <= free stake).
    """
    assert amount > 0, "NodeRegistry: zero amount"
    free: uint256 = self.nodes[msg.sender].stake - self.nodes[msg.sender].bonded
    assert amount <= free, "NodeRegistry: amount exceeds free stake"
    self.nodes[msg.sender].stake -= amount
    self.nodes[msg.sender].unbonding += amount
    self.nodes[msg.sender].unbond_at = block.timestamp + self.unbonding_period
    self._refresh_active(msg.sender)
    log UnstakeRequested(node=msg.sender, amount=amount, unbond_at=self.nodes[msg.sender].unbond_at)


@external
def withdraw():
    """
    @notice Withdraw everything whose unbonding period has passed.
    """
    amount: uint256 = self.nodes[msg.sender].unbonding
    assert amount > 0, "NodeRegistry: nothing unbonding"
    assert block.timestamp >= self.nodes[msg.sender].unbond_at, "NodeRegistry: unbonding not finished"
    self.nodes[msg.sender].unbonding = 0
    log Withdrawn(node=msg.sender, amount=amount)
    assert extcall token.transfer(msg.sender, amount), "NodeRegistry: transfer failed"


# ------------------------------------------------------------- domain actions

@external
def lock_bond(node: address, amount: uint256):
    """
    @notice Lock `amount` of `node`'s free stake as a bond for a claim. Domains only.
    @param node The node making the claim.
    @param amount Bond in wei (> 0, <= free stake).
    """
    assert self.is_domain[msg.sender], "NodeRegistry: caller is not a domain contract"
    assert amount > 0, "NodeRegistry: zero amount"
    assert self.nodes[node].stake - self.nodes[node].bonded >= amount, "NodeRegistry: insufficient free stake"
    self.nodes[node].bonded += amount
    self.bonded_by[msg.sender][node] += amount
    log BondLocked(domain=msg.sender, node=node, amount=amount)


@external
def release_bond(node: address, amount: uint256):
    """
    @notice Release `amount` of a bond this domain locked. Also allowed after the
            domain was revoked: only a domain ever holds bonds (lock_bond checks
            `is_domain`), and releasing frees the node's own stake, so a revoked
            domain must not strand the bonds it still holds (audit L1).
    @param node The node.
    @param amount Amount in wei (<= what this domain bonded).
    """
    assert amount <= self.bonded_by[msg.sender][node], "NodeRegistry: release exceeds bond"
    self._release(msg.sender, node, amount)


@external
def release_stranded_bond(domain: address, node: address):
    """
    @notice Release everything a *revoked* domain still holds bonded for `node`, for
            a revoked contract whose code never calls `release_bond` again. Owner
            (Governance) only; a live domain's bonds cannot be swept.
    @param domain The revoked domain contract.
    @param node The node whose bond is stranded.
    """
    ownable._check_owner()
    assert not self.is_domain[domain], "NodeRegistry: domain is still authorised"
    amount: uint256 = self.bonded_by[domain][node]
    assert amount > 0, "NodeRegistry: no bond to release"
    self._release(domain, node, amount)


@internal
def _release(domain: address, node: address, amount: uint256):
    self.bonded_by[domain][node] -= amount
    self.nodes[node].bonded -= amount
    log BondReleased(domain=domain, node=node, amount=amount)


@external
def slash(node: address, amount: uint256, challenger: address) -> (uint256, uint256):
    """
    @notice Slash `amount` of the bond this domain locked for `node`: burn
            `slash_burn_bps` of it and pay the rest to `challenger` (or the
            treasury when `challenger` is the zero address). Domains only.
    @param node The faulty node.
    @param amount Amount in wei (<= what this domain bonded for the node).
    @param challenger Whoever proved the fault.
    @return (burned, paid)
    """
    assert self.is_domain[msg.sender], "NodeRegistry: caller is not a domain contract"
    assert amount > 0, "NodeRegistry: zero amount"
    assert amount <= self.bonded_by[msg.sender][node], "NodeRegistry: slash exceeds bond"
    self.bonded_by[msg.sender][node] -= amount
    self.nodes[node].bonded -= amount
    self.nodes[node].stake -= amount
    self._refresh_active(node)
    burned: uint256 = amount * self.slash_burn_bps // _BPS
    paid: uint256 = amount - burned
    recipient: address = challenger
    if recipient == empty(address):
        recipient = self.treasury
    log Slashed(domain=msg.sender, node=node, amount=amount, burned=burned, paid=paid, recipient=recipient)
    if burned > 0:
        extcall token.burn(burned)
    if paid > 0:
        assert extcall token.transfer(recipient, paid), "NodeRegistry: transfer failed"
    return burned, paid


@external
def poke(node: address):
    """
    @notice Re-evaluate whether `node` belongs in the active list (after a
            `min_stake` change). Anyone may call.
    @param node The node to refresh.
    """
    self._refresh_active(node)


@internal
def _refresh_active(node: address):
    should: bool = self.nodes[node].registered and self.nodes[node].stake >= self.min_stake
    slot: uint256 = self._active_slot[node]
    if should and slot == 0:
        self.active_at[self.active_count] = node
        self.active_count += 1
        self._active_slot[node] = self.active_count
        log ActiveChanged(node=node, active=True)
    elif not should and slot != 0:
        last: address = self.active_at[self.active_count - 1]
        self.active_at[slot - 1] = last
        self._active_slot[last] = slot
        self.active_at[self.active_count - 1] = empty(address)
        self.active_count -= 1
        self._active_slot[node] = 0
        log ActiveChanged(node=node, active=False)


# ---------------------------------------------------------------------- views

@view
@external
def stake_of(node: address) -> uint256:
    """@notice Total stake of `node` (bonded included, unbonding excluded)."""
    return self.nodes[node].stake


@view
@external
def free_stake(node: address) -> uint256:
    """@notice Stake of `node` not locked in any bond."""
    return self.nodes[node].stake - self.nodes[node].bonded


@view
@external
def has_role(node: address, role: uint256) -> bool:
    """@notice Whether `node` is registered with every bit of `role`."""
    return self.nodes[node].registered and self.nodes[node].roles & role == role


@view
@external
def is_active(node: address) -> bool:
    """@notice Registered and staked at least `min_stake`."""
    return self.nodes[node].registered and self.nodes[node].stake >= self.min_stake


@view
@external
def endpoint_of(node: address) -> String[256]:
    """@notice The node's endpoint URL."""
    return self.nodes[node].endpoint


# ----------------------------------------------------------------- governance

@external
def set_domain(domain: address, allowed: bool):
    """
    @notice Authorise or revoke a domain contract (may bond and slash). Owner only.
    """
    ownable._check_owner()
    assert domain != empty(address), "NodeRegistry: domain is the zero address"
    self.is_domain[domain] = allowed
    log DomainSet(domain=domain, allowed=allowed)


@external
def set_unbonding_period(seconds: uint256):
    """@notice Set the unbonding period (> max_challenge_window). Owner only."""
    ownable._check_owner()
    assert seconds > self.max_challenge_window, "NodeRegistry: unbonding must outlast challenges"
    self.unbonding_period = seconds
    log ParameterChanged(name="unbonding_period", value=seconds)


@external
def set_max_challenge_window(seconds: uint256):
    """@notice Set the bound on domain challenge windows (< unbonding_period). Owner only."""
    ownable._check_owner()
    assert seconds < self.unbonding_period, "NodeRegistry: unbonding must outlast challenges"
    self.max_challenge_window = seconds
    log ParameterChanged(name="max_challenge_window", value=seconds)


@external
def set_slash_burn_bps(bps: uint256):
    """@notice Set the burned share of slashes (MIN_SLASH_BURN_BPS..10000). Owner only."""
    ownable._check_owner()
    assert bps <= _BPS, "NodeRegistry: burn share above 100%"
    assert bps >= MIN_SLASH_BURN_BPS, "NodeRegistry: burn share below 10%"
    self.slash_burn_bps = bps
    log ParameterChanged(name="slash_burn_bps", value=bps)


@external
def set_min_stake(amount: uint256):
    """@notice Set the minimum active stake. Owner only."""
    ownable._check_owner()
    self.min_stake = amount
    log ParameterChanged(name="min_stake", value=amount)


@external
def set_treasury(treasury_: address):
    """@notice Set the treasury. Owner only."""
    ownable._check_owner()
    assert treasury_ != empty(address), "NodeRegistry: treasury is the zero address"
    self.treasury = treasury_
    log TreasuryChanged(treasury=treasury_)
