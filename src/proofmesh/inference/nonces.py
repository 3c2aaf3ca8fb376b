"""The nonces an inference node has answered, kept across restarts.

A request's nonce is signed into its receipt, and a node answers each nonce once: a
replayed request (the same body sent again, by anyone who saw it) is refused instead of
run again. Held only in memory, that set was empty after every restart, so any request
answered before it could be replayed after it.

:class:`UsedNonces` keeps the set in a write-behind :class:`~proofmesh.store.journal.Journal`
(``<workdir>/nonces-<version>.jsonl``): recording a nonce on the request path is an
append to a list in memory; a committer thread writes and fdatasyncs the batch every
``commit_interval_s`` (200 ms), and a node reloads the file when it starts.

Bounded: each nonce is kept with the node's time of its first use and forgotten
``window_s + future_s`` later (at the next compaction, and at open). To make that bound
safe for good, a client sends **dated nonces** (:func:`dated_nonce`, what the router
sends): ``0x706d6e31`` ("pmn1", 32 bits) | unix seconds (32 bits) | 192 random bits. The
node refuses a dated nonce whose time is more than ``window_s`` in the past or
``future_s`` in the future, so every dated nonce it would have forgotten is refused as
stale anyway. A nonce without that tag (a plain random 256-bit number, or a small test
counter) is still accepted once, but is only refused for ``window_s + future_s`` after
its first use.

The guarantee: a nonce the node answered is refused again, across clean restarts, for
as long as it is acceptable at all (dated) or for ``window_s + future_s`` (undated). A
crash of the process or the OS loses the nonces answered in the last
``commit_interval_s`` + one write and fdatasync (or during a compaction in progress),
which can then be replayed once each (write-behind: no sync is ever on the request
path). Replaying a paid request gains nothing (its voucher is refused as stale).
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from proofmesh.errors import InputError
from proofmesh.store.journal import DURABILITY_BEHIND, Journal

DATED_TAG = 0x706D6E31          # "pmn1" in the top 32 bits of a dated nonce
WINDOW_S = 600                  # a dated nonce older than this is refused as stale
FUTURE_S = 60                   # ... and one this far ahead of the node's clock
_DATED_LO, _DATED_HI = DATED_TAG << 224, (DATED_TAG + 1) << 224
COMMIT_INTERVAL_S = 0.2        # a sync costs ~0.3 ms of CPU: a few per second, not per request


class NonceReused(InputError):
    """The request's nonce was answered before (a replay)."""


class NonceStale(InputError):
    """A dated nonce outside the node's replay window (an old request replayed, or a bad clock)."""


def dated_nonce(now: float | None = None) -> int:
    """A fresh request nonce carrying its time (see the module doc)."""
    t = int(time.time() if now is None else now) & 0xFFFFFFFF
    return (DATED_TAG << 224) | (t << 192) | secrets.randbits(192)


class UsedNonces:
    """The node's used nonces: :meth:`check` before answering, :meth:`add` once answered."""

    def __init__(self, path: Path | None, *, window_s: float = WINDOW_S, future_s: float = FUTURE_S,
                 commit_interval_s: float = COMMIT_INTERVAL_S) -> None:
        if window_s <= 0 or future_s < 0:
            raise InputError(f"nonce window {window_s} s / {future_s} s ahead", fix="use a window > 0 and ahead >= 0")
        self.window_s = window_s
        self.future_s = future_s
        self._journal = Journal(path, DURABILITY_BEHIND, commit_interval_s, keep=self._live,
                                what="used-nonce set")
        self._used = self._journal.records          # nonce -> unix second of its first use
        self._second = 0                              # shared by the nonces of one second (memory)

    def _live(self, nonce: int, first_used: int) -> bool:
        return first_used >= time.time() - self.window_s - self.future_s

    def __len__(self) -> int:
        return len(self._used)

    def __contains__(self, nonce: int) -> bool:
        return nonce in self._used

    def check(self, nonce: int) -> None:
        """Raise unless ``nonce`` may be answered now."""
        if nonce in self._used:
            raise NonceReused("request nonce already used", fix="use a fresh random nonce per request")
        if _DATED_LO <= nonce < _DATED_HI:      # compares, no shifted copy of every nonce
            t = (nonce >> 192) & 0xFFFFFFFF
            now = time.time()
            if not now - self.window_s <= t <= now + self.future_s:
                raise NonceStale(f"request nonce is dated {int(t - now):+d} s from this node's clock, outside its "
                                 f"replay window (-{self.window_s:g} s .. +{self.future_s:g} s)",
                                 fix="make a fresh nonce (proofmesh.inference.nonces.dated_nonce) and check the "
                                     "client's clock")

    def add(self, nonce: int) -> None:
        """Record ``nonce`` as answered (in memory now; on disk within ``commit_interval_s``)."""
        now = int(time.time())
        if now != self._second:
            self._second = now
        self._journal.put(nonce, self._second)

    def flush(self) -> None:
        """Write and sync every nonce recorded so far."""
        self._journal.flush()

    def close(self) -> None:
        self._journal.close()
