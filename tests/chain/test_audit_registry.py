"""Regression tests of the NodeRegistry audit findings (docs/security-audit.md):
L1 (a revoked domain stranded the bonds it held) and I2 (a zero burn share made
self-challenging free). Each performs the attack / the stranding and shows it now fails."""

from __future__ import annotations

import pytest

from proofmesh.chain.core import MESH, GovernanceClient, Registry, Token
from proofmesh.errors import ProofmeshError

ZERO = "0x" + "00" * 20


def _bonded_node(chain, node, domain, amount=300 * MESH):
    R = chain.contract("NodeRegistry")
    GovernanceClient(chain).apply_now(R.functions.set_domain(domain.address, True))
    reg = Registry(chain)
    reg.register("http://127.0.0.1:9999", 2, sender=node)
    reg.stake(1_000 * MESH, sender=node)
    chain.transact(R.functions.lock_bond(node.address, amount), sender=domain)
    return R, reg


def test_l1_revoked_domain_can_release_and_governance_can_sweep(chain, accounts) -> None:
    node, domain, node2 = accounts[1], accounts[2], accounts[3]
    R, reg = _bonded_node(chain, node, domain)
    reg.register("http://127.0.0.1:9998", 2, sender=node2)
    reg.stake(1_000 * MESH, sender=node2)
    chain.transact(R.functions.lock_bond(node2.address, 200 * MESH), sender=domain)
    gov = GovernanceClient(chain)
    with pytest.raises(ProofmeshError):      # a live domain's bonds cannot be swept
        gov.apply_now(R.functions.release_stranded_bond(domain.address, node.address), salt=b"\x01" * 32)
    gov.apply_now(R.functions.set_domain(domain.address, False))
    # revoked: it can no longer lock or slash...
    with pytest.raises(ProofmeshError, match="not a domain contract"):
        chain.transact(R.functions.lock_bond(node.address, 1), sender=domain)
    with pytest.raises(ProofmeshError, match="not a domain contract"):
        chain.transact(R.functions.slash(node.address, 1, ZERO), sender=domain)
    # ...but what it holds is not stranded: it can still release (only what it bonded)
    chain.transact(R.functions.release_bond(node.address, 300 * MESH), sender=domain)
    assert reg.info(node.address).bonded == 0 and chain.call(R.functions.free_stake(node.address)) == 1_000 * MESH
    with pytest.raises(ProofmeshError, match="release exceeds bond"):
        chain.transact(R.functions.release_bond(node.address, 1), sender=domain)
    with pytest.raises(ProofmeshError, match="release exceeds bond"):   # a stranger holds no bond
        chain.transact(R.functions.release_bond(node2.address, 1), sender=accounts[4])
    # a revoked contract that never calls release again: governance sweeps the bond
    gov.apply_now(R.functions.release_stranded_bond(domain.address, node2.address), salt=b"\x02" * 32)
    assert reg.info(node2.address).bonded == 0
    assert chain.call(R.functions.bonded_by(domain.address, node2.address)) == 0
    ev = chain.events("NodeRegistry", "BondReleased", argument_filters={"node": node2.address})
    assert ev[-1]["args"]["amount"] == 200 * MESH and ev[-1]["args"]["domain"] == domain.address
    with pytest.raises(ProofmeshError, match="Ownable|owner"):        # only governance sweeps
        chain.transact(R.functions.release_stranded_bond(domain.address, node2.address), sender=node2)


def test_i2_burn_share_has_a_floor_so_self_challenge_is_never_free(chain, accounts) -> None:
    node, domain = accounts[1], accounts[2]
    R, reg = _bonded_node(chain, node, domain)
    floor = chain.call(R.functions.MIN_SLASH_BURN_BPS())
    assert floor == 1_000
    gov = GovernanceClient(chain)
    for i, bps in enumerate((0, floor - 1)):
        with pytest.raises(ProofmeshError):
            gov.apply_now(R.functions.set_slash_burn_bps(bps), salt=bytes([10 + i]) * 32)
    assert chain.call(R.functions.slash_burn_bps()) >= floor
    with pytest.raises(ProofmeshError, match="burn share below 10%"):
        chain.deploy("NodeRegistry", chain.addresses["MeshToken"], chain.addresses["Governance"], 10, 5, 0, 0)
    gov.apply_now(R.functions.set_slash_burn_bps(floor), salt=b"\x0c" * 32)
    # the node challenges its own bond (challenger = itself): it loses at least the floor
    t = Token(chain)
    before = t.balance(node.address) + reg.info(node.address).stake
    chain.transact(R.functions.slash(node.address, 300 * MESH, node.address), sender=domain)
    after = t.balance(node.address) + reg.info(node.address).stake
    assert before - after == 300 * MESH * floor // 10_000 > 0
