"""ModelRegistryClient: the typed Python face of ModelRegistry + ModelEvaluation.

Every write checks what it can before sending (so a bad input fails with a clear
``ProofmeshError`` and no transaction), then lets the contract enforce the rest; a revert
surfaces as ``ContractRevert`` carrying the contract's own reason.

Other domains use two things from here: :func:`proofmesh.models.weights.weights_root`
and :meth:`ModelRegistryClient.register_version` (the compute JobMarket registers trained
results as child versions through it, or on chain via ``register_for``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from web3 import Web3
from web3.logs import DISCARD

from proofmesh.crypto.cid import cid_of_bytes
from proofmesh.errors import ChainError, InputError, VerificationError
from proofmesh.models import attestation as att_mod
from proofmesh.models import evalset as evalset_mod
from proofmesh.models.weights import WeightsManifest, diff, manifest
from proofmesh.store.blobstore import BlobStore
from proofmesh.store.fetch import fetch

KIND_FULL, KIND_LORA = 0, 1
KIND_NAMES = {KIND_FULL: "full", KIND_LORA: "lora"}
MAX_BATCHES = 32


def name_id(name: str) -> bytes:
    """The lineage id of a name: keccak256(name), as the contract computes it."""
    return bytes(Web3.keccak(text=name))


def _b32(value: str | bytes) -> bytes:
    """A data batch id / root as bytes32 (hex string or 32 raw bytes)."""
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    else:
        try:
            raw = bytes.fromhex(value.removeprefix("0x"))
        except ValueError:
            raw = b""
    if len(raw) != 32:
        raise InputError(f"data batch {value!r} is not a 32-byte root",
                         fix="give the batch root printed by `proofmesh data publish` (0x + 64 hex digits)")
    return raw


@dataclass
class VersionRecord:
    """One registered version, as stored on chain (plus its release status)."""

    id: int
    name: str
    weights_root: str
    parent: int
    base: int
    kind: str
    owner: str
    registrar: str
    job_id: int
    config_cid: str
    manifest_cid: str
    registered_block: int
    registered_at: int
    data_batches: list[str]
    released: bool = False
    released_on: int = 0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class TensorProof:
    """A registered tensor's hash with its Merkle proof, and whether the contract accepts it."""

    name: str
    dtype: str
    shape: list[int]
    registered_sha256: str
    local_sha256: str | None
    proof: list[str]
    accepted_on_chain: bool


@dataclass
class VerifyReport:
    """Outcome of ``verify``: local weights vs a registered version."""

    version: int
    match: bool
    local_root: str
    registered_root: str
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    proofs: list[TensorProof] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Evaluation:
    """A finalized (or pending) evaluation of a version on an eval set."""

    version: int
    eval_set: int
    request_id: int
    metric: str
    median: float | None
    finalized: bool
    evaluators: list[str]
    values: dict[str, float]


class ModelRegistryClient:
    """Register, verify, evaluate, release and walk model versions."""

    def __init__(self, chain, blobs: BlobStore | None = None, peers: Sequence[str] | None = None) -> None:
        """``blobs``: where manifests, configs and eval sets are kept (default: the home's
        store); ``peers``: node URLs to fetch missing blobs from (default: the endpoints in
        NodeRegistry)."""
        self.chain = chain
        self.registry = chain.contract("ModelRegistry")
        self.evaluation = chain.contract("ModelEvaluation")
        if blobs is None and getattr(chain, "home", None) is not None:
            blobs = BlobStore(chain.home.store_dir)
        self.blobs = blobs
        self.peers = list(peers) if peers is not None else None

    # ------------------------------------------------------------------ blobs
    def put_blob(self, data: bytes) -> str:
        """Keep ``data`` in the blob store (CIDv1); without a store, only compute its CID."""
        return self.blobs.put_bytes(data) if self.blobs is not None else cid_of_bytes(data)

    def get_blob(self, cid: str) -> bytes:
        """A blob from the local store, else fetched from peers (re-hashed on arrival)."""
        if self.blobs is None:
            raise InputError(f"blob {cid} needed but this client has no blob store",
                             fix="create the client with a BlobStore (or a chain with a home)")
        if not self.blobs.has(cid):
            peers = self.peers
            if peers is None:
                from proofmesh.chain.core import Registry

                peers = [n.endpoint for n in Registry(self.chain).nodes() if n.endpoint.startswith("http")]
            fetch(cid, peers, self.blobs, timeout=10.0)
        return self.blobs.get_bytes(cid)

    # ------------------------------------------------------------------ reads
    def version_count(self) -> int:
        return self.chain.call(self.registry.functions.version_count())

    def exists(self, version_id: int) -> bool:
        return bool(self.chain.call(self.registry.functions.exists(version_id)))

    def version(self, version_id: int) -> VersionRecord:
        """The on-chain record of ``version_id``; InputError if it does not exist."""
        if not self.exists(version_id):
            raise InputError(f"model version {version_id} does not exist",
                             fix="list versions with `proofmesh model list`")
        v = self.chain.call(self.registry.functions.versions(version_id))
        (root, nid, parent, base, kind, owner, registrar, job_id, config_cid, manifest_cid, blk, ts) = v
        batches = self.chain.call(self.registry.functions.data_batches_of(version_id))
        return VersionRecord(
            id=version_id, name=self.chain.call(self.registry.functions.name_of(nid)),
            weights_root="0x" + bytes(root).hex(), parent=parent, base=base, kind=KIND_NAMES.get(kind, str(kind)),
            owner=owner, registrar=registrar, job_id=job_id, config_cid=config_cid, manifest_cid=manifest_cid,
            registered_block=blk, registered_at=ts, data_batches=["0x" + bytes(b).hex() for b in batches],
            released=bool(self.chain.call(self.evaluation.functions.released(version_id))),
            released_on=self.chain.call(self.evaluation.functions.released_on(version_id)))

    def version_of_root(self, root: bytes) -> int:
        return self.chain.call(self.registry.functions.version_of_root(root))

    def versions_of(self, name: str) -> list[int]:
        nid = name_id(name)
        n = self.chain.call(self.registry.functions.name_version_count(nid))
        return [self.chain.call(self.registry.functions.name_version_at(nid, i)) for i in range(n)]

    def children(self, version_id: int) -> list[int]:
        n = self.chain.call(self.registry.functions.child_count(version_id))
        return [self.chain.call(self.registry.functions.child_at(version_id, i)) for i in range(n)]

    def names(self) -> list[str]:
        """Every lineage name ever claimed (from NameClaimed events)."""
        return [e["args"]["name"] for e in self.chain.events("ModelRegistry", "NameClaimed")]

    def manifest_of(self, version_id: int) -> WeightsManifest:
        """The registered per-tensor manifest, checked against the on-chain root."""
        rec = self.version(version_id)
        if not rec.manifest_cid:
            raise InputError(f"version {version_id} was registered without a manifest",
                             fix="the differing tensors cannot be named; compare roots only")
        m = WeightsManifest.from_json(json.loads(self.get_blob(rec.manifest_cid)))
        if "0x" + m.root.hex() != rec.weights_root:
            raise VerificationError(f"manifest {rec.manifest_cid} does not match the root of version {version_id}",
                                    fix="the manifest blob is not this version's; fetch it again")
        return m

    # ------------------------------------------------------------------ register
    def register_version(self, name: str, weights: str | Path | WeightsManifest, *, parent: int = 0,
                         base: int = 0, data_batches: Sequence[str | bytes] = (), job_id: int = 0,
                         config: str | Path | bytes | None = None, sender=None,
                         progress: Callable[[int], None] | None = None) -> tuple[VersionRecord, Any]:
        """Hash ``weights`` (path or manifest) and register it as a version of ``name``.

        A PEFT adapter (kind "lora") needs ``base``. Returns the record and the TxResult.
        Raises InputError before any transaction for duplicate weights, a missing parent
        or base, or bad batch ids.
        """
        if not name or len(name.encode()) > 64:
            raise InputError(f"model name {name!r} must be 1-64 bytes", fix="choose a shorter --name")
        m = weights if isinstance(weights, WeightsManifest) else manifest(weights, progress=progress)
        existing = self.version_of_root(m.root)
        if existing:
            raise InputError(f"these weights are already registered as version {existing}",
                             fix=f"use version {existing} (e.g. as --parent) instead of registering it again")
        holder, job = self.chain.call(self.registry.functions.hold_of(m.root))
        if int(holder, 16) != 0:
            raise InputError(f"these weights are the result of compute job {job} (registrar {holder}), reserved "
                             "for its poster until the job closes",
                             fix="wait for the job to settle: the JobMarket registers the result for its poster")
        if parent and not self.exists(parent):
            raise InputError(f"parent version {parent} does not exist", fix="check the id with `proofmesh model list`")
        kind = KIND_LORA if m.kind == "lora" else KIND_FULL
        if kind == KIND_LORA and not base:
            raise InputError("a LoRA adapter needs its base model version", fix="pass --base VERSION")
        if kind == KIND_FULL and base:
            raise InputError("--base is only for LoRA adapters", fix="drop --base for full weights")
        if base and not self.exists(base):
            raise InputError(f"base version {base} does not exist", fix="register the base model first")
        account = sender or self.chain.account
        current = self.chain.call(self.registry.functions.name_owner(name_id(name)))
        if account is not None and int(current, 16) != 0 and current != account.address:
            raise InputError(f"lineage {name!r} is owned by {current}",
                             fix="register under your own --name (a fork may still name this version as --parent)")
        batches = [_b32(b) for b in data_batches]
        if len(batches) > MAX_BATCHES:
            raise InputError(f"{len(batches)} data batches (max {MAX_BATCHES})", fix="merge batches before training")
        config_cid = ""
        if config is not None:
            raw = config if isinstance(config, bytes) else Path(config).read_bytes()
            config_cid = self.put_blob(raw)
        manifest_cid = self.put_blob(m.to_bytes())
        fn = self.registry.functions.register(name, m.root, parent, kind, base, batches, job_id,
                                              config_cid, manifest_cid)
        tx = self.chain.transact(fn, sender=sender)
        ev = self.registry.events.VersionRegistered().process_receipt(tx.receipt, errors=DISCARD)
        vid = ev[0]["args"]["version_id"]
        return self.version(vid), tx

    # ------------------------------------------------------------------ verify
    def verify(self, path: str | Path, version_id: int) -> VerifyReport:
        """Re-hash local weights against a version: match, or the differing tensors with
        the registered value's Merkle proof (checked by ``ModelRegistry.verify_tensor``)."""
        rec = self.version(version_id)
        local = manifest(path)
        report = VerifyReport(version=version_id, match="0x" + local.root.hex() == rec.weights_root,
                              local_root="0x" + local.root.hex(), registered_root=rec.weights_root)
        if report.match:
            return report
        registered = self.manifest_of(version_id)
        d = diff(local, registered)
        report.changed, report.missing, report.extra = d.changed, d.missing, d.extra
        local_by_name = {t.name: t for t in local.tensors}
        for name in d.changed + d.missing:
            t = registered.tensors[registered.index_of(name)]
            proof = registered.proof(name)
            ok = self.chain.call(self.registry.functions.verify_tensor(
                version_id, t.name, t.dtype, list(t.shape), t.sha256, proof))
            lt = local_by_name.get(name)
            report.proofs.append(TensorProof(name=name, dtype=t.dtype, shape=list(t.shape),
                                             registered_sha256=t.sha256.hex(),
                                             local_sha256=lt.sha256.hex() if lt else None,
                                             proof=["0x" + p.hex() for p in proof], accepted_on_chain=bool(ok)))
        return report

    # ------------------------------------------------------------------ eval sets and policy
    def _secrets_file(self) -> Path:
        return self.chain.home.dir("models") / f"evalset-secrets-{self.chain.chain_id}.json"

    def commit_eval_set(self, name: str, path: str | Path, *, sender=None) -> tuple[int, bytes, bytes]:
        """Commit the eval set at ``path`` for lineage ``name``; keeps root+salt locally
        (in the home) for the reveal. Returns (eval_set_id, root, salt)."""
        es = evalset_mod.load(path)
        account = sender or self.chain.account
        salt = evalset_mod.new_salt()
        c = evalset_mod.commitment(es.root, salt, account.address)
        tx = self.chain.transact(self.evaluation.functions.commit_eval_set(name_id(name), c), sender=sender)
        esid = self.evaluation.events.EvalSetCommitted().process_receipt(tx.receipt, errors=DISCARD)[0]["args"]["eval_set_id"]
        if getattr(self.chain, "home", None) is not None:
            f = self._secrets_file()
            secrets = json.loads(f.read_text()) if f.exists() else {}
            secrets[str(esid)] = {"root": es.root.hex(), "salt": salt.hex(), "path": str(Path(path).resolve())}
            tmp = f.with_suffix(".tmp")
            tmp.write_text(json.dumps(secrets, indent=2))
            tmp.replace(f)
        return esid, es.root, salt

    def reveal_eval_set(self, eval_set_id: int, path: str | Path | None = None, salt: bytes | None = None,
                        *, sender=None) -> Any:
        """Reveal a committed eval set (file and salt from the home unless given)."""
        if path is None or salt is None:
            f = self._secrets_file()
            secret = (json.loads(f.read_text()) if f.exists() else {}).get(str(eval_set_id))
            if secret is None:
                raise InputError(f"no salt for eval set {eval_set_id} in this home",
                                 fix="reveal from the home that committed it, or pass --file and --salt")
            path = path or secret["path"]
            salt = salt or bytes.fromhex(secret["salt"])
        es = evalset_mod.load(path)
        cid = self.put_blob(Path(path).read_bytes())
        return self.chain.transact(self.evaluation.functions.reveal_eval_set(eval_set_id, es.root, salt, cid, es.size),
                                   sender=sender)

    def eval_set(self, eval_set_id: int) -> dict:
        (nid, committer, commitment, cblk, root, cid, size, rblk) = self.chain.call(
            self.evaluation.functions.eval_sets(eval_set_id))
        if committer == "0x" + "00" * 20:
            raise InputError(f"eval set {eval_set_id} does not exist", fix="commit one with `proofmesh model evalset commit`")
        return {"id": eval_set_id, "name_id": "0x" + bytes(nid).hex(), "committer": committer,
                "commitment": "0x" + bytes(commitment).hex(), "committed_block": cblk,
                "root": "0x" + bytes(root).hex(), "cid": cid, "size": size, "revealed_block": rblk}

    def set_policy(self, name: str, metric: str, higher_is_better: bool, tolerance: float, quorum: int,
                   *, sender=None) -> Any:
        """Set the release policy of lineage ``name`` (tolerance in metric units)."""
        return self.chain.transact(self.evaluation.functions.set_policy(
            name_id(name), att_mod.metric_id(metric), higher_is_better, att_mod.to_fixed(tolerance), quorum),
            sender=sender)

    def policy(self, name: str) -> dict | None:
        metric, hib, tol, quorum, is_set = self.chain.call(self.evaluation.functions.policies(name_id(name)))
        if not is_set:
            return None
        return {"metric": att_mod.metric_name(metric), "higher_is_better": hib,
                "tolerance": att_mod.from_fixed(tol), "quorum": quorum}

    # ------------------------------------------------------------------ evaluation
    def request_evaluation(self, version_id: int, eval_set_id: int, *, sender=None) -> int:
        tx = self.chain.transact(self.evaluation.functions.request_evaluation(version_id, eval_set_id), sender=sender)
        return self.evaluation.events.EvaluationRequested().process_receipt(tx.receipt, errors=DISCARD)[0]["args"]["request_id"]

    def draw(self, request_id: int, *, sender=None) -> list[str]:
        """Draw the evaluators (needs the seed block mined: on a dev chain one more block).

        If the seed block's hash expired (> 256 blocks), the contract re-commits to the
        next block; wait for it and draw again."""
        deadline = time.monotonic() + 600
        for _ in range(3):
            req = self.request(request_id)
            # The seed block must be mined (its hash known) before the draw is estimated and sent.
            while self.chain.block_number() <= req["seed_block"]:
                try:
                    self.chain.mine()            # dev chains (embedded, anvil)
                except Exception:
                    if time.monotonic() > deadline:
                        raise ChainError(f"seed block {req['seed_block']} not mined after 10 minutes",
                                         fix="check the chain is producing blocks") from None
                    time.sleep(2)                # a live network: wait for the next block
            tx = self.chain.transact(self.evaluation.functions.draw(request_id), sender=sender)
            drawn = self.evaluation.events.EvaluatorsDrawn().process_receipt(tx.receipt, errors=DISCARD)
            if drawn:
                return list(drawn[0]["args"]["evaluators"])
        raise ChainError(f"request {request_id}: seed block re-committed but never drawn",
                         fix="retry `draw` once the chain produced a new block")

    def request(self, request_id: int) -> dict:
        (vid, esid, metric, quorum, seed_block, deadline, drawn, count, finalized, median) = self.chain.call(
            self.evaluation.functions.requests(request_id))
        if vid == 0:
            raise InputError(f"evaluation request {request_id} does not exist", fix="see `proofmesh model show VERSION`")
        return {"id": request_id, "version": vid, "eval_set": esid, "metric": att_mod.metric_name(metric),
                "quorum": quorum, "seed_block": seed_block, "deadline": deadline, "drawn": drawn, "count": count,
                "finalized": finalized, "median": att_mod.from_fixed(median) if finalized else None,
                "evaluators": list(self.chain.call(self.evaluation.functions.evaluators_of(request_id)))}

    def open_request(self, version_id: int, eval_set_id: int) -> int:
        return self.chain.call(self.evaluation.functions.request_of(version_id, eval_set_id))

    def make_attestation(self, request_id: int, value: float, account, *,
                         deadline: int | None = None) -> att_mod.Attestation:
        """Build and sign ``account``'s attestation of ``value`` for a request (valid
        until ``deadline``, by default the request's attestation window)."""
        req = self.request(request_id)
        es = self.eval_set(req["eval_set"])
        if deadline is None:
            deadline = req["deadline"] or self.chain.timestamp() + 3600
        a = att_mod.Attestation(request_id=request_id, version=req["version"],
                                eval_set_root=bytes.fromhex(es["root"][2:]),
                                metric=att_mod.metric_id(req["metric"]), value=att_mod.to_fixed(value),
                                deadline=deadline)
        return att_mod.sign(account, self.chain.chain_id, self.evaluation.address, a)

    def submit_attestation(self, request_id: int, a: att_mod.Attestation, *, sender=None) -> Any:
        """Relay a signed attestation (any account may pay the gas)."""
        if a.request_id != request_id:
            raise InputError(f"this attestation was signed for request {a.request_id}, not {request_id}",
                             fix="sign a new attestation for this request")
        return self.chain.transact(self.evaluation.functions.attest(request_id, a.value, a.deadline, a.signature),
                                   sender=sender)

    def evaluation_result(self, version_id: int, eval_set_id: int) -> Evaluation | None:
        rid, median, metric, quorum, finalized = self.chain.call(
            self.evaluation.functions.results(version_id, eval_set_id))
        if not rid:
            rid = self.open_request(version_id, eval_set_id)
            if not rid:
                return None
        req = self.request(rid)
        values = {}
        for e in req["evaluators"]:
            if self.chain.call(self.evaluation.functions.has_attested(rid, e)):
                values[e] = att_mod.from_fixed(self.chain.call(self.evaluation.functions.attested_value(rid, e)))
        return Evaluation(version=version_id, eval_set=eval_set_id, request_id=rid, metric=req["metric"],
                          median=req["median"], finalized=req["finalized"], evaluators=req["evaluators"],
                          values=values)

    def evaluations_of(self, version_id: int) -> list[Evaluation]:
        out = []
        for e in self.chain.events("ModelEvaluation", "EvaluationRequested",
                                   argument_filters={"version_id": version_id}):
            esid = e["args"]["eval_set_id"]
            if any(x.eval_set == esid for x in out):
                continue
            r = self.evaluation_result(version_id, esid)
            if r:
                out.append(r)
        return out

    def reputation(self, evaluator: str) -> int:
        return self.chain.call(self.evaluation.functions.reputation(evaluator))

    # ------------------------------------------------------------------ release
    def check_release(self, version_id: int, eval_set_id: int) -> dict:
        """The release gate's verdict without sending anything (numbers in metric units)."""
        ok, reason, median, best_anc, best = self.chain.call(
            self.evaluation.functions.check_release(version_id, eval_set_id))
        return {"ok": ok, "reason": reason, "median": att_mod.from_fixed(median) if median else None,
                "best_ancestor": best_anc or None, "best_ancestor_value": att_mod.from_fixed(best) if best_anc else None}

    def release(self, version_id: int, eval_set_id: int, *, sender=None) -> Any:
        """Release a version; ContractRevert with the gate's reason if it is refused."""
        return self.chain.transact(self.evaluation.functions.release(version_id, eval_set_id), sender=sender)

    # ------------------------------------------------------------------ lineage
    def ancestors(self, version_id: int) -> list[int]:
        out, v = [], self.version(version_id).parent
        while v and len(out) < 1024:
            out.append(v)
            v = self.chain.call(self.registry.functions.parent_of(v))
        return out

    def descendants(self, version_id: int) -> list[int]:
        out, frontier = [], [version_id]
        while frontier and len(out) < 10_000:
            nxt = []
            for v in frontier:
                kids = self.children(v)
                out.extend(kids)
                nxt.extend(kids)
            frontier = nxt
        return out
