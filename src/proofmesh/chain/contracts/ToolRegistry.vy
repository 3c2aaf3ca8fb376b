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
        Disputes are adjudicated by proof, not by opinion: for a tool its provider declared
        deterministic, two receipts signed by the provider with the same arguments and
        different results prove a wrong result and slash the tool's whole bond. The disputer first commits to the proof with a
        dispute bond and reveals it in a later block (nobody can front-run the bounty);
        a reveal that proves nothing, or none before the deadline, burns the bond. The
        bounty is the slash minus NodeRegistry's burn share, so a provider disputing
        itself through a sybil always loses money. A retired tool's bond stays
        slashable for `dispute_window` before its provider can release it.
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


interface IERC20:
    def transferFrom(owner: address, to: address, amount: uint256) -> bool: nonpayable
    def transfer(to: address, amount: uint256) -> bool: nonpayable
    def burn(amount: uint256): nonpayable


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
# Flag in `schemes`: the provider declares the tool deterministic (same arguments, same
# result): two receipts with equal args hashes and different result hashes prove a fault.
FLAG_DETERMINISTIC: constant(uint256) = 4
BPS: constant(uint256) = 10_000
# Generations of a (payer, provider) channel folded into the settled-value cache per call.
SYNC_STEP: constant(uint256) = 64
# A committed dispute must be revealed within this long (after at least one block).
REVEAL_PERIOD: constant(uint256) = 86_400
# A dispute weighs as much as this many failures: it is a signed, evidenced complaint.
DISPUTE_WEIGHT: constant(uint256) = 4

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


struct SignedReceipt:
    args_hash: bytes32
    result_hash: bytes32
    payer: address
    payment: uint256
    nonce: uint256
    signature: Bytes[65]


struct DisputeCommit:
    disputer: address
    bond: uint256
    block: uint256
    deadline: uint256


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

# @notice Dispute bond a disputer locks with each commitment (burned by a false dispute).
dispute_bond: public(uint256)
# @notice How long a retired tool's bond stays slashable before it can be released.
dispute_window: public(uint256)
# @notice When a retired tool's bond may be released (0 while active).
bond_release_at: public(HashMap[bytes32, uint256])
# @notice Open dispute commitments.
commits: public(HashMap[bytes32, DisputeCommit])
# @notice Receipt digests already used in a proven fault (one proof per receipt).
receipt_used: public(HashMap[bytes32, bool])
# Settled-value cache per (payer, provider): paid value of the closed channel generations
# below `_gen_done`. A closed channel can never be redeemed again, so its `paid` is final.
_closed_paid: HashMap[address, HashMap[address, uint256]]
_gen_done: HashMap[address, HashMap[address, uint256]]


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

event BondReleased:
    tool_id: indexed(bytes32)
    provider: indexed(address)
    amount: uint256

event DisputeCommitted:
    commitment: indexed(bytes32)
    disputer: indexed(address)
    bond: uint256

event FaultProven:
    tool_id: indexed(bytes32)
    provider: indexed(address)
    disputer: indexed(address)
    receipt_a: bytes32
    receipt_b: bytes32
    slashed: uint256
    bounty: uint256

event DisputeRejected:
    commitment: indexed(bytes32)
    disputer: indexed(address)
    burned: uint256
    reason: String[64]

event DisputeParametersChanged:
    dispute_bond: uint256
    dispute_window: uint256

event ParametersChanged:
    channels: address
    tool_bond: uint256
    min_payer_stake: uint256
    payer_value_cap: uint256


@deploy
def __init__(token_: address, node_registry_: address, channels_: address, tool_bond_: uint256,
             min_payer_stake_: uint256, payer_value_cap_: uint256, dispute_bond_: uint256,
             dispute_window_: uint256):
    """
    @notice Deploy the registry.
    @param token_ MeshToken (EIP-3009 for the `exact` scheme).
    @param node_registry_ NodeRegistry (roles, stake, bonds).
    @param channels_ PaymentChannels (may be empty: then only `exact` payments count).
    @param tool_bond_ Stake bonded per registered tool.
    @param min_payer_stake_ Stake a payer needs for its reports to count.
    @param payer_value_cap_ Most value one payer adds to a tool's weighted reputation.
    @param dispute_bond_ Bond a disputer locks per dispute commitment (> 0).
    @param dispute_window_ How long a retired tool's bond stays slashable.
    """
    assert token_ != empty(address) and node_registry_ != empty(address), "ToolRegistry: empty address"
    assert payer_value_cap_ > 0, "ToolRegistry: zero payer value cap"
    assert dispute_bond_ > 0, "ToolRegistry: zero dispute bond"
    ownable.__init__()
    eip712_domain_separator.__init__("ToolRegistry", "1")
    token = token_
    node_registry = node_registry_
    self.channels = channels_
    self.tool_bond = tool_bond_
    self.min_payer_stake = min_payer_stake_
    self.payer_value_cap = payer_value_cap_
    self.dispute_bond = dispute_bond_
    self.dispute_window = dispute_window_


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
    @param schemes Bitmask of accepted payment schemes (1 = exact, 2 = voucher), plus 4 if the
           tool is deterministic (then inconsistent receipts are slashable).
    @return The tool id.
    """
    assert len(name) > 0, "ToolRegistry: empty name"
    assert len(schema_cid) > 0, "ToolRegistry: empty schema CID"
    assert len(endpoint) > 0, "ToolRegistry: empty endpoint"
    assert schemes & (SCHEME_EXACT | SCHEME_VOUCHER) != 0 and schemes <= 7, "ToolRegistry: bad schemes"
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
    @param schemes New scheme bitmask; the deterministic flag (4) must stay as registered. A
           deterministic tool promises the same result for the same arguments for as long as it
           lives, across updates: a changed function needs a new tool name.
    """
    t: Tool = self.tools[tool_id]
    assert t.provider == msg.sender, "ToolRegistry: not the provider"
    assert t.active, "ToolRegistry: tool retired"
    assert len(schema_cid) > 0 and len(endpoint) > 0, "ToolRegistry: empty field"
    assert schemes & (SCHEME_EXACT | SCHEME_VOUCHER) != 0 and schemes <= 7, "ToolRegistry: bad schemes"
    # Fixed at registration: dropping it would dodge a pending fault proof, adding it would make
    # receipts signed without the promise slashable.
    assert (schemes ^ t.schemes) & FLAG_DETERMINISTIC == 0, "ToolRegistry: deterministic flag is fixed"
    self.tools[tool_id].schema_cid = schema_cid
    self.tools[tool_id].endpoint = endpoint
    self.tools[tool_id].price = price
    self.tools[tool_id].schemes = schemes
    log ToolUpdated(tool_id=tool_id, schema_cid=schema_cid, endpoint=endpoint, price=price, schemes=schemes)


@external
def retire_tool(tool_id: bytes32):
    """
    @notice Retire a tool (its provider only). Its bond stays slashable for `dispute_window`,
            then `release_tool_bond` returns it. Reputation stays on record.
    @param tool_id The tool.
    """
    t: Tool = self.tools[tool_id]
    assert t.provider == msg.sender, "ToolRegistry: not the provider"
    assert t.active, "ToolRegistry: tool retired"
    self.tools[tool_id].active = False
    self.bond_release_at[tool_id] = block.timestamp + self.dispute_window
    log ToolRetired(tool_id=tool_id, provider=msg.sender)


@external
def release_tool_bond(tool_id: bytes32):
    """
    @notice Release a retired tool's bond once its dispute window is over (anyone may call).
    @param tool_id The tool.
    """
    t: Tool = self.tools[tool_id]
    assert t.provider != empty(address), "ToolRegistry: unknown tool"
    assert not t.active, "ToolRegistry: tool active"
    assert block.timestamp >= self.bond_release_at[tool_id], "ToolRegistry: dispute window open"
    assert t.bond > 0, "ToolRegistry: no bond"
    self.tools[tool_id].bond = 0
    log BondReleased(tool_id=tool_id, provider=t.provider, amount=t.bond)
    # Release exactly what this tool locked, even if tool_bond changed since.
    extcall INodeRegistry(node_registry).release_bond(t.provider, t.bond)


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
    @notice Value settled on chain from `payer` to `provider` (exact payments + redeemed vouchers
            of every channel generation). Reverts if more than SYNC_STEP generations are not yet
            folded into the cache: call `sync_settled` first.
    """
    return self._settled_total(payer, provider)


@external
def sync_settled(payer: address, provider: address):
    """
    @notice Fold up to SYNC_STEP closed channel generations of (payer, provider) into the
            settled-value cache (anyone; only needed after very many channel re-opens).
    @param payer The payer.
    @param provider The provider.
    """
    self._sync_settled(payer, provider)


@internal
def _sync_settled(payer: address, provider: address):
    pc: address = self.channels
    if pc == empty(address):
        return
    gen: uint256 = staticcall IPaymentChannels(pc).generation(payer, provider)
    done: uint256 = self._gen_done[payer][provider]
    folded: uint256 = 0
    for i: uint256 in range(SYNC_STEP):
        if done + i >= gen:
            break
        cid: bytes32 = keccak256(abi_encode(pc, payer, provider, done + i))
        folded += (staticcall IPaymentChannels(pc).channels(cid)).paid
        self._gen_done[payer][provider] = done + i + 1
    self._closed_paid[payer][provider] += folded


@view
@internal
def _settled_total(payer: address, provider: address) -> uint256:
    total: uint256 = self.exact_paid[payer][provider] + self._closed_paid[payer][provider]
    pc: address = self.channels
    if pc == empty(address):
        return total
    gen: uint256 = staticcall IPaymentChannels(pc).generation(payer, provider)
    done: uint256 = self._gen_done[payer][provider]
    assert gen <= done + SYNC_STEP, "ToolRegistry: call sync_settled first"
    # the generations not folded yet (closed ones and the current, possibly open, channel)
    for i: uint256 in range(SYNC_STEP + 1):
        if done + i > gen:
            break
        cid: bytes32 = keccak256(abi_encode(pc, payer, provider, done + i))
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
        self._sync_settled(payer, t.provider)
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


@view
@internal
def _receipt_digest(tool_id: bytes32, r: SignedReceipt) -> bytes32:
    return eip712_domain_separator._hash_typed_data_v4(keccak256(abi_encode(
        _RECEIPT_TYPEHASH, tool_id, r.args_hash, r.result_hash, r.payer, r.payment, r.nonce)))


@view
@external
def dispute_commitment(disputer: address, tool_id: bytes32, receipt_a: bytes32, receipt_b: bytes32,
                       salt: bytes32) -> bytes32:
    """
    @notice The commitment `commit_dispute` takes for a proof (receipt digests in EIP-712 form).
    """
    return keccak256(abi_encode(disputer, tool_id, receipt_a, receipt_b, salt))


@external
def commit_dispute(commitment: bytes32):
    """
    @notice Commit to a fault proof, locking `dispute_bond` (approve it first). Reveal it with
            `prove_fault` in a later block, within REVEAL_PERIOD; the proof stays hidden until
            then, so nobody can take the bounty by copying it.
    @param commitment `dispute_commitment(msg.sender, tool_id, digest_a, digest_b, salt)`.
    """
    assert self.commits[commitment].disputer == empty(address), "ToolRegistry: commitment exists"
    bond: uint256 = self.dispute_bond
    self.commits[commitment] = DisputeCommit(disputer=msg.sender, bond=bond, block=block.number,
                                             deadline=block.timestamp + REVEAL_PERIOD)
    log DisputeCommitted(commitment=commitment, disputer=msg.sender, bond=bond)
    assert extcall IERC20(token).transferFrom(msg.sender, self, bond, default_return_value=True), \
        "ToolRegistry: bond transfer failed"


@internal
def _reject(commitment: bytes32, c: DisputeCommit, reason: String[64]):
    # A false (or unrevealed) dispute burns its bond: nobody, the accused included, profits from it.
    log DisputeRejected(commitment=commitment, disputer=c.disputer, burned=c.bond, reason=reason)
    if c.bond > 0:
        extcall IERC20(token).burn(c.bond)


@external
def prove_fault(tool_id: bytes32, a: SignedReceipt, b: SignedReceipt, salt: bytes32) -> bool:
    """
    @notice Reveal a committed fault proof: two receipts signed by the provider of a tool it
            declared deterministic, with the same arguments and different results, so at least one
            result is wrong (an error result counts as a result). A valid proof slashes
            the tool's whole bond (bounty = slash minus NodeRegistry's burn share, to the disputer),
            retires the tool, counts a dispute in its reputation and refunds the dispute bond.
            Anything else burns the dispute bond. A receipt backs at most one proven fault.
    @param tool_id The tool.
    @param a First receipt (fields + the provider's signature).
    @param b Second receipt.
    @param salt The commitment's salt.
    @return True if a fault was proven.
    """
    da: bytes32 = self._receipt_digest(tool_id, a)
    db: bytes32 = self._receipt_digest(tool_id, b)
    commitment: bytes32 = keccak256(abi_encode(msg.sender, tool_id, da, db, salt))
    c: DisputeCommit = self.commits[commitment]
    assert c.disputer == msg.sender, "ToolRegistry: no such commitment"
    assert block.number > c.block, "ToolRegistry: reveal in a later block"
    self.commits[commitment] = empty(DisputeCommit)
    if block.timestamp > c.deadline:
        self._reject(commitment, c, "reveal too late")
        return False
    t: Tool = self.tools[tool_id]
    if t.provider == empty(address) or da == db:
        self._reject(commitment, c, "not two receipts of a tool")
        return False
    if ecdsa._recover_sig(da, a.signature) != t.provider or ecdsa._recover_sig(db, b.signature) != t.provider:
        self._reject(commitment, c, "receipt not signed by provider")
        return False
    if t.schemes & FLAG_DETERMINISTIC == 0:
        self._reject(commitment, c, "tool not deterministic")
        return False
    if a.args_hash != b.args_hash or a.result_hash == b.result_hash:
        self._reject(commitment, c, "receipts do not conflict")
        return False
    if self.receipt_used[da] or self.receipt_used[db]:
        # A second proof from the same evidence: not false, but it earns nothing.
        log DisputeRejected(commitment=commitment, disputer=msg.sender, burned=0, reason="receipt already used")
        assert extcall IERC20(token).transfer(msg.sender, c.bond, default_return_value=True), \
            "ToolRegistry: refund failed"
        return False
    self.receipt_used[da] = True
    self.receipt_used[db] = True
    amount: uint256 = t.bond
    self.tools[tool_id].bond = 0
    self.tools[tool_id].active = False
    self.reputation[tool_id].disputes += 1
    bounty: uint256 = 0
    if amount > 0:
        burned: uint256 = 0
        burned, bounty = extcall INodeRegistry(node_registry).slash(t.provider, amount, msg.sender)
    log FaultProven(tool_id=tool_id, provider=t.provider, disputer=msg.sender, receipt_a=da, receipt_b=db,
                    slashed=amount, bounty=bounty)
    assert extcall IERC20(token).transfer(msg.sender, c.bond, default_return_value=True), \
        "ToolRegistry: refund failed"
    return True


@external
def expire_dispute(commitment: bytes32):
    """
    @notice Burn the bond of a commitment not revealed within REVEAL_PERIOD (anyone may call).
    @param commitment The commitment.
    """
    c: DisputeCommit = self.commits[commitment]
    assert c.disputer != empty(address), "ToolRegistry: no such commitment"
    assert block.timestamp > c.deadline, "ToolRegistry: reveal period open"
    self.commits[commitment] = empty(DisputeCommit)
    self._reject(commitment, c, "not revealed")


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


@external
def set_dispute_parameters(dispute_bond_: uint256, dispute_window_: uint256):
    """
    @notice Change the dispute bond and the retired-bond dispute window (owner = Governance only).
    @param dispute_bond_ Bond per dispute commitment; must be > 0.
    @param dispute_window_ Seconds a retired tool's bond stays slashable.
    """
    ownable._check_owner()
    assert dispute_bond_ > 0, "ToolRegistry: zero dispute bond"
    self.dispute_bond = dispute_bond_
    self.dispute_window = dispute_window_
    log DisputeParametersChanged(dispute_bond=dispute_bond_, dispute_window=dispute_window_)
