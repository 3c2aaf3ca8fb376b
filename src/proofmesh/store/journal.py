"""Append-only journal of keyed records: the latest record per key survives restarts.

Every small piece of durable node state (payment books, usage counters, used request
nonces) is a map key -> record updated far more often than it is read back. Rewriting a
state file per update (write + fsync + rename) costs ~2-4 ms on this class of disk, more
than a whole request's budget; appending a line costs microseconds. So a :class:`Journal`
appends one JSON line ``{"k": key, "v": record}`` per :meth:`~Journal.put`, keeps the
latest record per key in memory (:attr:`Journal.records`), and replays the file on open
(last record of a key wins).

Durability (``durability``):

- ``"fsync"``: every ``put`` is flushed and fsynced before it returns.
- ``"group"``: every ``put`` is written to the OS before it returns (so a *process* crash
  loses nothing) and a committer thread fdatasyncs whatever is pending, one sync for all
  records written meanwhile (group commit), off the caller's path. ``put`` returns the
  record's sequence number; :meth:`Journal.wait_durable` blocks until it is on disk, for
  callers that must not go on before (strict mode). Syncs start at most every
  ``commit_interval_s`` (an fdatasync costs ~0.3 ms of CPU on this VM, so fewer syncs for
  frequent records), except that a ``wait_durable`` caller gets one at once. An OS crash or
  power loss loses at most the records of the last ``commit_interval_s`` + one fdatasync
  (~4 ms on this disk), or those put during a compaction in progress (below).
- ``"behind"``: as ``"group"``, but the committer also encodes and writes the records:
  ``put`` only appends to a list in memory. A process crash then loses what an OS crash
  loses. For state whose loss costs no money (a payer's wallet, which resyncs from the
  payee's newest voucher; a node's used nonces, see :mod:`proofmesh.inference.nonces`).

If a write or sync fails the journal is fail-stop: every later ``put`` and
``wait_durable`` raises (``error``, :class:`JournalUnwritable` unless the owner names its
own subclass), so its owner never acknowledges what it cannot keep.

Crash safety. A line torn by a crash is skipped on open (it was never acknowledged) and
cut off the file, so later appends never glue onto it. Creating the file and every rename
fsync the directory.

Compaction. On open, and whenever the file holds as many superseded (or expired, see
``keep``) lines as live ones (at least ``compact_min`` appends), it is rewritten to one
line per live key:
the live records are written to ``<name>.tmp`` and fsynced, then renamed over the
journal and the directory fsynced; a crash at any point leaves either the old file
(complete: group mode writes every record to it before ``put`` returns) or the new one.
In group and write-behind mode the committer thread compacts, off the caller's path:
it snapshots the records and the sequence number under the lock (the cut), writes and
fsyncs the snapshot outside it while later records keep going to the old file *and* to a
tail list, then, under the lock, appends the tail to the new file, renames it over the
journal and switches appends to it, and fsyncs it and the directory before it reports
any record after the cut durable. Records before the cut are on disk in the snapshot
before the rename, so no acknowledged record is lost and none is reordered (the tail is
replayed after the snapshot, in order). Callers block on the lock only for the snapshot
copy and the tail write (microseconds for books, ~10 ms per 100k records).

Keys are JSON scalars (str or int); records are JSON values the caller does not mutate
after ``put`` (write-behind encodes them later).

One owner per file. Two owners appending to and compacting the same file (a node daemon
and a CLI command, two nodes started on one home) would each rename a snapshot of *its*
records over the other's lines: a used request nonce forgotten (a replay window) or a
payment voucher lost. So opening a journal takes an exclusive ``flock`` on the sibling
``<name>.lock`` (non-blocking: the second opener fails at once with
:class:`JournalLocked`, before it reads, truncates or writes anything of the journal) and
``close`` releases it. ``flock`` belongs to an open file description, so the kernel drops it
when the holder dies however it dies (no stale lock to clean up), and a second open in the
*same* process conflicts too: a Journal that was never closed keeps its file, and a
second owner in one process is the same bug as one in two. A Journal collected without
``close`` (only possible when no committer thread holds it) gives its lock back when it
is collected. The lock file holds the holder's pid for the error message and is never
deleted (deleting a lock file races with the next opener). A ``put`` after ``close``
reopens the journal and so takes the lock again. In-memory journals take no lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable

from proofmesh.errors import InputError, ProofmeshError

DURABILITY_FSYNC = "fsync"     # every record fsynced before put() returns
DURABILITY_GROUP = "group"     # written to the OS before put() returns; fdatasynced by a background committer
DURABILITY_BEHIND = "behind"   # written and fdatasynced by the background committer (write-behind)
MODES = (DURABILITY_FSYNC, DURABILITY_GROUP, DURABILITY_BEHIND)


class JournalUnwritable(ProofmeshError):
    """A journal could not be made durable (disk error): it accepts nothing more."""


class JournalLocked(ProofmeshError):
    """Another owner (process, or an unclosed Journal in this process) has the journal open."""


def _release_lock(fd: int) -> None:
    """Close a journal's lock file (closing the last descriptor of a flock releases it)."""
    try:
        os.close(fd)
    except OSError:
        pass


def _acquire_lock(path: Path, what: str) -> int:
    """Take the exclusive lock of journal ``path``; returns the lock file's descriptor.

    Raises :class:`JournalLocked` without touching ``path`` when another owner holds it.
    """
    lock_path = path.with_name(path.name + ".lock")
    # O_CLOEXEC: a program this process execs must not keep the journal locked after we exit
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        except OSError:
            holder = ""
        os.close(fd)
        if holder == str(os.getpid()):
            who = (f"this process (pid {holder}) already has it open through another Journal that was "
                   f"not closed")
            fix = "close() the first Journal before opening the file again (one owner per journal)"
        else:
            who = f"another process (pid {holder}) has it open" if holder.isdigit() else \
                "another process has it open"
            fix = "stop the other proofmesh process using this home, or point this one at another home"
        raise JournalLocked(f"{what} in {path} is locked: {who} (lock file {lock_path})", fix=fix) from None
    except BaseException:
        os.close(fd)
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)   # for the refused opener's message only
    except OSError:
        pass
    return fd


_encode = json.JSONEncoder(separators=(",", ":")).encode   # json.dumps minus its per-call setup (2x)


def _line(key: Any, value: Any) -> str:
    return _encode({"k": key, "v": value}) + "\n"


def fsync_dir(path: Path) -> None:
    """Make a create/rename/delete in directory ``path`` durable (POSIX leaves it to the directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:      # a platform without directory handles: nothing more can be done
        return
    try:
        os.fsync(fd)
    except OSError:
        pass             # some filesystems refuse fsync on a directory; the rename itself stands
    finally:
        os.close(fd)


class Journal:
    """Key -> latest record, persisted as an append-only log of updates (see the module doc).

    ``path`` None keeps the records in memory only. ``keep(key, record) -> bool`` drops a
    record (from memory and file) at open and at each compaction when it returns False
    (expiry). ``legacy(obj)`` turns a JSON object of an older file format (a line or the
    whole file that is not a ``{"k", "v"}`` record) into ``(key, record)`` pairs.
    """

    def __init__(self, path: Path | None, durability: str = DURABILITY_FSYNC, commit_interval_s: float = 0.0, *,
                 keep: Callable[[Any, Any], bool] | None = None,
                 legacy: Callable[[Any], Iterable[tuple[Any, Any]]] | None = None,
                 compact_min: int = 10_000, error: type[ProofmeshError] = JournalUnwritable,
                 what: str = "journal") -> None:
        if durability not in MODES:
            raise InputError(f"unknown durability {durability!r}", fix="use 'fsync', 'group' or 'behind'")
        self.path = Path(path) if path is not None else None
        self.durability = durability
        self.commit_interval_s = max(0.0, float(commit_interval_s))
        self.records: dict[Any, Any] = {}
        self._keep = keep
        self._legacy = legacy
        self._compact_min = max(1, int(compact_min))
        self._error_type = error
        self._what = what
        self._fh = None
        self._lock = threading.Lock()     # a plain lock: `with` on it stays in C (the put path)
        self._cv = threading.Condition(self._lock)
        self._running = False      # a committer thread is running (cheaper to ask than Thread.is_alive)
        self._written = 0          # records put (handed to the OS, or to the committer in write-behind)
        self._synced = 0           # records known to be on disk
        self._error: OSError | None = None
        self._committer: threading.Thread | None = None
        self._closed = False
        self._pending: list[tuple[Any, Any]] = []   # write-behind: records the committer has not written
        self._tail: list[str] | None = None          # group mode, while compacting: lines since the cut
        self._hurry = threading.Event()   # a wait_durable caller (or close) wants a sync now
        self._wanted = 0           # highest record a wait_durable caller waits for
        self._idle = False         # the committer waits for records (only then is put's notify needed)
        self._appended = 0         # lines in the file beyond its last compaction
        self._compact_at = self._compact_min
        self._force_to = 0         # compact() wants a compaction whose cut includes this record
        self._last_cut = 0         # the newest record in the last compaction's snapshot
        self._lock_fd: int | None = None
        self._unlock: weakref.finalize | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._take_lock()
            try:
                self._open()
            except BaseException:
                self._give_lock()
                raise

    # --- open ------------------------------------------------------------------------
    @property
    def _tmp(self) -> Path:
        return self.path.with_name(self.path.name + ".tmp")

    def _take_lock(self) -> None:
        fd = _acquire_lock(self.path, self._what)
        self._lock_fd = fd
        # a Journal dropped without close() must not keep its file from a legitimate reopen
        self._unlock = weakref.finalize(self, _release_lock, fd)

    def _give_lock(self) -> None:
        if self._unlock is not None:
            self._unlock()         # closes the descriptor once, and never again at collection
            self._unlock = None
        self._lock_fd = None

    def _open(self) -> None:
        try:
            self._tmp.unlink()     # a compaction cut short by a crash: the journal itself is complete
        except FileNotFoundError:
            pass
        lines, good_end, dirty = 0, 0, False
        if self.path.exists():
            data = self.path.read_bytes()
            lines, good_end, dirty = self._replay(data)
            if not dirty and good_end < len(data):
                # a torn last line: cut it off so the next append starts on a line of its own
                with open(self.path, "r+b") as fh:
                    fh.truncate(good_end)
                    fh.flush()
                    os.fsync(fh.fileno())
        if self._keep is not None:
            for k in [k for k, v in self.records.items() if not self._keep(k, v)]:
                del self.records[k]
        if dirty or lines > len(self.records):
            self._rewrite(dict(self.records))     # superseded or expired lines: start compact
        else:
            self._append_handle()
        self._compact_at = max(self._compact_min, len(self.records))

    def _replay(self, data: bytes) -> tuple[int, int, bool]:
        """Load ``data`` into :attr:`records`; returns (lines read, end of the last good line,
        whether the file must be rewritten: an older format, or a bad line before good ones)."""
        if data.endswith(b"\n"):
            try:        # the common case, no torn or foreign line: one parse of the whole file (5x)
                recs = json.loads(b"[" + data[:-1].replace(b"\n", b",") + b"]")
            except ValueError:
                recs = None
            if recs is not None and all(type(r) is dict and len(r) == 2 and "k" in r and "v" in r for r in recs):
                records = self.records
                for r in recs:
                    records[r["k"]] = r["v"]
                return len(recs), len(data), False
        lines, pos, good_end, bad, dirty = 0, 0, 0, False, False
        for raw in data.splitlines(keepends=True):
            pos += len(raw)
            try:
                rec = json.loads(raw) if raw.endswith(b"\n") else None
            except ValueError:
                rec = None
            if isinstance(rec, dict) and set(rec) == {"k", "v"}:
                self.records[rec["k"]] = rec["v"]
            elif rec is not None and self._legacy is not None:
                for k, v in self._legacy(rec):
                    self.records[k] = v
                dirty = True          # rewritten in the current format
            else:
                bad = True            # torn by a crash: never acknowledged
                continue
            dirty = dirty or bad      # good lines after a bad one: rewrite rather than truncate
            lines += 1
            good_end = pos
        if lines == 0 and self._legacy is not None and data.strip():
            try:                      # an older format written as one (indented) JSON document
                whole = json.loads(data)
            except ValueError:
                whole = None
            if whole is not None:
                for k, v in self._legacy(whole):
                    self.records[k] = v
                return 1, len(data), True
        return lines, good_end, dirty

    def _append_handle(self) -> None:
        created = not self.path.exists()
        self._fh = open(self.path, "a", encoding="utf-8")
        if created:
            fsync_dir(self.path.parent)

    def _rewrite(self, snapshot: dict) -> None:
        """Compaction with no committer running (at open, in fsync mode): write, fsync, rename."""
        tmp = self._write_snapshot(snapshot)
        tmp.close()
        os.replace(self._tmp, self.path)
        fsync_dir(self.path.parent)
        if self._fh is not None:
            self._fh.close()
        self._fh = open(self.path, "a", encoding="utf-8")
        self._appended = 0

    def _write_snapshot(self, snapshot: dict):
        fh = open(self._tmp, "w", encoding="utf-8")
        try:
            keep = self._keep
            chunk: list[str] = []
            for k, v in snapshot.items():
                if keep is None or keep(k, v):
                    chunk.append(_line(k, v))
                    if len(chunk) >= 4096:
                        fh.write("".join(chunk))
                        chunk.clear()
            fh.write("".join(chunk))
            fh.flush()
            os.fsync(fh.fileno())
        except BaseException:
            fh.close()
            raise
        return fh

    # --- writes ----------------------------------------------------------------------
    def check(self) -> None:
        """Raise if an earlier write or sync failed (call before changing any state)."""
        if self._error is not None:
            raise self._error_type(f"{self._what} in {self.path} cannot be made durable: {self._error}",
                                   fix="fix the disk (space, permissions) and restart; nothing more is accepted "
                                       "until then")

    @property
    def written(self) -> int:
        """Sequence number of the latest record put (a mark for :meth:`durable`)."""
        return self._written

    def get(self, key: Any, default: Any = None) -> Any:
        return self.records.get(key, default)

    def put(self, key: Any, value: Any) -> int:
        """Record ``value`` as the latest for ``key``; returns its sequence number."""
        if self._error is not None:
            self.check()
        with self._lock:
            if self.path is None:
                self.records[key] = value
                self._written += 1
                self._synced = self._written
                return self._written
            if self._fh is None:          # closed earlier: keep journaling, as the file's owner again
                if self._lock_fd is None:
                    self._take_lock()
                self._append_handle()
                self._closed = False
            if self.durability == DURABILITY_BEHIND:
                self._pending.append((key, value))
            else:
                line = _line(key, value)
                try:
                    self._fh.write(line)
                    self._fh.flush()
                    if self.durability == DURABILITY_FSYNC:
                        os.fsync(self._fh.fileno())
                except OSError as exc:
                    self._error = exc
                    self.check()
                if self._tail is not None:
                    self._tail.append(line)
            self.records[key] = value
            self._written += 1
            seq = self._written
            self._appended += 1
            if self.durability == DURABILITY_FSYNC:
                self._synced = seq
                if self._appended >= self._compact_at:
                    try:
                        self._compact_now()
                    except OSError as exc:   # the record itself is on disk; nothing later is taken
                        self._error = exc
                return seq
            if not self._running:
                self._start_committer()
            elif self._idle:
                self._cv.notify_all()   # waking the committer costs a thread switch: only when it sleeps
        return seq

    def _start_committer(self) -> None:
        self._running = True
        self._committer = threading.Thread(target=self._commit_loop, name=f"journal-{self.path.name}", daemon=True)
        self._committer.start()

    def _compact_now(self) -> None:
        """fsync mode, under the lock: every record is on disk, so rewrite in place."""
        snapshot = dict(self.records)
        self._rewrite(snapshot)
        self._drop_expired(snapshot, locked=True)
        self._compact_at = max(self._compact_min, len(self.records))
        self._last_cut = self._written

    def durable(self, seq: int) -> bool:
        return self._synced >= seq

    def wait_durable(self, seq: int, timeout: float | None = 30.0) -> None:
        """Block until record ``seq`` is on disk; raises if it cannot be."""
        with self._lock:
            if self._synced < seq:
                self._wanted = max(self._wanted, seq)
                self._hurry.set()
                self._cv.notify_all()
            if not self._cv.wait_for(lambda: self._synced >= seq or self._error is not None, timeout):
                raise self._error_type(f"{self._what} in {self.path} not on disk after {timeout} s",
                                       fix="check the disk")
        self.check()

    # --- the committer ---------------------------------------------------------------
    def _commit_loop(self) -> None:
        try:
            self._commit_cycles()
        finally:
            with self._lock:
                if self._committer is threading.current_thread():   # not a successor a put started
                    self._running = False

    def _commit_cycles(self) -> None:
        last = 0.0
        while True:
            with self._lock:
                self._idle = True
                self._cv.wait_for(lambda: self._written > self._synced or self._closed
                                  or self._force_to > self._last_cut)
                self._idle = False
                if self._written <= self._synced and self._force_to <= self._last_cut:
                    self._running = False                    # decided under the lock: put starts a new one
                    return                                   # closed with nothing pending
            delay = last + self.commit_interval_s - time.monotonic()
            if delay > 0 and not self._closed:               # gather more records into this sync
                self._hurry.wait(delay)
            self._hurry.clear()
            with self._lock:
                target, fh = self._written, self._fh
                items, self._pending = self._pending, []
            last = time.monotonic()
            try:
                if items:                                     # write-behind: only this thread writes
                    fh.write("".join([_line(k, v) for k, v in items]))
                    fh.flush()
                os.fdatasync(fh.fileno())
            except OSError as exc:
                self._fail(exc)
                return
            with self._lock:
                self._synced = max(self._synced, target)
                if self._wanted <= self._synced:
                    # every waiter is served: a hurry left over from them must not cut
                    # the next gathering interval short
                    self._hurry.clear()
                self._cv.notify_all()
                due = (self._appended >= self._compact_at and not self._closed) or self._force_to > self._last_cut
            while due:
                try:
                    self._compact_live()
                except OSError as exc:
                    self._fail(exc)
                    return
                # Records put during that compaction went into the new file, already synced:
                # no waiter may wake this loop again, so if they are enough for another
                # compaction it runs now (else a burst that ended mid-compaction stayed
                # uncompacted until the next put)
                with self._lock:
                    due = self._appended >= self._compact_at and not self._closed

    def _fail(self, exc: OSError) -> None:
        with self._lock:
            self._error = exc
            self._tail = None
            self._cv.notify_all()

    def _compact_live(self) -> None:
        """Compaction by the committer while callers keep putting (see the module doc)."""
        with self._lock:
            snapshot = dict(self.records)                     # the cut
            cut = self._written
            if self.durability == DURABILITY_GROUP:
                self._tail = []
            else:
                self._pending = []                            # in the snapshot already
            self._appended = 0
        try:
            new = self._write_snapshot(snapshot)              # the long part, outside the lock
        except BaseException:
            with self._lock:
                self._tail = None
            try:
                self._tmp.unlink()
            except OSError:
                pass
            raise
        try:
            with self._lock:
                if self.durability == DURABILITY_GROUP:
                    tail, self._tail = self._tail, None
                    new.write("".join(tail))
                else:
                    items, self._pending = self._pending, []
                    new.write("".join([_line(k, v) for k, v in items]))
                new.flush()
                os.replace(self._tmp, self.path)
                old, self._fh = self._fh, new
                target = self._written
            old.close()
            os.fdatasync(new.fileno())
            fsync_dir(self.path.parent)
        except BaseException:
            with self._lock:
                self._tail = None
            raise
        with self._lock:
            self._synced = max(self._synced, target)
            self._cv.notify_all()
        self._drop_expired(snapshot, locked=False)
        with self._lock:
            self._compact_at = max(self._compact_min, len(self.records))
            self._last_cut = cut
            self._cv.notify_all()

    def _drop_expired(self, snapshot: dict, *, locked: bool) -> None:
        """Forget in memory what ``keep`` left out of the compacted file (unless put again since)."""
        if self._keep is None:
            return
        gone = [(k, v) for k, v in snapshot.items() if not self._keep(k, v)]
        for i in range(0, len(gone), 10_000):                 # in slices: callers wait on the lock
            if locked:
                self._forget(gone[i:i + 10_000])
            else:
                with self._lock:
                    self._forget(gone[i:i + 10_000])

    def _forget(self, pairs: list[tuple[Any, Any]]) -> None:
        records = self.records
        for k, v in pairs:
            if records.get(k) is v:
                del records[k]

    def compact(self) -> None:
        """Compact now (normally automatic): rewrite the file to one line per live key."""
        if self.path is None:
            return
        self.check()
        with self._lock:
            if self.durability == DURABILITY_FSYNC:
                self._compact_now()
                return
            want = self._written
            self._force_to = max(self._force_to, want)
            if not self._running:
                self._start_committer()
            self._hurry.set()
            self._cv.notify_all()
            self._cv.wait_for(lambda: self._last_cut >= want or self._error is not None)
        self.check()

    def flush(self) -> None:
        """Write and sync everything put so far (what ``close`` does, without closing)."""
        if self.path is None or self._written == 0:
            return
        if self.durability != DURABILITY_FSYNC and self._running:
            self.wait_durable(self._written)
            return
        with self._lock:
            if self._pending:
                self._fh.write("".join([_line(k, v) for k, v in self._pending]))
                self._pending = []
            if self._fh is not None and self._error is None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._synced = self._written

    def close(self) -> None:
        """Sync what is pending and stop the committer (a clean shutdown loses nothing)."""
        with self._lock:
            self._closed = True
            self._hurry.set()
            self._cv.notify_all()
            committer = self._committer
        if committer is not None:
            committer.join(timeout=60)
            self._committer = None
        with self._lock:
            if self._fh is None:
                self._give_lock()
                return
            try:
                if self._error is None:
                    if self._pending:
                        self._fh.write("".join([_line(k, v) for k, v in self._pending]))
                        self._pending = []
                    self._fh.flush()
                    os.fsync(self._fh.fileno())
                    self._synced = self._written
            finally:
                self._fh.close()
                self._fh = None
                self._give_lock()     # only once nothing more of ours can reach the file
