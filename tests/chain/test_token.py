"""MeshToken: cap, single minter, permit (EIP-2612), EIP-3009 authorizations and their attacks."""

from __future__ import annotations

import os

import pytest
from eth_account import Account

from proofmesh.chain.core import MESH, Token
from proofmesh.crypto.eip712 import Domain, sign_typed
from proofmesh.errors import ContractRevert

TWA_TYPES = {"TransferWithAuthorization": [
    {"name": "from", "type": "address"}, {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"}, {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"}, {"name": "nonce", "type": "bytes32"}]}
PERMIT_TYPES = {"Permit": [
    {"name": "owner", "type": "address"}, {"name": "spender", "type": "address"},
    {"name": "value", "type": "uint256"}, {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"}]}


def token_domain(chain, *, chain_id=None, contract=None) -> Domain:
    return Domain(name="MeshToken", version="1", chain_id=chain_id or chain.chain_id,
                  verifying_contract=contract or chain.addresses["MeshToken"])


def authorization(chain, signer, to, value, *, nonce=None, valid_after=0, valid_before=None, domain=None):
    nonce = nonce or os.urandom(32)
    valid_before = valid_before or chain.timestamp() + 3600
    msg = {"from": signer.address, "to": to, "value": value, "validAfter": valid_after,
           "validBefore": valid_before, "nonce": nonce}
    sig = sign_typed(signer, domain or token_domain(chain), "TransferWithAuthorization", TWA_TYPES, msg)
    return (signer.address, to, value, valid_after, valid_before, nonce, sig[64], sig[:32], sig[32:64])


def test_cap_and_minter(any_chain, accounts):
    t = Token(any_chain)
    assert t.cap() == 1_000_000_000 * MESH
    with pytest.raises(ContractRevert, match="caller is not the minter"):
        any_chain.transact(t.c.functions.mint(accounts[1].address, 1))
    with pytest.raises(ContractRevert, match="caller is not the owner"):
        any_chain.transact(t.c.functions.set_minter(accounts[0].address))  # owner is Governance now


def test_transfer_with_authorization_and_replay(any_chain, accounts):
    t = Token(any_chain)
    payer, payee, relayer = accounts[1], accounts[2], accounts[3]
    args = authorization(any_chain, payer, payee.address, 5 * MESH)
    before = t.balance(payee.address)
    any_chain.transact(t.c.functions.transferWithAuthorization(*args), sender=relayer)
    assert t.balance(payee.address) == before + 5 * MESH
    assert any_chain.call(t.c.functions.authorizationState(payer.address, args[5]))
    with pytest.raises(ContractRevert, match="authorization used or canceled"):
        any_chain.transact(t.c.functions.transferWithAuthorization(*args), sender=relayer)


@pytest.mark.parametrize("attack", ["other_chain_id", "other_contract", "forged_signer", "expired",
                                    "not_yet_valid", "tampered_value"])
def test_authorization_attacks_fail(any_chain, accounts, attack):
    t = Token(any_chain)
    payer, payee = accounts[1], accounts[2]
    now = any_chain.timestamp()
    kwargs: dict = {}
    if attack == "other_chain_id":
        kwargs["domain"] = token_domain(any_chain, chain_id=1)
    elif attack == "other_contract":
        kwargs["domain"] = token_domain(any_chain, contract=any_chain.addresses["NodeRegistry"])
    elif attack == "expired":
        kwargs["valid_before"] = now - 1
    elif attack == "not_yet_valid":
        kwargs["valid_after"] = now + 3600
    signer = Account.create() if attack == "forged_signer" else payer
    args = list(authorization(any_chain, signer, payee.address, 5 * MESH, **kwargs))
    if attack == "forged_signer":
        args[0] = payer.address  # claims to be the payer, signed by someone else
    if attack == "tampered_value":
        args[2] = 50 * MESH
    balance = t.balance(payer.address)
    with pytest.raises(ContractRevert):
        any_chain.transact(t.c.functions.transferWithAuthorization(*args), sender=accounts[3])
    assert t.balance(payer.address) == balance


def test_receive_with_authorization_only_payee(chain, accounts):
    t = Token(chain)
    payer, payee = accounts[1], accounts[2]
    nonce = os.urandom(32)
    msg = {"from": payer.address, "to": payee.address, "value": MESH, "validAfter": 0,
           "validBefore": chain.timestamp() + 600, "nonce": nonce}
    types = {"ReceiveWithAuthorization": TWA_TYPES["TransferWithAuthorization"]}
    sig = sign_typed(payer, token_domain(chain), "ReceiveWithAuthorization", types, msg)
    args = (payer.address, payee.address, MESH, 0, msg["validBefore"], nonce, sig[64], sig[:32], sig[32:64])
    with pytest.raises(ContractRevert, match="caller must be the payee"):
        chain.transact(t.c.functions.receiveWithAuthorization(*args), sender=accounts[3])
    chain.transact(t.c.functions.receiveWithAuthorization(*args), sender=payee)


def test_cancel_authorization(chain, accounts):
    t = Token(chain)
    payer = accounts[1]
    args = authorization(chain, payer, accounts[2].address, MESH)
    cancel = sign_typed(payer, token_domain(chain), "CancelAuthorization",
                        {"CancelAuthorization": [{"name": "authorizer", "type": "address"},
                                                 {"name": "nonce", "type": "bytes32"}]},
                        {"authorizer": payer.address, "nonce": args[5]})
    chain.transact(t.c.functions.cancelAuthorization(payer.address, args[5], cancel[64], cancel[:32], cancel[32:64]),
                   sender=accounts[4])
    with pytest.raises(ContractRevert, match="authorization used or canceled"):
        chain.transact(t.c.functions.transferWithAuthorization(*args), sender=accounts[3])


def test_permit_and_replay(any_chain, accounts):
    t = Token(any_chain)
    owner, spender = accounts[1], accounts[2]
    nonce = any_chain.call(t.c.functions.nonces(owner.address))
    deadline = any_chain.timestamp() + 600
    msg = {"owner": owner.address, "spender": spender.address, "value": 7 * MESH, "nonce": nonce, "deadline": deadline}
    sig = sign_typed(owner, token_domain(any_chain), "Permit", PERMIT_TYPES, msg)
    fn = t.c.functions.permit(owner.address, spender.address, 7 * MESH, deadline, sig[64], sig[:32], sig[32:64])
    any_chain.transact(fn, sender=accounts[3])
    assert any_chain.call(t.c.functions.allowance(owner.address, spender.address)) == 7 * MESH
    with pytest.raises(ContractRevert):  # the nonce moved on: the same signature is dead
        any_chain.transact(fn, sender=accounts[3])
