"""The same lineage flow on anvil (the rpc backend): nothing assumes the embedded chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from proofmesh.errors import ContractRevert

pytestmark = pytest.mark.anvil


def test_register_evaluate_release_on_anvil(anvil_chain, accounts, tiny, tmp_path: Path) -> None:
    from proofmesh.chain.core import Registry
    from proofmesh.models.registry import ModelRegistryClient

    owner, evs = accounts[1], accounts[2:5]
    for i, a in enumerate(evs):
        r = Registry(anvil_chain.with_account(a))
        r.register(f"http://127.0.0.1:{9500 + i}", 32)
        r.stake(500 * 10**18)
    client = ModelRegistryClient(anvil_chain.with_account(owner))
    v1, _ = client.register_version("anvil-lm", tiny.save(tiny.gpt2(seed=0), tmp_path / "v1"))
    v2, _ = client.register_version("anvil-lm", tiny.save(tiny.gpt2(seed=1), tmp_path / "v2"), parent=v1.id)
    esid, _, _ = client.commit_eval_set("anvil-lm", tiny.write_jsonl(tmp_path / "e.jsonl", [{"input_ids": [1, 2, 3]}]))
    client.set_policy("anvil-lm", "accuracy", higher_is_better=True, tolerance=0.01, quorum=3)
    client.reveal_eval_set(esid)
    by = {a.address: a for a in evs}
    for vid, value in ((v1.id, 0.50), (v2.id, 0.45)):
        rid = client.request_evaluation(vid, esid)
        drawn = client.draw(rid)
        assert set(drawn) == set(by)
        first = client.make_attestation(rid, value, by[drawn[0]])
        client.submit_attestation(rid, first)
        with pytest.raises(ContractRevert, match="already attested"):
            client.submit_attestation(rid, first)
        for addr in drawn[1:]:
            client.submit_attestation(rid, client.make_attestation(rid, value, by[addr]))
    client.release(v1.id, esid)
    with pytest.raises(ContractRevert, match=r"regression: median 450000 < best released ancestor 1 at 500000"):
        client.release(v2.id, esid)
