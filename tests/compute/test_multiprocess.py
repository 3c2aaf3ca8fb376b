"""Real market on anvil: a poster node, worker *processes* over 127.0.0.1, real training.

Replicated job: three `proofmesh worker start` processes, one started with
`--cheat perturb`. Honest workers are paid, the cheater is slashed after the referee
re-executes, the result is registered once as a child version whose weights verify,
and token totals balance to the wei. Optimistic job: a worker started with
`--cheat skip` submits a false trace; a challenger (this process) disputes it, the
bisection runs against the worker process, the referee rules, the worker loses.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from proofmesh.chain.core import MESH, Registry, Token
from proofmesh.compute.artifacts import Blobs, ResultBundle, weights_manifest
from proofmesh.compute.market import JobMarketClient
from proofmesh.compute.referee import Challenger, Referee
from proofmesh.compute.training import (DataRef, ExecutionProfile, JobSpec, ModelShape, TrainConfig,
                                        build_base_weights, weights_from_bytes)
from proofmesh.config import Home
from proofmesh.crypto.keys import Keystore
from proofmesh.store.api import serve_blobs
from proofmesh.store.blobstore import BlobStore
from tests.conftest import wait_for

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

ROLE_COMPUTE, ROLE_DATA = 2, 1
BOND = 50 * MESH


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _clock(chain, period: float = 0.4):
    """Mine a block every ``period`` s: anvil automines only on transactions, and the draw
    waits for a future block."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            try:
                chain.mine()
            except Exception:
                pass
            stop.wait(period)

    t = threading.Thread(target=tick, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(5)


def _worker_home(tmp: Path, name: str, url: str, book: dict, account) -> Home:
    home = Home.resolve(tmp / name)
    home.init(backend="rpc", rpc_url=url)
    home.save_address_book(31337, book)
    Keystore(home).import_key("default", account.key.hex(), "pw")
    return home


@contextmanager
def _worker_process(home: Home, port: int, *extra: str):
    env = dict(os.environ, PROOFMESH_PASSWORD="pw", PROOFMESH_KDF="fast", PYTHONUNBUFFERED="1")
    log = open(home.path / "worker.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "proofmesh.cli.main", "--home", str(home.path), "worker",
                             "start", "--port", str(port), "--interval", "0.5", "--max-seconds", "240", *extra],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _logs(homes: list[Home]):
    """The tail of each worker's log, for a timeout's message."""
    return lambda: "\n".join(f"--- {h.path.name}\n" + (h.path / "worker.log").read_text()[-3000:] for h in homes)


def _setup(chain, accounts, tmp_path: Path, poster_store: BlobStore, poster_url: str):
    """Poster node with base model + data in its store; base version registered."""
    poster = accounts[6]
    reg = Registry(chain)
    reg.register(poster_url, ROLE_DATA, sender=poster)
    base = build_base_weights(ModelShape(), seed=3)
    raw, root, manifest = weights_manifest(base)
    base_cid = poster_store.put_bytes(raw)
    models = chain.contract("ModelRegistry")
    chain.transact(models.functions.register("tiny-gpt2", root, 0, 0, 0, [], 0, "", poster_store.put_bytes(manifest)),
                   sender=poster)
    base_version = chain.call(models.functions.version_count())
    records = "\n".join(json.dumps({"text": f"sensor {i} reads {i * 37 % 101} at dawn; all nominal."})
                        for i in range(300)).encode()
    data = DataRef(root="0x" + "ab" * 32, cid=poster_store.put_bytes(records))
    return poster, base_version, base_cid, data


def _post(client, poster, store, base_version, base_cid, data, *, mode, replicas, steps=16, k=2):
    spec = JobSpec(base_version=base_version, base_weights_cid=base_cid, data=(data,),
                   train=TrainConfig(mode="lora", steps=steps, checkpoint_every=k, seed=11),
                   profile=ExecutionProfile.current(1))
    spec_cid = store.put_bytes(spec.to_bytes())
    now = client.chain.timestamp()
    return client.post(spec_cid=spec_cid, name="tiny-gpt2-ft", base_version=base_version,
                       batches=[bytes.fromhex(data.root[2:])], mode=mode, replicas=replicas,
                       n_segments=spec.train.n_segments, profile_id=spec.profile.profile_id, reward=30 * MESH,
                       apply_seconds=4, work_seconds=600, deadline=now + 3600, sender=poster), spec


def test_replicated_three_worker_processes_one_cheats(anvil_chain, accounts, tmp_path):
    chain = anvil_chain
    chain.advance_to(chain.timestamp() + 1)
    client = JobMarketClient(chain)
    token, reg = Token(chain), Registry(chain)
    poster_store = BlobStore(tmp_path / "poster-store")
    workers = accounts[1:4]
    cheater = workers[2]
    holders = [a.address for a in accounts] + [client.c.address, chain.addresses["NodeRegistry"],
                                                 chain.addresses["Governance"]]
    supply0, held0 = token.total_supply(), sum(token.balance(h) for h in holders)
    with ExitStack() as stack:
        poster_url = stack.enter_context(serve_blobs(poster_store))
        poster, base_version, base_cid, data = _setup(chain, accounts, tmp_path, poster_store, poster_url)
        homes = []
        for i, w in enumerate(workers):
            port = _free_port()
            reg.register(f"http://127.0.0.1:{port}", ROLE_COMPUTE, sender=w)
            reg.stake(1000 * MESH, sender=w)
            home = _worker_home(tmp_path, f"worker{i}", chain.rpc_url, chain.addresses, w)
            homes.append(home)
            stack.enter_context(_worker_process(home, port, *(["--cheat", "perturb"] if w is cheater else [])))
        stake0 = {w.address: reg.info(w.address).stake for w in workers}
        bal0 = {w.address: token.balance(w.address) for w in workers}
        stack.enter_context(_clock(chain))
        job, spec = _post(client, poster, poster_store, base_version, base_cid, data, mode="replicated", replicas=3)
        wait_for(lambda: client.job(job).status == "disputed", 180, "the replicas to commit, reveal and disagree",
                 _logs(homes))
        referee = Referee(JobMarketClient(chain.with_account(accounts[0])),
                          Blobs(BlobStore(tmp_path / "referee-store"), [poster_url]))
        accepted = referee.rule_replicated(job)
        assert sorted(accepted) == sorted(w.address for w in workers if w is not cheater)
        assert referee.segments_executed <= 1        # at most the first disputed segment
    info = client.job(job)
    assert info.status == "settled"
    for w in workers:
        if w is cheater:
            assert reg.info(w.address).stake == stake0[w.address] - BOND
        else:
            assert token.balance(w.address) - bal0[w.address] >= 15 * MESH
            assert reg.info(w.address).stake == stake0[w.address]
    # The registered child version's weights verify against the honest workers' blob.
    models = chain.contract("ModelRegistry")
    v = chain.call(models.functions.versions(info.version_id))
    assert v[2] == base_version and v[7] == job and "0x" + v[0].hex() == info.weights_root
    ev = [e for e in chain.events("JobMarket", "Revealed", argument_filters={"job_id": job})
          if e["args"]["worker"] == accepted[0]][0]
    bundle = ResultBundle.from_bytes(referee.blobs.store.get_bytes(ev["args"]["result_cid"]))
    weights = weights_from_bytes(referee.blobs.store.get_bytes(bundle.weights_cid))
    assert "0x" + weights_manifest(weights)[1].hex() == info.weights_root
    # Books: the market holds nothing; every wei is accounted for (burns included).
    assert token.balance(client.c.address) == client.total_escrowed() == 0
    assert sum(token.balance(h) for h in holders) + (supply0 - token.total_supply()) == held0


def test_optimistic_false_result_disputed_and_lost(anvil_chain, accounts, tmp_path):
    chain = anvil_chain
    chain.advance_to(chain.timestamp() + 1)
    client = JobMarketClient(chain)
    token, reg = Token(chain), Registry(chain)
    poster_store = BlobStore(tmp_path / "poster-store")
    worker, challenger_acct = accounts[1], accounts[4]
    with ExitStack() as stack:
        poster_url = stack.enter_context(serve_blobs(poster_store))
        poster, base_version, base_cid, data = _setup(chain, accounts, tmp_path, poster_store, poster_url)
        reg.register("", ROLE_COMPUTE, sender=challenger_acct)
        reg.stake(1000 * MESH, sender=challenger_acct)
        port = _free_port()
        reg.register(f"http://127.0.0.1:{port}", ROLE_COMPUTE, sender=worker)
        reg.stake(1000 * MESH, sender=worker)
        home = _worker_home(tmp_path, "worker", chain.rpc_url, chain.addresses, worker)
        stack.enter_context(_worker_process(home, port, "--cheat", "skip"))
        stack.enter_context(_clock(chain))
        p0, c0, s0 = token.balance(poster.address), token.balance(challenger_acct.address), reg.info(worker.address).stake
        job, spec = _post(client, poster, poster_store, base_version, base_cid, data, mode="optimistic", replicas=1)
        wait_for(lambda: client.job(job).status == "submitted", 180, "the worker to submit", _logs([home]))
        ch = Challenger(JobMarketClient(chain.with_account(challenger_acct)),
                        Blobs(BlobStore(tmp_path / "challenger-store"), [poster_url]))
        assert not ch.check(job)                      # its own re-run disagrees
        ch.challenge(job)
        while True:
            turn = wait_for(lambda: (g := client.game(job)["dispute"]["turn"]) != "worker" and g, 60,
                            "the worker's bisection move", _logs([home]))
            if turn != "challenger":
                break
            ch.respond(job)
        d = client.game(job)["dispute"]
        assert d["turn"] == "referee" and d["hi"] == d["lo"] + 1
        referee = Referee(JobMarketClient(chain.with_account(accounts[0])),
                          Blobs(BlobStore(tmp_path / "referee-store"), [poster_url]))
        assert referee.rule_dispute(job) is False
        assert referee.segments_executed == 1
    assert client.job(job).status == "refunded"
    assert reg.info(worker.address).stake == s0 - BOND
    assert token.balance(challenger_acct.address) - c0 == BOND // 2
    assert token.balance(poster.address) == p0                # escrow refunded in full
    assert token.balance(client.c.address) == client.total_escrowed() == 0
