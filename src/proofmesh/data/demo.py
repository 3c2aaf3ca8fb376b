"""Demo step "data": two contributors, dedup across batches, validators, a fraud proof,
a contamination check, rewards and a takedown — on the demo's chain, with the bundled corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parent / "corpus"


def run(ctx: Any) -> dict:
    from proofmesh.chain.core import MESH, Registry, Token, from_wei
    from proofmesh.data.batch import batch_tree
    from proofmesh.data.client import DataRegistryClient, open_index, publish, verify_record
    from proofmesh.data.overlap import load_texts, overlap
    from proofmesh.data.pipeline import IngestConfig, ingest
    from proofmesh.data.validator import attest
    from proofmesh.store.blobstore import BlobStore

    chain, log = ctx.chain, ctx.log
    alice, bob, challenger = ctx.actor(0), ctx.actor(1), ctx.actor(5)
    validators = [ctx.actor(2), ctx.actor(3), ctx.actor(4)]
    reg = Registry(chain)
    for who, roles in [(alice, 2), (bob, 2)] + [(v, 1) for v in validators]:
        if not reg.info(who.address).registered:
            reg.register(f"http://127.0.0.1/{who.address[:10]}", roles, sender=who)
            reg.stake(1_000 * MESH, sender=who)
    log("contributors alice/bob and 3 data validators registered and staked 1,000 MESH each")
    client = DataRegistryClient(chain)
    store = BlobStore(ctx.home.store_dir)
    cfg = IngestConfig()
    index = open_index(ctx.home, cfg.index_params())
    work = Path(ctx.workdir) / "data"
    work.mkdir(parents=True, exist_ok=True)
    rows: dict[str, Any] = {}
    try:
        sa = client.register_source("https://example.org/alice-news", "CC-BY-4.0", "news digests", sender=alice)
        sb = client.register_source("https://example.org/bob-notes", "CC0-1.0", "field notes", sender=bob)
        log(f"sources registered: alice #{sa}, bob #{sb}")
        ra = ingest([CORPUS / "contributor_a.jsonl"], work / "alice", cfg, index=index)
        d = ra.report["dropped"]
        log(f"alice ingest: {ra.report['input_records']} records → kept {ra.record_count}, "
            f"dropped {d['exact']} exact + {d['near']} near duplicates")
        pa = publish(chain, store, index, work / "alice", sa, sender=alice)
        log(f"alice batch #{pa['batch_id']} published: root {pa['root'][:18]}…, {pa['record_count']} records, "
            f"{pa['token_count']} tokens, gas {pa['gas_used']:,} ({pa['gas_used'] / pa['record_count']:.0f}/record)")
        rb = ingest([CORPUS / "contributor_b.jsonl"], work / "bob", cfg, index=index)
        d = rb.report["dropped"]
        log(f"bob ingest: {rb.report['input_records']} records → kept {rb.record_count}; already on chain: "
            f"{d['published-exact']} exact + {d['published-near']} near (alice's records, dropped)")
        pb = publish(chain, store, index, work / "bob", sb, sender=bob)
        log(f"bob batch #{pb['batch_id']} published")

        # validators drawn from the block after publication check samples and attest
        members = client.draw_committee(pa["batch_id"])
        signers = {a.address: a for a in validators + [chain.account]}
        for m in members:
            res = attest(chain, store, pa["batch_id"], signers[m], index=None)
            log(f"validator {m[:10]}… attests batch #{pa['batch_id']}: available={res['available']}, "
                f"quality {res['quality_bps'] / 100:.1f}% on {len(res['sample'])} sampled records")

        # a cheater bypasses the dedup and republishes one of alice's records: fraud proof
        ha = [bytes.fromhex(json.loads(l)["record_hash"])
              for l in (work / "alice" / "records.jsonl").read_text().splitlines()]
        cheat = [ha[5], bytes.fromhex("11" * 32)]
        recs = "".join(json.dumps({"i": i, "record_hash": h.hex(), "tokens": 50, "text": "-"}) + "\n"
                       for i, h in enumerate(cheat))
        cid = store.put_bytes(recs.encode())
        bc, _tx = client.publish_raw(sb, batch_tree(cheat).root, len(cheat), 100, cid, cid, sender=bob)
        token = Token(chain)
        before = token.balance(challenger.address)
        client.challenge_duplicate(pa["batch_id"], 5, batch_tree(ha).proof(5), bc, 0,
                                   batch_tree(cheat).proof(0), ha[5], sender=challenger)
        bounty = token.balance(challenger.address) - before
        log(f"bob's batch #{bc} repeats alice's record: commit–reveal fraud proof → bounty "
            f"{from_wei(bounty)} MESH to the challenger, the rest of the slash burned")

        text = json.loads((CORPUS / "contributor_a.jsonl").read_text().splitlines()[0])["text"]
        v = verify_record(chain, index, store, text)
        log(f"verify: record {v['record_hash'][:14]}… is #{v['index']} of batch #{v['batch_id']} "
            f"(source #{v['source_id']}); Merkle proof of {len(v['proof'])} hashes accepted by the contract: "
            f"{v['verified_on_chain']}")

        _la, ta = load_texts(str(work / "alice"))
        _le, te = load_texts(str(CORPUS / "eval.jsonl"))
        ov = overlap(ta, te)
        log(f"contamination check eval vs alice: {ov['exact_overlap']} exact + {ov['near_overlap']} near "
            f"of {ov['records_b']} eval records")

        window = chain.call(client.c.functions.challenge_window())
        chain.increase_time(window + 1)
        chain.mine()
        before = token.balance(alice.address)
        client.finalize(pa["batch_id"])
        reward = token.balance(alice.address) - before
        log(f"challenge window over: alice's batch finalised, reward {from_wei(reward)} MESH, bond released")

        t = batch_tree(ha)
        client.takedown_record(pa["batch_id"], 0, ha[0], t.proof(0), "personal data", sender=alice)
        log(f"alice took down record {ha[0].hex()[:12]}…: tombstone on chain = "
            f"{chain.call(client.c.functions.tombstone(ha[0]))}")
        rows = {"alice batch": pa["batch_id"], "alice kept": ra.record_count,
                "bob dropped as already published": d["published-exact"] + d["published-near"],
                "fraud-proof bounty (MESH)": from_wei(bounty), "alice reward (MESH)": from_wei(reward),
                "eval contamination (exact/near)": f"{ov['exact_overlap']}/{ov['near_overlap']}",
                "publish gas per record": round(pa["gas_used"] / pa["record_count"]),
                "publish gas per token": round(pa["gas_used"] / max(1, pa["token_count"]), 2)}
        ctx.data["data_batch_id"] = pa["batch_id"]
        ctx.data["data_batch_root"] = pa["root"]
    finally:
        index.close()
    return rows
