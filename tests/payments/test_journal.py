"""The append-only journal under the payment books, usage counters and used nonces:
compaction, torn lines, crashes (real subprocesses that die with os._exit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proofmesh.store.journal import DURABILITY_BEHIND, DURABILITY_FSYNC, DURABILITY_GROUP, Journal, JournalUnwritable

from tests.conftest import wait_for

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.parametrize("mode", [DURABILITY_FSYNC, DURABILITY_GROUP, DURABILITY_BEHIND])
def test_compaction_keeps_only_the_latest_record_per_key(tmp_path, mode):
    path = tmp_path / "j.jsonl"
    j = Journal(path, mode, compact_min=50)
    for i in range(1000):
        j.put(f"k{i % 7}", {"i": i})
    j.compact()
    j.wait_durable(j.written)
    lines = _lines(path)
    assert len(lines) == 7                               # one line per key ...
    assert {x["k"]: x["v"]["i"] for x in lines} == {f"k{r}": max(i for i in range(1000) if i % 7 == r)
                                                      for r in range(7)}   # ... its latest record
    j.close()
    again = Journal(path, mode)
    assert again.records == {f"k{r}": {"i": max(i for i in range(1000) if i % 7 == r)} for r in range(7)}
    again.close()


def test_compaction_runs_by_itself_and_bounds_the_file(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal(path, DURABILITY_GROUP, compact_min=100)
    for i in range(5000):
        j.put(i % 10, i)
    j.wait_durable(j.written)
    # compacted while running, not only on open or close: the committer compacts after a sync
    # once enough lines have piled up, asynchronously (records put during a compaction wait for
    # the next one), so on a loaded machine the burst can end between two compactions
    wait_for(lambda: len(path.read_text().splitlines()) < 1000, 30, "the journal to compact itself while open")
    j.close()
    assert Journal(path).records == {r: 4990 + r for r in range(10)}


def test_a_torn_last_line_is_ignored_and_cut_off(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal(path, DURABILITY_FSYNC)
    j.put("a", 1)
    j.put("b", 2)
    j.close()
    good = path.read_bytes()
    with open(path, "ab") as fh:
        fh.write(b'{"k":"a","v":3')                        # a crash in the middle of a write
    j = Journal(path, DURABILITY_FSYNC)
    assert j.records == {"a": 1, "b": 2}                   # never acknowledged: not there
    assert path.read_bytes() == good                       # cut off, so the next line starts clean
    j.put("c", 4)
    j.close()
    assert Journal(path).records == {"a": 1, "b": 2, "c": 4}
    # a complete line without its newline is torn too (the newline is part of the one write)
    with open(path, "ab") as fh:
        fh.write(b'{"k":"a","v":5}')
    assert Journal(path).records == {"a": 1, "b": 2, "c": 4}


def test_garbage_before_good_lines_is_skipped_and_rewritten(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"k":"a","v":1}\n{"k":"a",\n{"k":"b","v":2}\n')
    assert Journal(path).records == {"a": 1, "b": 2}
    assert _lines(path) == [{"k": "a", "v": 1}, {"k": "b", "v": 2}]


def test_older_formats_are_read_and_rewritten(tmp_path):
    whole = tmp_path / "books.json"                        # the payment books' first format
    whole.write_text(json.dumps({"0xabc": {"nonce": 3}}, indent=2))
    j = Journal(whole, legacy=lambda o: o.items())
    assert j.records == {"0xabc": {"nonce": 3}}
    assert _lines(whole) == [{"k": "0xabc", "v": {"nonce": 3}}]
    raw = tmp_path / "usage.jsonl"                         # the usage counters' raw records
    raw.write_text('{"toolId":"aa","calls":1}\n{"toolId":"aa","calls":2}\n')
    j = Journal(raw, legacy=lambda r: [(r["toolId"], r)])
    assert j.records == {"aa": {"toolId": "aa", "calls": 2}}


def test_keep_expires_records_at_open_and_at_compaction(tmp_path):
    path = tmp_path / "j.jsonl"
    horizon = {"t": 0}
    j = Journal(path, DURABILITY_BEHIND, keep=lambda k, v: v >= horizon["t"], compact_min=10)
    for i in range(100):
        j.put(i, i)
    horizon["t"] = 50
    j.compact()
    assert sorted(j.records) == list(range(50, 100))       # forgotten in memory ...
    assert sorted(x["k"] for x in _lines(path)) == list(range(50, 100))   # ... and on disk
    j.close()
    horizon["t"] = 90
    assert sorted(Journal(path, keep=lambda k, v: v >= horizon["t"]).records) == list(range(90, 100))


def test_unknown_durability_is_refused(tmp_path):
    from proofmesh.errors import InputError
    with pytest.raises(InputError, match="durability"):
        Journal(tmp_path / "j", "sometimes")


def test_a_failed_sync_is_fail_stop(tmp_path, monkeypatch):
    j = Journal(tmp_path / "j.jsonl", DURABILITY_GROUP)
    j.put("a", 1)
    j.wait_durable(j.written)

    def broken(fd):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(os, "fdatasync", broken)
    j.put("a", 2)
    with pytest.raises(JournalUnwritable, match="cannot be made durable"):
        j.wait_durable(j.written)
    with pytest.raises(JournalUnwritable):
        j.put("a", 3)


# --- crashes: a child process puts records and dies with os._exit at a chosen point --------

CHILD = textwrap.dedent("""
    import os, sys, threading
    sys.path.insert(0, {src!r})
    from proofmesh.store import journal as J
    path, mode, crash = {path!r}, {mode!r}, {crash!r}
    real_replace, real_fsync = os.replace, os.fsync
    armed = threading.Event()
    def _is_tmp(fd):
        return os.readlink(f"/proc/self/fd/{{fd}}").endswith(".tmp")
    def fsync(fd):
        # "snapshot": die once the compacted snapshot is on disk, before the tail and the rename
        if crash == "snapshot" and armed.is_set() and _is_tmp(fd):
            os._exit(0)
        real_fsync(fd)
    def replace(src, dst):
        if crash == "rename" and armed.is_set():
            os._exit(0)                              # the new file is complete but not renamed
        real_replace(src, dst)
        if crash == "renamed" and armed.is_set():
            os._exit(0)                              # renamed, neither it nor the directory synced
    os.fsync, os.replace = fsync, replace
    j = J.Journal(path, mode, 0.001, compact_min=200)
    out = sys.stdout
    for i in range(1, 10**9):
        j.put(f"k{{i % 50}}", i)
        out.write(f"{{i}}\\n")                          # acknowledged to this process
        out.flush()
        if i == 1000:
            armed.set()                              # crash during a compaction from here on
        if crash == "exit" and i == 3000:
            os._exit(0)                              # no close(): nothing synced on the way out
""")


def _crash_child(tmp_path: Path, mode: str, crash: str) -> tuple[Journal, int]:
    path = tmp_path / f"{mode}-{crash}.jsonl"
    code = CHILD.format(src=SRC, path=str(path), mode=mode, crash=crash)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    acked = int(r.stdout.split()[-1])
    assert acked > 1000
    return Journal(path, mode), acked


@pytest.mark.parametrize("crash", ["snapshot", "rename", "renamed"])
def test_a_crash_in_the_middle_of_a_compaction_loses_and_reorders_nothing(tmp_path, crash):
    j, acked = _crash_child(tmp_path, DURABILITY_GROUP, crash)
    # group mode: every put that returned is in the file, whichever step the crash hit;
    # the latest record of each key is the latest put (a reordered replay would show an older one)
    for r in range(50):
        latest_acked = max(i for i in range(1, acked + 1) if i % 50 == r)
        assert latest_acked <= j.records[f"k{r}"] <= acked + 1   # +1: put returned, not yet printed
    assert not (tmp_path / f"{DURABILITY_GROUP}-{crash}.jsonl.tmp").exists()   # the cut-short compaction is gone
    j.close()


def test_group_commit_keeps_every_returned_put_after_os_exit(tmp_path):
    j, acked = _crash_child(tmp_path, DURABILITY_GROUP, "exit")
    assert acked == 3000
    assert j.records == {f"k{r}": max(i for i in range(1, 3001) if i % 50 == r) for r in range(50)}


def test_write_behind_keeps_what_was_durable_after_os_exit(tmp_path):
    path = tmp_path / "behind.jsonl"
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {SRC!r})
        from proofmesh.store.journal import Journal
        j = Journal({str(path)!r}, "behind", 5.0)
        for i in range(100):
            j.put(i, i)
        j.wait_durable(j.written)                    # durable: must survive
        for i in range(100, 200):
            j.put(i, i)                              # only in memory (5 s gathering interval)
        os._exit(0)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert Journal(path).records == {i: i for i in range(100)}
