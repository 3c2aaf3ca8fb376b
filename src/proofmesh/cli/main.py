"""The ``proofmesh`` command: global options, core commands, and every domain's group.

Core groups live here (init, account, chain, node); each capability adds its own
group from ``proofmesh/<domain>/cli.py`` through ``_DOMAIN_GROUPS``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from proofmesh.cli.context import (
    AccountOpt, JsonOpt, console, ctx_account, ctx_chain, ctx_home, output, password_for, print_error, reset_state,
)
from proofmesh.errors import InputError, ProofmeshError
from proofmesh.plugins import import_optional


class _Group(TyperGroup):
    """Turns any ProofmeshError raised by a command into one clear line + exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ProofmeshError as exc:
            print_error(exc)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(cls=_Group, help="proofmesh: an open, verifiable AI network on an EVM chain.",
                  no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode="rich")
account_app = typer.Typer(help="Keys: create, list, balances, transfers.", no_args_is_help=True)
chain_app = typer.Typer(help="The chain: info, a local anvil, deployment.", no_args_is_help=True)
node_app = typer.Typer(help="This node on chain: register, stake, unstake, withdraw.", no_args_is_help=True)
app.add_typer(account_app, name="account")
app.add_typer(chain_app, name="chain")
gov_app = typer.Typer(help="Governance: parameter changes through the timelock.", no_args_is_help=True)
app.add_typer(node_app, name="node")
app.add_typer(gov_app, name="gov")

# (module, group name): each module defines ``app``; missing modules are skipped so a
# capability that is not built yet does not break the CLI.
_DOMAIN_GROUPS = [
    ("proofmesh.store.cli", "blob"),
    ("proofmesh.data.cli", "data"),
    ("proofmesh.models.cli", "model"),
    ("proofmesh.compute.cli", "compute"),
    ("proofmesh.compute.worker_cli", "worker"),
    ("proofmesh.inference.cli", "inference"),
    ("proofmesh.edge.cli", "edge"),
    ("proofmesh.agents.cli", "agents"),
    ("proofmesh.node.cli", "devnet"),
]
# Top-level commands a domain contributes (module, function name).
_DOMAIN_COMMANDS = [
    ("proofmesh.inference.cli", "serve"),
    ("proofmesh.inference.cli", "infer"),
]


@app.callback()
def _root(
    home: Annotated[Path | None, typer.Option("--home", envvar="PROOFMESH_HOME",
                                               help="State directory (keys, chain, store, config). Default ~/.proofmesh.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="JSON output for every command.")] = False,
    backend: Annotated[str | None, typer.Option("--backend", help="embedded | rpc (overrides config).")] = None,
    rpc_url: Annotated[str | None, typer.Option("--rpc-url", help="JSON-RPC URL (implies --backend rpc).")] = None,
) -> None:
    reset_state(home_path=home, json=json_, backend=backend, rpc_url=rpc_url)


# ============================================================================ init

@app.command()
def init(
    account: Annotated[str, typer.Option(help="Name of the key to create.")] = "default",
    chain_id: Annotated[int, typer.Option(help="Chain id of a new embedded chain.")] = 31337,
    deploy: Annotated[bool, typer.Option(help="Deploy the contracts if this chain has none.")] = True,
    json_: JsonOpt = False,
) -> None:
    """Create the home (config, key, chain) and deploy the contracts on a dev chain."""
    from proofmesh.chain.bootstrap import bootstrap_home

    home = ctx_home(must_exist=False)
    if not home.initialised:
        home.init(chain_id=chain_id, default_account=account)
    summary = bootstrap_home(home, account, password_for(account, confirm=True), deploy=deploy,
                             progress=lambda name, addr: None if json_ else console.print(f"  deployed {name} at {addr}"))
    output(summary, json_, title="proofmesh home")


# ========================================================================= account

@account_app.command("new")
def account_new(name: Annotated[str, typer.Argument(help="Account name.")] = "default", json_: JsonOpt = False) -> None:
    """Create a new key in an encrypted keystore file."""
    from proofmesh.crypto.keys import Keystore

    home = ctx_home()
    acct = Keystore(home).create(name, password_for(name, confirm=True))
    output({"name": name, "address": acct.address}, json_)


@account_app.command("import")
def account_import(name: str, private_key: Annotated[str, typer.Option("--key", prompt=True, hide_input=True)],
                   json_: JsonOpt = False) -> None:
    """Import an existing private key."""
    from proofmesh.crypto.keys import Keystore

    acct = Keystore(ctx_home()).import_key(name, private_key, password_for(name, confirm=True))
    output({"name": name, "address": acct.address}, json_)


@account_app.command("list")
def account_list(json_: JsonOpt = False) -> None:
    """List the home's accounts."""
    from proofmesh.crypto.keys import Keystore

    home = ctx_home()
    rows = [{"name": n, "address": a, "default": n == home.settings.default_account} for n, a in Keystore(home).list()]
    output(rows, json_, title="accounts")


@account_app.command("balance")
def account_balance(who: Annotated[str | None, typer.Argument(help="Account name or 0x address.")] = None,
                    json_: JsonOpt = False) -> None:
    """MESH and ETH (gas) balance of an account."""
    from proofmesh.chain.core import Registry, Token, from_wei

    address = _resolve_address(who)
    chain = ctx_chain(signer=False)
    info = Registry(chain).info(address)
    output({"address": address, "mesh": from_wei(Token(chain).balance(address)),
            "staked": from_wei(info.stake), "eth": from_wei(chain.balance(address))}, json_)


@account_app.command("transfer")
def account_transfer(to: Annotated[str, typer.Argument(help="Recipient: account name or 0x address.")],
                     amount: Annotated[str, typer.Argument(help="MESH amount, e.g. 12.5")],
                     account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Transfer MESH."""
    from proofmesh.chain.core import Token, from_wei, to_wei

    wei = to_wei(amount)
    recipient = _resolve_address(to)
    chain = ctx_chain(account)
    r = Token(chain).transfer(recipient, wei)
    output({"from": chain.account.address, "to": recipient, "amount": from_wei(wei), "tx": r.tx_hash,
            "gas": r.gas_used}, json_)


def _resolve_address(who: str | None) -> str:
    from web3 import Web3

    from proofmesh.crypto.keys import Keystore

    home = ctx_home()
    if who is None:
        who = home.settings.default_account
    if who.startswith("0x"):
        if not Web3.is_address(who):
            raise InputError(f"{who!r} is not a valid address", fix="give a 0x-prefixed 20-byte hex address")
        return Web3.to_checksum_address(who)
    return Keystore(home).address_of(who)


# =========================================================================== chain

@chain_app.command("info")
def chain_info(json_: JsonOpt = False) -> None:
    """Backend, chain id, head block, token supply and the address book."""
    from proofmesh.chain.client import Chain
    from proofmesh.chain.core import EmissionClient, Token, from_wei

    home = ctx_home()
    chain = Chain.connect(home)
    data: dict[str, Any] = {"backend": chain.backend, "url": chain.rpc_url or f"embedded:{home.chain_dir}",
                            "chain_id": chain.chain_id, "block": chain.block_number(), "timestamp": chain.timestamp()}
    if "MeshToken" in chain.addresses:
        t = Token(chain)
        data["supply"] = from_wei(t.total_supply())
        data["cap"] = from_wei(t.cap())
        data["pools"] = {k: from_wei(v) for k, v in EmissionClient(chain).pools().items()}
    data["contracts"] = chain.addresses
    output(data, json_, title="chain")


@chain_app.command("up")
def chain_up(port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8545,
             use: Annotated[bool, typer.Option(help="Point this home at the new node.")] = True,
             json_: JsonOpt = False) -> None:
    """Start a local anvil whose state lives in the home."""
    from proofmesh.chain.anvil import anvil_up

    home = ctx_home()
    proc = anvil_up(home.chain_dir, port=port, chain_id=home.settings.chain_id)
    if use:
        home.init(backend="rpc", rpc_url=proc.url)
    output({"url": proc.url, "pid": proc.pid, "state": str(home.chain_dir / "anvil-state.json"),
            "next": "proofmesh chain deploy"}, json_)


@chain_app.command("down")
def chain_down(json_: JsonOpt = False) -> None:
    """Stop the home's anvil (its state is saved in the home)."""
    from proofmesh.chain.anvil import anvil_down

    home = ctx_home()
    proc = anvil_down(home.chain_dir)
    if proc is None:
        raise InputError("no anvil is running for this home", fix="start one with `proofmesh chain up`")
    output({"stopped": proc.url, "pid": proc.pid}, json_)


@chain_app.command("deploy")
def chain_deploy(account: AccountOpt = None, force: Annotated[bool, typer.Option(help="Deploy even if deployed.")] = False,
                 json_: JsonOpt = False) -> None:
    """Deploy every contract with this account as deployer and timelock admin."""
    from proofmesh.chain.bootstrap import fund_from_dev, is_dev_chain
    from proofmesh.chain.client import Chain
    from proofmesh.chain.deploy import deploy_all

    home = ctx_home()
    acct = ctx_account(account)
    chain = Chain.connect(home, acct)
    if chain.addresses and not force:
        raise InputError(f"contracts are already deployed on chain {chain.chain_id} for this home",
                         fix="pass --force to deploy a new set")
    if is_dev_chain(chain):
        fund_from_dev(chain, acct.address)
    book = deploy_all(chain, progress=lambda n, a: None if json_ else console.print(f"  deployed {n} at {a}"))
    output(book, json_, title=f"address book (chain {chain.chain_id})")


# ============================================================================ node

@node_app.command("register")
def node_register(endpoint: Annotated[str, typer.Option(help="Base URL of this node's API.")] = "",
                  roles: Annotated[str, typer.Option(help="Comma-separated: data,compute,inference,gateway,tools,evaluator")] = "compute",
                  account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Register this account as a node with an endpoint and roles."""
    from proofmesh.chain.core import Registry, parse_roles

    mask = parse_roles(roles)
    chain = ctx_chain(account)
    r = Registry(chain).register(endpoint, mask)
    output({"node": chain.account.address, "endpoint": endpoint, "roles": roles, "tx": r.tx_hash}, json_)


@node_app.command("update")
def node_update(endpoint: Annotated[str, typer.Option()] = "", roles: Annotated[str, typer.Option()] = "compute",
                account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Change this node's endpoint and roles."""
    from proofmesh.chain.core import Registry, parse_roles

    chain = ctx_chain(account)
    r = Registry(chain).update(endpoint, parse_roles(roles))
    output({"node": chain.account.address, "endpoint": endpoint, "roles": roles, "tx": r.tx_hash}, json_)


@node_app.command("stake")
def node_stake(amount: Annotated[str, typer.Argument(help="MESH to stake.")], account: AccountOpt = None,
               json_: JsonOpt = False) -> None:
    """Stake MESH on this node."""
    from proofmesh.chain.core import Registry, to_wei

    wei = to_wei(amount)
    chain = ctx_chain(account)
    reg = Registry(chain)
    reg.stake(wei)
    output(reg.info(chain.account.address).as_dict(), json_, title="node")


@node_app.command("unstake")
def node_unstake(amount: Annotated[str, typer.Argument(help="MESH to unbond.")], account: AccountOpt = None,
                 json_: JsonOpt = False) -> None:
    """Start unbonding free stake (withdraw after the unbonding period)."""
    from proofmesh.chain.core import Registry, to_wei

    wei = to_wei(amount)
    chain = ctx_chain(account)
    reg = Registry(chain)
    reg.request_unstake(wei)
    output(reg.info(chain.account.address).as_dict(), json_, title="node")


@node_app.command("withdraw")
def node_withdraw(account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Withdraw stake whose unbonding period has passed."""
    from proofmesh.chain.core import Registry

    chain = ctx_chain(account)
    reg = Registry(chain)
    reg.withdraw()
    output(reg.info(chain.account.address).as_dict(), json_, title="node")


@node_app.command("info")
def node_info(who: Annotated[str | None, typer.Argument(help="Account name or 0x address.")] = None,
              json_: JsonOpt = False) -> None:
    """A node's endpoint, roles, stake, bonds and unbonding."""
    from proofmesh.chain.core import Registry

    address = _resolve_address(who)
    output(Registry(ctx_chain(signer=False)).info(address).as_dict(), json_, title="node")


@node_app.command("list")
def node_list(json_: JsonOpt = False) -> None:
    """Every registered node."""
    from proofmesh.chain.core import Registry

    rows = [n.as_dict() for n in Registry(ctx_chain(signer=False)).nodes()]
    output(rows, json_, title="nodes", columns=["address", "endpoint", "roles", "stake", "bonded", "unbonding"])


# ============================================================================= gov

@gov_app.command("propose")
def gov_propose(contract: Annotated[str, typer.Argument(help="Contract name, e.g. NodeRegistry")],
                function: Annotated[str, typer.Argument(help="Function, e.g. set_min_stake")],
                args: Annotated[list[str] | None, typer.Argument(help="Arguments (ints, 0x addresses, true/false, JSON arrays)")] = None,
                delay: Annotated[int | None, typer.Option(help="Seconds (default and minimum: the timelock delay).")] = None,
                account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Schedule a call on a governed contract; executable after the timelock delay."""
    import os as _os

    from proofmesh.chain.core import GovernanceClient, encode_call

    chain = ctx_chain(account)
    fn = encode_call(chain, contract, function, args or [])
    gov = GovernanceClient(chain)
    op_id = gov.schedule(fn, salt=_os.urandom(32), delay=delay)
    op = next(o for o in gov.operations() if o["id"] == "0x" + bytes(op_id).hex())
    output(op, json_, title="scheduled")


@gov_app.command("list")
def gov_list(json_: JsonOpt = False) -> None:
    """Scheduled operations and their state (waiting, ready, done)."""
    from proofmesh.chain.core import GovernanceClient

    ops = GovernanceClient(ctx_chain(signer=False)).operations()
    output(ops, json_, title="governance operations", columns=["id", "target", "state", "ready_at", "payload"])


@gov_app.command("execute")
def gov_execute(op_id: Annotated[str, typer.Argument(help="Operation id from `gov list`.")],
                account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Execute a ready operation."""
    from proofmesh.chain.core import GovernanceClient

    r = GovernanceClient(ctx_chain(account)).execute_id(op_id)
    output({"executed": op_id, "tx": r.tx_hash, "gas": r.gas_used}, json_)


@gov_app.command("cancel")
def gov_cancel(op_id: str, account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Cancel a pending operation (proposers only)."""
    from proofmesh.chain.core import GovernanceClient

    r = GovernanceClient(ctx_chain(account)).cancel(op_id)
    output({"cancelled": op_id, "tx": r.tx_hash}, json_)


# ============================================================================ demo

@app.command()
def demo(
    devnet: Annotated[bool, typer.Option("--devnet", help="Run on a local anvil devnet instead of the embedded chain.")] = False,
    keep: Annotated[bool, typer.Option(help="Keep the demo home (printed at the end).")] = True,
    only: Annotated[str | None, typer.Option(help="Comma-separated step names to run (default: all).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Run the whole proofmesh story on a fresh home, step by step."""
    from proofmesh.cli.demo import run_demo

    run_demo(devnet=devnet, keep=keep, only=only.split(",") if only else None, json_out=json_)


def _add_domains() -> None:
    for module_name, group in _DOMAIN_GROUPS:
        module = import_optional(module_name)
        sub = getattr(module, "app", None)
        if sub is not None:
            app.add_typer(sub, name=group)
    for module_name, fn_name in _DOMAIN_COMMANDS:
        module = import_optional(module_name)
        fn = getattr(module, fn_name, None)
        if fn is not None:
            app.command(fn_name)(fn)


_add_domains()
importlib.import_module("proofmesh.node.cli").register(node_app)  # node start/status/stop


def main() -> None:
    app()


if __name__ == "__main__":
    main()
