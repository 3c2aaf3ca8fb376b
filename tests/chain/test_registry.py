"""NodeRegistry, Emission and Governance on both backends: staking, bonds, slashing, the timelock."""

from __future__ import annotations

import pytest

from proofmesh.chain.core import MESH, EmissionClient, GovernanceClient, Registry, Token
from proofmesh.errors import ContractRevert, InputError


def authorise_domain(chain, address):
    """Governance authorises ``address`` to bond/slash (an EOA stands in for a domain contract)."""
    R = chain.contract("NodeRegistry")
    GovernanceClient(chain).apply_now(R.functions.set_domain(address, True))


def staked_node(chain, acct, amount=1_000 * MESH, roles=2):
    reg = Registry(chain)
    reg.register("http://127.0.0.1:9999", roles, sender=acct)
    reg.stake(amount, sender=acct)
    return reg


def test_register_stake_unstake_withdraw(any_chain, accounts):
    node = accounts[1]
    reg = staked_node(any_chain, node)
    t = Token(any_chain)
    info = reg.info(node.address)
    assert (info.stake, info.bonded, info.roles, info.registered) == (1_000 * MESH, 0, 2, True)
    assert any_chain.call(reg.c.functions.is_active(node.address))
    with pytest.raises(ContractRevert, match="already registered"):
        any_chain.transact(reg.c.functions.register("x", 1), sender=node)
    with pytest.raises(ContractRevert, match="invalid roles"):
        any_chain.transact(reg.c.functions.update("x", 64), sender=node)

    reg.request_unstake(400 * MESH, sender=node)
    with pytest.raises(ContractRevert, match="unbonding not finished"):
        any_chain.transact(reg.c.functions.withdraw(), sender=node)
    with pytest.raises(InputError, match="unbonding not finished"):
        reg.withdraw(sender=node)
    before = t.balance(node.address)
    any_chain.increase_time(any_chain.call(reg.c.functions.unbonding_period()))
    reg.withdraw(sender=node)
    assert t.balance(node.address) == before + 400 * MESH
    assert reg.info(node.address).stake == 600 * MESH
    with pytest.raises(ContractRevert, match="nothing unbonding"):
        any_chain.transact(reg.c.functions.withdraw(), sender=node)


def test_bonds_and_slashing(any_chain, accounts):
    node, domain, challenger, outsider = accounts[1], accounts[9], accounts[2], accounts[3]
    reg = staked_node(any_chain, node)
    R = reg.c
    t = Token(any_chain)
    with pytest.raises(ContractRevert, match="not a domain"):
        any_chain.transact(R.functions.lock_bond(node.address, MESH), sender=outsider)
    authorise_domain(any_chain, domain.address)

    any_chain.transact(R.functions.lock_bond(node.address, 300 * MESH), sender=domain)
    assert reg.info(node.address).bonded == 300 * MESH
    # a bond cannot exceed free stake, and bonded stake cannot be unstaked
    with pytest.raises(ContractRevert, match="insufficient free stake"):
        any_chain.transact(R.functions.lock_bond(node.address, 701 * MESH), sender=domain)
    with pytest.raises(ContractRevert, match="exceeds free stake"):
        any_chain.transact(R.functions.request_unstake(701 * MESH), sender=node)
    # overflow attempts revert instead of wrapping
    with pytest.raises(ContractRevert):
        any_chain.transact(R.functions.lock_bond(node.address, 2**256 - 1), sender=domain)
    # a slash never exceeds what this domain bonded
    with pytest.raises(ContractRevert, match="slash exceeds bond"):
        any_chain.transact(R.functions.slash(node.address, 301 * MESH, challenger.address), sender=domain)

    supply = t.total_supply()
    paid_before = t.balance(challenger.address)
    any_chain.transact(R.functions.slash(node.address, 100 * MESH, challenger.address), sender=domain)
    burn_bps = any_chain.call(R.functions.slash_burn_bps())
    burned = 100 * MESH * burn_bps // 10_000
    assert t.total_supply() == supply - burned
    assert t.balance(challenger.address) == paid_before + 100 * MESH - burned
    info = reg.info(node.address)
    assert (info.stake, info.bonded) == (900 * MESH, 200 * MESH)
    # no challenger: the rest goes to the treasury (Governance)
    treasury = any_chain.addresses["Governance"]
    tb = t.balance(treasury)
    any_chain.transact(R.functions.slash(node.address, 10 * MESH, "0x" + "00" * 20), sender=domain)
    assert t.balance(treasury) == tb + 10 * MESH - 10 * MESH * burn_bps // 10_000
    # release returns the rest; a second release of the same bond fails (no double claim)
    any_chain.transact(R.functions.release_bond(node.address, 190 * MESH), sender=domain)
    with pytest.raises(ContractRevert, match="release exceeds bond"):
        any_chain.transact(R.functions.release_bond(node.address, 1), sender=domain)
    # books: the registry holds exactly the stakes
    assert t.balance(R.address) == reg.info(node.address).stake


def test_governance_timelock(any_chain, accounts):
    R = any_chain.contract("NodeRegistry")
    gov = GovernanceClient(any_chain)
    with pytest.raises(ContractRevert, match="caller is not the owner"):
        any_chain.transact(R.functions.set_min_stake(5 * MESH))
    fn = R.functions.set_min_stake(5 * MESH)
    gov.schedule(fn)
    with pytest.raises(ContractRevert):  # announced but not yet executable
        gov.execute(fn)
    any_chain.increase_time(gov.min_delay() + 1)
    gov.execute(fn)
    assert any_chain.call(R.functions.min_stake()) == 5 * MESH
    # a stranger cannot schedule
    with pytest.raises(ContractRevert):
        GovernanceClient(any_chain.with_account(accounts[5])).schedule(R.functions.set_min_stake(0))
    # unbonding must always outlast challenge windows
    window = any_chain.call(R.functions.max_challenge_window())
    with pytest.raises(ContractRevert):
        gov.apply_now(R.functions.set_unbonding_period(window), salt=b"\x01" * 32)


def test_emission_decays_and_pays_only_authorised(any_chain, accounts):
    em = EmissionClient(any_chain)
    E = em.c
    start, length = any_chain.call(E.functions.start_time()), any_chain.call(E.functions.epoch_length())
    e0 = any_chain.call(E.functions.current_emission())
    any_chain.advance_to(start + 2 * length)
    any_chain.transact(E.functions.distribute(), sender=accounts[4])  # anyone may trigger it
    decay = any_chain.call(E.functions.decay_bps())
    e1 = e0 * (10_000 - decay) // 10_000
    assert any_chain.call(E.functions.total_emitted()) == e0 + e1
    assert sum(em.pools().values()) == e0 + e1
    assert Token(any_chain).balance(E.address) == e0 + e1
    with pytest.raises(ContractRevert, match="may not pay"):
        any_chain.transact(E.functions.pay_reward(0, accounts[4].address, 1), sender=accounts[4])
    # nothing more to mint within the same epoch
    any_chain.transact(E.functions.distribute())
    assert any_chain.call(E.functions.total_emitted()) == e0 + e1


def test_emission_never_crosses_cap(chain, accounts):
    # A tiny deployment whose cap leaves room for 1.5 epochs.
    me = accounts[0]
    cap = 1_000 * MESH
    token = chain.deploy("MeshToken", cap, me.address, 850 * MESH)
    emission = chain.deploy("Emission", token, 100, 100 * MESH, 0, [1, 1, 1, 1, 1, 1])
    T, E = chain.contract("MeshToken", token), chain.contract("Emission", emission)
    chain.transact(T.functions.set_minter(emission))
    chain.increase_time(100 * 5)
    chain.transact(E.functions.distribute())
    assert chain.call(T.functions.totalSupply()) == cap
    assert chain.call(E.functions.total_emitted()) == 150 * MESH
    chain.increase_time(100)
    assert chain.call(E.functions.distribute()) == 0


def test_active_list_holds_only_staked_nodes(any_chain, accounts):
    """Draws enumerate `active_at`: unstaked registrations (free sybils) never enter it."""
    R = any_chain.contract("NodeRegistry")
    reg = Registry(any_chain)
    min_stake = any_chain.call(R.functions.min_stake())
    for a in accounts[1:5]:
        reg.register("", 2, sender=a)
    reg.stake(min_stake, sender=accounts[1])
    reg.stake(min_stake - 1, sender=accounts[2])       # below the minimum: not active
    reg.stake(min_stake * 2, sender=accounts[3])

    def active():
        return {any_chain.call(R.functions.active_at(i)) for i in range(any_chain.call(R.functions.active_count()))}

    assert active() == {accounts[1].address, accounts[3].address}
    reg.request_unstake(min_stake, sender=accounts[1])  # drops below: swapped out
    assert active() == {accounts[3].address}
    reg.stake(1, sender=accounts[2])
    assert active() == {accounts[3].address, accounts[2].address}
