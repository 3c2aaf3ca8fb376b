"""Contracts of the edge capability, deployed after the core contracts.

DeviceRegistry needs the token (device stakes). EdgeEpochs reads DeviceRegistry, bonds
and slashes gateways in NodeRegistry (``domain=True``) and pays from Emission pool EDGE
(3). Epoch and interval lengths are immutable per deployment; a local devnet uses short
ones so a demo sees epochs close (override with ``PROOFMESH_EDGE_EPOCH_SECONDS`` /
``PROOFMESH_EDGE_INTERVAL_SECONDS`` at deploy time; a production network would use an
hour and a minute).
"""

from __future__ import annotations

import os

from proofmesh.chain.deploy import MESH, ContractSpec

MIN_DEVICE_STAKE = 10 * MESH
CROWD_RESOLUTION = 7              # H3 res 7 (~5 km²): devices counted per such cell
CELL_CAPACITY = 4                 # devices per cell before rewards scale down
CHALLENGE_PERIOD = 3600           # seconds a publication can be challenged
GATEWAY_BOND = 1_000 * MESH
REWARD_PER_INTERVAL = MESH // 100  # 0.01 MESH per proven uptime interval
STAKE_CAP_BPS = 1_000             # an epoch pays at most 10% of the device's stake


def epoch_seconds() -> int:
    return int(os.environ.get("PROOFMESH_EDGE_EPOCH_SECONDS", "60"))


def interval_seconds() -> int:
    return int(os.environ.get("PROOFMESH_EDGE_INTERVAL_SECONDS", "5"))


def unbonding_seconds() -> int:
    """Device stake unbonding (audit M7): at least one epoch plus the challenge period."""
    return epoch_seconds() + CHALLENGE_PERIOD


CONTRACTS = [
    ContractSpec(name="DeviceRegistry",
                 args=lambda book: [book["MeshToken"], MIN_DEVICE_STAKE, CROWD_RESOLUTION, CELL_CAPACITY,
                                    unbonding_seconds()]),
    ContractSpec(name="EdgeEpochs",
                 args=lambda book: [book["NodeRegistry"], book["Emission"], book["DeviceRegistry"],
                                    epoch_seconds(), interval_seconds(), CHALLENGE_PERIOD, GATEWAY_BOND,
                                    REWARD_PER_INTERVAL, STAKE_CAP_BPS],
                 domain=True, pools=[3]),
]
