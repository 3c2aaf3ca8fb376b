from proofmesh.chain.core import Token, Registry


def test_deployed(any_chain, accounts):
    t = Token(any_chain)
    assert t.balance(accounts[1].address) == 1_000_000 * 10**18
    assert any_chain.call(t.c.functions.minter()) == any_chain.addresses["Emission"]
    assert any_chain.call(t.c.functions.owner()) == any_chain.addresses["Governance"]
    assert Registry(any_chain).nodes() == []
