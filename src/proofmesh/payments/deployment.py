"""PaymentChannels is deployed after the core contracts; it holds no stake and pays no rewards."""

from proofmesh.chain.deploy import ContractSpec
from proofmesh.inference.deployment import CHALLENGE_WINDOW, RESPONSE_WINDOW

# How often an inference node commits an epoch root of its proofs (the default
# `epoch_seconds` of `proofmesh serve`, rounded up).
INFERENCE_EPOCH_SECONDS = 3600

# Seconds between a payer's withdrawal request and its refund: the payee's window to
# redeem its latest voucher. A voucher conditional on a ZK receipt becomes redeemable
# only once the receipt's epoch is committed and its challenge window has passed, so
# the delay covers epoch + challenge + response windows (audit M4). The contract
# refuses anything below MIN_WITHDRAW_DELAY (25 h).
WITHDRAW_DELAY = INFERENCE_EPOCH_SECONDS + CHALLENGE_WINDOW + RESPONSE_WINDOW

CONTRACTS = [
    ContractSpec(name="PaymentChannels", args=lambda book: [book["MeshToken"], WITHDRAW_DELAY]),
]
