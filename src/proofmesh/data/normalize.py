"""Text normalisation applied before any hash: the same text always gets the same ``record_hash``.

Normalisation runs on whole Arrow columns (pyarrow compute kernels in C++), because a
Python loop over records costs more than hashing them.
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass

import numba as nb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc



@dataclass(frozen=True)
class Normalization:
    """Which normalisations to apply; each can be switched off on the CLI.

    ``nfkc``: Unicode NFKC (full-width letters, ligatures, compatibility forms fold together);
    ``lowercase``: Unicode case folding by lower(); ``whitespace``: every run of whitespace
    becomes one space and the ends are trimmed.
    """

    nfkc: bool = True
    lowercase: bool = True
    whitespace: bool = True

    def as_dict(self) -> dict:
        return asdict(self)

    def tag(self) -> str:
        """Short identifier stored with an index, so indexes built differently never mix."""
        return "".join(k[0] if v else "-" for k, v in (("n", self.nfkc), ("l", self.lowercase),
                                                         ("w", self.whitespace)))


def normalize_text(text: str, norm: Normalization = Normalization()) -> str:
    """Normalise one string with exactly the column kernels (so both paths hash alike)."""
    return normalize_column(pa.array([text], pa.large_string()), norm)[0].as_py()


def reference_normalize(text: str, norm: Normalization = Normalization()) -> str:
    """Pure-Python statement of the rules, used by tests to check ``normalize_column``."""
    if norm.nfkc:
        text = unicodedata.normalize("NFKC", text)
    if norm.lowercase:
        text = text.lower()
    if norm.whitespace:
        text = " ".join(text.split())
    return text


def normalize_column(column: pa.Array | pa.ChunkedArray,
                     norm: Normalization = Normalization()) -> pa.Array:
    """Vectorised ``normalize_text`` over an Arrow string column; returns a ``large_string`` array.

    Equal to ``normalize_text`` on every element (tested), but runs in C++.
    """
    col = column
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if len(col) and pc.all(pc.string_is_ascii(col)).as_py():
        # ASCII is invariant under NFKC, so one fused byte pass does lower + whitespace.
        col = col.cast(pa.large_string())
        if norm.whitespace:
            return collapse_whitespace(col, lower=norm.lowercase)
        return pc.ascii_lower(col) if norm.lowercase else col
    if norm.nfkc:
        col = pc.utf8_normalize(col, form="NFKC")
    if norm.lowercase:
        col = pc.utf8_lower(col)
    col = col.cast(pa.large_string())
    if norm.whitespace:
        col = collapse_whitespace(col)
    return col


@nb.njit(inline="always")
def _ws_len(data, p, end):
    """Length in bytes of the whitespace code point at ``p`` (0 if none), per ``str.isspace``."""
    c = data[p]
    if c == 0x20 or (0x09 <= c <= 0x0D) or (0x1C <= c <= 0x1F):
        return 1
    if c == 0xC2 and p + 1 < end and (data[p + 1] == 0x85 or data[p + 1] == 0xA0):
        return 2
    if p + 2 < end:
        c1 = data[p + 1]
        c2 = data[p + 2]
        if c == 0xE1 and c1 == 0x9A and c2 == 0x80:                      # U+1680
            return 3
        if c == 0xE2 and c1 == 0x80 and (c2 <= 0x8A or c2 == 0xA8 or c2 == 0xA9 or c2 == 0xAF) \
                and c2 >= 0x80:                                          # U+2000-200A, 2028/9, 202F
            return 3
        if c == 0xE2 and c1 == 0x81 and c2 == 0x9F:                      # U+205F
            return 3
        if c == 0xE3 and c1 == 0x80 and c2 == 0x80:                      # U+3000
            return 3
    return 0


@nb.njit(parallel=True, cache=True)
def _collapse(data, offsets, out, out_len, lower):
    n = offsets.shape[0] - 1
    for d in nb.prange(n):
        p = offsets[d]
        end = offsets[d + 1]
        o = offsets[d]  # output never exceeds input: write in place of the same span
        pending = False
        started = False
        while p < end:
            c = data[p]
            if 0x20 < c < 0x80:  # fast path: printable ASCII, never whitespace
                if pending:
                    out[o] = 0x20
                    o += 1
                    pending = False
                out[o] = c + 32 if lower and 0x41 <= c <= 0x5A else c
                o += 1
                started = True
                p += 1
                continue
            w = _ws_len(data, p, end)
            if w:
                pending = started
                p += w
            else:
                if pending:
                    out[o] = 0x20
                    o += 1
                    pending = False
                out[o] = data[p]
                o += 1
                started = True
                p += 1
        out_len[d] = o - offsets[d]


@nb.njit(parallel=True, cache=True)
def _pack(src, src_off, lens, dst, dst_off):
    for d in nb.prange(lens.shape[0]):
        s = src_off[d]
        t = dst_off[d]
        for i in range(lens[d]):
            dst[t + i] = src[s + i]


def collapse_whitespace(col: pa.Array, lower: bool = False) -> pa.Array:
    """Every whitespace run → one space, ends trimmed, on UTF-8 bytes (RE2 regex is ~30 MB/s).

    ``lower=True`` also lower-cases ASCII letters (only valid on an ASCII-only column)."""
    from proofmesh.data.minhash import arrow_buffers

    data, offsets = arrow_buffers(col)
    n = len(col)
    scratch = np.empty(data.shape[0], dtype=np.uint8)
    lens = np.empty(n, dtype=np.int64)
    _collapse(data, offsets, scratch, lens, lower)
    new_off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens, out=new_off[1:])
    out = np.empty(int(new_off[-1]), dtype=np.uint8)
    _pack(scratch, offsets, lens, out, new_off)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(new_off), pa.py_buffer(out))
