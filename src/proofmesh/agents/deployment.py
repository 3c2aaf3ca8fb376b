"""Contracts of the agents domain, deployed after the core ones (see chain/deploy.py)."""

from proofmesh.chain.deploy import ContractSpec

# Defaults, all changeable later only through Governance (ToolRegistry.set_parameters):
TOOL_BOND = 10 * 10**18          # stake bonded per registered tool
MIN_PAYER_STAKE = 100 * 10**18   # stake a payer needs for its usage to count towards reputation
PAYER_VALUE_CAP = 100 * 10**18   # most value one payer adds to a tool's weighted reputation
DISPUTE_BOND = 10 * 10**18       # locked per dispute commitment, burned by a false dispute
DISPUTE_WINDOW = 3 * 86_400      # a retired tool's bond stays slashable this long

CONTRACTS = [
    ContractSpec(name="ToolRegistry",
                 args=lambda book: [book["MeshToken"], book["NodeRegistry"], book.get("PaymentChannels", "0x" + "00" * 20),
                                    TOOL_BOND, MIN_PAYER_STAKE, PAYER_VALUE_CAP, DISPUTE_BOND, DISPUTE_WINDOW],
                 domain=True),   # locks a bond per tool in NodeRegistry
]
