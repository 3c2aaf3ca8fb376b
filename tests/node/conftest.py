"""Helpers for the node tests: run real daemons as separate processes and wait for them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from proofmesh.config import Home
from tests.conftest import wait_for  # noqa: F401  (shared; node tests import it from here)


def spawn_daemon(home: Home, port: int, **env: str) -> subprocess.Popen:
    """``proofmesh --home H node start --port P`` as its own process (own session, like devnet)."""
    full_env = dict(os.environ, PROOFMESH_KDF="fast", **env)
    return subprocess.Popen([sys.executable, "-m", "proofmesh.cli.main", "--home", str(home.path), "node", "start",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env=full_env)


def wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"daemon exited with {proc.returncode}: {out[-2000:]}")
        try:
            r = httpx.get(f"{url}/health", timeout=1.0)
            if r.status_code in (200, 503):
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no /health answer from {url} within {timeout}s")


def finish(proc: subprocess.Popen, timeout: float = 60.0) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(errors="replace")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts; any still running at the end is killed (never left behind)."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def serve_in_thread(daemon: Any) -> threading.Thread:
    """Run an already-started NodeDaemon's uvicorn in a background thread; wait until it serves."""
    t = threading.Thread(target=daemon.serve, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not daemon.serving:
        assert time.monotonic() < deadline, "daemon did not start serving"
        time.sleep(0.05)
    return t


@pytest.fixture
def tmp_dir(tmp_path: Path) -> Path:
    return tmp_path
