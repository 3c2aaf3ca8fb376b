"""ValuesSealer (the node's native receipt path) against the reference Python path."""

import numpy as np
import pytest
from eth_account import Account

from proofmesh.errors import InputError
from proofmesh.inference.receipt import (COMMIT_VALUES, Receipt, ValuesSealer, _reference_values_hash, output_array,
                                         receipt_domain)

DOMAIN = receipt_domain(31337, "0x" + "ab" * 20)


@pytest.fixture(scope="module")
def acct():
    return Account.from_key(b"\x07" * 32)


@pytest.fixture(scope="module")
def sealer(acct):
    return ValuesSealer(bytes(acct.key), DOMAIN)


# sizes around the keccak block boundary (136-byte rate: 64 header bytes + 32 per value)
@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 9, 17, 320, 1001])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_seal_equals_the_reference_path(sealer, acct, n, dtype):
    rng = np.random.default_rng(n)
    y = (rng.standard_normal((n,)) * 10.0 ** rng.integers(-6, 6, n)).astype(dtype)
    y[: n // 3] *= -1
    ih = bytes(range(32))
    values, r = sealer.seal(9, ih, 2**256 - 1, 12345, [y])
    ref_values = output_array([y])
    assert values.tolist() == ref_values.tolist()
    assert r.output_hash == _reference_values_hash(ref_values.tolist())
    ref = Receipt(9, ih, r.output_hash, 2**256 - 1, 12345, COMMIT_VALUES).signed(acct, DOMAIN)
    assert r == ref                                   # RFC 6979: the same bytes
    assert r.signer(DOMAIN) == acct.address


def test_multi_output_and_integer_outputs(sealer, acct):
    outs = [np.array([[1.5, -2.25]], np.float32), np.array([3, -4], np.int64)]
    values, r = sealer.seal(1, b"\x01" * 32, 5, 0, outs)
    assert values.tolist() == [1_500_000, -2_250_000, 3_000_000, -4_000_000]
    assert r.signer(DOMAIN) == acct.address


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e13])
def test_uncommittable_outputs_are_refused(sealer, bad):
    with pytest.raises(InputError, match="NaN or infinite|too large"):
        sealer.seal(1, b"\x01" * 32, 5, 0, [np.array([0.5, bad], np.float64)])


def test_bad_fields_are_refused(sealer):
    with pytest.raises(InputError, match="32 bytes"):
        sealer.seal(1, b"\x01" * 31, 5, 0, [np.zeros(2, np.float32)])
    with pytest.raises(InputError, match="out of range"):
        sealer.seal(1, b"\x01" * 32, 2**256, 0, [np.zeros(2, np.float32)])


def test_circuit_commitment_is_signed_too(sealer, acct):
    """A CIRCUIT value receipt (a circuit's float64 output) through the same native call."""
    from proofmesh.inference.receipt import COMMIT_CIRCUIT

    y = np.array([[0.125, -3.5, 7.000001]], np.float64)
    values, r = sealer.seal(4, b"\x02" * 32, 11, 5, [y], COMMIT_CIRCUIT)
    assert r.commitment == COMMIT_CIRCUIT and values.tolist() == [125_000, -3_500_000, 7_000_001]
    assert r == Receipt(4, b"\x02" * 32, _reference_values_hash(values.tolist()), 11, 5,
                        COMMIT_CIRCUIT).signed(acct, DOMAIN)
