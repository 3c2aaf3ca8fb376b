"""The network finishes a fine-tuning job although one worker node is killed (-9) mid-job.

A 4-node devnet (anvil + four daemons): node0 posts a replicated job (3 replicas)
whose base model, data and spec are in its own store, served by its daemon; node1,
node2 and node3 are COMPUTE nodes whose daemons run the worker service. As soon as the workers
are drawn, node1's daemon is killed with SIGKILL — no graceful anything. `devnet up`
restarts it on its home; its worker finds its slot still assigned (or its commitment
saved) and carries on; the job settles, both workers are paid, and the result is
registered as a child model version.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from proofmesh.chain.client import Chain
from proofmesh.chain.core import MESH, Token
from proofmesh.config import Home
from proofmesh.crypto.keys import Keystore
from proofmesh.errors import ProofmeshError
from proofmesh.node.daemon import running_daemon
from proofmesh.node.devnet import devnet_down, devnet_status, devnet_up
from tests.node.conftest import wait_for

compute = pytest.importorskip("proofmesh.compute.worker")

pytestmark = [pytest.mark.slow, pytest.mark.anvil]


def test_kill9_worker_node_mid_job_network_finishes(tmp_path: Path) -> None:
    from proofmesh.chain.anvil import find_binary
    from proofmesh.compute.artifacts import weights_manifest
    from proofmesh.compute.market import JobMarketClient
    from proofmesh.compute.training import (DataRef, ExecutionProfile, JobSpec, ModelShape, TrainConfig,
                                            build_base_weights)
    from proofmesh.store.blobstore import BlobStore

    try:
        find_binary("anvil")
    except ProofmeshError:
        pytest.skip("anvil is not installed")
    d = tmp_path / "devnet"
    record = devnet_up(d, nodes=4)
    stop_clock = threading.Event()
    try:
        n0, n1, n2, n3 = record.nodes
        home0 = Home.resolve(n0.home)
        poster = Keystore(home0).load("default", record.password)
        chain = Chain.connect(home0, poster)
        client = JobMarketClient(chain)

        def clock() -> None:  # anvil mines only on transactions; the draw waits for a future block
            while not stop_clock.wait(0.5):
                try:
                    chain.mine()
                except Exception:
                    pass
        threading.Thread(target=clock, daemon=True).start()

        # node0's store (served by node0's daemon at its registered endpoint): base weights, data, spec
        store = BlobStore(home0.store_dir)
        raw, root, manifest = weights_manifest(build_base_weights(ModelShape(), seed=3))
        base_cid = store.put_bytes(raw)
        models = chain.contract("ModelRegistry")
        chain.transact(models.functions.register("tiny-gpt2", root, 0, 0, 0, [], 0, "", store.put_bytes(manifest)))
        base_version = chain.call(models.functions.version_count())
        records = "\n".join(json.dumps({"text": f"sensor {i} reads {i * 37 % 101} at dawn; all nominal."})
                            for i in range(300)).encode()
        data = DataRef(root="0x" + "ab" * 32, cid=store.put_bytes(records))
        spec = JobSpec(base_version=base_version, base_weights_cid=base_cid, data=(data,),
                       train=TrainConfig(mode="lora", steps=16, checkpoint_every=2, seed=11),
                       profile=ExecutionProfile.current(1))
        token = Token(chain)
        paid0 = {n.address: token.balance(n.address) for n in (n1, n2, n3)}
        job = client.post(spec_cid=store.put_bytes(spec.to_bytes()), name="tiny-gpt2-ft", base_version=base_version,
                          batches=[bytes.fromhex(data.root[2:])], mode="replicated", replicas=3,
                          n_segments=spec.train.n_segments, profile_id=spec.profile.profile_id, reward=30 * MESH,
                          apply_seconds=4, work_seconds=900, deadline=chain.timestamp() + 3600)

        wait_for(lambda: client.job(job).status in ("working", "reveal", "settled"), 240, "the workers to be drawn")
        assert sorted(client.job(job).workers) == sorted([n1.address, n2.address, n3.address])
        victim = running_daemon(Home.resolve(n1.home))
        os.kill(victim.pid, signal.SIGKILL)
        wait_for(lambda: running_daemon(Home.resolve(n1.home)) is None, 10, "node1 to die")
        assert {r["node"]: r["health"] for r in devnet_status(d)}["node1"] == "down"

        devnet_up(d)  # restarts node1 on its home: the worker resumes its assigned slot
        status = wait_for(lambda: client.job(job).status in ("settled", "disputed") and client.job(job).status,
                       420, "the replicas to reveal and the job to settle or go to the referee")
        accepted = [n1.address, n2.address, n3.address]
        if status == "disputed":
            # replicas disagreed: the referee (node0, the deployer, on a devnet) re-executes the
            # first disputed segment from the workers' published checkpoints and rules
            from proofmesh.compute.artifacts import Blobs
            from proofmesh.compute.referee import Referee

            referee = Referee(client, Blobs(store, [n.url for n in (n1, n2, n3)]))
            accepted = referee.rule_replicated(job)
            print(f"replicas disagreed; referee accepted {accepted}")
        info = client.job(job)
        assert info.status == "settled"
        assert len(accepted) >= 2  # a majority of honest replicas carried the job
        share = 30 * MESH // len(accepted)
        for n in (n1, n2, n3):
            if n.address in accepted:
                assert token.balance(n.address) - paid0[n.address] == share  # 30 MESH reward split
        v = chain.call(models.functions.versions(info.version_id))
        assert v[2] == base_version and v[7] == job and "0x" + v[0].hex() == info.weights_root
        log = (Path(n1.home) / "node" / "node.log").read_text()
        assert log.count('"msg": "node started"') == 2  # the worker ran in two lives of node1
    finally:
        stop_clock.set()
        devnet_down(d)
