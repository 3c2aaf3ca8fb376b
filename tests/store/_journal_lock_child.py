"""Targets of the journal-lock tests' child processes (multiprocessing spawn imports them by name)."""

import time


def try_open(path: str, answers) -> None:
    """Open the journal at ``path`` as a second process would; report what happened."""
    from proofmesh.store.journal import Journal, JournalLocked

    try:
        j = Journal(path, "group")
    except JournalLocked as exc:
        answers.put(("locked", str(exc)))
        return
    answers.put(("opened", dict(j.records)))
    j.close()


def hold(path: str, ready) -> None:
    """Own the journal at ``path`` and keep it until killed."""
    from proofmesh.store.journal import Journal

    j = Journal(path, "group")
    j.put("holder", 1)
    j.wait_durable(j.written)
    ready.set()
    while True:
        time.sleep(60)
