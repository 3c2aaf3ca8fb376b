"""Shared fixtures: real chains with everything deployed.

* ``chain`` — an embedded py-evm chain (LMDB on disk) in a fresh temporary home,
  all contracts deployed and wired, dev accounts funded. Deploying takes seconds, so
  it happens once per test session into a template directory and every test gets a
  byte copy of it (a consistent LMDB snapshot), which opens in milliseconds.
* ``anvil_chain`` — the same deployment on one anvil per session; each test runs
  between ``evm_snapshot`` and ``evm_revert`` so tests stay independent.
* ``any_chain`` — parametrised over both: the contract suite runs on both backends.

Accounts: the ten anvil dev accounts. ``accounts[0]`` deployed everything and is
the timelock's admin; each of ``accounts[1..9]`` holds 1,000,000 MESH.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

os.environ.setdefault("PROOFMESH_KDF", "fast")  # cheap keystore KDF in tests (documented in keys.py)

from proofmesh.chain.client import Chain, close_embedded, open_embedded  # noqa: E402
from proofmesh.chain.core import MESH, Token  # noqa: E402
from proofmesh.chain.deploy import DeployParams, deploy_all  # noqa: E402
from proofmesh.chain.embedded import dev_accounts  # noqa: E402
from proofmesh.config import Home  # noqa: E402

FUNDED_MESH = 1_000_000 * MESH


def pytest_configure(config: pytest.Config) -> None:
    """Compile (or load from numba's on-disk cache) the inference node's receipt kernel once,
    in the controlling process, before any xdist worker starts: a node made by a test or by
    a spawned daemon then loads it in about a second, instead of compiling it for tens of
    seconds on a fresh clone while a health check waits for that daemon."""
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return    # a worker, or a run without xdist (a developer's single file): nothing to share
    from proofmesh.inference.receipt import ValuesSealer, receipt_domain

    ValuesSealer(b"\x01" * 32, receipt_domain(1, "0x" + "00" * 20))


@pytest.fixture(scope="session")
def accounts() -> list:
    return dev_accounts()


def _deploy_and_fund(chain: Chain, accounts: list) -> dict[str, str]:
    book = deploy_all(chain, DeployParams())
    token = Token(chain)
    for a in accounts[1:]:
        token.transfer(a.address, FUNDED_MESH)
    return book


@pytest.fixture(scope="session")
def _embedded_template(tmp_path_factory: pytest.TempPathFactory, accounts: list) -> tuple[Path, dict[str, str]]:
    home = Home.resolve(tmp_path_factory.mktemp("template-home"))
    home.init()
    emb = open_embedded(home.chain_dir, home.settings.chain_id)
    from web3 import Web3

    from proofmesh.chain.client import EmbeddedProvider

    chain = Chain(Web3(EmbeddedProvider(emb)), account=accounts[0], home=home)
    book = _deploy_and_fund(chain, accounts)
    close_embedded(home.chain_dir)
    return home.chain_dir, book


def make_home(path: Path, template: tuple[Path, dict[str, str]] | None = None, **settings: object) -> Home:
    """A fresh home at ``path``; with a template, its chain is a copy of the deployed one."""
    home = Home.resolve(path)
    home.init(**settings)
    if template is not None:
        src, book = template
        shutil.rmtree(home.chain_dir)
        shutil.copytree(src, home.chain_dir, ignore=shutil.ignore_patterns("LOCK", "rpc.json"))
        home.save_address_book(31337, book)
    return home


@pytest.fixture
def home(tmp_path: Path, _embedded_template: tuple[Path, dict[str, str]]) -> Iterator[Home]:
    """A temporary home whose embedded chain has everything deployed."""
    h = make_home(tmp_path / "home", _embedded_template)
    yield h
    close_embedded(h.chain_dir)


@pytest.fixture
def chain(home: Home, accounts: list) -> Chain:
    """The home's embedded chain, connected in-process, signing as accounts[0]."""
    return Chain.connect(home, accounts[0])


@pytest.fixture
def empty_home(tmp_path: Path) -> Iterator[Home]:
    """A temporary home with nothing in it (not even initialised)."""
    h = Home.resolve(tmp_path / "empty-home")
    yield h
    close_embedded(h.chain_dir)


# ------------------------------------------------------------------------ anvil

@pytest.fixture(scope="session")
def _anvil_deployed(accounts: list) -> Iterator[tuple[str, dict[str, str]]]:
    from proofmesh.chain.anvil import start_anvil

    proc = start_anvil()
    try:
        chain = Chain.from_url(proc.url, account=accounts[0])
        book = _deploy_and_fund(chain, accounts)
        yield proc.url, book
    finally:
        proc.stop()


@pytest.fixture
def anvil_chain(_anvil_deployed: tuple[str, dict[str, str]], accounts: list, tmp_path: Path) -> Iterator[Chain]:
    """The session anvil, reverted to its freshly deployed state after each test."""
    url, book = _anvil_deployed
    home = Home.resolve(tmp_path / "anvil-home")
    home.init(backend="rpc", rpc_url=url)
    home.save_address_book(31337, book)
    chain = Chain.connect(home, accounts[0])
    snap = chain.w3.provider.make_request("evm_snapshot", [])["result"]
    yield chain
    chain.w3.provider.make_request("evm_revert", [snap])


@pytest.fixture(params=["embedded", "anvil"])
def any_chain(request: pytest.FixtureRequest) -> Chain:
    """The contract suite's chain: runs each test on both backends."""
    return request.getfixturevalue("chain" if request.param == "embedded" else "anvil_chain")


def wait_for(pred: Any, timeout: float, what: str, detail: Any = None) -> Any:
    """Poll ``pred`` every 0.5 s until it returns something truthy (returned); fail naming
    ``what``, with ``detail()`` (e.g. the tail of a worker's log) when given."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{detail()}" if detail is not None else ""))


def cli_runner(home_dir: Any) -> Any:
    """``run(*args, ok=True)``: the proofmesh CLI in this process (Typer's CliRunner) on the home
    at ``home_dir``. Asserts the exit status (0 when ``ok``, else not 0; ``ok=None``: unchecked) and adds ``.text``: the
    output with Rich's line wrapping undone."""
    from typer.testing import CliRunner

    from proofmesh.cli.main import app

    runner = CliRunner()

    def run(*args: Any, ok: bool | None = True) -> Any:
        result = runner.invoke(app, ["--home", str(home_dir), *map(str, args)])
        if ok is not None:     # None: whatever the status (a clean-up)
            assert (result.exit_code == 0) == ok, result.output
        result.text = " ".join(result.output.split())
        return result

    return run


def read_http(sock: Any, data: bytes = b"") -> tuple[str, dict[str, str], bytes]:
    """One HTTP message (a request or an answer) from a raw socket whose first bytes, if any,
    are ``data``: its first line, its headers (names lower-cased) and its body, read to its
    Content-Length (an answer without one: to the connection's close, reset or timeout)."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    # without a length an answer runs to the close, a request has no body
    want = int(headers.get("content-length", -1 if lines[0].startswith("HTTP/") else 0))
    while want < 0 or len(body) < want:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        body += chunk
    return lines[0], headers, body


def drip(sock: Any, data: bytes, every_s: float = 0.5) -> tuple[int, dict[str, str], bytes, float]:
    """Send ``data`` one byte every ``every_s`` until the server answers (or closes); returns the
    answer's status, headers and body, and the seconds the server let it drip."""
    import time

    t0 = time.monotonic()
    sock.settimeout(every_s)
    answer = b""
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
            answer += sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if answer:
            break
    took = time.monotonic() - t0
    sock.settimeout(5)
    first, headers, body = read_http(sock, answer)
    return int(first.split()[1]) if first else 0, headers, body, took


class HttpProbe:
    """A raw HTTP/1.1 client for the request-limit tests (``tests/*/test_limits.py``): it sends
    exactly what a hostile peer would (a huge declared length, an endless chunked body) over a
    plain socket, keeps reading the answer when the server cuts the upload short, and watches
    a server process's memory while it does."""

    def __init__(self, url: str) -> None:
        from urllib.parse import urlsplit

        u = urlsplit(url)
        self.host, self.port, self.base = u.hostname or "127.0.0.1", u.port or 80, u.path.rstrip("/")

    def _connect(self):
        import socket

        return socket.create_connection((self.host, self.port), timeout=30)

    @staticmethod
    def _read(sock) -> tuple[int, dict[str, str], bytes]:
        """The status, headers and body of one answer (see :func:`read_http`)."""
        first, headers, body = read_http(sock)
        return int(first.split()[1]), headers, body

    def _head(self, method: str, path: str, extra: str) -> bytes:
        return (f"{method} {self.base}{path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Content-Type: application/json\r\n{extra}\r\n").encode()

    def declared(self, path: str, size: int, *, method: str = "POST") -> tuple[int, dict[str, str], bytes]:
        """Declare a ``size``-byte body and send none of it: a limit must answer from the header."""
        with self._connect() as s:
            s.sendall(self._head(method, path, f"Content-Length: {size}\r\n"))
            return self._read(s)

    def chunked(self, path: str, total: int, *, piece: int = 256 * 1024, method: str = "POST"
                ) -> tuple[int, dict[str, str], bytes, int]:
        """Stream ``total`` bytes chunked (no length) until done or the server stops reading;
        returns the answer and how many bytes went out."""
        sent = 0
        block = b"x" * piece
        with self._connect() as s:
            s.sendall(self._head(method, path, "Transfer-Encoding: chunked\r\n"))
            try:
                while sent < total:
                    n = min(piece, total - sent)
                    s.sendall(b"%x\r\n" % n + block[:n] + b"\r\n")
                    sent += n
                s.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass   # the server answered and closed: the answer is still in our buffer
            return (*self._read(s), sent)

    def body(self, path: str, body: bytes, *, method: str = "POST") -> tuple[int, dict[str, str], bytes]:
        """Send ``body`` with its Content-Length."""
        with self._connect() as s:
            s.sendall(self._head(method, path, f"Content-Length: {len(body)}\r\n"))
            try:
                s.sendall(body)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return self._read(s)

    @staticmethod
    @contextmanager
    def serve(app: Any, **uvicorn_options: Any) -> Iterator[str]:
        """Run ``app`` with uvicorn in a thread on 127.0.0.1 (a free port); yields its URL."""
        import socket
        import threading
        import time

        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **uvicorn_options))
        t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        t.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert t.is_alive() and time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            server.should_exit = True
            t.join(10)
            sock.close()

    @staticmethod
    def peak_rss_growth(pid: int, action: Any) -> tuple[Any, int]:
        """Run ``action()``; return its result and the most process ``pid``'s resident memory
        grew above where it started meanwhile (sampled every 2 ms)."""
        import threading

        import psutil

        proc = psutil.Process(pid)
        start = proc.memory_info().rss
        peak = [start]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                done.wait(0.002)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        try:
            result = action()
        finally:
            done.set()
            t.join()
        return result, peak[0] - start


@pytest.fixture
def http_probe() -> type[HttpProbe]:
    """:class:`HttpProbe`: ``http_probe(url).declared("/path", 10**9)`` and friends."""
    return HttpProbe


class HostilePeer:
    """A raw-socket HTTP server on 127.0.0.1 that answers like a hostile peer, for the tests of
    bounded client reads (:mod:`proofmesh.http_reads`). ``mode`` applies to every path:

    * ``"good"`` — ``200`` with ``good[path]`` (JSON; ``{}`` for an unknown path);
    * ``"declared"`` — declares a 1 GB ``Content-Length`` and streams it;
    * ``"flood"`` — a chunked body without end (up to ``flood_mb``), sent as fast as taken;
    * ``"deep"`` — ``[`` × 200,000 with its length: JSON nested past the recursion limit;
    * ``"trickle"`` — headers, then one body byte every ``drip_s``;
    * ``"trickle_head"`` — the status line and headers one byte every ``drip_s``;
    * ``"garbled"`` — ``200`` with a few bytes of junk as ``garbled_type``.

    Paths in ``always`` are answered well (``always[path]``) whatever the mode.

    A connection's thread stops when the client goes away. ``requests`` counts what arrived."""

    def __init__(self, drip_s: float = 0.2, flood_mb: int = 512) -> None:
        import socket
        import threading

        self.mode = "good"
        self.good: dict[str, Any] = {}
        self.always: dict[str, Any] = {}    # paths answered well whatever the mode (path with query)
        self.garbled_type = "application/json"
        self.drip_s = drip_s
        self.flood_mb = flood_mb
        self.requests = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: Any) -> None:
        import json
        import time

        block = b"[" * 65536
        try:
            with conn:
                conn.settimeout(30)
                first, headers, _ = read_http(conn)
                if not first:
                    return
                path = first.split()[1]
                self.requests += 1
                mode = "good" if path in self.always else self.mode
                if mode == "good":
                    body = json.dumps(self.always.get(path, self.good.get(path, {}))).encode()
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
                elif mode == "declared":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                                 % (1 << 30))
                    for _ in range((1 << 30) // len(block)):
                        conn.sendall(block)
                elif mode == "flood":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n")
                    piece = b"%x\r\n" % len(block) + block + b"\r\n"
                    for _ in range(self.flood_mb * 16):
                        conn.sendall(piece)
                    conn.sendall(b"0\r\n\r\n")
                elif mode == "deep":
                    body = b"[" * 200_000
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
                elif mode == "trickle":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 100000\r\n\r\n")
                    for _ in range(100000):
                        conn.sendall(b" ")
                        time.sleep(self.drip_s)
                elif mode == "garbled":
                    body = b"\xff\xfe garbage \x00\x01" * 4
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                                 % (self.garbled_type.encode(), len(body)) + body)
                elif mode == "trickle_head":
                    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X-Pad: " + b"a" * 90000:
                        conn.sendall(bytes([byte]))
                        time.sleep(self.drip_s)
        except OSError:
            pass   # the client stopped reading and went away: what a bounded client does

    def close(self) -> None:
        self._closed = True
        self._sock.close()


@pytest.fixture
def hostile_peer() -> Iterator[HostilePeer]:
    """A :class:`HostilePeer` on 127.0.0.1 (``mode = "good"`` until a test says otherwise)."""
    peer = HostilePeer()
    try:
        yield peer
    finally:
        peer.close()
