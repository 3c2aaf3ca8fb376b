"""The gateway's durable, append-only log of accepted readings.

One frame per accepted batch, written with one ``write`` and made durable with one
``fsync`` before the batch is acknowledged, so a gateway killed at any instant loses no
reading it acknowledged, and the cost of durability is paid per batch, not per reading::

    frame = b"PMLG" ‖ body_len u32 ‖ xxh64(body) u64 ‖ body
    body  = entry*;   entry = interval u64 ‖ wire record (see proofmesh.edge.reading)

On open the log is scanned; a torn last frame (a crash mid-write, never acknowledged) is
detected by its length or checksum and cut off.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import xxhash

from proofmesh.edge.reading import RECORD_FIXED
from proofmesh.errors import StoreError

_FRAME = struct.Struct(">4sIQ")
_MAGIC = b"PMLG"


class ReadingLog:
    """Append-only frames of (interval, record) entries."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()
        self.recovered_bytes_dropped = 0

    def replay(self) -> Iterator[tuple[int, bytes]]:
        """Yield every (interval, record) in order, truncating a torn tail first."""
        data = Path(self.path).read_bytes()
        off = 0
        good_end = 0
        entries: list[tuple[int, bytes]] = []
        while off + _FRAME.size <= len(data):
            magic, length, digest = _FRAME.unpack_from(data, off)
            start, end = off + _FRAME.size, off + _FRAME.size + length
            if magic != _MAGIC or end > len(data) or xxhash.xxh64_intdigest(data[start:end]) != digest:
                break
            pos = start
            while pos < end:
                interval = int.from_bytes(data[pos:pos + 8], "big")
                plen = int.from_bytes(data[pos + 8 + RECORD_FIXED - 2:pos + 8 + RECORD_FIXED], "big")
                rec_end = pos + 8 + RECORD_FIXED + plen
                if rec_end > end:
                    raise StoreError(f"{self.path}: frame at {off} holds a truncated record",
                                     fix="the log is corrupt beyond a torn tail; restore it from a backup")
                entries.append((interval, data[pos + 8:rec_end]))
                pos = rec_end
            off = good_end = end
        if good_end < len(data):
            # A torn frame from a crash mid-write: it was never acknowledged, drop it.
            self.recovered_bytes_dropped = len(data) - good_end
            os.truncate(self.path, good_end)
        yield from entries

    def append(self, entries: list[bytes]) -> None:
        """Write one frame (the concatenation of ``entries``: interval ‖ record, in one or
        two parts each); not yet durable."""
        body = b"".join(entries)
        frame = _FRAME.pack(_MAGIC, len(body), xxhash.xxh64_intdigest(body)) + body
        with self._lock:
            n = os.write(self._fd, frame)
            while n < len(frame):  # os.write may be partial for very large frames
                n += os.write(self._fd, frame[n:])

    def sync(self) -> None:
        """Make everything appended so far durable."""
        os.fsync(self._fd)

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass
