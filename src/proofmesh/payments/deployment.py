"""PaymentChannels is deployed after the core contracts; it holds no stake and pays no rewards."""

from proofmesh.chain.deploy import ContractSpec

# Seconds between a payer's withdrawal request and its refund: the payee's window
# to redeem its latest voucher. One hour is ample for a node that settles in batches.
WITHDRAW_DELAY = 3600

CONTRACTS = [
    ContractSpec(name="PaymentChannels", args=lambda book: [book["MeshToken"], WITHDRAW_DELAY]),
]
