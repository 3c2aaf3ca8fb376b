"""numba kernels for :mod:`proofmesh.crypto.keccak` (imported lazily: numba is slow to import).

Keccak-f[1600] on 25 little-endian 64-bit lanes; a 32- or 64-byte message fits in one
136-byte block, so each hash is one permutation. Rows of 32 bytes are viewed as four
little-endian ``uint64`` lanes, which is the Keccak lane order on little-endian machines
(``keccak.py`` only uses these kernels when ``sys.byteorder == "little"``).
:func:`keccak_into` hashes a byte range of any length (the edge verifier's kernels use it).
"""

import numba as nb
import numpy as np

from proofmesh.crypto import _numba_cache  # noqa: F401  (before any @nb.njit: caches keyed by dependencies too)
from proofmesh.crypto.keccak import _RC as RC

U64 = nb.uint64
RATE = 136                            # keccak256's block size in bytes

# keccak_f below is generated from the textbook form (theta; rho and pi along the lane
# cycle PILN with offsets ROTC, see keccak.py; chi; iota) with one local per lane, so LLVM
# keeps the 25 lanes in registers. tests/crypto/test_merkle.py checks it against pysha3.


@nb.njit(cache=True, inline="always")
def keccak_f(st):
    """Keccak-f[1600] in place on 25 uint64 lanes (generated, fully unrolled round body:
    LLVM keeps the lanes in registers, ~6x faster than the textbook loop form)."""
    a0 = st[0]
    a1 = st[1]
    a2 = st[2]
    a3 = st[3]
    a4 = st[4]
    a5 = st[5]
    a6 = st[6]
    a7 = st[7]
    a8 = st[8]
    a9 = st[9]
    a10 = st[10]
    a11 = st[11]
    a12 = st[12]
    a13 = st[13]
    a14 = st[14]
    a15 = st[15]
    a16 = st[16]
    a17 = st[17]
    a18 = st[18]
    a19 = st[19]
    a20 = st[20]
    a21 = st[21]
    a22 = st[22]
    a23 = st[23]
    a24 = st[24]
    for rnd in range(24):
        c0 = a0 ^ a5 ^ a10 ^ a15 ^ a20
        c1 = a1 ^ a6 ^ a11 ^ a16 ^ a21
        c2 = a2 ^ a7 ^ a12 ^ a17 ^ a22
        c3 = a3 ^ a8 ^ a13 ^ a18 ^ a23
        c4 = a4 ^ a9 ^ a14 ^ a19 ^ a24
        d0 = c4 ^ ((c1 << U64(1)) | (c1 >> U64(63)))
        d1 = c0 ^ ((c2 << U64(1)) | (c2 >> U64(63)))
        d2 = c1 ^ ((c3 << U64(1)) | (c3 >> U64(63)))
        d3 = c2 ^ ((c4 << U64(1)) | (c4 >> U64(63)))
        d4 = c3 ^ ((c0 << U64(1)) | (c0 >> U64(63)))
        a0 ^= d0
        a1 ^= d1
        a2 ^= d2
        a3 ^= d3
        a4 ^= d4
        a5 ^= d0
        a6 ^= d1
        a7 ^= d2
        a8 ^= d3
        a9 ^= d4
        a10 ^= d0
        a11 ^= d1
        a12 ^= d2
        a13 ^= d3
        a14 ^= d4
        a15 ^= d0
        a16 ^= d1
        a17 ^= d2
        a18 ^= d3
        a19 ^= d4
        a20 ^= d0
        a21 ^= d1
        a22 ^= d2
        a23 ^= d3
        a24 ^= d4
        t = a1
        tmp = a10
        a10 = (t << U64(1)) | (t >> U64(63))
        t = tmp
        tmp = a7
        a7 = (t << U64(3)) | (t >> U64(61))
        t = tmp
        tmp = a11
        a11 = (t << U64(6)) | (t >> U64(58))
        t = tmp
        tmp = a17
        a17 = (t << U64(10)) | (t >> U64(54))
        t = tmp
        tmp = a18
        a18 = (t << U64(15)) | (t >> U64(49))
        t = tmp
        tmp = a3
        a3 = (t << U64(21)) | (t >> U64(43))
        t = tmp
        tmp = a5
        a5 = (t << U64(28)) | (t >> U64(36))
        t = tmp
        tmp = a16
        a16 = (t << U64(36)) | (t >> U64(28))
        t = tmp
        tmp = a8
        a8 = (t << U64(45)) | (t >> U64(19))
        t = tmp
        tmp = a21
        a21 = (t << U64(55)) | (t >> U64(9))
        t = tmp
        tmp = a24
        a24 = (t << U64(2)) | (t >> U64(62))
        t = tmp
        tmp = a4
        a4 = (t << U64(14)) | (t >> U64(50))
        t = tmp
        tmp = a15
        a15 = (t << U64(27)) | (t >> U64(37))
        t = tmp
        tmp = a23
        a23 = (t << U64(41)) | (t >> U64(23))
        t = tmp
        tmp = a19
        a19 = (t << U64(56)) | (t >> U64(8))
        t = tmp
        tmp = a13
        a13 = (t << U64(8)) | (t >> U64(56))
        t = tmp
        tmp = a12
        a12 = (t << U64(25)) | (t >> U64(39))
        t = tmp
        tmp = a2
        a2 = (t << U64(43)) | (t >> U64(21))
        t = tmp
        tmp = a20
        a20 = (t << U64(62)) | (t >> U64(2))
        t = tmp
        tmp = a14
        a14 = (t << U64(18)) | (t >> U64(46))
        t = tmp
        tmp = a22
        a22 = (t << U64(39)) | (t >> U64(25))
        t = tmp
        tmp = a9
        a9 = (t << U64(61)) | (t >> U64(3))
        t = tmp
        tmp = a6
        a6 = (t << U64(20)) | (t >> U64(44))
        t = tmp
        tmp = a1
        a1 = (t << U64(44)) | (t >> U64(20))
        t = tmp
        b0 = a0
        b1 = a1
        b2 = a2
        b3 = a3
        b4 = a4
        a0 = b0 ^ ((~b1) & b2)
        a1 = b1 ^ ((~b2) & b3)
        a2 = b2 ^ ((~b3) & b4)
        a3 = b3 ^ ((~b4) & b0)
        a4 = b4 ^ ((~b0) & b1)
        b0 = a5
        b1 = a6
        b2 = a7
        b3 = a8
        b4 = a9
        a5 = b0 ^ ((~b1) & b2)
        a6 = b1 ^ ((~b2) & b3)
        a7 = b2 ^ ((~b3) & b4)
        a8 = b3 ^ ((~b4) & b0)
        a9 = b4 ^ ((~b0) & b1)
        b0 = a10
        b1 = a11
        b2 = a12
        b3 = a13
        b4 = a14
        a10 = b0 ^ ((~b1) & b2)
        a11 = b1 ^ ((~b2) & b3)
        a12 = b2 ^ ((~b3) & b4)
        a13 = b3 ^ ((~b4) & b0)
        a14 = b4 ^ ((~b0) & b1)
        b0 = a15
        b1 = a16
        b2 = a17
        b3 = a18
        b4 = a19
        a15 = b0 ^ ((~b1) & b2)
        a16 = b1 ^ ((~b2) & b3)
        a17 = b2 ^ ((~b3) & b4)
        a18 = b3 ^ ((~b4) & b0)
        a19 = b4 ^ ((~b0) & b1)
        b0 = a20
        b1 = a21
        b2 = a22
        b3 = a23
        b4 = a24
        a20 = b0 ^ ((~b1) & b2)
        a21 = b1 ^ ((~b2) & b3)
        a22 = b2 ^ ((~b3) & b4)
        a23 = b3 ^ ((~b4) & b0)
        a24 = b4 ^ ((~b0) & b1)
        a0 ^= RC[rnd]
    st[0] = a0
    st[1] = a1
    st[2] = a2
    st[3] = a3
    st[4] = a4
    st[5] = a5
    st[6] = a6
    st[7] = a7
    st[8] = a8
    st[9] = a9
    st[10] = a10
    st[11] = a11
    st[12] = a12
    st[13] = a13
    st[14] = a14
    st[15] = a15
    st[16] = a16
    st[17] = a17
    st[18] = a18
    st[19] = a19
    st[20] = a20
    st[21] = a21
    st[22] = a22
    st[23] = a23
    st[24] = a24


@nb.njit(cache=True, nogil=True)
def keccak_into(src, start, n, dst, dpos, st):
    """keccak256 of ``src[start:start+n]`` written to ``dst[dpos:dpos+32]`` (``st``: 25 lanes of scratch)."""
    for j in range(25):
        st[j] = U64(0)
    pos = start
    end = start + n
    while end - pos >= RATE:
        for j in range(17):
            b = pos + 8 * j
            lane = U64(0)
            for k in range(8):
                lane |= U64(src[b + k]) << U64(8 * k)
            st[j] ^= lane
        keccak_f(st)
        pos += RATE
    # Last (partial) block with keccak padding 0x01 … 0x80.
    rem = end - pos
    for k in range(rem):
        st[k >> 3] ^= U64(src[pos + k]) << U64(8 * (k & 7))
    st[rem >> 3] ^= U64(0x01) << U64(8 * (rem & 7))
    st[16] ^= U64(0x80) << U64(56)
    keccak_f(st)
    for j in range(4):
        lane = st[j]
        for k in range(8):
            dst[dpos + 8 * j + k] = np.uint8((lane >> U64(8 * k)) & U64(0xFF))


@nb.njit(cache=True)
def less(a8, ia, b8, ib):
    """Row ia of a8 < row ib of b8 in byte order (how OpenZeppelin compares bytes32)."""
    for k in range(32):
        x = a8[ia, k]
        y = b8[ib, k]
        if x != y:
            return x < y
    return False


@nb.njit(cache=True)
def hash_pair_into(src64, src8, ia, ib, dst64, io, st):
    """Sorted-pair keccak of rows ia and ib of src, written to row io of dst."""
    if less(src8, ib, src8, ia):
        ia, ib = ib, ia
    for k in range(25):
        st[k] = U64(0)
    for k in range(4):
        st[k] = src64[ia, k]
        st[4 + k] = src64[ib, k]
    st[8] ^= U64(0x01)                  # pad10*1: 0x01 right after the 64-byte message …
    st[16] ^= U64(0x8000000000000000)   # … and 0x80 in the last byte of the 136-byte block
    keccak_f(st)
    for k in range(4):
        dst64[io, k] = st[k]


@nb.njit(cache=True)
def pairs(src64, src8, out64):
    """out[p] = sorted-pair keccak of rows 2p and 2p+1."""
    st = np.zeros(25, np.uint64)
    for p in range(out64.shape[0]):
        hash_pair_into(src64, src8, 2 * p, 2 * p + 1, out64, p, st)


@nb.njit(cache=True)
def tree(t64, t8, n):
    """Inner nodes n-2 … 0 of an OpenZeppelin array-tree (children 2i+1, 2i+2 come first)."""
    st = np.zeros(25, np.uint64)
    for i in range(n - 2, -1, -1):
        hash_pair_into(t64, t8, 2 * i + 1, 2 * i + 2, t64, i, st)


@nb.njit(cache=True)
def double32(src64, out64):
    """out[p] = keccak(keccak(row p)) for 32-byte rows."""
    st = np.zeros(25, np.uint64)
    for p in range(src64.shape[0]):
        for k in range(25):
            st[k] = U64(0)
        for k in range(4):
            st[k] = src64[p, k]
        for _ in range(2):
            st[4] ^= U64(0x01)                  # padding of a 32-byte message
            st[16] ^= U64(0x8000000000000000)
            keccak_f(st)
            for k in range(4, 25):              # keep the digest (lanes 0-3) as next input
                st[k] = U64(0)
        for k in range(4):
            out64[p, k] = st[k]
