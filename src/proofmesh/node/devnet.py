"""A local multi-node network on one machine: one anvil + N node daemons on 127.0.0.1.

``proofmesh devnet up --nodes 4`` makes, in a devnet directory::

    devnet.json           what runs: anvil URL/PID, each node's home, key, port, PID
    anvil-state.json      anvil's state (dumped every few seconds and on SIGTERM)
    anvil.log
    node0/ … nodeN-1/     one proofmesh home each: own key, config (backend=rpc), logs

node0's key deploys every contract once (it is the deployer, timelock admin and
genesis holder); the address book is copied into every home; each node gets gas
ETH from the dev faucet and MESH from node0, registers with its own endpoint and
roles, and stakes a distinct amount. Then every daemon starts detached (its own
session, so closing the terminal does not stop it).

``up`` is idempotent: on an existing devnet it starts only what is not running
(anvil reloads its state, a killed node restarts on its home), so it is also how
a crashed node is brought back. ``down`` stops everything gracefully and keeps the
directory; ``down --purge`` deletes it.

The keys are development keys protected by a password stored in ``devnet.json``
(``PROOFMESH_PASSWORD`` if set at creation, else ``devnet``): a devnet is for trying
the network locally, never for value.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from proofmesh.config import Home
from proofmesh.errors import InputError, ProofmeshError

DEFAULT_PASSWORD = "devnet"
# Roles and stake per node index (cycled): every capability has at least one node
# from 4 nodes on, three nodes compute, so a replicated job (3 replicas) posted by
# node0 finds its workers, and from 3 nodes on two nodes besides node0 evaluate, so a
# version node0 registers meets a quorum of 2 (nobody judges their own model).
ROLE_PLAN = ["data,evaluator,tools", "compute,evaluator", "compute,inference,evaluator", "compute,gateway,inference"]
STAKE_STEP = 1_000            # node i stakes (i + 1) * STAKE_STEP MESH
EXTRA_MESH = 10_000           # working balance on top of the stake
START_TIMEOUT = 180.0        # generous: on a loaded 2-core machine one import of web3+torch takes 10-20 s


class DevnetError(ProofmeshError):
    """The devnet cannot be created, started or stopped."""


@dataclass
class NodeRecord:
    name: str
    home: str
    address: str
    port: int
    roles: str
    stake: int
    pid: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class DevnetRecord:
    directory: str
    chain_id: int
    password: str
    anvil_port: int
    anvil_pid: int = 0
    nodes: list[NodeRecord] = field(default_factory=list)

    @property
    def anvil_url(self) -> str:
        return f"http://127.0.0.1:{self.anvil_port}"

    @classmethod
    def load(cls, directory: Path) -> "DevnetRecord | None":
        f = directory / "devnet.json"
        if not f.exists():
            return None
        raw = json.loads(f.read_text())
        raw["nodes"] = [NodeRecord(**n) for n in raw["nodes"]]
        return cls(**raw)

    def save(self) -> None:
        f = Path(self.directory) / "devnet.json"
        tmp = f.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, f)


def default_dir() -> Path:
    return Path(os.environ.get("PROOFMESH_DEVNET_DIR", "~/.proofmesh-devnet")).expanduser().resolve()


# --------------------------------------------------------------------------- up

def devnet_up(directory: Path | None = None, *, nodes: int = 4, base_port: int | None = None,
              log: Callable[[str], None] = lambda msg: None) -> DevnetRecord:
    """Create (or resume) the devnet in ``directory`` and wait until every node is healthy."""
    from proofmesh.chain.anvil import free_port

    directory = (directory or default_dir()).resolve()
    record = DevnetRecord.load(directory)
    if record is None:
        if nodes < 1 or nodes > 32:
            raise InputError(f"--nodes must be between 1 and 32, got {nodes}", fix="e.g. --nodes 4")
        directory.mkdir(parents=True, exist_ok=True)
        record = DevnetRecord(directory=str(directory), chain_id=31337,
                              password=os.environ.get("PROOFMESH_PASSWORD") or DEFAULT_PASSWORD,
                              anvil_port=free_port())
        try:
            _start_anvil(record, log)
            _create_nodes(record, nodes, base_port, log)
        except BaseException:
            # never leave a half-made devnet behind: stop anvil and forget it
            _stop_pid(record.anvil_pid, "anvil")
            for sub in ["devnet.json", "anvil-state.json"] + [f"node{i}" for i in range(nodes)]:
                p = directory / sub
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            raise
        record.save()
    else:
        if nodes != len(record.nodes):
            log(f"devnet in {directory} already has {len(record.nodes)} nodes; resuming it as it is")
        if not _alive(record.anvil_pid, "anvil"):
            _start_anvil(record, log)
            record.save()
    _start_daemons(record, log)
    record.save()
    return record


def _start_anvil(record: DevnetRecord, log: Callable[[str], None]) -> None:
    from proofmesh.chain.anvil import port_in_use, start_anvil

    d = Path(record.directory)
    if port_in_use(record.anvil_port):
        raise DevnetError(f"the devnet's anvil port {record.anvil_port} is taken by another process",
                          fix="stop that process, or `proofmesh devnet down --purge` and create a new devnet")
    proc = start_anvil(port=record.anvil_port, chain_id=record.chain_id, state_file=d / "anvil-state.json",
                       log_file=d / "anvil.log", extra_args=["--state-interval", "2"])
    proc.popen = None  # detached: it outlives this command
    record.anvil_pid = proc.pid
    log(f"anvil on {proc.url} (pid {proc.pid})")


def _create_nodes(record: DevnetRecord, n: int, base_port: int | None, log: Callable[[str], None]) -> None:
    from proofmesh.chain.anvil import free_port
    from proofmesh.chain.bootstrap import fund_from_dev
    from proofmesh.chain.client import Chain
    from proofmesh.chain.core import MESH, Registry, Token, parse_roles
    from proofmesh.chain.deploy import deploy_all
    from proofmesh.crypto.keys import Keystore

    d = Path(record.directory)
    homes, accounts = [], []
    for i in range(n):
        port = base_port + i if base_port else free_port()
        home = Home.resolve(d / f"node{i}")
        home.init(backend="rpc", rpc_url=record.anvil_url, chain_id=record.chain_id, node_port=port)
        acct = Keystore(home).create("default", record.password)
        homes.append(home)
        accounts.append(acct)
        roles = ROLE_PLAN[i % len(ROLE_PLAN)]
        record.nodes.append(NodeRecord(name=f"node{i}", home=str(home.path), address=acct.address, port=port,
                                       roles=roles, stake=(i + 1) * STAKE_STEP))
    deployer = Chain.connect(homes[0], accounts[0])
    fund_from_dev(deployer, accounts[0].address)
    log("deploying contracts from node0 …")
    book = deploy_all(deployer)
    log(f"deployed {len(book)} contracts")
    token = Token(deployer)
    for home, acct, node in zip(homes, accounts, record.nodes):
        home.save_address_book(record.chain_id, book)
        fund_from_dev(deployer, acct.address)
        if acct.address != accounts[0].address:
            token.transfer(acct.address, (node.stake + EXTRA_MESH) * MESH)
        chain = Chain.connect(home, acct)
        reg = Registry(chain)
        reg.register(node.url, parse_roles(node.roles))
        reg.stake(node.stake * MESH)
        log(f"{node.name} {acct.address} roles {node.roles} staked {node.stake} MESH")


def _start_daemons(record: DevnetRecord, log: Callable[[str], None]) -> None:
    from proofmesh.node.daemon import running_daemon

    started = []
    for node in record.nodes:
        home = Home.resolve(node.home)
        info = running_daemon(home)
        if info is not None:
            node.pid = info.pid
            continue
        node_log_dir = Path(node.home) / "node"
        node_log_dir.mkdir(parents=True, exist_ok=True)
        logf = open(node_log_dir / "stdout.log", "ab")
        env = dict(os.environ, PROOFMESH_PASSWORD=record.password, PROOFMESH_HOME=node.home)
        cmd = [sys.executable, "-m", "proofmesh.cli.main", "--home", node.home, "node", "start",
               "--port", str(node.port)]
        popen = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, env=env)
        logf.close()
        node.pid = popen.pid
        started.append((node, popen))
        log(f"{node.name} starting on {node.url} (pid {popen.pid})")
    try:
        _wait_healthy(started, log)
    except BaseException:
        # a node that failed to come up must not linger half-started (it would take its
        # lock and port later, behind the user's back): stop every process this call started
        for _node, popen in started:
            if popen.poll() is None:
                popen.terminate()
        for _node, popen in started:
            try:
                popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=5)
        raise


def _wait_healthy(started: list[tuple[NodeRecord, subprocess.Popen]], log: Callable[[str], None]) -> None:
    from proofmesh.node.daemon import daemon_health

    deadline = time.monotonic() + START_TIMEOUT
    for node, popen in started:
        while True:
            if popen.poll() is not None:
                tail = _tail(Path(node.home) / "node" / "stdout.log")
                raise DevnetError(f"{node.name} exited at start (code {popen.returncode}): {tail}",
                                  fix=f"see {node.home}/node/stdout.log")
            h = daemon_health(node.url, timeout=5.0)  # a busy node (training) answers slowly, not never
            if h is not None and h.get("url"):
                log(f"{node.name} healthy")
                break
            if time.monotonic() > deadline:
                raise DevnetError(f"{node.name} did not answer on {node.url} within {START_TIMEOUT:.0f}s",
                                  fix=f"see {node.home}/node/stdout.log")
            time.sleep(0.2)


# --------------------------------------------------------------------------- status / down

def devnet_status(directory: Path | None = None) -> list[dict[str, Any]]:
    """One row per node: address, on-chain roles and stake, URL, health."""
    from proofmesh.chain.client import Chain
    from proofmesh.chain.core import Registry, from_wei, role_names
    from proofmesh.node.daemon import daemon_health, running_daemon

    record = _require(directory)
    rows: list[dict[str, Any]] = []
    chain = None
    if _alive(record.anvil_pid, "anvil"):
        try:
            chain = Chain.connect(Home.resolve(record.nodes[0].home))
        except ProofmeshError:
            chain = None
    for node in record.nodes:
        row: dict[str, Any] = {"node": node.name, "address": node.address, "roles": node.roles,
                               "stake": str(node.stake), "url": node.url, "pid": None, "health": "down"}
        if chain is not None:
            info = Registry(chain).info(node.address)
            row["roles"] = ",".join(role_names(info.roles))
            row["stake"] = from_wei(info.stake)
        d = running_daemon(Home.resolve(node.home))
        if d is not None:
            row["pid"] = d.pid
            h = daemon_health(node.url)
            row["health"] = "starting" if h is None else ("ok" if h.get("ok") else "degraded")
        rows.append(row)
    rows.append({"node": "anvil", "address": "", "roles": "chain", "stake": "", "url": record.anvil_url,
                 "pid": record.anvil_pid if _alive(record.anvil_pid, "anvil") else None,
                 "health": "ok" if chain is not None else "down"})
    return rows


def devnet_down(directory: Path | None = None, *, purge: bool = False, timeout: float = 30.0) -> dict[str, Any]:
    """Stop every node (SIGTERM, graceful) then anvil (which saves its state)."""
    from proofmesh.node.daemon import running_daemon

    record = _require(directory)
    stopped = []
    for node in record.nodes:
        info = running_daemon(Home.resolve(node.home))
        pid = info.pid if info is not None and info.pid > 0 else 0
        if not pid and _alive(node.pid, node.home):
            pid = node.pid  # still starting (importing, not holding its lock yet)
        if pid:
            with _suppress_lookup():
                os.kill(pid, signal.SIGTERM)
            stopped.append(node.name)
    deadline = time.monotonic() + timeout
    for node in record.nodes:
        home = Home.resolve(node.home)
        while running_daemon(home) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        info = running_daemon(home)
        if info is not None and info.pid > 0:  # did not stop in time: its state is on disk, so kill is safe
            with _suppress_lookup():
                os.kill(info.pid, signal.SIGKILL)
        node.pid = 0
    anvil = _stop_pid(record.anvil_pid, "anvil")
    record.anvil_pid = 0
    if purge:
        shutil.rmtree(record.directory, ignore_errors=True)
    else:
        record.save()
    return {"stopped": stopped, "anvil": anvil, "purged": purge, "directory": record.directory}


def _require(directory: Path | None) -> DevnetRecord:
    directory = (directory or default_dir()).resolve()
    record = DevnetRecord.load(directory)
    if record is None:
        raise DevnetError(f"no devnet in {directory}", fix="create one with `proofmesh devnet up --nodes 4`")
    return record


# --------------------------------------------------------------------------- processes

def _alive(pid: int, name: str) -> bool:
    """True if ``pid`` runs and is ``name`` (a recycled PID of another program is not)."""
    if pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = ""
    with _suppress_lookup():
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    return name.encode() in cmdline and state != "Z"


def _stop_pid(pid: int, name: str, timeout: float = 15.0) -> bool:
    if not _alive(pid, name):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid, name):
        time.sleep(0.05)
    if _alive(pid, name):
        with _suppress_lookup():
            os.kill(pid, signal.SIGKILL)
    return True


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: Any, exc: Any, tb: Any) -> bool:
        return typ is not None and issubclass(typ, (ProcessLookupError, OSError))


def _tail(path: Path, n: int = 400) -> str:
    try:
        return path.read_text(errors="replace")[-n:].strip().replace("\n", " | ")
    except OSError:
        return ""
