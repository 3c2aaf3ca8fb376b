"""What a data validator does for a batch it was drawn for.

1. read the committee and the sample positions from the contract (seeded by a block
   hash unknown at publication);
2. fetch the batch's records file from the store by its CID (the store re-hashes it, so
   a tampered file cannot pass), re-hash every sampled record's text, and check each
   (position, record_hash) against the on-chain root with a Merkle proof;
3. score the sampled records' quality and the share that are near-duplicates of data
   already in this node's cross-batch index (excluding the batch itself);
4. sign an EIP-712 Attestation (batch id, root, availability, scores, deadline) and
   submit it (anyone may relay; the contract checks the signer is on the committee).
"""

from __future__ import annotations

import json

from proofmesh.chain.client import Chain
from proofmesh.data.batch import batch_tree
from proofmesh.data.client import DataRegistryClient
from proofmesh.data.exact import record_hash
from proofmesh.data.quality import batch_quality_bps
from proofmesh.errors import InputError, ProofmeshError


def check_batch(chain: Chain, store, batch_id: int, min_tokens: int = 8, index=None,
                threshold: float = 0.8) -> dict:
    """Fetch and check the sampled records; returns what to attest."""
    client = DataRegistryClient(chain)
    b = client.batch(batch_id)
    sample = client.sample_indices(batch_id)
    try:
        raw = store.get_bytes(b.records_cid)
    except ProofmeshError as exc:
        return {"batch_id": batch_id, "available": False, "reason": f"records not retrievable: {exc.message}",
                "quality_bps": 0, "duplicate_bps": 0, "sample": sample}
    records = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line]
    hashes = [bytes.fromhex(r["record_hash"]) for r in records]
    available = len(records) == b.record_count and "0x" + batch_tree(hashes).root.hex() == b.root
    bad: list[int] = []
    texts = []
    if available:
        tree = batch_tree(hashes)
        for i in sample:
            rec = records[i]
            h = record_hash(rec["text"])
            if h != hashes[i] or not client.verify_onchain(batch_id, i, h, tree.proof(i)):
                bad.append(i)
            texts.append(rec["text"])
    available = available and not bad
    reason = None
    if available:
        # The reward scales with the declared token count: recount it over every record
        # (audit C1) and refuse to endorse a batch that claims more than it holds.
        counted = recount_tokens([r["text"] for r in records], min_tokens)
        if b.token_count > counted:
            available = False
            reason = f"declared {b.token_count} tokens but the records hold {counted}"
    dup_bps = 0
    if available and index is not None and texts:
        from proofmesh.data.minhash import MinHasher, band_hashes

        mh = MinHasher(int(index_params(index)["num_perm"]), int(index_params(index)["shingle_size"]),
                       int(index_params(index)["seed"]))
        sb = mh.shingle_texts(texts)
        keys = band_hashes(sb.signatures, index.bands, index.rows)
        shs = [sb.shingles[sb.shingle_offsets[k]:sb.shingle_offsets[k + 1]] for k in range(len(texts))]
        hits = [r for r, h, _s in index.near_published(keys, shs, threshold)
                if index.locate(h) is None or index.locate(h)[0] != batch_id]
        dup_bps = int(round(10_000 * len(hits) / len(texts)))
    return {"batch_id": batch_id, "available": available, "bad_positions": bad, "sample": sample,
            "reason": reason,
            "quality_bps": batch_quality_bps(texts, min_tokens) if available else 0,
            "duplicate_bps": dup_bps}


def recount_tokens(normalized_texts: list[str], min_tokens: int) -> int:
    """Tokens of the records long enough to earn, counted exactly as the ingest pipeline does."""
    import pyarrow as pa

    from proofmesh.data.exact import hash_column
    from proofmesh.data.normalize import Normalization

    tokens = hash_column(pa.array(normalized_texts, type=pa.large_string()), Normalization()).tokens
    return int(tokens[tokens >= min_tokens].sum())


def index_params(index) -> dict:
    with index.env.begin() as txn:
        return json.loads(txn.get(b"params", db=index.meta))


def attest(chain: Chain, store, batch_id: int, validator, *, deadline_s: int = 3600, index=None,
           relay=None) -> dict:
    """Check a batch as ``validator`` (a LocalAccount on its committee), sign and submit."""
    client = DataRegistryClient(chain)
    members = client.committee(batch_id)
    if not members:
        client.draw_committee(batch_id)
        members = client.committee(batch_id)
    if validator.address not in members:
        raise InputError(f"{validator.address} is not on the committee of batch #{batch_id} ({members})",
                         fix="only drawn validators attest; wait for a batch you are drawn for")
    result = check_batch(chain, store, batch_id, index=index)
    b = client.batch(batch_id)
    deadline = chain.timestamp() + deadline_s
    sig = client.sign_attestation(validator, batch_id, bytes.fromhex(b.root[2:]), result["available"],
                                  result["quality_bps"], result["duplicate_bps"], deadline)
    tx = client.submit_attestation(batch_id, validator.address, result["available"], result["quality_bps"],
                                   result["duplicate_bps"], deadline, sig, sender=relay or validator)
    return dict(result, validator=validator.address, tx=tx.tx_hash)
