# pragma version ~=0.4.3
"""
@title ToolRegistry
@notice On-chain registry of paid agent tools (MCP servers) and their reputation.
        A staked TOOL_PROVIDER node registers a tool (name, schema CID, endpoint,
        price); agents find it here, call it over MCP and pay per call with either
        an EIP-3009 authorization (`exact`, settled through `settle_exact`) or a
        cumulative voucher over a PaymentChannels deposit (`voucher`).
        Reputation is fed by payer-signed, cumulative EIP-712 `Usage` reports and
        weighted by value that was *actually settled* on chain from distinct,
        staked payers, each payer's weight capped, so paying yourself through other
        accounts does not buy rank unless every sybil stakes and really pays.
@dev    Tool id = keccak256(abi_encode(provider, keccak256(name))): one provider
        offers one tool per name; several providers may offer the same name, which
        is what clients fall back across. Parameters change only through the owner
        (the Governance timelock).
"""

from snekmate.auth import ownable
initializes: ownable

from snekmate.utils import eip712_domain_separator
initializes: eip712_domain_separator

from snekmate.utils import ecdsa

from interfaces import INodeRegistry

exports: (
    ownable.owner,
    ownable.transfer_ownership,
    eip712_domain_separator.eip712Domain,
)


interface IEIP3009:
    def transferWithAuthorization(_from: address, to: address, amount: uint256, valid_after: uint256,
                                  valid_before: uint256, nonce: bytes32, v: uint8, r: bytes32, s: bytes32): nonpayable


struct ChannelView:
    payer: address
    payee: address
    deposit: uint256
    paid: uint256
    nonce: uint256
    unlock_at: uint256
    open: bool


interface IPaymentChannels:
    def channels(channel: bytes32) -> ChannelView: view
    def generation(payer: address, payee: address) -> uint256: view


TOOL_PROVIDER: constant(uint256) = 16
SCHEME_EXACT: constant(uint256) = 1
SCHEME_VOUCHER: constant(uint256) = 2
BPS: constant(uint256) = 10_000
# A dispute weighs as much as this many failures: it is a signed, evidenced complaint.
DISPUTE_WEIGHT: constant(uint256) = 4
# Redeemed value of at most this many (newest) channel generations backs reports: a pair
# that re-opened its channel more often than this only loses credit, never gains it.
MAX_GENERATIONS: constant(uint256) = 16

_USAGE_TYPEHASH: constant(bytes32) = keccak256(
    "Usage(bytes32 toolId,address payer,uint256 calls,uint256 failures,uint256 paid,uint256 seq)"
)
_RECEIPT_TYPEHASH: constant(bytes32) = keccak256(
    "Receipt(bytes32 toolId,bytes32 argsHash,bytes32 resultHash,address payer,uint256 payment,uint256 nonce)"
)


struct Tool:
    provider: address
    name: String[64]
    schema_cid: String[128]
    endpoint: String[256]
    price: uint256
    schemes: uint256
    active: bool
    bond: uint256
    registered_at: uint256


struct Reputation:
    calls: uint256
    failures: uint256
    disputes: uint256
    paid: uint256
    payers: uint256
    weighted_paid: uint256


struct PayerUsage:
    seq: uint256
    calls: uint256
    failures: uint256
    paid: uint256
    credited: uint256   # the part of `paid` that counted towards reputation (staked, backed)
    disputed: bool


token: public(immutable(address))
node_registry: public(immutable(address))

# @notice PaymentChannels contract whose redeemed totals back voucher payments.
channels: public(address)
# @notice Bond locked in NodeRegistry per registered tool (released on retire).
tool_bond: public(uint256)
# @notice A payer counts for reputation only with at least this much stake.
min_payer_stake: public(uint256)
# @notice Most value one payer can add to a tool's weighted reputation.
payer_value_cap: public(uint256)

tools: public(HashMap[bytes32, Tool])
reputation: public(HashMap[bytes32, Reputation])
usage: public(HashMap[bytes32, HashMap[address, PayerUsage]])
# @notice Value settled through `settle_exact` per (payer, provider).
exact_paid: public(HashMap[address, HashMap[address, uint256]])
# @notice Value already credited to reputation per (payer, provider), over all its tools.
credited: public(HashMap[address, HashMap[address, uint256]])

tool_count: public(uint256)
_tool_list: HashMap[uint256, bytes32]


event ToolRegistered:
    tool_id: indexed(bytes32)
    provider: indexed(address)
    name: String[64]
    schema_cid: String[128]
    endpoint: String[256]
    price: uint256
    schemes: uint256

event ToolUpdated:
    tool_id: indexed(bytes32)
    schema_cid: String[128]
    endpoint: String[256]
    price: uint256
    schemes: uint256

event ToolRetired:
    tool_id: indexed(bytes32)
    provider: indexed(address)

event ExactSettled:
    tool_id: indexed(bytes32)
    payer: indexed(address)
    provider: indexed(address)
    amount: uint256
    nonce: bytes32

event UsageReported:
    tool_id: indexed(bytes32)
    payer: indexed(address)
    seq: uint256
    calls: uint256
    failures: uint256
    paid: uint256
    counted: bool

event Disputed:
    tool_id: indexed(bytes32)
    payer: indexed(address)
    receipt_digest: bytes32
    reason: String[256]

event ParametersChanged:
    channels: address
    tool_bond: uint256
    min_payer_stake: uint256
    payer_value_cap: uint256


@deploy
def __init__(token_: address, node_registry_: address, channels_: address, tool_bond_: uint256,
             min_payer_stake_: uint256, payer_value_cap_: uint256):
    """
    @notice Deploy the registry.
    @param token_ MeshToken (EIP-3009 for the `exact` scheme).
    @param node_registry_ NodeRegistry (roles, stake, bonds).
    @param channels_ PaymentChannels (may be empty: then only `exact` payments count).
    @param tool_bond_ Stake bonded per registered tool.
    @param min_payer_stake_ Stake a payer needs for its reports to count.
    @param payer_value_cap_ Most value one payer adds to a tool's weighted reputation.
    """
    assert token_ != empty(address) and node_registry_ != empty(address), "ToolRegistry: empty address"
    assert payer_value_cap_ > 0, "ToolRegistry: zero payer value cap"
    ownable.__init__()
    eip712_domain_separator.__init__("ToolRegistry", "1")
    token = token_
    node_registry = node_registry_
    self.channels = channels_
    self.tool_bond = tool_bond_
    self.min_payer_stake = min_payer_stake_
    self.payer_value_cap = payer_value_cap_


# ------------------------------------------------------------------ tools

@external
def register_tool(name: String[64], schema_cid: String[128], endpoint: String[256], price: uint256,
                  schemes: uint256) -> bytes32:
    """
    @notice Register a tool served by the caller, a staked TOOL_PROVIDER node; locks `tool_bond`.
    @param name Tool name (what MCP clients call).
    @param schema_cid CID of the tool's JSON schema in the blob store.
    @param endpoint MCP streamable-HTTP URL.
    @param price Price per call in MESH wei.
    @param schemes Bitmask of accepted payment schemes (1 = exact, 2 = voucher).
    @return The tool id.
    """
    assert len(name) > 0, "ToolRegistry: empty name"
    assert len(schema_cid) > 0, "ToolRegistry: empty schema CID"
    assert len(endpoint) > 0, "ToolRegistry: empty endpoint"
    assert schemes > 0 and schemes <= SCHEME_EXACT | SCHEME_VOUCHER, "ToolRegistry: bad schemes"
    assert staticcall INodeRegistry(node_registry).has_role(msg.sender, TOOL_PROVIDER), "ToolRegistry: not a tool provider"
    assert staticcall INodeRegistry(node_registry).is_active(msg.sender), "ToolRegistry: provider not active"
    tool_id: bytes32 = keccak256(abi_encode(msg.sender, keccak256(name)))
    assert self.tools[tool_id].provider == empty(address), "ToolRegistry: tool exists"
    bond: uint256 = self.tool_bond
    # Effects before the interaction (lock_bond), which reverts on too little free stake.
    self.tools[tool_id] = Tool(provider=msg.sender, name=name, schema_cid=schema_cid, endpoint=endpoint,
                               price=price, schemes=schemes, active=True, bond=bond,
                               registered_at=block.timestamp)
    self._tool_list[self.tool_count] = tool_id
    self.tool_count += 1
    log ToolRegistered(tool_id=tool_id, provider=msg.sender, name=name, schema_cid=schema_cid,
                       endpoint=endpoint, price=price, schemes=schemes)
    if bond > 0:
        extcall INodeRegistry(node_registry).lock_bond(msg.sender, bond)
    return tool_id


@external
def update_tool(tool_id: bytes32, schema_cid: String[128], endpoint: String[256], price: uint256,
                schemes: uint256):
    """
    @notice Change an active tool's schema, endpoint, price or schemes (its provider only).
    @param tool_id The tool.
    @param schema_cid New schema CID.
    @param endpoint New endpoint.
    @param price New price per call.
    @param schemes New scheme bitmask.
    """
    t: Tool = self.tools[tool_id]
    assert t.provider == msg.sender, "ToolRegistry: not the provider"
    assert t.active, "ToolRegistry: tool retired"
    assert len(schema_cid) > 0 and len(endpoint) > 0, "ToolRegistry: empty field"
    assert schemes > 0 and schemes <= SCHEME_EXACT | SCHEME_VOUCHER, "ToolRegistry: bad schemes"
    self.tools[tool_id].schema_cid = schema_cid
    self.tools[tool_id].endpoint = endpoint
    self.tools[tool_id].price = price
    self.tools[tool_id].schemes = schemes
    log ToolUpdated(tool_id=tool_id, schema_cid=schema_cid, endpoint=endpoint, price=price, schemes=schemes)


@external
def retire_tool(tool_id: bytes32):
    """
    @notice Retire a tool (its provider only); releases its bond. Reputation stays on record.
    @param tool_id The tool.
    """
    t: Tool = self.tools[tool_id]
    assert t.provider == msg.sender, "ToolRegistry: not the provider"
    assert t.active, "ToolRegistry: tool retired"
    self.tools[tool_id].active = False
    log ToolRetired(tool_id=tool_id, provider=msg.sender)
    # Release exactly what this tool locked, even if tool_bond changed since.
    if t.bond > 0:
        extcall INodeRegistry(node_registry).release_bond(msg.sender, t.bond)


@view
@external
def tool_at(index: uint256) -> bytes32:
    """
    @notice The id of the `index`-th registered tool (for enumeration).
    @param index 0 .. tool_count - 1.
    @return The tool id.
    """
    assert index < self.tool_count, "ToolRegistry: index out of range"
    return self._tool_list[index]


@view
@external
def tool_id_of(provider: address, name: String[64]) -> bytes32:
    """
    @notice The id a tool named `name` from `provider` has (registered or not).
    """
    return keccak256(abi_encode(provider, keccak256(name)))


@view
@external
def score(tool_id: bytes32) -> uint256:
    """
    @notice Ranking score: capped value from distinct staked payers times the success ratio.
    @param tool_id The tool.
    @return Score in MESH wei (weighted paid value x quality).
    """
    return self._score(tool_id)


@view
@internal
def _score(tool_id: bytes32) -> uint256:
    r: Reputation = self.reputation[tool_id]
    bad: uint256 = r.failures + DISPUTE_WEIGHT * r.disputes
    if r.calls + bad == 0:
        return 0
    return r.weighted_paid * r.calls // (r.calls + bad)


# ------------------------------------------------------------------ payments

@external
def settle_exact(tool_id: bytes32, payer: address, amount: uint256, valid_after: uint256,
                 valid_before: uint256, nonce: bytes32, v: uint8, r: bytes32, s: bytes32):
    """
    @notice Execute a payer's EIP-3009 authorization paying the tool's provider (x402 `exact`)
            and record the settled value so it can back the payer's usage reports.
    @dev Only the provider submits, so a settled payment is always tied to a served call.
    @param tool_id The tool that was called.
    @param payer The authorization's signer.
    @param amount Authorized amount; at least the tool's price.
    @param valid_after EIP-3009 validAfter.
    @param valid_before EIP-3009 validBefore.
    @param nonce EIP-3009 nonce (one use).
    """
    t: Tool = self.tools[tool_id]
    assert t.provider == msg.sender, "ToolRegistry: not the provider"
    assert t.schemes & SCHEME_EXACT != 0, "ToolRegistry: exact scheme not accepted"
    assert amount >= t.price, "ToolRegistry: below price"
    self.exact_paid[payer][msg.sender] += amount
    log ExactSettled(tool_id=tool_id, payer=payer, provider=msg.sender, amount=amount, nonce=nonce)
    # The token checks signature, window and nonce, and moves the tokens payer -> provider.
    extcall IEIP3009(token).transferWithAuthorization(payer, msg.sender, amount, valid_after, valid_before,
                                                      nonce, v, r, s)


@view
@external
def settled_total(payer: address, provider: address) -> uint256:
    """
    @notice Value settled on chain from `payer` to `provider` (exact payments + redeemed vouchers).
    """
    return self._settled_total(payer, provider)


@view
@internal
def _settled_total(payer: address, provider: address) -> uint256:
    total: uint256 = self.exact_paid[payer][provider]
    pc: address = self.channels
    if pc == empty(address):
        return total
    gen: uint256 = staticcall IPaymentChannels(pc).generation(payer, provider)
    for i: uint256 in range(MAX_GENERATIONS):
        if i > gen:
            break
        cid: bytes32 = keccak256(abi_encode(pc, payer, provider, gen - i))
        total += (staticcall IPaymentChannels(pc).channels(cid)).paid
    return total


# ------------------------------------------------------------------ reputation

@external
def report_usage(tool_id: bytes32, payer: address, calls: uint256, failures: uint256, paid: uint256,
                 seq: uint256, signature: Bytes[65]):
    """
    @notice Record a payer-signed cumulative usage report (anyone may submit; the provider does
            at redeem time, the payer may at any time). Only the increase over the last
            accepted report is applied; stale or replayed reports revert.
    @dev Counts towards reputation only if the payer is not the provider, is staked
         (>= min_payer_stake) and the paid value is backed by settled payments.
    @param tool_id The tool.
    @param payer The report's signer.
    @param calls Cumulative successful paid calls.
    @param failures Cumulative failed calls.
    @param paid Cumulative value paid for this tool.
    @param seq Report sequence; must exceed the last accepted one.
    @param signature EIP-712 signature of Usage by `payer`.
    """
    t: Tool = self.tools[tool_id]
    assert t.provider != empty(address), "ToolRegistry: unknown tool"
    assert payer != empty(address), "ToolRegistry: empty payer"
    struct_hash: bytes32 = keccak256(abi_encode(_USAGE_TYPEHASH, tool_id, payer, calls, failures, paid, seq))
    digest: bytes32 = eip712_domain_separator._hash_typed_data_v4(struct_hash)
    assert ecdsa._recover_sig(digest, signature) == payer, "ToolRegistry: bad usage signature"
    u: PayerUsage = self.usage[tool_id][payer]
    assert seq > u.seq, "ToolRegistry: stale usage report"
    assert calls >= u.calls and failures >= u.failures and paid >= u.paid, "ToolRegistry: usage went backwards"
    d_calls: uint256 = calls - u.calls
    d_failures: uint256 = failures - u.failures
    d_paid: uint256 = paid - u.paid
    counted: bool = payer != t.provider and \
        staticcall INodeRegistry(node_registry).stake_of(payer) >= self.min_payer_stake
    credited: uint256 = u.credited
    if counted and d_paid > 0:
        # Paid value must be backed by money that really moved to this provider.
        new_credit: uint256 = self.credited[payer][t.provider] + d_paid
        assert new_credit <= self._settled_total(payer, t.provider), "ToolRegistry: paid exceeds settled value"
        self.credited[payer][t.provider] = new_credit
        credited = u.credited + d_paid
    self.usage[tool_id][payer] = PayerUsage(seq=seq, calls=calls, failures=failures, paid=paid,
                                            credited=credited, disputed=u.disputed)
    if counted:
        cap: uint256 = self.payer_value_cap
        rep: Reputation = self.reputation[tool_id]
        if u.credited == 0 and credited > 0:
            rep.payers += 1
        rep.calls += d_calls
        rep.failures += d_failures
        rep.paid += d_paid
        rep.weighted_paid += min(credited, cap) - min(u.credited, cap)
        self.reputation[tool_id] = rep
    log UsageReported(tool_id=tool_id, payer=payer, seq=seq, calls=calls, failures=failures, paid=paid,
                      counted=counted)


@external
def dispute(tool_id: bytes32, args_hash: bytes32, result_hash: bytes32, payment: uint256, nonce: uint256,
            signature: Bytes[65], reason: String[256]):
    """
    @notice A staked payer who paid for the tool disputes a call, with the provider's signed
            receipt as evidence. One dispute per payer per tool.
    @param tool_id The tool.
    @param args_hash Receipt field: keccak of the canonical arguments.
    @param result_hash Receipt field: keccak of the canonical result.
    @param payment Receipt field: amount charged.
    @param nonce Receipt field: call nonce.
    @param signature The provider's EIP-712 signature of the Receipt.
    @param reason Human-readable reason.
    """
    t: Tool = self.tools[tool_id]
    assert t.provider != empty(address), "ToolRegistry: unknown tool"
    u: PayerUsage = self.usage[tool_id][msg.sender]
    assert u.credited > 0, "ToolRegistry: no paid usage reported"
    assert not u.disputed, "ToolRegistry: already disputed"
    assert staticcall INodeRegistry(node_registry).stake_of(msg.sender) >= self.min_payer_stake, "ToolRegistry: payer not staked"
    struct_hash: bytes32 = keccak256(abi_encode(_RECEIPT_TYPEHASH, tool_id, args_hash, result_hash, msg.sender,
                                                payment, nonce))
    digest: bytes32 = eip712_domain_separator._hash_typed_data_v4(struct_hash)
    assert ecdsa._recover_sig(digest, signature) == t.provider, "ToolRegistry: receipt not signed by provider"
    self.usage[tool_id][msg.sender].disputed = True
    self.reputation[tool_id].disputes += 1
    log Disputed(tool_id=tool_id, payer=msg.sender, receipt_digest=digest, reason=reason)


# ------------------------------------------------------------------ governance

@external
def set_parameters(channels_: address, tool_bond_: uint256, min_payer_stake_: uint256, payer_value_cap_: uint256):
    """
    @notice Change parameters (owner = Governance timelock only).
    @param channels_ PaymentChannels address.
    @param tool_bond_ Bond per tool.
    @param min_payer_stake_ Stake a payer needs to count.
    @param payer_value_cap_ Per-payer cap on weighted value; must be > 0.
    """
    ownable._check_owner()
    assert payer_value_cap_ > 0, "ToolRegistry: zero payer value cap"
    self.channels = channels_
    self.tool_bond = tool_bond_
    self.min_payer_stake = min_payer_stake_
    self.payer_value_cap = payer_value_cap_
    log ParametersChanged(channels=channels_, tool_bond=tool_bond_, min_payer_stake=min_payer_stake_,
                          payer_value_cap=payer_value_cap_)
