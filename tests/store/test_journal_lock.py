"""One owner per journal file: a second opener (process or unclosed object) is refused whole."""

import gc
import multiprocessing as mp
import os
import signal
import sys
from pathlib import Path

import pytest

from proofmesh.store.journal import DURABILITY_BEHIND, DURABILITY_FSYNC, DURABILITY_GROUP, Journal, JournalLocked

sys.path.insert(0, str(Path(__file__).parent))    # spawn children import the targets by name
import _journal_lock_child as child  # noqa: E402

SPAWN = mp.get_context("spawn")


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _other_process_opens(path: Path):
    answers = SPAWN.Queue()
    proc = SPAWN.Process(target=child.try_open, args=(str(path), answers))
    proc.start()
    try:
        return answers.get(timeout=120)
    finally:
        proc.join(timeout=60)


@pytest.mark.parametrize("mode", [DURABILITY_FSYNC, DURABILITY_GROUP, DURABILITY_BEHIND])
def test_second_process_is_refused_and_touches_nothing(tmp_path, mode):
    path = tmp_path / "books.jsonl"
    j = Journal(path, mode)
    for i in range(20):
        j.put(i % 5, i)                 # superseded lines: an opener would compact them
    j.flush()
    with open(path, "ab") as fh:
        fh.write(b'{"k":"torn","v"')     # a torn tail: an opener would cut it off
    (tmp_path / "books.jsonl.tmp").write_bytes(b"a compaction in progress\n")   # an opener would delete it
    before = _snapshot(tmp_path)

    verdict, detail = _other_process_opens(path)

    assert verdict == "locked", detail
    assert str(path) in detail and f"pid {os.getpid()}" in detail
    assert "stop the other proofmesh process using this home, or point this one at another home" in detail
    assert _snapshot(tmp_path) == before            # byte-identical, .tmp and torn tail included
    j.close()


def test_reopen_after_close_and_second_open_in_process(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal(path, DURABILITY_GROUP)
    j.put("a", 1)
    with pytest.raises(JournalLocked, match="this process .* not closed") as err:
        Journal(path, DURABILITY_GROUP)
    assert "close() the first Journal" in err.value.fix
    j.close()

    again = Journal(path, DURABILITY_GROUP)           # a restart in the same process
    assert again.records == {"a": 1}
    again.put("b", 2)
    # put after close reopens the file and so owns it again
    again.close()
    again.put("c", 3)
    with pytest.raises(JournalLocked):
        Journal(path)
    again.close()
    assert Journal(path).records == {"a": 1, "b": 2, "c": 3}


def test_a_collected_journal_gives_its_lock_back(tmp_path):
    path = tmp_path / "j.jsonl"
    Journal(path, DURABILITY_FSYNC).put("a", 1)       # dropped without close (no committer holds it)
    gc.collect()
    j = Journal(path, DURABILITY_FSYNC)
    assert j.records == {"a": 1}
    j.close()


def test_other_process_opens_after_close(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal(path, DURABILITY_GROUP)
    j.put("a", 1)
    j.close()
    verdict, records = _other_process_opens(path)
    assert verdict == "opened" and records == {"a": 1}


def test_lock_dies_with_its_holder(tmp_path):
    path = tmp_path / "j.jsonl"
    ready = SPAWN.Event()
    proc = SPAWN.Process(target=child.hold, args=(str(path), ready))
    proc.start()
    try:
        assert ready.wait(120), "the holder never opened the journal"
        with pytest.raises(JournalLocked, match=f"pid {proc.pid}"):
            Journal(path)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=60)
        assert proc.exitcode == -signal.SIGKILL
        j = Journal(path, DURABILITY_GROUP)           # no stale lock to clean up by hand
        assert j.records == {"holder": 1}
        j.close()
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()


def test_memory_journal_takes_no_lock(tmp_path):
    a, b = Journal(None), Journal(None)
    a.put("x", 1)
    b.put("x", 2)
    assert (a.records, b.records) == ({"x": 1}, {"x": 2})
