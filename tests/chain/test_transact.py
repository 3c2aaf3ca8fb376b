"""Chain.transact when the state changes between gas estimation and inclusion."""

from __future__ import annotations

from proofmesh.chain.core import MESH


class _StaleEstimate:
    """A contract call whose first gas estimate was made on an older state that took a
    cheaper path (what an attester sees when another attestation completes the quorum
    first): the estimate is far too low once; later estimates are the real ones."""

    def __init__(self, fn) -> None:
        self._fn = fn
        self.estimates = 0

    def estimate_gas(self, *args, **kw):
        self.estimates += 1
        return 4_000 if self.estimates == 1 else self._fn.estimate_gas(*args, **kw)

    def __getattr__(self, name):
        return getattr(self._fn, name)


def test_out_of_gas_on_a_stale_estimate_is_estimated_again_and_sent_once_more(chain, accounts):
    token = chain.contract("MeshToken")
    to = accounts[9].address
    before = chain.call(token.functions.balanceOf(to))
    fn = _StaleEstimate(token.functions.transfer(to, 3 * MESH))
    res = chain.transact(fn, sender=accounts[1])
    assert fn.estimates == 2 and res.status == 1
    assert chain.call(token.functions.balanceOf(to)) == before + 3 * MESH       # sent once, took effect once


def test_an_explicit_gas_limit_is_not_retried(chain, accounts):
    import pytest

    from proofmesh.errors import ContractRevert

    token = chain.contract("MeshToken")
    to = accounts[9].address
    before = chain.call(token.functions.balanceOf(to))
    with pytest.raises(ContractRevert):
        chain.transact(token.functions.transfer(to, MESH), sender=accounts[1], gas=25_000)
    assert chain.call(token.functions.balanceOf(to)) == before
