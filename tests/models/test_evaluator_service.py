"""The evaluator node service's logic, in process on the test chain (the devnet test in
tests/node/test_evaluator.py runs it inside real daemons): keeper draw, weights not
published yet (retried later, nothing attested), then fetched from the owner's node by
CID, evaluated and attested by every drawn evaluator; undrawn ones do nothing."""

from __future__ import annotations

from pathlib import Path

from proofmesh.chain.core import Registry
from proofmesh.models.distribution import publish_weights
from proofmesh.models.evaluate import evaluate_path
from proofmesh.models.service import EvaluatorService
from proofmesh.node.services import NodeContext
from proofmesh.store.api import serve_blobs
from proofmesh.store.blobstore import BlobStore

RECORDS = [{"input_ids": [(i + j) % 7 for j in range(6)]} for i in range(8)]


def test_evaluator_service_draws_waits_for_weights_fetches_and_attests(client, chain, home, owner, evaluators,
                                                                      tiny, tmp_path: Path) -> None:
    folder = tiny.save(tiny.gpt2(seed=4), tmp_path / "v1")
    v1, _ = client.register_version("svc-lm", folder)
    esid, _r, _s = client.commit_eval_set("svc-lm", tiny.write_jsonl(tmp_path / "eval.jsonl", RECORDS))
    client.set_policy("svc-lm", "perplexity", higher_is_better=False, tolerance=0.5, quorum=3)
    client.reveal_eval_set(esid)
    services = [EvaluatorService(NodeContext(home=home, chain=chain.with_account(ev), account=ev, roles=32,
                                             store=BlobStore(tmp_path / f"store-{i}"),
                                             base_url=f"http://127.0.0.1:{9100 + i}"))
                for i, ev in enumerate(evaluators)]
    with serve_blobs(client.blobs) as owner_url:
        Registry(chain).register(owner_url, 1, sender=owner)     # the owner's node serves its store
        rid = client.request_evaluation(v1.id, esid)
        chain.mine(2)                                             # the seed block is mined
        assert services[0].poll_once() == [f"drew request {rid}"]   # the keeper draws...
        drawn = client.request(rid)["evaluators"]
        assert services[0].drawn == [rid] and len(drawn) == 3
        for s in services:                  # ...but nothing is published yet: no attestation
            s.poll_once()
        assert client.request(rid)["count"] == 0
        waiting = [s for s in services if s.me in drawn]
        assert all("no published weights" in (s.last_error or "") for s in waiting)
        assert all(s.poll_once() == [] for s in waiting)          # backing off, not hammering
        publish_weights(client, v1.id, folder)
        for s in services:
            s._retry_at.clear()
            s.poll_once()
    req = client.request(rid)
    assert req["finalized"] and req["count"] == 3
    expected = evaluate_path(folder, RECORDS, "perplexity").value
    assert abs(req["median"] - expected) < 1e-5
    for s in services:
        assert [a["request"] for a in s.attested] == ([rid] if s.me in drawn else [])
        assert s.refused == [] and s.poll_once() == []             # done: nothing repeats
