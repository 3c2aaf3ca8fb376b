"""DataRegistry on a real EVM: sources, publish, verify, committee + EIP-712 attestations,
duplicate fraud proofs (commit-reveal), takedown, rewards, and the attacks that must fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proofmesh.chain.core import MESH, EmissionClient, Registry, Token
from proofmesh.data.batch import batch_tree
from proofmesh.data.client import DataRegistryClient, DuplicateSourceError, open_index, publish, verify_record
from proofmesh.data.exact import record_hash
from proofmesh.data.pipeline import IngestConfig, ingest
from proofmesh.errors import ContractRevert, InputError
from proofmesh.store.blobstore import BlobStore

CORPUS = Path(__file__).resolve().parents[2] / "src" / "proofmesh" / "data" / "corpus"


def _stake(chain, account, roles: int, amount: int = 1_000 * MESH) -> None:
    reg = Registry(chain)
    reg.register(f"http://127.0.0.1:1/{account.address[:8]}", roles, sender=account)
    reg.stake(amount, sender=account)


@pytest.fixture
def world(chain, accounts, home, tmp_path):
    """Contributors A (accounts[1]) and B (accounts[2]) staked as plain nodes (COMPUTE role:
    NodeRegistry needs some role, and contributing data needs none); validators accounts[3..5]."""
    for a in accounts[1:3]:
        _stake(chain, a, 2)
    for a in accounts[3:6]:
        _stake(chain, a, 1)
    client = DataRegistryClient(chain)
    store = BlobStore(home.store_dir)
    index = open_index(home, IngestConfig().index_params())
    yield chain, client, store, index, tmp_path
    index.close()


@pytest.fixture
def world_any(any_chain, accounts, tmp_path):
    """The same world on both backends (embedded py-evm and anvil)."""
    chain = any_chain
    for a in accounts[1:3]:
        _stake(chain, a, 2)
    for a in accounts[3:6]:
        _stake(chain, a, 1)
    index = open_index_at(tmp_path / "index")
    yield chain, DataRegistryClient(chain), BlobStore(tmp_path / "store"), index, tmp_path
    index.close()


def open_index_at(path):
    from proofmesh.data.index import CrossBatchIndex

    return CrossBatchIndex(path, IngestConfig().index_params())


def _hashes(n: int, tag: str = "r") -> list[bytes]:
    return [record_hash(f"{tag} record number {i} with some words in it") for i in range(n)]


def _publish_hashes(client, store, sender, source_id, hashes, tokens=1000):
    recs = "\n".join(json.dumps({"i": i, "record_hash": h.hex(), "tokens": 10, "text": "x"})
                     for i, h in enumerate(hashes)) + "\n"
    cid = store.put_bytes(recs.encode())
    root = batch_tree(hashes).root
    bid, tx = client.publish_raw(source_id, root, len(hashes), tokens, cid, cid, sender=sender)
    return bid, tx


def test_source_ids_unique_and_duplicate_refused(world, accounts):
    chain, client, *_ = world
    sid = client.register_source("https://example.org/corpus", "CC-BY-4.0", "news", sender=accounts[1])
    assert sid == 1
    with pytest.raises(DuplicateSourceError) as e:
        client.register_source("https://example.org/corpus", "MIT", sender=accounts[2])
    assert "#1" in str(e.value) and accounts[1].address in str(e.value)
    # the contract refuses too (not just the client's pre-check)
    with pytest.raises(ContractRevert, match="already registered as #1"):
        chain.transact(client.c.functions.register_source("https://example.org/corpus", "MIT", ""),
                       sender=accounts[2])
    assert client.sources()[0].owner == accounts[1].address


def test_publish_verify_proof_accepted_and_forged_rejected(world, accounts):
    chain, client, store, _index, _ = world
    sid = client.register_source("s://a", "MIT", sender=accounts[1])
    hashes = _hashes(37)
    bid, tx = _publish_hashes(client, store, accounts[1], sid, hashes)
    tree = batch_tree(hashes)
    for i in (0, 17, 36):
        assert client.verify_onchain(bid, i, hashes[i], tree.proof(i))
    # wrong position, wrong hash, out of range: all false
    assert not client.verify_onchain(bid, 1, hashes[0], tree.proof(0))
    assert not client.verify_onchain(bid, 0, hashes[1], tree.proof(0))
    assert not client.verify_onchain(bid, 37, hashes[0], tree.proof(0))
    # only the source owner publishes; the bond is locked
    with pytest.raises(ContractRevert, match="not the source owner"):
        _publish_hashes(client, store, accounts[2], sid, hashes)
    assert client.batch(bid).bond == 10 * MESH
    assert chain.call(chain.contract("NodeRegistry").functions.bonded_by(client.c.address, accounts[1].address)) == 10 * MESH


def test_duplicate_fraud_proof_across_and_within_batches(world_any, accounts):
    chain, client, store, _index, _ = world_any
    sa = client.register_source("s://a", "MIT", sender=accounts[1])
    sb = client.register_source("s://b", "MIT", sender=accounts[2])
    ha = _hashes(8, "a")
    hb = _hashes(6, "b") + [ha[3]] + [_hashes(1, "dup")[0]] * 2   # a copy of A's record + a repeat inside
    a, _ = _publish_hashes(client, store, accounts[1], sa, ha)
    b, _ = _publish_hashes(client, store, accounts[2], sb, hb)
    ta, tb = batch_tree(ha), batch_tree(hb)
    token = Token(chain)
    challenger = accounts[6]
    before_c = token.balance(challenger.address)
    supply = token.total_supply()
    bond_b = client.batch(b).bond
    client.challenge_duplicate(a, 3, ta.proof(3), b, 6, tb.proof(6), ha[3], sender=challenger)
    info = client.batch(b)
    assert info.duplicates == 1 and info.bond == bond_b - MESH
    paid = token.balance(challenger.address) - before_c
    burned = supply - token.total_supply()
    assert paid + burned == MESH and 0 < paid < MESH        # bounty < slash
    # within one batch
    client.challenge_duplicate(b, 7, tb.proof(7), b, 8, tb.proof(8), hb[7], sender=challenger)
    assert client.batch(b).duplicates == 2
    # double claim of the same position fails
    with pytest.raises(ContractRevert, match="already proven"):
        client.challenge_duplicate(a, 3, ta.proof(3), b, 6, tb.proof(6), ha[3], sender=challenger)
    # a false proof (different records) fails on the Merkle check
    with pytest.raises(ContractRevert, match="invalid Merkle proof"):
        client.challenge_duplicate(a, 0, ta.proof(0), b, 0, tb.proof(0), ha[0], sender=challenger)
    # the earlier batch is never the loser; order enforced
    with pytest.raises(ContractRevert, match="first position must come first"):
        client.challenge_duplicate(b, 6, tb.proof(6), a, 3, ta.proof(3), ha[3], sender=challenger)


def test_commit_reveal_cannot_be_front_run(world, accounts):
    chain, client, store, _index, _ = world
    sa = client.register_source("s://a", "MIT", sender=accounts[1])
    h = _hashes(4)
    b, _ = _publish_hashes(client, store, accounts[1], sa, h + [h[0]])
    t = batch_tree(h + [h[0]])
    honest, thief = accounts[6], accounts[7]
    salt = b"\x11" * 32
    com = client.commitment(honest.address, b, 0, b, 4, h[0], salt)
    rcpt = chain.transact(client.c.functions.commit_proof(com), sender=honest)
    # in the commit's own block: refused (a thief could commit+reveal in one block). Each
    # transaction here gets its own block, so the check is exercised by a call in that block.
    from web3.exceptions import ContractLogicError
    with pytest.raises(ContractLogicError, match="later block"):
        client.c.functions.reveal_duplicate(b, 0, t.proof(0), b, 4, t.proof(4), h[0], salt).call(
            {"from": honest.address}, block_identifier=rcpt.block_number)
    chain.mine()
    # the thief copies the revealed arguments: the commitment binds the sender
    with pytest.raises(ContractRevert, match="no such commitment"):
        chain.transact(client.c.functions.reveal_duplicate(b, 0, t.proof(0), b, 4, t.proof(4), h[0], salt),
                       sender=thief)
    chain.transact(client.c.functions.reveal_duplicate(b, 0, t.proof(0), b, 4, t.proof(4), h[0], salt),
                   sender=honest)
    # replaying the same reveal: commitment consumed
    with pytest.raises(ContractRevert):
        chain.transact(client.c.functions.reveal_duplicate(b, 0, t.proof(0), b, 4, t.proof(4), h[0], salt),
                       sender=honest)


def _attest_all(chain, client, bid, root, validators, quality=9000, dup=0):
    members = client.committee(bid)
    deadline = chain.timestamp() + 600
    for v in validators:
        if v.address in members:
            sig = client.sign_attestation(v, bid, root, True, quality, dup, deadline)
            client.submit_attestation(bid, v.address, True, quality, dup, deadline, sig)
    return members


def test_committee_attestations_and_rewards(world_any, accounts):
    chain, client, store, _index, _ = world_any
    sa = client.register_source("s://a", "MIT", sender=accounts[1])
    hashes = _hashes(10)
    bid, _ = _publish_hashes(client, store, accounts[1], sa, hashes, tokens=5000)
    root = batch_tree(hashes).root
    with pytest.raises(ContractRevert, match="wait one block"):
        chain.transact(client.c.functions.draw_committee(bid))
    members = client.draw_committee(bid)
    assert len(members) == 3 and accounts[1].address not in members
    assert set(members) <= {a.address for a in accounts[3:6]}
    deadline = chain.timestamp() + 600
    v = next(a for a in accounts[3:6] if a.address == members[0])
    sig = client.sign_attestation(v, bid, root, True, 8000, 0, deadline)
    # forged signer: signed by someone else for the member
    forged = client.sign_attestation(accounts[8], bid, root, True, 10000, 0, deadline)
    with pytest.raises(ContractRevert, match="not the validator"):
        client.submit_attestation(bid, v.address, True, 10000, 0, deadline, forged)
    # tampered message: the signature covers the quality score
    with pytest.raises(ContractRevert, match="not the validator"):
        client.submit_attestation(bid, v.address, True, 10000, 0, deadline, sig)
    client.submit_attestation(bid, v.address, True, 8000, 0, deadline, sig)
    with pytest.raises(ContractRevert, match="already attested"):
        client.submit_attestation(bid, v.address, True, 8000, 0, deadline, sig)
    # a non-member cannot attest
    outsider = accounts[8]
    s2 = client.sign_attestation(outsider, bid, root, True, 8000, 0, deadline)
    with pytest.raises(ContractRevert, match="not on the committee"):
        client.submit_attestation(bid, outsider.address, True, 8000, 0, deadline, s2)
    for a in accounts[3:6]:
        if a.address in members[1:]:
            client.submit_attestation(bid, a.address, True, 8000, 0, deadline,
                                      client.sign_attestation(a, bid, root, True, 8000, 0, deadline))
    with pytest.raises(ContractRevert, match="challenge window not over"):
        client.finalize(bid)
    chain.increase_time(86_400 + 1)
    EmissionClient(chain).distribute()
    token = Token(chain)
    before = token.balance(accounts[1].address)
    expected = 5000 * (MESH // 10_000) * 8000 // 10_000
    assert client.pending_reward(bid) == expected
    client.finalize(bid)
    assert token.balance(accounts[1].address) - before == expected
    assert chain.call(chain.contract("NodeRegistry").functions.bonded_by(client.c.address, accounts[1].address)) == 0
    with pytest.raises(ContractRevert, match="already finalized"):
        client.finalize(bid)


def test_attestation_replay_on_other_batch_fails(world, accounts):
    chain, client, store, _index, _ = world
    sa = client.register_source("s://a", "MIT", sender=accounts[1])
    h = _hashes(3)
    b1, _ = _publish_hashes(client, store, accounts[1], sa, h)
    b2, _ = _publish_hashes(client, store, accounts[1], sa, _hashes(3, "z"))
    chain.mine()
    m1 = client.draw_committee(b1)
    client.draw_committee(b2)
    v = next(a for a in accounts[3:6] if a.address == m1[0])
    deadline = chain.timestamp() + 600
    sig = client.sign_attestation(v, b1, batch_tree(h).root, True, 9000, 0, deadline)
    with pytest.raises(ContractRevert, match="not the validator|not on the committee"):
        client.submit_attestation(b2, v.address, True, 9000, 0, deadline, sig)
    # expired
    old = chain.timestamp() - 1
    sig_old = client.sign_attestation(v, b1, batch_tree(h).root, True, 9000, 0, old)
    with pytest.raises(ContractRevert, match="expired"):
        client.submit_attestation(b1, v.address, True, 9000, 0, old, sig_old)


def test_takedown_tombstones_and_stops_rewards(world, accounts):
    chain, client, store, _index, _ = world
    sa = client.register_source("s://a", "MIT", sender=accounts[1])
    h = _hashes(4)
    bid, _ = _publish_hashes(client, store, accounts[1], sa, h, tokens=4000)
    t = batch_tree(h)
    with pytest.raises(ContractRevert, match="not the source owner"):
        client.takedown_record(bid, 2, h[2], t.proof(2), "pii", sender=accounts[2])
    client.takedown_record(bid, 2, h[2], t.proof(2), "pii", sender=accounts[1])
    assert chain.call(client.c.functions.tombstone(h[2]))
    assert client.batch(bid).taken_down == 1
    chain.mine()
    client.draw_committee(bid)
    _attest_all(chain, client, bid, t.root, accounts[3:6], quality=10000)
    assert client.pending_reward(bid) == 4000 * (MESH // 10_000) * 3 // 4
    client.withdraw_source(sa, "licence withdrawn", sender=accounts[1])
    assert client.pending_reward(bid) == 0
    with pytest.raises(ContractRevert, match="source withdrawn"):
        _publish_hashes(client, store, accounts[1], sa, _hashes(2, "q"))


def test_ingest_publish_verify_and_cross_batch(world, accounts, home):
    """End to end: A's batch published; B's re-submissions dropped (exact and near);
    `verify` gives a proof the contract accepts; a failed publish leaves the index unchanged."""
    chain, client, store, index, tmp = world
    cfg = IngestConfig()
    sa = client.register_source("s://corpus-a", "CC0-1.0", sender=accounts[1])
    sb = client.register_source("s://corpus-b", "CC0-1.0", sender=accounts[2])
    ra = ingest([CORPUS / "contributor_a.jsonl"], tmp / "a", cfg, index=index)
    # B ingests before A publishes: nothing is dropped as published yet
    rb_early = ingest([CORPUS / "contributor_b.jsonl"], tmp / "b-early", cfg, index=index)
    assert rb_early.report["dropped"]["published-exact"] == 0
    # a publish that reverts (wrong owner) leaves the index unchanged
    with pytest.raises(InputError, match="belongs to"):
        publish(chain, store, index, tmp / "a", sa, sender=accounts[2])
    assert len(index) == 0
    pa = publish(chain, store, index, tmp / "a", sa, sender=accounts[1])
    assert len(index) == ra.record_count
    # B's early batch is now stale and refused; re-ingest drops A's records
    with pytest.raises(InputError, match="published since it was ingested"):
        publish(chain, store, index, tmp / "b-early", sb, sender=accounts[2])
    rb = ingest([CORPUS / "contributor_b.jsonl"], tmp / "b", cfg, index=index)
    # every copy of an A record in B is dropped as already published (exact or, when A kept
    # a near-duplicate sibling instead, near)
    b_lines = (CORPUS / "contributor_b.jsonl").read_text().splitlines()
    status = {}
    for m in (tmp / "b" / "manifest.jsonl").read_text().splitlines():
        e = json.loads(m)
        status[json.loads(b_lines[int(e["origin"].rsplit(":", 1)[1]) - 1])["id"]] = e["status"]
    copies = [k for k in status if k.startswith("b-copy-")]
    assert len(copies) == 20 and all(status[k].startswith("published-") for k in copies)
    assert rb.report["dropped"]["published-exact"] >= 15
    assert rb.report["dropped"]["published-near"] >= 5
    assert all(status[k] == "kept" for k in status if k.startswith("b-") and k[2:].isdigit())
    publish(chain, store, index, tmp / "b", sb, sender=accounts[2])
    # verify a record of A by its raw text (normalisation folds case/space)
    text = json.loads((CORPUS / "contributor_a.jsonl").read_text().splitlines()[0])["text"]
    v = verify_record(chain, index, store, "  " + text.upper() + " ")
    assert v["verified_on_chain"] and v["batch_id"] == pa["batch_id"] and v["source_id"] == sa


def test_index_rebuilds_from_chain_and_store(world, accounts, home):
    chain, client, store, index, tmp = world
    from proofmesh.data.client import rebuild_index
    from proofmesh.data.index import CrossBatchIndex

    sa = client.register_source("s://r", "MIT", sender=accounts[1])
    ingest([CORPUS / "contributor_a.jsonl"], tmp / "a", IngestConfig(), index=index)
    publish(chain, store, index, tmp / "a", sa, sender=accounts[1])
    fresh = CrossBatchIndex(tmp / "fresh-index", IngestConfig().index_params())
    try:
        res = rebuild_index(chain, store, fresh)
        assert res["indexed_batches"] == [1] and len(fresh) == len(index)
        # the rebuilt index drops B's copies exactly like the original one
        rb = ingest([CORPUS / "contributor_b.jsonl"], tmp / "b", IngestConfig(), index=fresh)
        rb0 = ingest([CORPUS / "contributor_b.jsonl"], tmp / "b0", IngestConfig(), index=index)
        assert rb.root == rb0.root and rb.report["dropped"] == rb0.report["dropped"]
    finally:
        fresh.close()


def test_publish_reverted_on_chain_leaves_index_and_batch_unchanged(world, accounts):
    chain, client, store, index, tmp = world
    poor = accounts[7]                       # owns a source but has no stake to bond
    sid = client.register_source("s://poor", "MIT", sender=poor)
    ingest([CORPUS / "eval.jsonl"], tmp / "e", IngestConfig(), index=index)
    with pytest.raises(ContractRevert, match="NodeRegistry: insufficient free stake|free stake"):
        publish(chain, store, index, tmp / "e", sid, sender=poor)
    assert len(index) == 0 and index.batch_ids() == []
    assert json.loads((tmp / "e" / "batch.json").read_text())["published"] is None
    assert client.batch_count() == 0


def test_inflated_token_count_is_not_endorsed(world, accounts):
    """Audit C1: rewards scale with the declared token count, so validators recount it from
    the records and sign over it; an inflated count earns no endorsement, and a signature
    cannot be moved to a different count."""
    from proofmesh.data.validator import check_batch, recount_tokens

    chain, client, store, _index, tmp_path = world
    sid = client.register_source("s://inflate", "MIT", sender=accounts[1])
    texts = [f"record number {i} has exactly eight words here" for i in range(12)]
    hashes = [record_hash(t) for t in texts]
    recs = "".join(json.dumps({"i": i, "record_hash": h.hex(), "tokens": 8, "text": t}) + "\n"
                   for i, (h, t) in enumerate(zip(hashes, texts)))
    cid = store.put_bytes(recs.encode())
    honest_count = recount_tokens(texts, 8)
    assert honest_count == 12 * 8
    # the per-record bound refuses absurd counts outright
    with pytest.raises(ContractRevert, match="per-record bound"):
        client.publish_raw(sid, batch_tree(hashes).root, 12, 12 * 10**6 + 1, cid, cid, sender=accounts[1])
    bid, _ = client.publish_raw(sid, batch_tree(hashes).root, 12, 10**7, cid, cid, sender=accounts[1])
    chain.mine()
    client.draw_committee(bid)
    result = check_batch(chain, store, bid)
    assert result["available"] is False and "declared 10000000 tokens" in result["reason"]
    # a validator's signature covers the declared count: one made for another count fails
    v = next(a for a in accounts[3:6] if a.address in client.committee(bid))
    deadline = chain.timestamp() + 600
    sig = client.sign_attestation(v, bid, batch_tree(hashes).root, True, 9000, 0, deadline, token_count=honest_count)
    with pytest.raises(ContractRevert, match="not the validator"):
        client.submit_attestation(bid, v.address, True, 9000, 0, deadline, sig)
