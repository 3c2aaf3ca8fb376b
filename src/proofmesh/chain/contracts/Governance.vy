# pragma version ~=0.4.3
"""
@title Governance
@notice The owner of every parameter in proofmesh: a timelock (snekmate's
        `timelock_controller`), so each change is announced `min_delay` seconds
        before it can act. Proposers schedule, executors execute, the optional admin
        can configure roles.
"""

from snekmate.auth import access_control
initializes: access_control

from snekmate.governance import timelock_controller
initializes: timelock_controller[access_control := access_control]

exports: timelock_controller.__interface__


@deploy
@payable
def __init__(min_delay: uint256, proposers: DynArray[address, 255], executors: DynArray[address, 255],
             admin: address):
    """
    @notice Deploy the timelock.
    @param min_delay Seconds between scheduling and executing an operation.
    @param proposers Accounts that may schedule and cancel.
    @param executors Accounts that may execute (empty address = anyone).
    @param admin Optional admin (zero address to disable).
    """
    access_control.__init__()
    timelock_controller.__init__(min_delay, proposers, executors, admin)
