"""An append-only JSON-lines journal: the latest record per key survives restarts.

Rewriting a state file per paid call (write + rename) costs ~2-4 ms on this class of
disk, more than the whole per-call budget; appending a line costs microseconds. On
open the journal is replayed (last record per key wins, a torn final line from a crash
is ignored) and compacted, so it never grows without bound.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Callable


class Journal:
    """Key -> JSON record, persisted as an append-only log of updates."""

    def __init__(self, path: Path | None, key: Callable[[dict[str, Any]], str],
                 compact_every: int = 10_000) -> None:
        self.path = path
        self._key = key
        self._lock = threading.Lock()
        self.records: dict[str, dict[str, Any]] = {}
        self._appended = 0
        self._compact_every = compact_every
        self._fh = None
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with path.open("r", encoding="utf-8") as fh:
                for line in fh:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        break   # a torn last line from a crash: everything before it is intact
                    self.records[key(rec)] = rec
        self._compact()

    def _compact(self) -> None:
        assert self.path is not None
        if self._fh is not None:
            self._fh.close()
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for rec in self.records.values():
                fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._fh = self.path.open("a", encoding="utf-8")
        self._appended = 0

    def put(self, record: dict[str, Any]) -> None:
        """Record ``record`` as the latest for its key (appended and flushed to the OS)."""
        with self._lock:
            self.records[self._key(record)] = record
            if self.path is None:
                return
            if self._fh is None:   # closed earlier; keep journaling
                self._fh = self.path.open("a", encoding="utf-8")
            self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._fh.flush()
            self._appended += 1
            if self._appended >= self._compact_every:
                self._compact()

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
