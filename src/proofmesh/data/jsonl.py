"""A compiled JSONL scanner that pulls one string field out of every line.

General JSON parsers build every value of every line; dedup needs one string field, and
at 400-byte records Python-level parsing costs more than everything else in the exact
stage. This scanner walks each line once (numba, lines in parallel), *validates* it as one
JSON object (strings, escapes, numbers, literals, nesting), and unescapes only the
wanted field into an Arrow ``large_string`` buffer.

A line it cannot accept (malformed, field missing or not a string, an escaped key, a
lone surrogate) is flagged, and the caller re-parses just that line with Python's
``json`` to name the exact problem — so nothing is accepted that ``json.loads`` would
reject, and every rejection gets a precise message.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from proofmesh.crypto import _numba_cache  # noqa: F401  (before any @nb.njit: caches keyed by dependencies too)
from proofmesh.data.blake3_batch import copy_bytes

OK = 0
FLAGGED = 1
BLANK = 2


@nb.njit(inline="always")
def _ws(c):
    return c == 0x20 or c == 0x09 or c == 0x0D or c == 0x0A


@nb.njit(inline="always")
def _hex(c):
    if 0x30 <= c <= 0x39:
        return c - 0x30
    if 0x61 <= c <= 0x66:
        return c - 0x61 + 10
    if 0x41 <= c <= 0x46:
        return c - 0x41 + 10
    return -1


@nb.njit(cache=True)
def _skip_string(buf, p, end):
    """``p`` at the opening quote; returns the index after the closing quote or -1.
    Also returns whether the string contained a backslash."""
    p += 1
    esc = False
    while p < end:
        limit = end
        if p + 16 <= end:
            # 16 plain bytes at a time (a branch-free test LLVM vectorises): string bodies are
            # most of a JSONL corpus; only a block holding a special byte is walked one by one
            hit = np.uint8(0)
            for k in range(np.uint64(p), np.uint64(p + 16)):
                c = buf[k]
                hit |= np.uint8(c == 0x22) | np.uint8(c == 0x5C) | np.uint8(c < 0x20)
            if hit == 0:
                p += 16
                continue
            limit = p + 16
        while p < limit:
            c = buf[p]
            if c == 0x22:
                return p + 1, esc
            if c < 0x20:
                return -1, esc
            if c == 0x5C:
                esc = True
                if p + 1 >= end:
                    return -1, esc
                e = buf[p + 1]
                if e == 0x75:
                    if p + 5 >= end:
                        return -1, esc
                    for k in range(2, 6):
                        if _hex(buf[p + k]) < 0:
                            return -1, esc
                    p += 6
                    continue
                if e == 0x22 or e == 0x5C or e == 0x2F or e == 0x62 or e == 0x66 or e == 0x6E \
                        or e == 0x72 or e == 0x74:
                    p += 2
                    continue
                return -1, esc
            p += 1
    return -1, esc


@nb.njit(cache=True)
def _skip_number(buf, p, end):
    if p < end and buf[p] == 0x2D:
        p += 1
    if p >= end:
        return -1
    if buf[p] == 0x30:
        p += 1
    elif 0x31 <= buf[p] <= 0x39:
        while p < end and 0x30 <= buf[p] <= 0x39:
            p += 1
    else:
        return -1
    if p < end and buf[p] == 0x2E:
        p += 1
        q = p
        while p < end and 0x30 <= buf[p] <= 0x39:
            p += 1
        if p == q:
            return -1
    if p < end and (buf[p] == 0x65 or buf[p] == 0x45):
        p += 1
        if p < end and (buf[p] == 0x2B or buf[p] == 0x2D):
            p += 1
        q = p
        while p < end and 0x30 <= buf[p] <= 0x39:
            p += 1
        if p == q:
            return -1
    return p


@nb.njit(cache=True)
def _skip_literal(buf, p, end, lit):
    n = lit.shape[0]
    if p + n > end:
        return -1
    for k in range(n):
        if buf[p + k] != lit[k]:
            return -1
    return p + n


@nb.njit(cache=True)
def _skip_key(buf, p, end):
    """Skip an object key and its colon (whitespace allowed around both); the index after
    the colon, or -1 if there is none."""
    while p < end and _ws(buf[p]):
        p += 1
    if p >= end or buf[p] != 0x22:
        return -1
    p, _e = _skip_string(buf, p, end)
    if p < 0:
        return -1
    while p < end and _ws(buf[p]):
        p += 1
    if p >= end or buf[p] != 0x3A:
        return -1
    return p + 1


@nb.njit(cache=True)
def _skip_value(buf, p, end, stack):
    """Validate and skip any JSON value starting at ``p``; -1 if invalid."""
    TRUE = np.array([0x74, 0x72, 0x75, 0x65], dtype=np.uint8)
    FALSE = np.array([0x66, 0x61, 0x6C, 0x73, 0x65], dtype=np.uint8)
    NULL = np.array([0x6E, 0x75, 0x6C, 0x6C], dtype=np.uint8)
    depth = 0
    # expect a value
    while True:
        while p < end and _ws(buf[p]):
            p += 1
        if p >= end:
            return -1
        c = buf[p]
        if c == 0x7B or c == 0x5B:          # { or [ : open a container
            if depth >= stack.shape[0]:
                return -1
            stack[depth] = c
            depth += 1
            p += 1
            while p < end and _ws(buf[p]):
                p += 1
            if p < end and (buf[p] == 0x7D or buf[p] == 0x5D):   # empty container
                if (buf[p] == 0x7D) != (c == 0x7B):
                    return -1
                depth -= 1
                p += 1
            elif c == 0x7B:                  # object: a key and a colon come first
                p = _skip_key(buf, p, end)
                if p < 0:
                    return -1
                continue
            else:
                continue
        elif c == 0x22:
            p, _e = _skip_string(buf, p, end)
        elif c == 0x74:
            p = _skip_literal(buf, p, end, TRUE)
        elif c == 0x66:
            p = _skip_literal(buf, p, end, FALSE)
        elif c == 0x6E:
            p = _skip_literal(buf, p, end, NULL)
        else:
            p = _skip_number(buf, p, end)
        if p < 0:
            return -1
        # after a value: close containers or continue with a comma
        while True:
            if depth == 0:
                return p
            while p < end and _ws(buf[p]):
                p += 1
            if p >= end:
                return -1
            c = buf[p]
            top = stack[depth - 1]
            if c == 0x2C:
                p += 1
                if top == 0x7B:
                    p = _skip_key(buf, p, end)
                    if p < 0:
                        return -1
                break
            if (c == 0x7D and top == 0x7B) or (c == 0x5D and top == 0x5B):
                depth -= 1
                p += 1
                continue
            return -1


@nb.njit(cache=True)
def _unescape(buf, s, e, out, o):
    """Write the JSON string body buf[s:e] (between the quotes) to ``out`` as UTF-8.
    Returns the new output position or -1 on a lone surrogate."""
    p = s
    while p < e:
        c = buf[p]
        if c != 0x5C:
            out[o] = c
            o += 1
            p += 1
            continue
        x = buf[p + 1]
        if x == 0x75:
            cp = (_hex(buf[p + 2]) << 12) | (_hex(buf[p + 3]) << 8) | (_hex(buf[p + 4]) << 4) | _hex(buf[p + 5])
            p += 6
            if 0xD800 <= cp <= 0xDBFF:
                if p + 5 < e + 1 and p + 1 < e and buf[p] == 0x5C and buf[p + 1] == 0x75:
                    lo = (_hex(buf[p + 2]) << 12) | (_hex(buf[p + 3]) << 8) | (_hex(buf[p + 4]) << 4) | _hex(buf[p + 5])
                    if 0xDC00 <= lo <= 0xDFFF:
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                        p += 6
                    else:
                        return -1
                else:
                    return -1
            elif 0xDC00 <= cp <= 0xDFFF:
                return -1
            if cp < 0x80:
                out[o] = cp
                o += 1
            elif cp < 0x800:
                out[o] = 0xC0 | (cp >> 6)
                out[o + 1] = 0x80 | (cp & 0x3F)
                o += 2
            elif cp < 0x10000:
                out[o] = 0xE0 | (cp >> 12)
                out[o + 1] = 0x80 | ((cp >> 6) & 0x3F)
                out[o + 2] = 0x80 | (cp & 0x3F)
                o += 3
            else:
                out[o] = 0xF0 | (cp >> 18)
                out[o + 1] = 0x80 | ((cp >> 12) & 0x3F)
                out[o + 2] = 0x80 | ((cp >> 6) & 0x3F)
                out[o + 3] = 0x80 | (cp & 0x3F)
                o += 4
            continue
        if x == 0x6E:
            out[o] = 0x0A
        elif x == 0x74:
            out[o] = 0x09
        elif x == 0x72:
            out[o] = 0x0D
        elif x == 0x62:
            out[o] = 0x08
        elif x == 0x66:
            out[o] = 0x0C
        else:
            out[o] = x   # \" \\ \/
        o += 1
        p += 2
    return o


@nb.njit(cache=True)
def _scan_line(buf, s, end, key, stack):
    """Validate one line as a JSON object; return (status, value_start, value_end)."""
    p = s
    while p < end and _ws(buf[p]):
        p += 1
    if p == end:
        return BLANK, 0, 0
    if buf[p] != 0x7B:
        return FLAGGED, 0, 0
    p += 1
    vs = -1
    ve = -1
    while p < end and _ws(buf[p]):
        p += 1
    if p < end and buf[p] == 0x7D:
        p += 1
    else:
        while True:
            while p < end and _ws(buf[p]):
                p += 1
            if p >= end or buf[p] != 0x22:
                return FLAGGED, 0, 0
            ks = p + 1
            p, esc = _skip_string(buf, p, end)
            if p < 0:
                return FLAGGED, 0, 0
            is_key = False
            if esc:
                # an escaped key might spell the field: let Python decide
                return FLAGGED, 0, 0
            if p - 1 - ks == key.shape[0]:
                is_key = True
                for k in range(key.shape[0]):
                    if buf[ks + k] != key[k]:
                        is_key = False
                        break
            while p < end and _ws(buf[p]):
                p += 1
            if p >= end or buf[p] != 0x3A:
                return FLAGGED, 0, 0
            p += 1
            while p < end and _ws(buf[p]):
                p += 1
            if is_key:
                if p >= end or buf[p] != 0x22:
                    return FLAGGED, 0, 0     # not a string: Python names the type
                q, _e = _skip_string(buf, p, end)
                if q < 0:
                    return FLAGGED, 0, 0
                vs = p + 1
                ve = q - 1
                p = q
            else:
                p = _skip_value(buf, p, end, stack)
                if p < 0:
                    return FLAGGED, 0, 0
            while p < end and _ws(buf[p]):
                p += 1
            if p >= end:
                return FLAGGED, 0, 0
            if buf[p] == 0x2C:
                p += 1
                continue
            if buf[p] == 0x7D:
                p += 1
                break
            return FLAGGED, 0, 0
    while p < end and _ws(buf[p]):
        p += 1
    if p != end or vs < 0:
        return FLAGGED, 0, 0
    return OK, vs, ve


_SEGMENT = 1 << 20


@nb.njit(parallel=True, cache=True, nogil=True)
def _line_starts(buf):
    """Start of every line, and ``len(buf) + 1`` after an unterminated last line (as if it
    ended in a newline). Newlines are counted per 1 MiB segment in parallel, then written."""
    size = buf.shape[0]
    nseg = (size + _SEGMENT - 1) // _SEGMENT
    counts = np.zeros(nseg + 1, dtype=np.int64)
    for g in nb.prange(nseg):
        c = 0
        for p in range(np.uint64(g * _SEGMENT), np.uint64(min(size, (g + 1) * _SEGMENT))):
            c += np.int64(buf[p] == 0x0A)
        counts[g + 1] = c
    for g in range(nseg):
        counts[g + 1] += counts[g]
    n = counts[nseg]
    tail = 1 if size > 0 and buf[size - 1] != 0x0A else 0
    starts = np.empty(n + 1 + tail, dtype=np.int64)
    starts[0] = 0
    for g in nb.prange(nseg):
        k = counts[g] + 1
        p = g * _SEGMENT
        stop = min(size, (g + 1) * _SEGMENT)
        while p < stop:
            q = min(stop, p + 32)
            if q - p == 32:        # lines are long: most 32-byte windows hold no newline
                hit = np.uint8(0)
                for x in range(np.uint64(p), np.uint64(q)):
                    hit |= np.uint8(buf[x] == 0x0A)
                if hit == 0:
                    p = q
                    continue
            for x in range(p, q):
                if buf[x] == 0x0A:
                    starts[k] = x + 1
                    k += 1
            p = q
    if tail:
        starts[n + 1] = size + 1
    return starts


@nb.njit(parallel=True, cache=True, nogil=True)
def _scan(buf, starts, key, max_len, status, vstart, vend, lens):
    nlines = starts.shape[0] - 1
    per_task = 256                 # lines per parallel task: one nesting stack for all of them
    for t in nb.prange((nlines + per_task - 1) // per_task):
        stack = np.empty(64, dtype=np.uint8)
        for i in range(t * per_task, min(nlines, (t + 1) * per_task)):
            s = starts[i]
            e = starts[i + 1] - 1      # exclude the newline
            if e > buf.shape[0]:
                e = buf.shape[0]
            st, vs, ve = _scan_line(buf, s, e, key, stack)
            if st == OK and e - s > max_len:
                st = FLAGGED
            status[i] = st
            vstart[i] = vs
            vend[i] = ve
            lens[i] = ve - vs if st == OK else 0


@nb.njit(parallel=True, cache=True, nogil=True)
def _extract(buf, ok_idx, vstart, vend, out_off, out, out_len):
    for t in nb.prange(ok_idx.shape[0]):
        i = ok_idx[t]
        s = vstart[i]
        e = vend[i]
        backslash = np.uint8(0)
        for p in range(np.uint64(s), np.uint64(e)):
            backslash |= np.uint8(buf[p] == 0x5C)
        if backslash == 0:          # nothing to unescape: one memcpy
            copy_bytes(out, out_off[t], buf, s, e - s)
            out_len[t] = e - s
            continue
        o = _unescape(buf, s, e, out, out_off[t])
        out_len[t] = o - out_off[t] if o >= 0 else -1


def scan_block(body: bytes, field: str, max_record_bytes: int):
    """Scan a block of whole lines.

    Returns ``(data, offsets, ok_lines, flagged_lines, n_lines)``: the UTF-8 buffer and
    offsets of the field's value for every accepted line, their 0-based line indexes in the
    block, and the 0-based indexes of lines that need the slow path.
    """
    buf = np.frombuffer(body, dtype=np.uint8)
    key = np.frombuffer(field.encode("utf-8"), dtype=np.uint8)
    starts = _line_starts(buf)
    nlines = starts.shape[0] - 1
    status = np.empty(nlines, dtype=np.int8)
    vstart = np.empty(nlines, dtype=np.int64)
    vend = np.empty(nlines, dtype=np.int64)
    lens = np.empty(nlines, dtype=np.int64)
    _scan(buf, starts, key, max_record_bytes, status, vstart, vend, lens)
    ok_idx = np.flatnonzero(status == OK)
    # an escaped value never grows when unescaped, so the raw length bounds the output
    bound = np.zeros(ok_idx.shape[0] + 1, dtype=np.int64)
    np.cumsum(lens[ok_idx], out=bound[1:])
    scratch = np.empty(int(bound[-1]), dtype=np.uint8)
    out_len = np.empty(ok_idx.shape[0], dtype=np.int64)
    _extract(buf, ok_idx, vstart, vend, bound, scratch, out_len)
    bad = out_len < 0
    if bad.any():            # lone surrogates: Python reports them
        flagged_extra = ok_idx[bad]
        keep = ~bad
        ok_idx, bound_start, out_len = ok_idx[keep], bound[:-1][keep], out_len[keep]
    else:
        flagged_extra = np.empty(0, dtype=np.int64)
        bound_start = bound[:-1]
    offsets = np.zeros(ok_idx.shape[0] + 1, dtype=np.int64)
    np.cumsum(out_len, out=offsets[1:])
    if np.array_equal(out_len, lens[ok_idx]) and not bad.any():
        data = scratch       # nothing was escaped-shrunk: already contiguous
    else:
        from proofmesh.data.normalize import pack_spans

        data = np.empty(int(offsets[-1]), dtype=np.uint8)
        pack_spans(scratch, bound_start, out_len, data, offsets)
    flagged = np.sort(np.concatenate([np.flatnonzero(status == FLAGGED), flagged_extra]))
    return data, offsets, ok_idx, flagged, nlines
