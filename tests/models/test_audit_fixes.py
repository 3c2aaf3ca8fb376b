"""Regression tests of the security-audit findings fixed in ModelEvaluation
(docs/security-audit.md): each test performs the attack and shows it now fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from web3.logs import DISCARD

from proofmesh.errors import ContractRevert

RECORDS = [{"input_ids": [i % 7, (i + 1) % 7, (i + 2) % 7, 3, 4]} for i in range(12)]


def _lineage(client, tiny, tmp_path: Path, name: str, quorum: int, seed: int = 0) -> dict:
    v1, _ = client.register_version(name, tiny.save(tiny.gpt2(seed=seed), tmp_path / f"{name}-v1"))
    es_file = tiny.write_jsonl(tmp_path / f"{name}-eval.jsonl", RECORDS)
    esid, _root, _salt = client.commit_eval_set(name, es_file)
    client.set_policy(name, "perplexity", higher_is_better=False, tolerance=0.5, quorum=quorum)
    client.reveal_eval_set(esid)
    return {"v1": v1.id, "es": esid}


def test_h1_sybils_staked_after_request_are_never_drawn_and_no_reroll(client, chain, accounts, evaluators,
                                                                        tiny, tmp_path) -> None:
    """H1/M5: once the seed block's hash is public, the owner stakes heavy sybil evaluators:
    the draw uses the candidates snapshotted at request time (NodeRegistry active_at), so
    they get no seat. Letting the seed expire without drawing does not allow a new request
    (re-roll); the draw re-commits to a future block instead."""
    from proofmesh.chain.core import Registry

    lin = _lineage(client, tiny, tmp_path, "h1", 3)
    rid = client.request_evaluation(lin["v1"], lin["es"])
    chain.mine(2)                                        # seed hash public
    for i, s in enumerate(accounts[7:9]):
        r = Registry(chain.with_account(s))
        r.register(f"http://127.0.0.1:{9300 + i}", 32)
        r.stake(100_000 * 10**18)                         # 100x the honest stake
    # re-roll attempt: do not draw, let the seed block hash expire, request again
    chain.mine(260)
    with pytest.raises(ContractRevert, match="already open"):
        client.request_evaluation(lin["v1"], lin["es"])
    tx = chain.transact(client.evaluation.functions.draw(rid))
    ev = client.evaluation.events.SeedRecommitted().process_receipt(tx.receipt, errors=DISCARD)
    assert len(ev) == 1 and ev[0]["args"]["seed_block"] == tx.receipt["blockNumber"] + 1
    assert not client.request(rid)["drawn"]
    drawn = client.draw(rid)
    assert len(drawn) == 3 and set(drawn) <= {a.address for a in evaluators}


def test_m6_quorum_one_cannot_farm_eval_reward(client, chain, accounts, evaluators, owner, tiny, tmp_path) -> None:
    """M6: a lineage owner with quorum 1 requests evaluations for free: a lone drawn evaluator
    is always 'near the median', but rewards need a quorum of at least MIN_REWARD_QUORUM."""
    from proofmesh.chain.core import EmissionClient, Token

    reward = chain.call(client.evaluation.functions.eval_reward())
    assert reward > 0 and chain.call(client.evaluation.functions.MIN_REWARD_QUORUM()) == 3
    EmissionClient(chain).fund_pool(5, 100 * reward, sender=owner)
    token = Token(chain)
    lin = _lineage(client, tiny, tmp_path, "farm", 1)
    before = {a.address: token.balance(a.address) for a in evaluators}
    rid = client.request_evaluation(lin["v1"], lin["es"])
    (addr,) = client.draw(rid)
    ev = next(a for a in evaluators if a.address == addr)
    client.submit_attestation(rid, client.make_attestation(rid, 20.0, ev))
    assert client.request(rid)["finalized"]
    assert {a.address: token.balance(a.address) - before[a.address] for a in evaluators} == {
        a.address: 0 for a in evaluators}


def test_l3_concurrent_requests_attest_in_any_order_and_a_lost_signature_blocks_nothing(
        client, chain, evaluators, tiny, tmp_path) -> None:
    """L3: with one sequential nonce per evaluator, two open requests forced an order and a
    signed-but-never-submitted attestation blocked every later one. The request id is now in
    the signed struct and (request, signer) is the uniqueness key."""
    import dataclasses

    a = _lineage(client, tiny, tmp_path, "l3a", 5)
    b = _lineage(client, tiny, tmp_path, "l3b", 5, seed=1)
    rid_a = client.request_evaluation(a["v1"], a["es"])
    rid_b = client.request_evaluation(b["v1"], b["es"])
    assert sorted(client.draw(rid_a)) == sorted(client.draw(rid_b)) == sorted(e.address for e in evaluators)
    e = evaluators[0]
    lost = client.make_attestation(rid_a, 12.0, e)          # signed first, never submitted ("lost")
    client.submit_attestation(rid_b, client.make_attestation(rid_b, 13.0, e))   # the later request first
    # the signature for request a cannot be spent on request b (it names its request)
    with pytest.raises(ContractRevert, match="not a drawn evaluator|invalid signature"):
        chain.transact(client.evaluation.functions.attest(rid_b, lost.value, lost.deadline, lost.signature))
    # the lost one blocks nothing: a fresh signature for request a lands; then neither repeats
    client.submit_attestation(rid_a, client.make_attestation(rid_a, 12.5, e))
    for rid, att in ((rid_a, lost), (rid_b, client.make_attestation(rid_b, 13.0, e))):
        with pytest.raises(ContractRevert, match="already attested"):
            client.submit_attestation(rid, att)
    assert client.request(rid_a)["count"] == client.request(rid_b)["count"] == 1
    with pytest.raises(Exception, match="signed for request"):
        client.submit_attestation(rid_b, dataclasses.replace(lost))
