"""Text normalisation applied before any hash: the same text always gets the same ``record_hash``.

Normalisation runs on whole Arrow columns, never record by record from Python (a Python
call per record costs more than normalising and hashing it): a compiled pass does ASCII
records completely, and only records with non-ASCII bytes go through Arrow's Unicode kernels.
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass

import numba as nb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from proofmesh.crypto import _numba_cache  # noqa: F401  (before any @nb.njit: caches keyed by dependencies too)
from proofmesh.data.blake3_batch import copy_bytes



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

    Equal to ``reference_normalize`` on every element (tested), but compiled."""
    return normalize_with_tokens(column, norm)[0]


def normalize_with_tokens(column: pa.Array | pa.ChunkedArray,
                          norm: Normalization = Normalization()) -> tuple[pa.Array, np.ndarray]:
    """``normalize_column`` plus each record's token count (runs of bytes other than a space).

    One compiled pass per record does everything for ASCII text, which NFKC leaves alone:
    ASCII lower-casing, whitespace collapsing and token counting. Only records holding a
    non-ASCII byte (when NFKC or lower-casing is on) take Arrow's Unicode kernels, and then
    the same pass without the ASCII lower-casing.
    """
    from proofmesh.data.minhash import arrow_buffers

    data, offsets = arrow_buffers(column)
    n = offsets.shape[0] - 1
    scratch = np.empty(data.shape[0], dtype=np.uint8)
    lens = np.empty(n, dtype=np.int64)
    tokens = np.empty(n, dtype=np.int64)
    slow = np.zeros(n, dtype=np.bool_)
    unicode_rules = norm.nfkc or norm.lowercase
    _normalize_spans(data, offsets, scratch, lens, tokens, slow, norm.lowercase, norm.whitespace,
                     unicode_rules)
    src_start = offsets[:-1].copy()
    src = [scratch]
    which = np.zeros(n, dtype=np.int8)
    rows = np.flatnonzero(slow)
    if rows.size:
        col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        sub = col.cast(pa.large_string()).take(pa.array(rows))
        if norm.nfkc:
            sub = pc.utf8_normalize(sub, form="NFKC")
        if norm.lowercase:
            sub = pc.utf8_lower(sub)
        sd, so = arrow_buffers(sub.cast(pa.large_string()))
        s_scratch = np.empty(sd.shape[0], dtype=np.uint8)
        s_lens = np.empty(rows.size, dtype=np.int64)
        s_tokens = np.empty(rows.size, dtype=np.int64)
        _normalize_spans(sd, so, s_scratch, s_lens, s_tokens, np.zeros(rows.size, np.bool_),
                         False, norm.whitespace, False)
        lens[rows] = s_lens
        tokens[rows] = s_tokens
        src_start[rows] = so[:-1]
        which[rows] = 1
        src.append(s_scratch)
    else:
        src.append(np.empty(0, dtype=np.uint8))
    new_off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens, out=new_off[1:])
    if rows.size == 0 and new_off[-1] == offsets[-1] - offsets[0]:
        # nothing shrank (the usual case): every record sits in place in the scratch buffer
        out = scratch[offsets[0]:offsets[-1]]
    else:
        out = np.empty(int(new_off[-1]), dtype=np.uint8)
        _pack2(src[0], src[1], which, src_start, lens, out, new_off)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(new_off), pa.py_buffer(out)), tokens


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


@nb.njit(parallel=True, cache=True, nogil=True)
def _normalize_spans(data, offsets, out, out_len, tokens, slow, lower, collapse, unicode_rules):
    """Per record, in place of its own span of ``out``: ASCII lower-case (``lower``), collapse
    whitespace runs to one space and trim (``collapse``), count tokens. A record with a
    non-ASCII byte is only flagged in ``slow`` when ``unicode_rules`` (its output is unused).

    Most records are already in shape — printable ASCII words separated by single spaces —
    and for them one branch-free pass (which LLVM vectorises) lower-cases, checks and counts;
    only a record that fails the check takes the byte-by-byte loop."""
    n = offsets.shape[0] - 1
    for d in nb.prange(n):
        s0 = offsets[d]
        e0 = offsets[d + 1]
        if collapse and e0 > s0:
            # unsigned indices: numba adds no negative-index fix-up, so these loops vectorise
            acc = np.uint8(0)
            ctrl = np.uint8(0)
            spaces = 0
            add = np.uint8(32) if lower else np.uint8(0)
            for p in range(np.uint64(s0), np.uint64(e0)):
                c = data[p]
                out[p] = c + add if 0x41 <= c <= 0x5A else c
                acc |= c
                ctrl |= np.uint8(c < 0x20)
                spaces += np.int64(c == 0x20)
            double = np.uint8(0)
            for p in range(np.uint64(s0), np.uint64(e0 - 1)):
                double |= np.uint8(data[p] == 0x20) & np.uint8(data[p + np.uint64(1)] == 0x20)
            if acc < 0x80 and ctrl == 0 and double == 0 and data[s0] != 0x20 and data[e0 - 1] != 0x20:
                out_len[d] = e0 - s0
                tokens[d] = spaces + 1
                continue
            if acc >= 0x80 and unicode_rules:
                slow[d] = True
                out_len[d] = 0
                tokens[d] = 0
                continue
        _normalize_one(data, s0, e0, out, out_len, tokens, slow, d, lower, collapse, unicode_rules)


@nb.njit(cache=True)
def _normalize_one(data, p, end, out, out_len, tokens, slow, d, lower, collapse, unicode_rules):
    """The byte-by-byte rules for one record (see ``_normalize_spans``)."""
    o = p  # output never exceeds input: write in place of the same span
    start = p
    pending = False
    started = False
    in_word = False
    ntok = 0
    while p < end:
        c = data[p]
        if 0x20 < c < 0x80:  # fast path: printable ASCII, never whitespace
            if pending:
                out[o] = 0x20
                o += 1
                pending = False
                in_word = False
            out[o] = c + 32 if lower and 0x41 <= c <= 0x5A else c
            o += 1
            if not in_word:
                ntok += 1
                in_word = True
            started = True
            p += 1
            continue
        if c >= 0x80 and unicode_rules:
            slow[d] = True
            break
        if collapse:
            w = _ws_len(data, p, end)
            if w:
                pending = started
                p += w
                continue
        if pending:
            out[o] = 0x20
            o += 1
            pending = False
            in_word = False
        out[o] = c
        o += 1
        started = True
        if c == 0x20:
            in_word = False
        elif not in_word:
            ntok += 1
            in_word = True
        p += 1
    out_len[d] = o - start
    tokens[d] = ntok


@nb.njit(parallel=True, cache=True, nogil=True)
def _pack2(src0, src1, which, src_start, lens, dst, dst_off):
    """Gather each record's bytes from ``src0`` or ``src1`` (``which``) into one packed buffer."""
    for d in nb.prange(lens.shape[0]):
        if which[d]:
            copy_bytes(dst, dst_off[d], src1, src_start[d], lens[d])
        else:
            copy_bytes(dst, dst_off[d], src0, src_start[d], lens[d])


@nb.njit(parallel=True, cache=True, nogil=True)
def pack_spans(src, src_start, lens, dst, dst_off):
    """``dst[dst_off[d]:+lens[d]] = src[src_start[d]:+lens[d]]`` for every record, as memcpys."""
    for d in nb.prange(lens.shape[0]):
        copy_bytes(dst, dst_off[d], src, src_start[d], lens[d])
