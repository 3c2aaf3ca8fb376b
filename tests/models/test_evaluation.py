"""ModelEvaluation: held-out eval sets, random evaluators, EIP-712 attestations (and attacks
on them), the quorum median, reputation, and the release gate."""

from __future__ import annotations

import dataclasses

from pathlib import Path

import pytest

from proofmesh.errors import ContractRevert
from proofmesh.models import attestation as A
from proofmesh.models.registry import ModelRegistryClient, name_id

RECORDS = [{"input_ids": [i % 7, (i + 1) % 7, (i + 2) % 7, 3, 4]} for i in range(12)]


@pytest.fixture
def lineage(client, tiny, tmp_path: Path):
    """v1 (root) and v2 (child of v1) of lineage 'lm', an eval set committed before and
    revealed after both, and a policy: perplexity, lower is better, tolerance 0.5, quorum 3."""
    v1, _ = client.register_version("lm", tiny.save(tiny.gpt2(seed=0), tmp_path / "v1"))
    v2, _ = client.register_version("lm", tiny.save(tiny.gpt2(seed=1), tmp_path / "v2"), parent=v1.id)
    es_file = tiny.write_jsonl(tmp_path / "eval.jsonl", RECORDS)
    esid, root, salt = client.commit_eval_set("lm", es_file)
    client.set_policy("lm", "perplexity", higher_is_better=False, tolerance=0.5, quorum=3)
    client.reveal_eval_set(esid)
    return {"v1": v1.id, "v2": v2.id, "es": esid, "root": root, "file": es_file}


def run_quorum(client, version: int, es: int, value_of, evaluators) -> int:
    """Request, draw, and have every drawn evaluator attest ``value_of(address)``."""
    rid = client.request_evaluation(version, es)
    drawn = client.draw(rid)
    by_addr = {a.address: a for a in evaluators}
    for addr in drawn:
        a = client.make_attestation(rid, value_of(addr), by_addr[addr])
        client.submit_attestation(rid, a)      # relayed by the owner's account: any sender may
    return rid


def test_commit_reveal_rules(client, chain, accounts, tiny, tmp_path: Path) -> None:
    client.register_version("lm", tiny.save(tiny.gpt2(), tmp_path / "m"))
    f = tiny.write_jsonl(tmp_path / "e.jsonl", RECORDS)
    other = ModelRegistryClient(chain.with_account(accounts[8]))
    with pytest.raises(ContractRevert, match="does not own the lineage"):
        other.commit_eval_set("lm", f)
    esid, root, salt = client.commit_eval_set("lm", f)
    with pytest.raises(ContractRevert, match="does not match the commitment"):
        client.reveal_eval_set(esid, f, salt=b"\x01" * 32)
    with pytest.raises(ContractRevert, match="only the committer"):
        other.reveal_eval_set(esid, f, salt=salt)
    client.reveal_eval_set(esid)
    es = client.eval_set(esid)
    assert es["root"] == "0x" + root.hex() and es["size"] == len(RECORDS) and es["revealed_block"] > 0
    assert client.get_blob(es["cid"]) == f.read_bytes()
    with pytest.raises(ContractRevert, match="already revealed"):
        client.reveal_eval_set(esid)


def test_version_registered_after_reveal_cannot_use_the_set(client, lineage, evaluators, tiny, tmp_path) -> None:
    late, _ = client.register_version("lm", tiny.save(tiny.gpt2(seed=3), tmp_path / "late"), parent=lineage["v2"])
    with pytest.raises(ContractRevert, match="registered after the eval set was revealed"):
        client.request_evaluation(late.id, lineage["es"])


def test_draw_is_stake_weighted_random_and_excludes_owner(client, chain, lineage, evaluators, owner) -> None:
    from proofmesh.chain.core import Registry

    # the owner also runs an evaluator node: it must never judge its own version
    r = Registry(chain.with_account(owner))
    r.register("http://127.0.0.1:9199", 32)
    r.stake(100_000 * 10**18)      # 100x everyone else: would almost always be drawn
    rid = client.request_evaluation(lineage["v1"], lineage["es"])
    with pytest.raises(ContractRevert, match="seed block not mined yet"):
        chain.transact(client.evaluation.functions.draw(rid))
    drawn = client.draw(rid)
    assert len(drawn) == 3 == len(set(drawn))
    assert owner.address not in drawn
    assert set(drawn) <= {a.address for a in evaluators}
    with pytest.raises(ContractRevert, match="already drawn"):
        chain.transact(client.evaluation.functions.draw(rid))
    with pytest.raises(ContractRevert, match="already open"):
        client.request_evaluation(lineage["v1"], lineage["es"])


def test_not_enough_evaluators(client, lineage, chain, accounts) -> None:
    # checked at request time, when the candidates are snapshotted
    with pytest.raises(ContractRevert, match="only 0 eligible evaluators for a quorum of 3"):
        client.request_evaluation(lineage["v1"], lineage["es"])


def test_attestation_attacks_revert(client, chain, lineage, evaluators, tiny) -> None:
    rid = client.request_evaluation(lineage["v1"], lineage["es"])
    drawn = client.draw(rid)
    by = {a.address: a for a in evaluators}
    e1, e2 = by[drawn[0]], by[drawn[1]]
    outsider = next(a for a in evaluators if a.address not in drawn)

    # a staked evaluator that was not drawn
    with pytest.raises(ContractRevert, match="not a drawn evaluator"):
        client.submit_attestation(rid, client.make_attestation(rid, 10.0, outsider))
    # forged: a valid signature of one value submitted with another
    good = client.make_attestation(rid, 10.0, e1)
    forged = dataclasses.replace(good, value=good.value - 1)
    with pytest.raises(ContractRevert, match="not a drawn evaluator|invalid signature"):
        client.submit_attestation(rid, forged)
    # signed for another chain id / another contract: recovers to a stranger
    other_chain = A.sign(e1, 1, client.evaluation.address, dataclasses.replace(good, signature=b""))
    with pytest.raises(ContractRevert, match="not a drawn evaluator"):
        client.submit_attestation(rid, other_chain)
    # stale: deadline already passed
    stale = client.make_attestation(rid, 10.0, e1, deadline=chain.timestamp() - 1)
    with pytest.raises(ContractRevert, match="stale attestation"):
        client.submit_attestation(rid, stale)
    # signed for another request: the request id is in the signed struct, so it recovers to a stranger
    other_request = A.sign(e1, chain.chain_id, client.evaluation.address,
                           dataclasses.replace(good, request_id=rid + 1, signature=b""))
    with pytest.raises(ContractRevert, match="not a drawn evaluator|invalid signature"):
        chain.transact(client.evaluation.functions.attest(rid, other_request.value, other_request.deadline,
                                                          other_request.signature))
    client.submit_attestation(rid, good)
    # replay of the accepted signature
    with pytest.raises(ContractRevert, match="already attested"):
        client.submit_attestation(rid, good)
    # second attestation by the same evaluator (a fresh signature of another value)
    with pytest.raises(ContractRevert, match="already attested"):
        client.submit_attestation(rid, client.make_attestation(rid, 11.0, e1))
    # after the window closes nothing is accepted
    late = client.make_attestation(rid, 10.0, e2, deadline=chain.timestamp() + 10 * 86400)
    with pytest.raises(ContractRevert, match="window still open"):
        client.chain.transact(client.evaluation.functions.expire(rid))
    tiny.advance_to(chain, client.request(rid)["deadline"] + 1)
    with pytest.raises(ContractRevert, match="attestation window closed"):
        client.submit_attestation(rid, late)
    assert client.request(rid)["count"] == 1
    # the two no-shows lose reputation, the one that attested does not; once only
    client.chain.transact(client.evaluation.functions.expire(rid))
    assert client.reputation(e1.address) == 0
    assert [client.reputation(a) for a in drawn[1:]] == [-1, -1]
    with pytest.raises(ContractRevert, match="already expired"):
        client.chain.transact(client.evaluation.functions.expire(rid))
    # an expired request can be replaced by a fresh one
    rid2 = client.request_evaluation(lineage["v1"], lineage["es"])
    assert rid2 == rid + 1


def test_median_reputation_and_rewards(client, chain, lineage, evaluators, owner) -> None:
    from proofmesh.chain.core import EmissionClient, Token

    reward = chain.call(client.evaluation.functions.eval_reward())
    EmissionClient(chain).fund_pool(5, 100 * reward, sender=owner)
    token = Token(chain)
    before = {a.address: token.balance(a.address) for a in evaluators}
    values = iter([20.0, 20.4, 35.0])          # the third is far from the median
    seen: dict[str, float] = {}

    def value_of(addr):
        seen[addr] = next(values)
        return seen[addr]

    rid = run_quorum(client, lineage["v1"], lineage["es"], value_of, evaluators)
    req = client.request(rid)
    assert req["finalized"] and req["median"] == pytest.approx(20.4)
    rep = {a: client.reputation(a) for a in seen}
    assert sorted(rep.values()) == [-1, 1, 1]
    assert rep[next(a for a, v in seen.items() if v == 35.0)] == -1
    # honest evaluators are paid from the EVALUATION pool, the outlier is not
    paid = {a: token.balance(a) - before[a] for a in seen}
    assert sorted(paid.values()) == [0, reward, reward] and reward > 0
    assert paid[next(a for a, v in seen.items() if v == 35.0)] == 0
    ev = client.evaluation_result(lineage["v1"], lineage["es"])
    assert ev.finalized and ev.median == pytest.approx(20.4) and sorted(ev.values.values()) == [20.0, 20.4, 35.0]


def test_release_gate_refuses_regression_and_releases_improvement(client, lineage, evaluators, tiny,
                                                                  tmp_path, chain, accounts) -> None:
    v1, v2, es = lineage["v1"], lineage["v2"], lineage["es"]
    with pytest.raises(ContractRevert, match="no quorum median"):
        client.release(v1, es)
    run_quorum(client, v1, es, lambda a: 20.0, evaluators)
    other = ModelRegistryClient(chain.with_account(accounts[8]))
    with pytest.raises(ContractRevert, match="does not own the version"):
        other.release(v1, es)
    client.release(v1, es)
    assert client.version(v1).released
    with pytest.raises(ContractRevert, match="policy is locked"):
        client.set_policy("lm", "perplexity", higher_is_better=False, tolerance=100.0, quorum=1)
    # v2 regresses by 0.8 > tolerance 0.5 (perplexity: lower is better)
    run_quorum(client, v2, es, lambda a: 20.8, evaluators)
    verdict = client.check_release(v2, es)
    assert not verdict["ok"] and verdict["median"] == pytest.approx(20.8)
    assert verdict["best_ancestor"] == v1 and verdict["best_ancestor_value"] == pytest.approx(20.0)
    with pytest.raises(ContractRevert, match=r"regression: median 20800000 > best released ancestor 1 at 20000000 \+ tolerance 500000"):
        client.release(v2, es)
    assert not client.version(v2).released


def test_small_regressions_cannot_be_chained(client, lineage, evaluators, tiny, tmp_path) -> None:
    """v1=20.0 released; v2=20.4 (within 0.5) released; v3=20.8 is 0.4 from v2 but 0.8 from
    the best released ancestor v1: refused."""
    v3, _ = client.register_version("lm", tiny.save(tiny.gpt2(seed=2), tmp_path / "v3"), parent=lineage["v2"])
    # a second eval set, revealed after v3, for the same three versions
    f = tiny.write_jsonl(tmp_path / "eval2.jsonl", RECORDS[:6])
    es2, _, _ = client.commit_eval_set("lm", f)
    client.reveal_eval_set(es2)
    for vid, val in ((lineage["v1"], 20.0), (lineage["v2"], 20.4), (v3.id, 20.8)):
        run_quorum(client, vid, es2, lambda a, val=val: val, evaluators)
    client.release(lineage["v1"], es2)
    client.release(lineage["v2"], es2)
    with pytest.raises(ContractRevert, match="best released ancestor 1 at 20000000"):
        client.release(v3.id, es2)


def test_nearest_released_ancestor_must_be_measured_on_the_same_set(client, lineage, evaluators, tiny,
                                                                    tmp_path) -> None:
    """A fresh eval set cannot dodge the comparison: the released parent must be measured on it too."""
    v1, v2 = lineage["v1"], lineage["v2"]
    run_quorum(client, v1, lineage["es"], lambda a: 20.0, evaluators)
    client.release(v1, lineage["es"])
    es2, _, _ = client.commit_eval_set("lm", tiny.write_jsonl(tmp_path / "eval2.jsonl", RECORDS[3:]))
    client.reveal_eval_set(es2)
    run_quorum(client, v2, es2, lambda a: 19.0, evaluators)
    with pytest.raises(ContractRevert, match="nearest released ancestor 1 has no median on this eval set"):
        client.release(v2, es2)
    run_quorum(client, v1, es2, lambda a: 19.5, evaluators)
    assert client.check_release(v2, es2)["ok"]
    client.release(v2, es2)


def test_improvement_released_with_real_evaluation(client, chain, evaluators, tiny, tmp_path: Path) -> None:
    """Real torch evaluation: v2 is v1 trained on the task (lower perplexity) and is released;
    v3 is v2 with its weights damaged (higher perplexity) and is refused."""
    import torch

    from proofmesh.models.evaluate import evaluate_path
    from proofmesh.models import evalset

    torch.manual_seed(0)
    m = tiny.gpt2(seed=0)
    d1 = tiny.save(m, tmp_path / "v1")
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    m.train()
    for step in range(40):
        x = torch.tensor([[(step + j) % 7 for j in range(12)]])   # the task: count mod 7
        loss = m(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    m.eval()
    d2 = tiny.save(m, tmp_path / "v2")
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    d3 = tiny.save(m, tmp_path / "v3")
    v1, _ = client.register_version("counter", d1)
    v2, _ = client.register_version("counter", d2, parent=v1.id)
    v3, _ = client.register_version("counter", d3, parent=v2.id)
    records = [{"input_ids": [(s + j) % 7 for j in range(10)]} for s in range(7)]
    f = tiny.write_jsonl(tmp_path / "held-out.jsonl", records)
    esid, _, _ = client.commit_eval_set("counter", f)
    client.set_policy("counter", "perplexity", higher_is_better=False, tolerance=0.05, quorum=3)
    client.reveal_eval_set(esid)
    loaded = evalset.load(f)
    ppl = {vid: evaluate_path(d, loaded.records, "perplexity").value for vid, d in ((v1.id, d1), (v2.id, d2), (v3.id, d3))}
    assert ppl[v2.id] < ppl[v1.id] and ppl[v3.id] > ppl[v2.id] + 0.05
    for vid in (v1.id, v2.id, v3.id):
        run_quorum(client, vid, esid, lambda a, vid=vid: ppl[vid], evaluators)
    client.release(v1.id, esid)
    client.release(v2.id, esid)
    with pytest.raises(ContractRevert, match="regression"):
        client.release(v3.id, esid)
    assert [client.version(v).released for v in (v1.id, v2.id, v3.id)] == [True, True, False]


def test_fork_under_another_name_has_its_own_history(client, chain, lineage, evaluators, accounts, tiny,
                                                     tmp_path) -> None:
    """A fork of v1 under another name is gated by its own lineage's releases, not v1's;
    and only a version's or lineage's owner can spend evaluators' work on it."""
    run_quorum(client, lineage["v1"], lineage["es"], lambda a: 20.0, evaluators)
    client.release(lineage["v1"], lineage["es"])
    forker = ModelRegistryClient(chain.with_account(accounts[8]))
    fork, _ = forker.register_version("fork", tiny.save(tiny.gpt2(seed=8), tmp_path / "fork"), parent=lineage["v1"])
    es, _, _ = forker.commit_eval_set("fork", tiny.write_jsonl(tmp_path / "fork-eval.jsonl", RECORDS[:4]))
    forker.set_policy("fork", "perplexity", higher_is_better=False, tolerance=0.0, quorum=3)
    forker.reveal_eval_set(es)
    with pytest.raises(ContractRevert, match="only the version or lineage owner may request"):
        client.request_evaluation(fork.id, es)
    run_quorum(forker, fork.id, es, lambda a: 25.0, evaluators)
    assert forker.check_release(fork.id, es) == {"ok": True, "reason": "", "median": 25.0, "best_ancestor": None,
                                                 "best_ancestor_value": None}
    forker.release(fork.id, es)
