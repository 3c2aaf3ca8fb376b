# pragma version ~=0.4.3
"""
@title MeshToken (MESH)
@notice The one token of the proofmesh network: staking, escrow, fees and rewards.
        ERC-20 with EIP-2612 `permit` (from snekmate), EIP-3009
        `transferWithAuthorization` / `receiveWithAuthorization` for gasless,
        one-shot payments (x402 `exact` scheme), a hard supply cap, and burning.
        After deployment only the `Emission` contract can mint, and never past `cap`.
@dev Built on snekmate's audited `erc20` module; only the minting path is replaced
     (single minter + cap) and EIP-3009 is added on top of the same EIP-712 domain.
"""

from ethereum.ercs import IERC20
implements: IERC20

from snekmate.auth import ownable
initializes: ownable

from snekmate.tokens import erc20
initializes: erc20[ownable := ownable]

from snekmate.utils import ecdsa

exports: (
    erc20.name,
    erc20.symbol,
    erc20.decimals,
    erc20.balanceOf,
    erc20.allowance,
    erc20.totalSupply,
    erc20.nonces,
    erc20.transfer,
    erc20.approve,
    erc20.transferFrom,
    erc20.burn,
    erc20.burn_from,
    erc20.permit,
    erc20.DOMAIN_SEPARATOR,
    erc20.eip712Domain,
    erc20.owner,
    erc20.transfer_ownership,
)

_TRANSFER_WITH_AUTHORIZATION_TYPEHASH: constant(bytes32) = keccak256(
    "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
_RECEIVE_WITH_AUTHORIZATION_TYPEHASH: constant(bytes32) = keccak256(
    "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
_CANCEL_AUTHORIZATION_TYPEHASH: constant(bytes32) = keccak256(
    "CancelAuthorization(address authorizer,bytes32 nonce)"
)

# @notice The maximum number of tokens that can ever exist.
cap: public(immutable(uint256))

# @notice The only address allowed to mint (the Emission contract).
minter: public(address)

# @notice EIP-3009: whether `authorizer` has used or cancelled `nonce`.
authorizationState: public(HashMap[address, HashMap[bytes32, bool]])

event MinterChanged:
    old_minter: indexed(address)
    new_minter: indexed(address)

event AuthorizationUsed:
    authorizer: indexed(address)
    nonce: indexed(bytes32)

event AuthorizationCanceled:
    authorizer: indexed(address)
    nonce: indexed(bytes32)


@deploy
def __init__(cap_: uint256, genesis_holder: address, genesis_amount: uint256):
    """
    @notice Deploy MESH with a supply cap and mint the genesis allocation.
    @param cap_ The supply cap in wei (18 decimals).
    @param genesis_holder Receives the genesis allocation (e.g. a treasury).
    @param genesis_amount Genesis allocation; must not exceed `cap_`.
    """
    assert genesis_amount <= cap_, "MeshToken: genesis exceeds cap"
    ownable.__init__()
    erc20.__init__("Mesh Token", "MESH", 18, "MeshToken", "1")
    cap = cap_
    if genesis_amount > 0:
        erc20._mint(genesis_holder, genesis_amount)


@external
def set_minter(new_minter: address):
    """
    @notice Set the single minter (the Emission contract). Owner only (governance).
    @param new_minter The new minter; the zero address disables minting.
    """
    ownable._check_owner()
    log MinterChanged(old_minter=self.minter, new_minter=new_minter)
    self.minter = new_minter


@external
def mint(owner: address, amount: uint256):
    """
    @notice Mint `amount` to `owner`; only the minter, never past the cap.
    @param owner Recipient.
    @param amount Amount in wei.
    """
    assert msg.sender == self.minter, "MeshToken: caller is not the minter"
    assert erc20.totalSupply + amount <= cap, "MeshToken: cap exceeded"
    erc20._mint(owner, amount)


@external
def transferWithAuthorization(
    _from: address, to: address, amount: uint256, valid_after: uint256, valid_before: uint256,
    nonce: bytes32, v: uint8, r: bytes32, s: bytes32
):
    """
    @notice EIP-3009: execute a transfer signed by `_from` (anyone may submit it).
    @param _from Payer (the signer).
    @param to Payee.
    @param amount Amount in wei.
    @param valid_after The authorization is valid only after this timestamp.
    @param valid_before The authorization expires at this timestamp.
    @param nonce A unique 32-byte nonce chosen by the payer.
    """
    self._use_authorization(_TRANSFER_WITH_AUTHORIZATION_TYPEHASH, _from, to, amount, valid_after,
                            valid_before, nonce, v, r, s)
    erc20._transfer(_from, to, amount)


@external
def receiveWithAuthorization(
    _from: address, to: address, amount: uint256, valid_after: uint256, valid_before: uint256,
    nonce: bytes32, v: uint8, r: bytes32, s: bytes32
):
    """
    @notice EIP-3009: like `transferWithAuthorization` but only the payee may
            submit it, so a front-runner cannot consume the authorization.
    """
    assert to == msg.sender, "MeshToken: caller must be the payee"
    self._use_authorization(_RECEIVE_WITH_AUTHORIZATION_TYPEHASH, _from, to, amount, valid_after,
                            valid_before, nonce, v, r, s)
    erc20._transfer(_from, to, amount)


@external
def cancelAuthorization(authorizer: address, nonce: bytes32, v: uint8, r: bytes32, s: bytes32):
    """
    @notice EIP-3009: cancel an unused authorization.
    """
    assert not self.authorizationState[authorizer][nonce], "MeshToken: authorization used or canceled"
    struct_hash: bytes32 = keccak256(abi_encode(_CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce))
    digest: bytes32 = erc20.eip712_domain_separator._hash_typed_data_v4(struct_hash)
    signer: address = ecdsa._recover_vrs(digest, convert(v, uint256), convert(r, uint256), convert(s, uint256))
    assert signer == authorizer and signer != empty(address), "MeshToken: invalid signature"
    self.authorizationState[authorizer][nonce] = True
    log AuthorizationCanceled(authorizer=authorizer, nonce=nonce)


@internal
def _use_authorization(
    typehash: bytes32, _from: address, to: address, amount: uint256, valid_after: uint256,
    valid_before: uint256, nonce: bytes32, v: uint8, r: bytes32, s: bytes32
):
    assert block.timestamp > valid_after, "MeshToken: authorization is not yet valid"
    assert block.timestamp < valid_before, "MeshToken: authorization is expired"
    assert not self.authorizationState[_from][nonce], "MeshToken: authorization used or canceled"
    struct_hash: bytes32 = keccak256(abi_encode(typehash, _from, to, amount, valid_after, valid_before, nonce))
    digest: bytes32 = erc20.eip712_domain_separator._hash_typed_data_v4(struct_hash)
    signer: address = ecdsa._recover_vrs(digest, convert(v, uint256), convert(r, uint256), convert(s, uint256))
    assert signer == _from and signer != empty(address), "MeshToken: invalid signature"
    self.authorizationState[_from][nonce] = True
    log AuthorizationUsed(authorizer=_from, nonce=nonce)
