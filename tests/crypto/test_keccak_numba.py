"""The numba byte keccak (`crypto._keccak_numba.keccak_into`) against the pure keccak256,
at every block boundary and at offsets into both buffers."""

from __future__ import annotations

import os

import numpy as np
import pytest

from proofmesh.crypto.keccak import keccak256


@pytest.mark.parametrize("n", [0, 1, 31, 32, 64, 135, 136, 137, 271, 272, 273, 1000])
def test_keccak_into_matches_keccak256(n):
    from proofmesh.crypto._keccak_numba import keccak_into

    data = os.urandom(n + 7)
    src = np.frombuffer(data, np.uint8)          # read-only, as the verifier passes batches
    dst = np.zeros(40, np.uint8)
    st = np.empty(25, np.uint64)
    keccak_into(src, 5, n, dst, 3, st)
    assert bytes(dst[3:35]) == keccak256(data[5:5 + n])
    assert not dst[:3].any() and not dst[35:].any()   # nothing written outside dst[dpos:dpos+32]
