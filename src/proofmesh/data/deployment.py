"""Contracts of the data capability, deployed after the core contracts.

DataRegistry bonds and slashes contributors in NodeRegistry (``domain=True``) and pays
rewards from Emission pool DATA (0). The challenge window is short on a local devnet so
a demo sees batches finalise (``PROOFMESH_DATA_CHALLENGE_SECONDS``); a production network
would use days — and NodeRegistry's unbonding period must outlast it.
"""

from __future__ import annotations

import os

from proofmesh.chain.deploy import MESH, ContractSpec

MIN_BATCH_BOND = 10 * MESH          # every batch risks at least this much
BOND_PER_RECORD = MESH // 100       # plus 0.01 MESH per record
DUPLICATE_SLASH = 1 * MESH          # per proven duplicate (capped by the remaining bond)
REWARD_PER_TOKEN = MESH // 10_000   # 0.0001 MESH per unique token at full quality
COMMITTEE_SIZE = 3


def challenge_seconds() -> int:
    return int(os.environ.get("PROOFMESH_DATA_CHALLENGE_SECONDS", "3600"))


CONTRACTS = [
    ContractSpec(name="DataRegistry",
                 args=lambda book: [book["NodeRegistry"], book["Emission"], challenge_seconds(),
                                    MIN_BATCH_BOND, BOND_PER_RECORD, DUPLICATE_SLASH,
                                    REWARD_PER_TOKEN, COMMITTEE_SIZE],
                 domain=True, pools=[0]),
]
