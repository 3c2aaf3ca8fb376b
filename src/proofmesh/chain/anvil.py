"""Start and stop a local anvil node (npm package ``@foundry-rs/anvil``).

``proofmesh chain up`` runs anvil in the background with its state dumped into the
home (``--state``), records its PID and URL in ``<home>/chain/anvil.json``, and
points the home's settings at it; ``chain down`` stops it (anvil writes its state on
SIGTERM, so the next ``up`` resumes).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from proofmesh.errors import ChainError

_REPO_ROOT = Path(__file__).resolve().parents[3]


def find_binary(name: str) -> str:
    """Path of an npm-installed binary (``anvil``, ``solcjs``), or a clear error."""
    candidates = [
        os.environ.get(f"PROOFMESH_{name.upper()}"),
        str(_REPO_ROOT / "node_modules" / ".bin" / name),
        str(Path.cwd() / "node_modules" / ".bin" / name),
        shutil.which(name),
        "/work/tools/node_modules/.bin/" + name,
    ]
    for c in candidates:
        if c and Path(c).exists():
            return c
    raise ChainError(f"`{name}` is not installed",
                     fix="run `npm install` in the proofmesh checkout (see README), or set "
                         f"PROOFMESH_{name.upper()} to the binary")


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


@dataclass
class AnvilProcess:
    """A running anvil: its URL, PID, and (if we started it) the Popen handle."""

    url: str
    pid: int
    port: int
    popen: subprocess.Popen | None = None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (anvil dumps its state), then SIGKILL if it lingers.

        The npm `anvil` is a Node.js wrapper that runs the real binary as a child and does
        not forward signals, so the whole process group (we start it in its own session)
        is signalled; otherwise the real anvil would outlive `chain down` and the tests.
        """
        if not self._signal(signal.SIGTERM):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is not None:
                if self.popen.poll() is not None:
                    break
            else:
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    break
            time.sleep(0.05)
        self._signal(signal.SIGKILL)  # whatever is left of the group

    def _signal(self, sig: int) -> bool:
        try:
            os.killpg(self.pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(self.pid, sig)
                return True
            except ProcessLookupError:
                return False


def start_anvil(*, port: int | None = None, chain_id: int = 31337, state_file: Path | None = None,
                block_time: float | None = None, log_file: Path | None = None,
                extra_args: list[str] | None = None) -> AnvilProcess:
    """Start anvil on 127.0.0.1 and wait until it answers JSON-RPC."""
    binary = find_binary("anvil")
    port = port or free_port()
    if port_in_use(port):
        raise ChainError(f"port {port} on 127.0.0.1 is already in use",
                         fix="stop whatever listens there or choose another port with --port")
    args = [binary, "--port", str(port), "--host", "127.0.0.1", "--chain-id", str(chain_id),
            "--code-size-limit", "100000", "--silent"]
    if state_file is not None:
        args += ["--state", str(state_file)]
    if block_time:
        args += ["--block-time", str(block_time)]
    args += extra_args or []
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise ChainError(f"anvil exited at start (code {popen.returncode})",
                             fix=f"run `{' '.join(args)}` by hand to see why")
        try:
            r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=1)
            if r.status_code == 200:
                return AnvilProcess(url=url, pid=popen.pid, port=port, popen=popen)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    popen.kill()
    raise ChainError("anvil did not answer within 30 s", fix="check the machine's load and try again")


# ------------------------------------------------------------------ home-managed anvil

def _info_file(chain_dir: Path) -> Path:
    return chain_dir / "anvil.json"


def anvil_up(chain_dir: Path, *, port: int = 8545, chain_id: int = 31337) -> AnvilProcess:
    """Start the home's anvil (state kept in the home); refuse if one is running."""
    running = anvil_status(chain_dir)
    if running is not None:
        raise ChainError(f"anvil is already running for this home at {running.url} (pid {running.pid})",
                         fix="use it, or stop it with `proofmesh chain down`")
    chain_dir.mkdir(parents=True, exist_ok=True)
    proc = start_anvil(port=port, chain_id=chain_id, state_file=chain_dir / "anvil-state.json",
                       log_file=chain_dir / "anvil.log")
    proc.popen = None  # detached: it outlives this process
    _info_file(chain_dir).write_text(json.dumps({"url": proc.url, "pid": proc.pid, "port": proc.port}))
    return proc


def anvil_status(chain_dir: Path) -> AnvilProcess | None:
    """The home's running anvil, or None (stale records are removed)."""
    f = _info_file(chain_dir)
    if not f.exists():
        return None
    info = json.loads(f.read_text())
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        f.unlink()
        return None
    return AnvilProcess(url=info["url"], pid=info["pid"], port=info["port"])


def anvil_down(chain_dir: Path) -> AnvilProcess | None:
    """Stop the home's anvil (it saves its state first); returns what was stopped."""
    proc = anvil_status(chain_dir)
    if proc is None:
        return None
    proc.stop()
    _info_file(chain_dir).unlink(missing_ok=True)
    return proc
