"""Typed client of DataRegistry, and the flows that span chain, store and index.

``publish`` order (so a failure leaves nothing half-done that matters): records and
manifest into the content-addressed store (idempotent, harmless if the rest fails) →
``publish_batch`` on chain → only then the cross-batch index and the batch's local
``published`` field. A revert raises before the index is touched.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from eth_abi import encode as abi_encode

from proofmesh.chain.client import Chain
from proofmesh.crypto.eip712 import Domain, sign_typed
from proofmesh.crypto.keccak import keccak256
from proofmesh.data.batch import LocalBatch, record_leaf
from proofmesh.data.exact import record_hash as compute_record_hash
from proofmesh.data.index import CrossBatchIndex
from proofmesh.data.normalize import Normalization, normalize_text
from proofmesh.errors import InputError, ProofmeshError

ATTESTATION_TYPES = {
    "Attestation": [
        {"name": "batchId", "type": "uint256"},
        {"name": "root", "type": "bytes32"},
        {"name": "tokenCount", "type": "uint256"},
        {"name": "available", "type": "bool"},
        {"name": "qualityBps", "type": "uint16"},
        {"name": "duplicateBps", "type": "uint16"},
        {"name": "deadline", "type": "uint256"},
    ]
}


@dataclass
class SourceInfo:
    source_id: int
    owner: str
    uri: str
    license: str
    description: str
    created_at: int
    withdrawn: bool

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class BatchInfo:
    batch_id: int
    source_id: int
    contributor: str
    root: str
    record_count: int
    token_count: int
    manifest_cid: str
    records_cid: str
    published_at: int
    bond: int
    duplicates: int
    taken_down: int
    attestations: int
    available_votes: int
    finalized: bool
    reward: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class DuplicateSourceError(ProofmeshError):
    """The source URI is already registered."""


class DataRegistryClient:
    """DataRegistry calls with Python types and clear errors."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.c = chain.contract("DataRegistry")

    # ------------------------------------------------------------------ sources
    def register_source(self, uri: str, license: str, description: str = "", *, sender=None) -> int:
        h = keccak256(uri.encode("utf-8"))
        existing = self.chain.call(self.c.functions.source_id_of(h))
        if existing:
            owner = self.source(existing).owner
            raise DuplicateSourceError(f"source {uri!r} is already registered as #{existing} by {owner}",
                                       fix=f"use --source {existing}, or register a different URI")
        self.chain.transact(self.c.functions.register_source(uri, license, description), sender=sender)
        return self.chain.call(self.c.functions.source_id_of(h))

    def source(self, source_id: int) -> SourceInfo:
        s = self.chain.call(self.c.functions.sources(source_id))
        if s[0] == "0x" + "00" * 20:
            raise InputError(f"no data source #{source_id}", fix="list sources with `proofmesh data source list`")
        return SourceInfo(source_id, s[0], s[1], s[2], s[3], s[4], s[5])

    def sources(self) -> list[SourceInfo]:
        n = self.chain.call(self.c.functions.source_count())
        return [self.source(i) for i in range(1, n + 1)]

    def withdraw_source(self, source_id: int, reason: str, *, sender=None) -> None:
        self.chain.transact(self.c.functions.withdraw_source(source_id, reason), sender=sender)

    # ------------------------------------------------------------------ batches
    def batch(self, batch_id: int) -> BatchInfo:
        b = self.chain.call(self.c.functions.batches(batch_id))
        if b[2] == b"\x00" * 32:
            raise InputError(f"no data batch #{batch_id}", fix="check the batch id")
        return BatchInfo(batch_id, b[0], b[1], "0x" + bytes(b[2]).hex(), b[3], b[4], b[5], b[6], b[7], b[9],
                         b[10], b[11], b[13], b[14], b[17], b[18])

    def batch_count(self) -> int:
        return self.chain.call(self.c.functions.batch_count())

    def publish_raw(self, source_id: int, root: bytes, record_count: int, token_count: int,
                    manifest_cid: str, records_cid: str, *, sender=None):
        """Send publish_batch; returns (batch id, tx result)."""
        tx = self.chain.transact(self.c.functions.publish_batch(source_id, root, record_count, token_count,
                                                                manifest_cid, records_cid), sender=sender)
        from web3.logs import DISCARD

        logs = self.c.events.BatchPublished().process_receipt(tx.receipt, errors=DISCARD)
        return int(logs[0]["args"]["batch_id"]), tx

    def verify_onchain(self, batch_id: int, index: int, record_hash: bytes, proof: list[bytes]) -> bool:
        return bool(self.chain.call(self.c.functions.verify_record(batch_id, index, record_hash, proof)))

    # ------------------------------------------------------------------ committee
    def draw_committee(self, batch_id: int, *, sender=None) -> list[str]:
        """Draw the committee once the seed block (publication + 1) is in the past.

        If the seed block's hash expired (> 256 blocks), the contract re-commits to the
        next block; wait for it and draw again."""
        for _ in range(3):
            seed_block = self.chain.call(self.c.functions.seed_block_of(batch_id))
            self.chain.wait_past(seed_block)
            self.chain.transact(self.c.functions.draw_committee(batch_id), sender=sender)
            if self.chain.call(self.c.functions.batches(batch_id))[12] != b"\x00" * 32:
                break
        return self.committee(batch_id)

    def committee(self, batch_id: int) -> list[str]:
        return list(self.chain.call(self.c.functions.committee_of(batch_id)))

    def sample_indices(self, batch_id: int) -> list[int]:
        n = self.chain.call(self.c.functions.SAMPLE_SIZE())
        return sorted({self.chain.call(self.c.functions.sample_index(batch_id, i)) for i in range(n)})

    def domain(self) -> Domain:
        return Domain("proofmesh DataRegistry", "1", self.chain.chain_id, self.c.address)

    def sign_attestation(self, validator, batch_id: int, root: bytes, available: bool, quality_bps: int,
                         duplicate_bps: int, deadline: int, token_count: int | None = None) -> bytes:
        """Sign an attestation; it also endorses the batch's declared token count (which
        the rewards scale with), so a validator signs only a count it recounted."""
        if token_count is None:
            token_count = self.batch(batch_id).token_count
        msg = {"batchId": batch_id, "root": root, "tokenCount": token_count, "available": available,
               "qualityBps": quality_bps, "duplicateBps": duplicate_bps, "deadline": deadline}
        return sign_typed(validator, self.domain(), "Attestation", ATTESTATION_TYPES, msg)

    def submit_attestation(self, batch_id: int, validator: str, available: bool, quality_bps: int,
                           duplicate_bps: int, deadline: int, signature: bytes, *, sender=None):
        r, s, v = signature[:32], signature[32:64], signature[64]
        return self.chain.transact(self.c.functions.attest(batch_id, validator, available, quality_bps,
                                                           duplicate_bps, deadline, v, r, s), sender=sender)

    # ------------------------------------------------------------------ fraud proofs
    @staticmethod
    def commitment(sender: str, batch_a: int, index_a: int, batch_b: int, index_b: int,
                   record_hash: bytes, salt: bytes) -> bytes:
        return keccak256(abi_encode(["address", "uint256", "uint256", "uint256", "uint256", "bytes32", "bytes32"],
                                    [sender, batch_a, index_a, batch_b, index_b, record_hash, salt]))

    def challenge_duplicate(self, batch_a: int, index_a: int, proof_a: list[bytes], batch_b: int, index_b: int,
                            proof_b: list[bytes], record_hash: bytes, *, sender=None):
        """Commit, wait a block, reveal. Returns the reveal's tx result."""
        account = sender or self.chain.account
        salt = secrets.token_bytes(32)
        com = self.commitment(account.address, batch_a, index_a, batch_b, index_b, record_hash, salt)
        committed = self.chain.transact(self.c.functions.commit_proof(com), sender=account)
        self.chain.wait_past(committed.block_number)
        return self.chain.transact(self.c.functions.reveal_duplicate(batch_a, index_a, proof_a, batch_b, index_b,
                                                                     proof_b, record_hash, salt), sender=account)

    def takedown_record(self, batch_id: int, index: int, record_hash: bytes, proof: list[bytes], reason: str,
                        *, sender=None):
        return self.chain.transact(self.c.functions.takedown_record(batch_id, index, record_hash, proof, reason),
                                   sender=sender)

    def finalize(self, batch_id: int, *, sender=None):
        return self.chain.transact(self.c.functions.finalize(batch_id), sender=sender)

    def pending_reward(self, batch_id: int) -> int:
        return self.chain.call(self.c.functions.pending_reward(batch_id))


# ---------------------------------------------------------------------- flows

def open_index(home, params: dict) -> CrossBatchIndex:
    return CrossBatchIndex(home.dir("data") / "index", params)


def publish(chain: Chain, store, index: CrossBatchIndex | None, batch_dir: str | Path, source_id: int,
            *, sender=None) -> dict:
    """Publish a local batch: store → chain → index. Returns the on-chain facts."""
    lb = LocalBatch.open(batch_dir)
    info = lb.info
    if info.get("published"):
        raise InputError(f"batch {lb.path} is already published as #{info['published']['batch_id']}",
                         fix="ingest new data for a new batch")
    if info["record_count"] == 0:
        raise InputError("the batch has no records (everything was a duplicate)",
                         fix="nothing to publish; the manifest lists what each record duplicates")
    client = DataRegistryClient(chain)
    src = client.source(source_id)
    who = (sender or chain.account).address
    if src.owner.lower() != who.lower():
        raise InputError(f"source #{source_id} belongs to {src.owner}, not {who}",
                         fix="publish under a source you registered (`proofmesh data source add`)")
    # A batch ingested before another batch was published may now hold records that are
    # no longer new: refuse rather than publish something challengeable.
    if index is not None:
        stale = index.published(lb.record_hashes())
        if stale.any():
            raise InputError(f"{int(stale.sum())} record(s) of this batch were published since it was ingested",
                             fix="re-run `proofmesh data ingest` to drop them")
    records_cid = store.put_file(lb.path / "records.jsonl")
    manifest_cid = store.put_file(lb.path / "manifest.jsonl")
    root = bytes.fromhex(info["root"][2:])
    batch_id, tx = client.publish_raw(source_id, root, info["record_count"], info["token_count"],
                                      manifest_cid, records_cid, sender=sender)
    # on chain now: record it in the index and in the batch
    if index is not None:
        sk = lb.sketch()
        off, sh = sk["shingle_offsets"], sk["shingles"]
        shingles = [sh[off[i]:off[i + 1]] for i in range(len(off) - 1)]
        index.commit(batch_id, lb.record_hashes(), sk["bands"], shingles,
                     {"source_id": source_id, "root": info["root"], "records_cid": records_cid})
    published = {"batch_id": batch_id, "source_id": source_id, "tx": tx.tx_hash, "gas_used": tx.gas_used,
                 "records_cid": records_cid, "manifest_cid": manifest_cid, "chain_id": chain.chain_id}
    info["published"] = published
    lb.save_info(info)
    return dict(published, root=info["root"], record_count=info["record_count"],
                token_count=info["token_count"])


def verify_record(chain: Chain, index: CrossBatchIndex, store, record_or_hash: str,
                  norm: Normalization = Normalization()) -> dict:
    """Which batch and source hold a record (text or 0x-hash), with a proof the contract accepts."""
    if record_or_hash.startswith("0x") and len(record_or_hash) == 66:
        h = bytes.fromhex(record_or_hash[2:])
    else:
        h = compute_record_hash(normalize_text(record_or_hash, norm))
    loc = index.locate(h)
    if loc is None:
        raise InputError(f"record {h.hex()} is not in any published batch known to this node",
                         fix="check the text, or rebuild the index from chain + store")
    batch_id, position = loc
    client = DataRegistryClient(chain)
    b = client.batch(batch_id)
    from proofmesh.data.batch import batch_tree

    hashes = _batch_hashes(store, b.records_cid)
    tree = batch_tree(hashes)
    if "0x" + tree.root.hex() != b.root:
        raise ProofmeshError(f"records of batch #{batch_id} in the store do not match its on-chain root",
                             fix="fetch the records again from another node")
    proof = tree.proof(position)
    ok = client.verify_onchain(batch_id, position, h, proof)
    return {"record_hash": "0x" + h.hex(), "batch_id": batch_id, "index": position, "source_id": b.source_id,
            "contributor": b.contributor, "root": b.root, "proof": ["0x" + p.hex() for p in proof],
            "leaf": "0x" + record_leaf(position, h).hex(), "verified_on_chain": ok}


def _batch_hashes(store, records_cid: str) -> list[bytes]:
    import json

    data = store.get_bytes(records_cid)
    return [bytes.fromhex(json.loads(line)["record_hash"]) for line in data.decode("utf-8").splitlines() if line]


def batch_proof(store, client: DataRegistryClient, batch_id: int, record_hash: bytes) -> tuple[int, list[bytes]]:
    """(index, proof) of ``record_hash`` in an on-chain batch, from the records in the store."""
    from proofmesh.data.batch import batch_tree

    b = client.batch(batch_id)
    hashes = _batch_hashes(store, b.records_cid)
    if record_hash not in hashes:
        raise InputError(f"record {record_hash.hex()} is not in batch #{batch_id}", fix="check the batch id")
    return hashes.index(record_hash), batch_tree(hashes).proof(hashes.index(record_hash))


def rebuild_index(chain: Chain, store, index: CrossBatchIndex, progress=None) -> dict:
    """Re-create the cross-batch index from the chain's batches and their records in the store.

    Each batch's records are re-hashed and checked against its on-chain root before they
    are indexed; a batch whose records are missing or do not match is reported and skipped.
    Taken-down records (tombstones) keep their hash but not their sketch.
    """
    import json as _json

    import pyarrow as pa

    from proofmesh.data.batch import batch_tree
    from proofmesh.data.exact import hash_column
    from proofmesh.data.minhash import MinHasher, arrow_buffers, band_hashes
    from proofmesh.data.validator import index_params

    params = index_params(index)
    mh = MinHasher(int(params["num_perm"]), int(params["shingle_size"]), int(params["seed"]))
    client = DataRegistryClient(chain)
    done, skipped = [], []
    have = set(index.batch_ids())
    for bid in range(1, client.batch_count() + 1):
        if bid in have:
            continue
        b = client.batch(bid)
        try:
            raw = store.get_bytes(b.records_cid)
        except ProofmeshError as exc:
            skipped.append({"batch_id": bid, "reason": exc.message})
            continue
        recs = [_json.loads(line) for line in raw.decode("utf-8").splitlines() if line]
        texts = [r["text"] for r in recs]
        # records are stored normalised: hashing them again must give the leaves' hashes
        hb = hash_column(pa.array(texts, pa.large_string()), Normalization(False, False, False))
        if "0x" + batch_tree(hb.hashes).root.hex() != b.root:
            skipped.append({"batch_id": bid, "reason": "records in the store do not match the root"})
            continue
        data, offsets = arrow_buffers(hb.normalized)
        sb = mh.shingle(data, offsets)
        shingles = [sb.shingles[sb.shingle_offsets[i]:sb.shingle_offsets[i + 1]] for i in range(len(texts))]
        index.commit(bid, hb.hashes, band_hashes(sb.signatures, index.bands, index.rows), shingles,
                     {"source_id": b.source_id, "root": b.root, "records_cid": b.records_cid})
        done.append(bid)
        if progress:
            progress(bid)
    return {"indexed_batches": done, "skipped": skipped, "records": len(index)}
