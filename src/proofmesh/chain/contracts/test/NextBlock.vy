# pragma version ~=0.4.3
"""
@title NextBlock
@notice Test helper: a commit that must be revealed in a later block, using the
        committed block's hash, like every commit-reveal in proofmesh. Gas estimates must
        run in the next block's context for the reveal to be estimable at all.
"""

committed_at: public(uint256)
seed: public(bytes32)


event Committed:
    block_number: uint256


event Revealed:
    seed: bytes32


@external
def commit():
    """@notice Record the current block."""
    self.committed_at = block.number
    log Committed(block_number=block.number)


@external
def reveal():
    """@notice Succeeds only in a later block; takes the committed block's hash as seed."""
    assert block.number > self.committed_at, "reveal in a later block"
    self.seed = blockhash(self.committed_at)
    log Revealed(seed=self.seed)
