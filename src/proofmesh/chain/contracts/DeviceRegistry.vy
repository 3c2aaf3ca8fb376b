# pragma version ~=0.4.3
"""
@title DeviceRegistry
@notice Edge (DePIN) device identities. A device is named by the address of the
        key it generated itself; the key is bound to an owner who stakes MESH for
        it. Every binding (registration, rotation) carries an EIP-712 signature by
        the device key, so an owner can only bind keys whose holder agreed to it.
        The registry keeps the validity interval of every key it ever bound, so a
        reading can be judged against the key that was valid when it was made,
        even after a rotation or revocation.
@dev One concern: identity, stake and cell crowding. Epoch roots, challenges and
     rewards live in EdgeEpochs, which reads this contract.
"""

from ethereum.ercs import IERC20
from snekmate.auth import ownable
from snekmate.utils import eip712_domain_separator as eip712

initializes: ownable
initializes: eip712

exports: (
    ownable.owner,
    ownable.transfer_ownership,
    eip712.eip712Domain,
)

struct Device:
    owner: address
    key: address
    device_class: String[32]
    cell: uint64
    stake: uint256
    registered_at: uint64
    active: bool
    nonce: uint256

struct StakePoint:
    at: uint64
    stake: uint256

struct KeyRecord:
    device: address
    valid_from: uint64
    valid_until: uint64

event DeviceRegistered:
    device: indexed(address)
    owner: indexed(address)
    device_class: String[32]
    cell: uint64
    stake: uint256

event StakeAdded:
    device: indexed(address)
    amount: uint256
    total: uint256

event KeyRotated:
    device: indexed(address)
    old_key: indexed(address)
    new_key: indexed(address)

event KeyRevoked:
    device: indexed(address)
    key: indexed(address)

event DeviceDeregistered:
    device: indexed(address)
    owner: indexed(address)
    refunded: uint256

event StakeWithdrawn:
    device: indexed(address)
    owner: indexed(address)
    amount: uint256

event UnbondingPeriodChanged:
    unbonding_period: uint256

event ParametersChanged:
    min_stake: uint256
    crowd_resolution: uint64
    cell_capacity: uint256

KEY_PROOF_TYPEHASH: public(constant(bytes32)) = keccak256(
    "KeyProof(address key,address device,address owner,uint256 nonce,uint256 deadline)"
)
_MAX_UINT64: constant(uint64) = max_value(uint64)
# How many stake changes `stake_at` looks back over (more recent changes count as 0 stake).
_MAX_STAKE_LOOKBACK: constant(uint256) = 64
# secp256k1n / 2: signatures with a higher s are malleable copies and are refused.
_MAX_S: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168

token: public(immutable(IERC20))

devices: public(HashMap[address, Device])
keys: public(HashMap[address, KeyRecord])
# Active devices per crowding cell (the registered cell's parent at crowd_resolution).
cell_devices: public(HashMap[uint64, uint256])
device_count: public(uint256)
device_at: public(HashMap[uint256, address])

# Stake history (audit M7): every change appends (timestamp, stake after it), so a
# reward for an epoch counts only stake in place since before the epoch started.
stake_points: public(HashMap[address, HashMap[uint256, StakePoint]])
stake_point_count: public(HashMap[address, uint256])
# Deregistered stake is refunded only after this many seconds (>= epoch + challenge period).
unbonding_period: public(uint256)
unbond_at: public(HashMap[address, uint256])

min_stake: public(uint256)
crowd_resolution: public(uint64)
cell_capacity: public(uint256)


@deploy
def __init__(token_: address, min_stake_: uint256, crowd_resolution_: uint64, cell_capacity_: uint256,
             unbonding_period_: uint256):
    """
    @param token_ MeshToken address (stake currency).
    @param min_stake_ Minimum stake per device, in token wei.
    @param crowd_resolution_ H3 resolution at which devices are counted for crowding.
    @param cell_capacity_ Devices per crowding cell before rewards scale down.
    @param unbonding_period_ Seconds between deregistration and the stake refund.
    """
    ownable.__init__()
    eip712.__init__("proofmesh DeviceRegistry", "1")
    assert token_ != empty(address), "DeviceRegistry: token is zero"
    assert crowd_resolution_ <= 15, "DeviceRegistry: resolution > 15"
    assert cell_capacity_ > 0, "DeviceRegistry: capacity is zero"
    token = IERC20(token_)
    self.min_stake = min_stake_
    self.crowd_resolution = crowd_resolution_
    self.cell_capacity = cell_capacity_
    self.unbonding_period = unbonding_period_


@external
def register(key: address, device_class: String[32], cell: uint64, stake: uint256,
             deadline: uint256, v: uint8, r: bytes32, s: bytes32):
    """
    @notice Bind a device key to the caller (the owner) and stake for it.
    @dev The device ID is the key's address. The key signs
         KeyProof(key, device=key, owner=msg.sender, nonce=0, deadline), proving
         possession. The caller must have approved `stake` tokens.
    @param key The device's freshly generated key address (its ID).
    @param device_class What the device is ("sensor", "camera", ...).
    @param cell The device's H3 cell index.
    @param stake Tokens staked for the device (>= min_stake).
    @param deadline Last timestamp at which the key proof is accepted.
    @param v Signature recovery byte (27/28).
    @param r Signature r.
    @param s Signature s.
    """
    assert key != empty(address), "DeviceRegistry: key is zero"
    assert self.keys[key].device == empty(address), "DeviceRegistry: key already used"
    assert len(device_class) > 0, "DeviceRegistry: empty class"
    assert self._valid_cell(cell), "DeviceRegistry: invalid H3 cell"
    assert stake >= self.min_stake, "DeviceRegistry: stake below minimum"
    assert block.timestamp <= deadline, "DeviceRegistry: key proof expired"
    assert self._key_signer(key, key, msg.sender, 0, deadline, v, r, s) == key, "DeviceRegistry: bad key proof"

    now: uint64 = convert(block.timestamp, uint64)
    self.devices[key] = Device(owner=msg.sender, key=key, device_class=device_class, cell=cell,
                               stake=stake, registered_at=now, active=True, nonce=1)
    self.keys[key] = KeyRecord(device=key, valid_from=now, valid_until=_MAX_UINT64)
    crowd: uint64 = self._parent(cell, self.crowd_resolution)
    self.cell_devices[crowd] += 1
    self.device_at[self.device_count] = key
    self.device_count += 1
    self._checkpoint(key, stake)
    log DeviceRegistered(device=key, owner=msg.sender, device_class=device_class, cell=cell, stake=stake)

    assert extcall token.transferFrom(msg.sender, self, stake, default_return_value=True), "DeviceRegistry: transfer failed"


@external
def add_stake(device: address, amount: uint256):
    """
    @notice Add stake to an active device (raises its reward cap).
    @param device The device ID.
    @param amount Tokens to add (approved beforehand).
    """
    d: Device = self.devices[device]
    assert d.active, "DeviceRegistry: device not active"
    assert msg.sender == d.owner, "DeviceRegistry: not the owner"
    assert amount > 0, "DeviceRegistry: zero amount"
    self.devices[device].stake = d.stake + amount
    self._checkpoint(device, d.stake + amount)
    log StakeAdded(device=device, amount=amount, total=d.stake + amount)
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True), "DeviceRegistry: transfer failed"


@external
def rotate_key(device: address, new_key: address, deadline: uint256, v: uint8, r: bytes32, s: bytes32):
    """
    @notice Replace a device's key (also re-enables a revoked device).
    @dev The new key signs KeyProof(new_key, device, owner, device nonce, deadline).
         The old key stays valid for readings made before now.
    @param device The device ID.
    @param new_key Address of the new key, never used before.
    @param deadline Last timestamp at which the key proof is accepted.
    @param v Signature recovery byte.
    @param r Signature r.
    @param s Signature s.
    """
    d: Device = self.devices[device]
    assert d.active, "DeviceRegistry: device not active"
    assert msg.sender == d.owner, "DeviceRegistry: not the owner"
    assert new_key != empty(address), "DeviceRegistry: key is zero"
    assert self.keys[new_key].device == empty(address), "DeviceRegistry: key already used"
    assert block.timestamp <= deadline, "DeviceRegistry: key proof expired"
    assert self._key_signer(new_key, device, msg.sender, d.nonce, deadline, v, r, s) == new_key, "DeviceRegistry: bad key proof"

    now: uint64 = convert(block.timestamp, uint64)
    if d.key != empty(address):
        self.keys[d.key].valid_until = now
    self.keys[new_key] = KeyRecord(device=device, valid_from=now, valid_until=_MAX_UINT64)
    self.devices[device].key = new_key
    self.devices[device].nonce = d.nonce + 1
    log KeyRotated(device=device, old_key=d.key, new_key=new_key)


@external
def revoke_key(device: address):
    """
    @notice Revoke a device's current key: readings it signs from now on are invalid.
            The device stays registered; `rotate_key` gives it a new key.
    @param device The device ID.
    """
    d: Device = self.devices[device]
    assert d.active, "DeviceRegistry: device not active"
    assert msg.sender == d.owner, "DeviceRegistry: not the owner"
    assert d.key != empty(address), "DeviceRegistry: no key to revoke"
    self.keys[d.key].valid_until = convert(block.timestamp, uint64)
    self.devices[device].key = empty(address)
    log KeyRevoked(device=device, key=d.key)


@external
def deregister(device: address):
    """
    @notice Remove a device and revoke its key. Its stake stops counting now and is
            refunded by `withdraw_stake` after `unbonding_period` (audit M7).
    @param device The device ID.
    """
    d: Device = self.devices[device]
    assert d.active, "DeviceRegistry: device not active"
    assert msg.sender == d.owner, "DeviceRegistry: not the owner"
    if d.key != empty(address):
        self.keys[d.key].valid_until = convert(block.timestamp, uint64)
        log KeyRevoked(device=device, key=d.key)
    self.devices[device].active = False
    self.devices[device].key = empty(address)
    self._checkpoint(device, 0)
    self.unbond_at[device] = block.timestamp + self.unbonding_period
    crowd: uint64 = self._parent(d.cell, self.crowd_resolution)
    self.cell_devices[crowd] -= 1
    log DeviceDeregistered(device=device, owner=d.owner, refunded=0)


@external
def withdraw_stake(device: address):
    """
    @notice Refund a deregistered device's stake to its owner once unbonding is over.
    @param device The device ID.
    """
    d: Device = self.devices[device]
    assert d.owner != empty(address) and not d.active, "DeviceRegistry: device not deregistered"
    assert msg.sender == d.owner, "DeviceRegistry: not the owner"
    assert d.stake > 0, "DeviceRegistry: nothing to withdraw"
    assert block.timestamp >= self.unbond_at[device], "DeviceRegistry: stake still unbonding"
    self.devices[device].stake = 0
    log StakeWithdrawn(device=device, owner=d.owner, amount=d.stake)
    assert extcall token.transfer(d.owner, d.stake, default_return_value=True), "DeviceRegistry: transfer failed"


@external
def set_unbonding_period(unbonding_period_: uint256):
    """
    @notice Change the stake unbonding period (owner = governance timelock). Keep it at
            least EdgeEpochs' epoch length + challenge period.
    @param unbonding_period_ Seconds.
    """
    ownable._check_owner()
    self.unbonding_period = unbonding_period_
    log UnbondingPeriodChanged(unbonding_period=unbonding_period_)


@external
def set_parameters(min_stake_: uint256, crowd_resolution_: uint64, cell_capacity_: uint256):
    """
    @notice Change registry parameters (owner = governance timelock).
    @dev Changing the crowd resolution only applies to devices registered afterwards
         in `cell_devices`; governance should not change it on a live network.
    @param min_stake_ Minimum stake per new device.
    @param crowd_resolution_ H3 resolution of crowding cells (<= 15).
    @param cell_capacity_ Devices per cell before scaling down (> 0).
    """
    ownable._check_owner()
    assert crowd_resolution_ <= 15, "DeviceRegistry: resolution > 15"
    assert cell_capacity_ > 0, "DeviceRegistry: capacity is zero"
    self.min_stake = min_stake_
    self.crowd_resolution = crowd_resolution_
    self.cell_capacity = cell_capacity_
    log ParametersChanged(min_stake=min_stake_, crowd_resolution=crowd_resolution_, cell_capacity=cell_capacity_)


@view
@external
def key_valid_at(device: address, key: address, timestamp: uint64) -> bool:
    """
    @notice Whether `key` was the key of `device` at `timestamp`.
    @param device The device ID.
    @param key A signer address.
    @param timestamp Unix time of the reading.
    @return True when the key belonged to the device and was neither rotated nor revoked then.
    """
    k: KeyRecord = self.keys[key]
    return k.device == device and device != empty(address) and k.valid_from <= timestamp and timestamp < k.valid_until


@view
@external
def crowd_factor_bps(device: address) -> uint256:
    """
    @notice Reward scale for a device's cell in basis points: 10000 until the cell holds
            `cell_capacity` active devices, then capacity / count.
    @param device The device ID.
    @return Scale in basis points.
    """
    n: uint256 = self.cell_devices[self._parent(self.devices[device].cell, self.crowd_resolution)]
    if n <= self.cell_capacity:
        return 10000
    return 10000 * self.cell_capacity // n


@view
@external
def stake_of(device: address) -> uint256:
    """
    @notice Stake currently counting for a device (0 once deregistered, while unbonding).
    @param device The device ID.
    @return Tokens staked.
    """
    if not self.devices[device].active:
        return 0
    return self.devices[device].stake


@view
@external
def stake_at(device: address, timestamp: uint256) -> uint256:
    """
    @notice Stake a device had at `timestamp` (from its stake history). Changes
            older than the last 64 are not searched: then 0.
    @param device The device ID.
    @param timestamp Unix time.
    @return Tokens staked at that time.
    """
    n: uint256 = self.stake_point_count[device]
    for i: uint256 in range(_MAX_STAKE_LOOKBACK):
        if i >= n:
            break
        p: StakePoint = self.stake_points[device][n - 1 - i]
        if convert(p.at, uint256) <= timestamp:
            return p.stake
    return 0


@view
@external
def owner_of(device: address) -> address:
    """
    @notice The owner a device's rewards are paid to.
    @param device The device ID.
    @return The owner's address (empty if unknown).
    """
    return self.devices[device].owner


@view
@external
def is_active(device: address) -> bool:
    """
    @notice Whether a device is registered and not deregistered.
    @param device The device ID.
    @return True when active.
    """
    return self.devices[device].active


@view
@external
def current_key(device: address) -> address:
    """
    @notice The key a device signs with now (empty when revoked or deregistered).
    @param device The device ID.
    @return Key address.
    """
    return self.devices[device].key


@pure
@external
def cell_parent(cell: uint64, resolution: uint64) -> uint64:
    """
    @notice The H3 parent of `cell` at `resolution` (the cell itself if coarser).
    @param cell An H3 cell index.
    @param resolution Target resolution.
    @return Parent cell index.
    """
    return self._parent(cell, resolution)


@pure
@external
def valid_cell(cell: uint64) -> bool:
    """
    @notice Structural H3 cell check (mode, reserved bits, base cell, digits).
    @param cell An H3 index.
    @return True if it is a well-formed H3 cell index.
    """
    return self._valid_cell(cell)


@internal
def _checkpoint(device: address, stake: uint256):
    n: uint256 = self.stake_point_count[device]
    self.stake_points[device][n] = StakePoint(at=convert(block.timestamp, uint64), stake=stake)
    self.stake_point_count[device] = n + 1


@view
@internal
def _key_signer(key: address, device: address, owner: address, nonce: uint256, deadline: uint256,
                v: uint8, r: bytes32, s: bytes32) -> address:
    assert convert(s, uint256) <= _MAX_S, "DeviceRegistry: malleable signature"
    struct_hash: bytes32 = keccak256(abi_encode(KEY_PROOF_TYPEHASH, key, device, owner, nonce, deadline))
    digest: bytes32 = eip712._hash_typed_data_v4(struct_hash)
    return ecrecover(digest, v, r, s)


@pure
@internal
def _valid_cell(cell64: uint64) -> bool:
    # Layout (H3 v4): bit 63 reserved 0; bits 59-62 mode (1 = cell); bits 56-58 reserved 0;
    # bits 52-55 resolution; bits 45-51 base cell (< 122); 15 digits of 3 bits each.
    # (The pentagon deleted-subsequence rule is not checked on chain; the CLI checks it with h3.)
    cell: uint256 = convert(cell64, uint256)
    if cell >> 63 != 0:
        return False
    if (cell >> 59) & 15 != 1:
        return False
    if (cell >> 56) & 7 != 0:
        return False
    res: uint256 = (cell >> 52) & 15
    if (cell >> 45) & 127 >= 122:
        return False
    for i: uint256 in range(1, 16):
        digit: uint256 = (cell >> (3 * (15 - i))) & 7
        if i <= res and digit == 7:
            return False
        if i > res and digit != 7:
            return False
    return True


@pure
@internal
def _parent(cell64: uint64, resolution64: uint64) -> uint64:
    cell: uint256 = convert(cell64, uint256)
    resolution: uint256 = convert(resolution64, uint256)
    res: uint256 = (cell >> 52) & 15
    if resolution >= res:
        return cell64
    out: uint256 = (cell & ~(15 << 52)) | (resolution << 52)
    for i: uint256 in range(1, 16):
        if i > resolution:
            out = out | (7 << (3 * (15 - i)))
    return convert(out, uint64)
