"""InferenceRegistry: a NodeRegistry domain (bonds and slashes inference nodes) that
reads model owners from ModelRegistry (deployed before it by the models capability).
InferenceDisputes runs redundant-execution disputes as InferenceRegistry's arbiter
(split out to keep both contracts under EIP-170); it slashes through InferenceRegistry,
which holds the bonds, so it needs no bond domain of its own."""

from proofmesh.chain.deploy import MESH, ContractSpec

CHALLENGE_WINDOW = 86400        # an epoch's receipts can be challenged for a day
RESPONSE_WINDOW = 3600          # a challenged node has an hour to put its proof on chain
CHALLENGE_DEPOSIT = 10 * MESH   # paid to the node if it proves: challenging honest nodes costs
MIN_BOND = 100 * MESH           # service bond to commit epochs and vote in disputes
SLASH_AMOUNT = 50 * MESH        # per proven fault
VOTE_WINDOW = 3600              # bonded nodes re-execute and vote within an hour
QUORUM = 100 * MESH             # winning side needs at least one full bond behind it
ALLOW_DEV_SRS = True            # local chains accept locally generated (insecure, flagged) SRS



def _wire_disputes(chain, book: dict[str, str]) -> None:
    chain.transact(chain.contract("InferenceRegistry").functions.set_arbiter(book["InferenceDisputes"]))


CONTRACTS = [
    ContractSpec(name="InferenceRegistry",
                 args=lambda book: [book["MeshToken"], book["NodeRegistry"], book["ModelRegistry"], ALLOW_DEV_SRS,
                                    CHALLENGE_WINDOW, RESPONSE_WINDOW, CHALLENGE_DEPOSIT, MIN_BOND, SLASH_AMOUNT,
                                    VOTE_WINDOW, QUORUM],
                 domain=True),
    ContractSpec(name="InferenceDisputes", args=lambda book: [book["InferenceRegistry"]], after=_wire_disputes),
]
