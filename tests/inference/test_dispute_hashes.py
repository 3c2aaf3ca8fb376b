"""A dispute stores only keccak256 of each side's disputed chunk and logs the chunks in
`Disputed`; voters and provers hand them back as calldata, checked against the hashes.

Storing both chunks as int256 arrays was most of a dispute's gas (3.38 M of it for full
64-value chunks, here). `test_dispute_gas_by_output_size` prints the gas of `dispute` and
`reveal_vote` with a lie in the last value of 3, 64, 210, 4,000 and 100,000-value answers:
``python -m pytest -q -s tests/inference/test_dispute_hashes.py -k gas``."""

from __future__ import annotations

import os

import numpy as np
import pytest

from proofmesh.errors import ContractRevert, InputError
from proofmesh.inference.receipt import Receipt
from proofmesh.inference.registry import InferenceRegistry
from proofmesh.inference.values import CHUNK, open_values, packed_values, values_hash
from tests.inference.conftest import advance_to


def _conflict(network, honest, liar, n: int, seed: int):
    """Two receipts for one input: ``n`` values, the liar's last one off by 1.0."""
    values = [int(v) for v in np.random.default_rng(seed).integers(-2 * 10**6, 2 * 10**6, n)]
    lie = list(values)
    lie[-1] += 10**6
    ih = os.urandom(32)
    reg = network.registry
    ra = Receipt(network.version, ih, values_hash(values), 1, 0).signed(honest.account, reg.domain)
    rl = Receipt(network.version, ih, values_hash(lie), 2, 0).signed(liar.account, reg.domain)
    return values, lie, ra, rl


@pytest.mark.parametrize("n", [3, 64, 210, 4000, 100_000])
def test_dispute_gas_by_output_size(network, accounts, n):
    honest = network.start_node(accounts[3])
    liar = network.start_node(accounts[5])
    voter = network.start_node(accounts[4])
    reg = network.registry
    values, lie, ra, rl = _conflict(network, honest, liar, n, n)
    chunk = (n - 1) // CHUNK
    disputer = accounts[6]
    salt = reg.commit_dispute(ra, rl, sender=disputer)
    res = reg._tx(reg.disputes.functions.dispute(ra.as_tuple(), ra.signature, open_values(values, chunk).as_tuple(),
                                                 rl.as_tuple(), rl.signature, open_values(lie, chunk).as_tuple(),
                                                 salt), disputer)
    did = reg.chain.call(reg.disputes.functions.dispute_count())
    # the chunks are read back from the Disputed event (this client did not open the dispute)
    part = slice(CHUNK * chunk, CHUNK * (chunk + 1))
    assert reg.dispute_values(did) == (values[part], lie[part])
    assert reg.dispute_chunks(did) == (packed_values(values[part]), packed_values(lie[part]))
    vsalt = b"\x07" * 32
    reg.commit_vote(did, values, vsalt, sender=voter.account)
    advance_to(reg.chain, reg.dispute_state(did)["deadline"] + 1)
    count, ballot = reg._ballot(did, values)
    rv = reg._tx(reg.disputes.functions.reveal_vote(did, count, ballot, vsalt, *reg.dispute_chunks(did)),
                 voter.account)
    assert reg.chain.call(reg.disputes.functions.votes(did, voter.account.address))[0] == 1
    print(f"\n{n} values (chunk {chunk}, {len(ballot)} values): dispute {res.gas_used:,} gas, "
          f"reveal_vote {rv.gas_used:,} gas")
    assert res.gas_used < 600_000 and rv.gas_used < 260_000


def test_votes_with_chunks_other_than_the_disputed_ones_are_refused(network, accounts):
    """Only the hashes are stored: a revealer who passes other chunks (the liar's chunk on
    both sides, swapped sides, a chunk one value off, its own values) is refused, so it cannot
    make its vote side with a receipt it does not match."""
    honest = network.start_node(accounts[3])
    liar = network.start_node(accounts[5])
    voter = network.start_node(accounts[4])
    reg = network.registry
    values, lie, ra, rl = _conflict(network, honest, liar, 210, 1)
    did = reg.dispute(ra, values, rl, lie, sender=accounts[6])
    st = reg.dispute_state(did)
    assert st["chunk"] == 3
    a, b = reg.dispute_chunks(did)
    assert reg.chain.call(reg.disputes.functions.chunk_hash_a(did)) == values_hash(values[192:])
    assert reg.chain.call(reg.disputes.functions.chunk_hash_b(did)) == values_hash(lie[192:])
    # a fresh client (another node) finds the same chunks in the Disputed event
    assert InferenceRegistry(network.chain).dispute_chunks(did) == (a, b)
    with pytest.raises(InputError, match="does not exist"):
        InferenceRegistry(network.chain).dispute_chunks(did + 1)

    # the voter re-executed and got the liar's values: it commits to them and, at reveal,
    # tries to make the chunks say the liar is a (or that both are the liar)
    vsalt = b"\x09" * 32
    reg.commit_vote(did, lie, vsalt, sender=voter.account)
    advance_to(reg.chain, st["deadline"] + 1)
    off = bytearray(a)
    off[-1] ^= 1
    for bad in ((b, a), (b, b), (a, a), (bytes(off), b), (a, b + bytes(8)), (b"", b""),
                (packed_values(lie[192:]), packed_values(values[192:]))):
        with pytest.raises(ContractRevert, match="chunks are not the disputed ones"):
            reg.reveal_vote(did, lie, vsalt, sender=voter.account, chunks=bad)
    assert not reg.chain.call(reg.disputes.functions.voted(did, voter.account.address))
    # with the disputed chunks the vote counts for the side it matches
    assert reg.reveal_vote(did, lie, vsalt, sender=voter.account) == 2
    with pytest.raises(ContractRevert, match="already revealed"):
        reg.reveal_vote(did, lie, vsalt, sender=voter.account)
