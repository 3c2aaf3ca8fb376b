"""Typed clients for the core contracts: MESH token, node registry, emission, governance.

Thin wrappers: each method is one contract call, takes and returns plain Python
values (amounts in wei), and checks the obvious preconditions first so a user gets
"insufficient balance: have X, need Y" rather than a bare revert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from proofmesh.chain.client import Chain, TxResult
from proofmesh.chain.deploy import POOLS, ROLES
from proofmesh.errors import ChainError, InputError

MESH = 10**18


def to_wei(amount: float | str | int) -> int:
    """MESH (decimal string or number) to wei, exactly."""
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise InputError(f"{amount!r} is not a number", fix="give an amount like 10 or 0.5") from None
    if value < 0:
        raise InputError(f"amount {amount} is negative", fix="give a positive amount")
    wei = value * MESH
    if wei != wei.to_integral_value():
        raise InputError(f"amount {amount} has more than 18 decimals", fix="round it to 18 decimals")
    return int(wei)


def from_wei(wei: int) -> str:
    """Wei to a MESH decimal string without trailing zeros."""
    whole, frac = divmod(int(wei), MESH)
    return f"{whole}.{frac:018d}".rstrip("0").rstrip(".") if frac else str(whole)


def parse_roles(names: list[str] | str) -> int:
    """Role names (``compute,inference``) to the NodeRegistry bitmask."""
    if isinstance(names, str):
        names = [n for n in names.replace(" ", "").split(",") if n]
    mask = 0
    for n in names:
        if n not in ROLES:
            raise InputError(f"unknown role {n!r}", fix=f"roles are: {', '.join(ROLES)}")
        mask |= ROLES[n]
    if mask == 0:
        raise InputError("no roles given", fix=f"give at least one of: {', '.join(ROLES)}")
    return mask


def role_names(mask: int) -> list[str]:
    return [n for n, bit in ROLES.items() if mask & bit]


class Token:
    """The MESH token."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.c = chain.contract("MeshToken")

    def balance(self, address: str) -> int:
        return self.chain.call(self.c.functions.balanceOf(Web3.to_checksum_address(address)))

    def total_supply(self) -> int:
        return self.chain.call(self.c.functions.totalSupply())

    def cap(self) -> int:
        return self.chain.call(self.c.functions.cap())

    def transfer(self, to: str, amount: int, *, sender: LocalAccount | None = None) -> TxResult:
        sender = sender or self.chain.account
        assert sender is not None
        have = self.balance(sender.address)
        if amount > have:
            raise InputError(f"insufficient MESH balance: {sender.address} has {from_wei(have)}, needs {from_wei(amount)}",
                             fix="transfer less, or fund the account first")
        return self.chain.transact(self.c.functions.transfer(Web3.to_checksum_address(to), amount), sender=sender)

    def approve(self, spender: str, amount: int, *, sender: LocalAccount | None = None) -> TxResult:
        return self.chain.transact(self.c.functions.approve(Web3.to_checksum_address(spender), amount), sender=sender)

    def ensure_allowance(self, spender: str, amount: int, *, sender: LocalAccount | None = None) -> None:
        """Approve ``spender`` for ``amount`` unless the allowance already covers it."""
        sender = sender or self.chain.account
        assert sender is not None
        if self.chain.call(self.c.functions.allowance(sender.address, Web3.to_checksum_address(spender))) < amount:
            self.approve(spender, amount, sender=sender)


@dataclass
class NodeInfo:
    address: str
    endpoint: str
    roles: int
    stake: int
    bonded: int
    unbonding: int
    unbond_at: int
    registered: bool

    @property
    def free_stake(self) -> int:
        return self.stake - self.bonded

    def as_dict(self) -> dict[str, Any]:
        return {"address": self.address, "endpoint": self.endpoint, "roles": role_names(self.roles),
                "stake": from_wei(self.stake), "bonded": from_wei(self.bonded), "free": from_wei(self.free_stake),
                "unbonding": from_wei(self.unbonding), "unbond_at": self.unbond_at, "registered": self.registered}


class Registry:
    """The node registry: register, stake, unstake, withdraw, and look nodes up."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.c = chain.contract("NodeRegistry")
        self.token = Token(chain)

    def info(self, address: str) -> NodeInfo:
        a = Web3.to_checksum_address(address)
        n = self.chain.call(self.c.functions.nodes(a))
        return NodeInfo(a, n[0], n[1], n[2], n[3], n[4], n[5], n[6])

    def nodes(self) -> list[NodeInfo]:
        count = self.chain.call(self.c.functions.node_count())
        return [self.info(self.chain.call(self.c.functions.node_at(i))) for i in range(count)]

    def nodes_with_role(self, role: int, *, active_only: bool = True) -> list[NodeInfo]:
        min_stake = self.chain.call(self.c.functions.min_stake())
        return [n for n in self.nodes()
                if n.roles & role == role and (not active_only or n.stake >= min_stake)]

    def register(self, endpoint: str, roles: int, *, sender: LocalAccount | None = None) -> TxResult:
        sender = sender or self.chain.account
        assert sender is not None
        if self.info(sender.address).registered:
            raise InputError(f"{sender.address} is already registered",
                             fix="use `proofmesh node update` to change its endpoint or roles")
        return self.chain.transact(self.c.functions.register(endpoint, roles), sender=sender)

    def update(self, endpoint: str, roles: int, *, sender: LocalAccount | None = None) -> TxResult:
        return self.chain.transact(self.c.functions.update(endpoint, roles), sender=sender)

    def stake(self, amount: int, *, sender: LocalAccount | None = None) -> TxResult:
        sender = sender or self.chain.account
        assert sender is not None
        if amount <= 0:
            raise InputError("stake amount must be positive", fix="give an amount like 100")
        if not self.info(sender.address).registered:
            raise InputError(f"{sender.address} is not a registered node", fix="run `proofmesh node register` first")
        have = self.token.balance(sender.address)
        if amount > have:
            raise InputError(f"insufficient MESH balance to stake: have {from_wei(have)}, need {from_wei(amount)}",
                             fix="stake less, or fund the account first")
        self.token.ensure_allowance(self.c.address, amount, sender=sender)
        return self.chain.transact(self.c.functions.stake(amount), sender=sender)

    def request_unstake(self, amount: int, *, sender: LocalAccount | None = None) -> TxResult:
        sender = sender or self.chain.account
        assert sender is not None
        info = self.info(sender.address)
        if amount <= 0 or amount > info.free_stake:
            raise InputError(f"cannot unstake {from_wei(amount)}: free stake is {from_wei(info.free_stake)} "
                             f"({from_wei(info.bonded)} is bonded to open claims)",
                             fix="unstake at most the free stake, or wait for claims to settle")
        return self.chain.transact(self.c.functions.request_unstake(amount), sender=sender)

    def withdraw(self, *, sender: LocalAccount | None = None) -> TxResult:
        sender = sender or self.chain.account
        assert sender is not None
        info = self.info(sender.address)
        if info.unbonding == 0:
            raise InputError("nothing is unbonding", fix="request it first with `proofmesh node unstake AMOUNT`")
        now = self.chain.timestamp()
        if now < info.unbond_at:
            raise InputError(f"unbonding not finished: {info.unbond_at - now} s left (until timestamp {info.unbond_at})",
                             fix="wait until the unbonding period has passed")
        return self.chain.transact(self.c.functions.withdraw(), sender=sender)


class EmissionClient:
    """The emission schedule and reward pools."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.c = chain.contract("Emission")

    def distribute(self, *, sender: LocalAccount | None = None) -> TxResult:
        return self.chain.transact(self.c.functions.distribute(), sender=sender)

    def pools(self) -> dict[str, int]:
        return {name: self.chain.call(self.c.functions.pool_balance(i)) for name, i in POOLS.items()}

    def fund_pool(self, pool: int, amount: int, *, sender: LocalAccount | None = None) -> TxResult:
        Token(self.chain).ensure_allowance(self.c.address, amount, sender=sender)
        return self.chain.transact(self.c.functions.fund_pool(pool, amount), sender=sender)


class GovernanceClient:
    """Schedule, list, execute and cancel parameter changes through the timelock."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.c = chain.contract("Governance")

    def min_delay(self) -> int:
        return self.chain.call(self.c.functions.get_minimum_delay())

    def schedule(self, fn: Any, *, salt: bytes = b"\x00" * 32, delay: int | None = None) -> bytes:
        """Schedule contract call ``fn`` (a web3 ContractFunction); returns the operation id."""
        target, data = fn.address, bytes.fromhex(fn._encode_transaction_data()[2:])
        delay = self.min_delay() if delay is None else delay
        self.chain.transact(self.c.functions.schedule(target, 0, data, b"\x00" * 32, salt, delay))
        return self.chain.call(self.c.functions.hash_operation(target, 0, data, b"\x00" * 32, salt))

    def execute(self, fn: Any, *, salt: bytes = b"\x00" * 32) -> TxResult:
        target, data = fn.address, bytes.fromhex(fn._encode_transaction_data()[2:])
        return self.chain.transact(self.c.functions.execute(target, 0, data, b"\x00" * 32, salt))

    def apply_now(self, fn: Any, *, salt: bytes = b"\x00" * 32) -> TxResult:
        """Dev chains only: schedule, move time past the delay, execute."""
        self.schedule(fn, salt=salt)
        self.chain.increase_time(self.min_delay() + 1)
        return self.execute(fn, salt=salt)

    def operations(self) -> list[dict[str, Any]]:
        """Every scheduled operation with its target, call data, ready time and state."""
        names = {Web3.to_checksum_address(a): n for n, a in self.chain.addresses.items()}
        salts = {bytes(e["args"]["id"]): bytes(e["args"]["salt"]) for e in self.chain.events("Governance", "CallSalt")}
        states = {1: "unset", 2: "waiting", 4: "ready", 8: "done"}  # Vyper flag values
        out = []
        for e in self.chain.events("Governance", "CallScheduled"):
            a = e["args"]
            op_id = bytes(a["id"])
            state = self.chain.call(self.c.functions.get_operation_state(op_id))
            out.append({"id": "0x" + op_id.hex(), "target": names.get(a["target"], a["target"]),
                        "target_address": a["target"], "payload": "0x" + bytes(a["payload"]).hex(),
                        "predecessor": "0x" + bytes(a["predecessor"]).hex(),
                        "salt": "0x" + salts.get(op_id, b"\x00" * 32).hex(),
                        "ready_at": self.chain.call(self.c.functions.get_timestamp(op_id)),
                        "state": states.get(state, str(state)), "block": e["blockNumber"]})
        return out

    def execute_id(self, op_id: str) -> TxResult:
        """Execute a scheduled operation by its id (its call data comes from the events)."""
        op = next((o for o in self.operations() if o["id"] == op_id.lower()), None)
        if op is None:
            raise InputError(f"no scheduled operation {op_id}", fix="list them with `proofmesh gov list`")
        if op["state"] != "ready":
            raise InputError(f"operation {op_id} is {op['state']}" + (
                f": executable from timestamp {op['ready_at']} (now {self.chain.timestamp()})"
                if op["state"] == "waiting" else ""), fix="wait for the timelock delay to pass")
        return self.chain.transact(self.c.functions.execute(
            op["target_address"], 0, bytes.fromhex(op["payload"][2:]), bytes.fromhex(op["predecessor"][2:]),
            bytes.fromhex(op["salt"][2:])))

    def cancel(self, op_id: str) -> TxResult:
        return self.chain.transact(self.c.functions.cancel(bytes.fromhex(op_id.removeprefix("0x"))))


def encode_call(chain: Chain, contract: str, function: str, raw_args: list[str]) -> Any:
    """A ContractFunction from CLI strings, converted by the function's ABI types."""
    c = chain.contract(contract)
    candidates = [f for f in c.abi if f.get("type") == "function" and f.get("name") == function
                  and len(f["inputs"]) == len(raw_args)]
    if not candidates:
        known = sorted({f["name"] for f in c.abi if f.get("type") == "function"
                        and f.get("stateMutability") not in ("view", "pure")})
        raise InputError(f"{contract} has no function {function} taking {len(raw_args)} argument(s)",
                         fix=f"state-changing functions: {', '.join(known)}")
    inputs = candidates[0]["inputs"]
    return getattr(c.functions, function)(*[_abi_arg(i["type"], v, i["name"]) for i, v in zip(inputs, raw_args)])


def _abi_arg(typ: str, raw: str, name: str) -> Any:
    import json as _json

    try:
        if typ.endswith("]"):
            return _json.loads(raw)
        if typ.startswith(("uint", "int")):
            return int(raw, 0)
        if typ == "address":
            return Web3.to_checksum_address(raw)
        if typ == "bool":
            if raw.lower() not in ("true", "false"):
                raise ValueError(raw)
            return raw.lower() == "true"
        if typ.startswith("bytes"):
            return bytes.fromhex(raw.removeprefix("0x"))
        return raw
    except (ValueError, TypeError) as exc:
        raise InputError(f"argument {name} must be {typ}, got {raw!r}", fix=f"give a valid {typ}") from exc


def fund(chain: Chain, to: str, mesh: int = 0, eth: int = 0, *, sender: LocalAccount | None = None) -> None:
    """Send MESH and/or gas ETH from ``sender`` (default: the chain's account)."""
    if eth:
        chain.send_eth(to, eth, sender=sender)
    if mesh:
        Token(chain).transfer(to, mesh, sender=sender)


def require_deployed(chain: Chain) -> None:
    if "MeshToken" not in chain.addresses:
        raise ChainError(f"proofmesh is not deployed on chain {chain.chain_id} for this home",
                         fix="run `proofmesh init` (embedded) or `proofmesh chain deploy`")
