"""JSON endpoints of the web explorer (``/api/explorer/...``) and its static files (``/``).

Every section is built from the node's :class:`~proofmesh.node.events.EventIndex`
(decoded chain events) plus a few contract views for current state. A section whose
contract is not in the address book answers ``{"deployed": false, ...}`` and the page
says so, instead of failing: a network may run only some capabilities.

Amounts are returned as MESH decimal strings and every integer above 2**53 as a
string, because JavaScript numbers would silently round them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from importlib import resources
from typing import Any

from proofmesh.chain.core import from_wei, role_names
from proofmesh.chain.deploy import POOLS

_JS_SAFE = 2**53
_STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
JOB_STATUS = ["open", "assigning", "working", "reveal", "submitted", "disputed", "settled", "refunded", "cancelled"]
_LATENCY_TTL = 10.0
# The health probe of a registered endpoint: a health answer is a few hundred bytes.
_PROBE_MAX_BYTES = 64 * 1024
_PROBE_DEADLINE_S = 0.5
_MAX_MANIFEST = 64 * 1024**2


def _js(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value) if abs(value) >= _JS_SAFE else value
    if isinstance(value, dict):
        return {k: _js(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_js(v) for v in value]
    return value


def _b32_text(h: str) -> str:
    """A bytes32 that holds short ASCII (e.g. a metric name) as text; else the hex."""
    raw = bytes.fromhex(h[2:]).rstrip(b"\x00")
    try:
        text = raw.decode("ascii")
        if text and text.isprintable():
            return text
    except UnicodeDecodeError:
        pass
    return h


class Explorer:
    """Builds each explorer section from a node's chain connection and event index."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self._latency: dict[str, tuple[float, float | None]] = {}
        self._dedup: dict[str, dict[str, int]] = {}
        self._dedup_failed: dict[str, float] = {}

    @property
    def chain(self) -> Any:
        return self.node.chain

    @property
    def index(self) -> Any:
        return self.node.index

    def _has(self, name: str) -> bool:
        return name in self.chain.addresses

    def _view(self, contract: str, fn: str, *args: Any, default: Any = None) -> Any:
        try:
            c = self.chain.contract(contract)
            return self.chain.call(getattr(c.functions, fn)(*args))
        except Exception:
            return default

    # ------------------------------------------------------------------ overview
    def overview(self) -> dict[str, Any]:
        idx = self.index
        return {"chain_id": self.chain.chain_id, "backend": self.chain.backend, "head": idx.head,
                "events": len(idx.all()), "transactions": idx.transactions, "node": self.node.url,
                "address": self.node.account.address if self.node.account else None,
                "contracts": dict(sorted(self.chain.addresses.items())), "time": int(time.time())}

    def events(self, contract: str | None, limit: int) -> dict[str, Any]:
        evs = self.index.of(contract) if contract else self.index.all()
        return {"events": [e.as_dict() for e in reversed(evs[-limit:])]}

    # ------------------------------------------------------------------ nodes
    def nodes(self) -> dict[str, Any]:
        if not self._has("NodeRegistry"):
            return {"deployed": False, "nodes": []}
        from proofmesh.chain.core import Registry

        slashes: dict[str, int] = defaultdict(int)
        for e in self.index.of("NodeRegistry", "Slashed"):
            slashes[e.args["node"]] += e.args["amount"]
        rows = []
        for n in Registry(self.chain).nodes():
            rows.append({"address": n.address, "endpoint": n.endpoint, "roles": role_names(n.roles),
                         "stake": from_wei(n.stake), "bonded": from_wei(n.bonded),
                         "unbonding": from_wei(n.unbonding), "slashed": from_wei(slashes.get(n.address, 0))})
        return {"deployed": True, "nodes": rows}

    # ------------------------------------------------------------------ token
    def token(self) -> dict[str, Any]:
        if not self._has("MeshToken"):
            return {"deployed": False}
        out: dict[str, Any] = {"deployed": True,
                               "supply": from_wei(self._view("MeshToken", "totalSupply", default=0)),
                               "cap": from_wei(self._view("MeshToken", "cap", default=0))}
        transfers = self.index.of("MeshToken", "Transfer")
        holders: set[str] = set()
        for e in transfers:
            holders.update((e.args["sender"], e.args["receiver"]))
        holders.discard("0x0000000000000000000000000000000000000000")
        balances = []
        for h in holders:
            bal = self._view("MeshToken", "balanceOf", h, default=0)
            if bal:
                balances.append((bal, h))
        balances.sort(reverse=True)
        out["holders"] = len(balances)
        out["balances"] = [{"address": h, "balance": from_wei(b)} for b, h in balances[:20]]
        out["transfers"] = [{"from": e.args["sender"], "to": e.args["receiver"], "amount": from_wei(e.args["value"]),
                             "block": e.block, "tx": e.tx} for e in reversed(transfers[-25:])]
        if self._has("Emission"):
            names = {v: k for k, v in POOLS.items()}
            pools = {name: from_wei(self._view("Emission", "pool_balance", i, default=0)) for name, i in POOLS.items()}
            paid: dict[str, int] = defaultdict(int)
            credited: dict[str, int] = defaultdict(int)
            for e in self.index.of("Emission", "RewardPaid"):
                paid[names.get(e.args["pool"], str(e.args["pool"]))] += e.args["amount"]
            for e in self.index.of("Emission", "PoolCredited"):
                credited[names.get(e.args["pool"], str(e.args["pool"]))] += e.args["amount"]
            out["emission"] = {
                "epochs": [{"epoch": e.args["epoch"], "amount": from_wei(e.args["amount"]), "block": e.block}
                           for e in self.index.of("Emission", "Distributed")],
                "pools": [{"pool": p, "balance": pools[p], "credited": from_wei(credited.get(p, 0)),
                           "paid": from_wei(paid.get(p, 0))} for p in POOLS],
            }
        return out

    # ------------------------------------------------------------------ models
    def models(self) -> dict[str, Any]:
        if not self._has("ModelRegistry"):
            return {"deployed": False, "versions": [], "edges": []}
        names = {e.args["name_id"]: e.args["name"] for e in self.index.of("ModelRegistry", "NameClaimed")}
        released = {e.args["version_id"] for e in self.index.of("ModelEvaluation", "Released")}
        evaluated = defaultdict(int)
        for e in self.index.of("ModelEvaluation", "EvaluationFinalized"):
            evaluated[e.args["version_id"]] += 1
        versions, edges = [], []
        for e in self.index.of("ModelRegistry", "VersionRegistered"):
            a = e.args
            vid = a["version_id"]
            versions.append({"id": vid, "name": names.get(a["name_id"], _b32_text(a["name_id"])),
                             "parent": a["parent"], "kind": "lora" if a["kind"] == 1 else "full",
                             "weights_root": a["weights_root"], "job_id": a["job_id"],
                             "batches": len(a["data_batches"]), "evaluations": evaluated.get(vid, 0),
                             "released": vid in released, "block": e.block})
            if a["parent"]:
                edges.append({"from": a["parent"], "to": vid})
        return {"deployed": True, "versions": versions, "edges": edges}

    def model(self, version_id: int) -> dict[str, Any] | None:
        reg = [e for e in self.index.of("ModelRegistry", "VersionRegistered") if e.args["version_id"] == version_id]
        if not reg:
            return None
        a = reg[0].args
        names = {e.args["name_id"]: e.args["name"] for e in self.index.of("ModelRegistry", "NameClaimed")}
        children = [e.args["version_id"] for e in self.index.of("ModelRegistry", "VersionRegistered")
                    if e.args["parent"] == version_id]
        requests = {e.args["request_id"]: e for e in self.index.of("ModelEvaluation", "EvaluationRequested")
                    if e.args["version_id"] == version_id}
        attest: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for e in self.index.of("ModelEvaluation", "Attested"):
            if e.args["request_id"] in requests:
                attest[e.args["request_id"]].append({"evaluator": e.args["evaluator"], "value": e.args["value"]})
        finals = {e.args["request_id"]: e.args["median"] for e in self.index.of("ModelEvaluation", "EvaluationFinalized")
                  if e.args["version_id"] == version_id}
        evaluations = [{"request": rid, "eval_set": r.args["eval_set_id"], "metric": _b32_text(r.args["metric"]),
                        "quorum": r.args["quorum"], "attestations": attest.get(rid, []),
                        "median": finals.get(rid), "final": rid in finals}
                       for rid, r in sorted(requests.items())]
        rel = [e.args for e in self.index.of("ModelEvaluation", "Released") if e.args["version_id"] == version_id]
        release = ({"released": True, "median": rel[0]["median"], "eval_set": rel[0]["eval_set_id"],
                    "best_ancestor": rel[0]["best_ancestor"], "best_ancestor_value": rel[0]["best_ancestor_value"]}
                   if rel else {"released": False,
                                "status": "evaluated, not released" if finals else "awaiting evaluation"})
        job = self.job(a["job_id"]) if a["job_id"] else None
        return {"id": version_id, "name": names.get(a["name_id"], _b32_text(a["name_id"])), "parent": a["parent"],
                "base": a["base"], "kind": "lora" if a["kind"] == 1 else "full", "weights_root": a["weights_root"],
                "owner": a["owner"], "registrar": a["registrar"], "config_cid": a["config_cid"],
                "manifest_cid": a["manifest_cid"], "data_batches": a["data_batches"], "children": children,
                "job_id": a["job_id"], "job": job, "evaluations": evaluations, "release": release,
                "block": reg[0].block, "tx": reg[0].tx}

    # ------------------------------------------------------------------ jobs
    def jobs(self) -> dict[str, Any]:
        if not self._has("JobMarket"):
            return {"deployed": False, "jobs": []}
        ids = [e.args["job_id"] for e in self.index.of("JobMarket", "JobPosted")]
        return {"deployed": True, "jobs": [self.job(i) for i in reversed(ids)]}

    def job(self, job_id: int) -> dict[str, Any] | None:
        if not self._has("JobMarket"):
            return None
        evs = [e for e in self.index.of("JobMarket") if e.args.get("job_id") == job_id]
        posted = next((e for e in evs if e.event == "JobPosted"), None)
        if posted is None:
            return None
        state = self._view("JobMarket", "jobs", job_id)
        status = JOB_STATUS[state[3]] if state is not None and state[3] < len(JOB_STATUS) else evs[-1].event
        workers: dict[str, dict[str, Any]] = {}

        def w(addr: str) -> dict[str, Any]:
            return workers.setdefault(addr, {"worker": addr, "committed": False, "revealed": False,
                                             "paid": "0", "slashed": "0"})
        slashes, payouts = [], []
        for e in evs:
            if e.event == "WorkerAssigned":
                w(e.args["worker"])
            elif e.event == "Committed":
                w(e.args["worker"])["committed"] = True
            elif e.event in ("Revealed", "ResultSubmitted"):
                w(e.args["worker"])["revealed"] = True
            elif e.event == "WorkerPaid":
                w(e.args["worker"])["paid"] = from_wei(e.args["amount"])
                payouts.append({"worker": e.args["worker"], "amount": from_wei(e.args["amount"])})
            elif e.event == "WorkerSlashed":
                w(e.args["worker"])["slashed"] = from_wei(e.args["amount"])
                slashes.append({"worker": e.args["worker"], "amount": from_wei(e.args["amount"]),
                                "reason": e.args["reason"], "recipient": e.args["recipient"]})
        p = posted.args
        return {"id": job_id, "poster": p["poster"], "mode": "optimistic" if p["mode"] == 1 else "replicated",
                "replicas": p["replicas"], "reward": from_wei(p["reward"]), "spec_cid": p["spec_cid"],
                "base_version": p["base_version"], "status": status,
                "phases": [{"event": e.event, "block": e.block} for e in evs],
                "workers": list(workers.values()), "payouts": payouts, "slashes": slashes}

    # ------------------------------------------------------------------ inference
    def inference(self) -> dict[str, Any]:
        if not self._has("InferenceRegistry"):
            return {"deployed": False, "nodes": []}
        from proofmesh.chain.core import Registry

        stats: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for e in self.index.of("InferenceRegistry", "EpochCommitted"):
            stats[e.args["node"]]["epochs"] += 1
            stats[e.args["node"]]["receipts"] += e.args["count"]
        for e in self.index.of("InferenceRegistry", "ProofAccepted"):
            stats[e.args["submitter"]]["proofs"] += 1
        for e in self.index.of("InferenceRegistry", "Challenged"):
            stats[e.args["node"]]["challenges"] += 1
        for e in self.index.of("InferenceRegistry", "ChallengeAnswered"):
            stats[e.args["node"]]["answered"] += 1
        for e in self.index.of("InferenceRegistry", "ChallengeExpired"):
            stats[e.args["node"]]["lost"] += 1
        for e in self.index.of("InferenceDisputes", "DisputeResolved"):
            stats[e.args["loser"]]["lost"] += 1
        bonded = {e.args["node"] for e in self.index.of("InferenceRegistry", "BondPosted")}
        candidates = {n.address: n for n in Registry(self.chain).nodes() if n.roles & 4} if self._has("NodeRegistry") else {}
        rows = []
        for addr in sorted(set(candidates) | bonded | set(stats)):
            n = candidates.get(addr)
            s = stats.get(addr, {})
            good = s.get("proofs", 0) + s.get("answered", 0) + s.get("epochs", 0)
            lost = s.get("lost", 0)
            rows.append({"address": addr, "endpoint": n.endpoint if n else "",
                         "stake": from_wei(n.stake) if n else "0",
                         "bond": from_wei(self._view("InferenceRegistry", "service_bond", addr, default=0)),
                         "latency_ms": self._probe(n.endpoint) if n and n.endpoint else None,
                         "epochs": s.get("epochs", 0), "receipts": s.get("receipts", 0), "proofs": s.get("proofs", 0),
                         "challenges": s.get("challenges", 0), "lost": lost,
                         # reputation: share of settled checks the node came through, over all it faced
                         "reputation": round(good / (good + lost), 3) if good + lost else None})
        return {"deployed": True, "nodes": rows}

    def _probe(self, endpoint: str) -> float | None:
        """Round-trip to a node's /health, cached for a few seconds (None if it does not answer).

        The endpoint comes from the chain (anyone can register one), so the answer is read within
        a tiny cap and a total deadline: a node answering gigabytes, or a byte a second, costs
        this explorer at most _PROBE_MAX_BYTES and _PROBE_DEADLINE_S."""
        from proofmesh.http_reads import PEER_ERRORS, read_answer

        now = time.monotonic()
        cached = self._latency.get(endpoint)
        if cached and now - cached[0] < _LATENCY_TTL:
            return cached[1]
        t0 = time.perf_counter()
        try:
            read_answer("GET", endpoint.rstrip("/") + "/health", max_bytes=_PROBE_MAX_BYTES,
                        deadline_s=_PROBE_DEADLINE_S)
            value: float | None = round((time.perf_counter() - t0) * 1000, 1)
        except (*PEER_ERRORS, ValueError):
            value = None
        self._latency[endpoint] = (now, value)
        return value

    # ------------------------------------------------------------------ devices
    def devices(self) -> dict[str, Any]:
        if not self._has("DeviceRegistry"):
            return {"deployed": False, "devices": [], "epochs": []}
        devices: dict[str, dict[str, Any]] = {}
        for e in self.index.of("DeviceRegistry", "DeviceRegistered"):
            a = e.args
            devices[a["device"]] = {"device": a["device"], "owner": a["owner"], "class": a["device_class"],
                                    "cell": hex(a["cell"]), "stake": from_wei(a["stake"]), "active": True,
                                    "uptime": {}, "rewards": "0"}
        for e in self.index.of("DeviceRegistry", "StakeAdded"):
            if e.args["device"] in devices:
                devices[e.args["device"]]["stake"] = from_wei(e.args["total"])
        for e in self.index.of("DeviceRegistry", "DeviceDeregistered"):
            if e.args["device"] in devices:
                devices[e.args["device"]]["active"] = False
        rewards: dict[str, int] = defaultdict(int)
        for e in self.index.of("EdgeEpochs", "RewardPaid"):
            d = devices.setdefault(e.args["device"], {"device": e.args["device"], "owner": e.args["owner"],
                                                      "class": "?", "cell": "", "stake": "0", "active": True,
                                                      "uptime": {}, "rewards": "0"})
            d["uptime"][str(e.args["epoch"])] = e.args["uptime"]
            rewards[e.args["device"]] += e.args["amount"]
        for addr, amount in rewards.items():
            devices[addr]["rewards"] = from_wei(amount)
        epochs = [{"gateway": e.args["gateway"], "epoch": e.args["epoch"], "root": e.args["root"],
                   "readings": e.args["leaf_count"], "total_uptime": e.args["total_uptime"], "block": e.block}
                  for e in self.index.of("EdgeEpochs", "EpochPublished")]
        faults = [{"gateway": e.args["gateway"], "epoch": e.args["epoch"], "kind": e.args["kind"],
                   "burned": from_wei(e.args["burned"])} for e in self.index.of("EdgeEpochs", "FaultProven")]
        return {"deployed": True, "devices": list(devices.values()), "epochs": epochs, "faults": faults}

    # ------------------------------------------------------------------ tools
    def tools(self) -> dict[str, Any]:
        if not self._has("ToolRegistry"):
            return {"deployed": False, "tools": []}
        tools: dict[str, dict[str, Any]] = {}
        for e in self.index.of("ToolRegistry", "ToolRegistered"):
            a = e.args
            tools[a["tool_id"]] = {"id": a["tool_id"], "name": a["name"], "provider": a["provider"],
                                   "endpoint": a["endpoint"], "price": from_wei(a["price"]), "active": True}
        for e in self.index.of("ToolRegistry", "ToolUpdated"):
            if e.args["tool_id"] in tools:
                tools[e.args["tool_id"]].update(endpoint=e.args["endpoint"], price=from_wei(e.args["price"]))
        for e in self.index.of("ToolRegistry", "ToolRetired"):
            if e.args["tool_id"] in tools:
                tools[e.args["tool_id"]]["active"] = False
        for tid, t in tools.items():
            rep = self._view("ToolRegistry", "reputation", bytes.fromhex(tid[2:]))
            if rep is not None:
                t.update(calls=rep[0], failures=rep[1], disputes=rep[2], paid=from_wei(rep[3]), payers=rep[4])
            t["score"] = self._view("ToolRegistry", "score", bytes.fromhex(tid[2:]))
        return {"deployed": True, "tools": list(tools.values())}

    # ------------------------------------------------------------------ datasets
    def datasets(self) -> dict[str, Any]:
        """Sources and batches of the DataRegistry, with each batch's dedup statistics.

        Dedup statistics come from the batch's manifest (one line per input record:
        ``kept`` or the stage that dropped it), a content-addressed blob named on chain:
        read from this node's store, or fetched (and re-hashed) from the contributor's
        node. A manifest nobody serves leaves the counts empty, never made up.
        """
        if not self._has("DataRegistry"):
            return {"deployed": False, "sources": [], "batches": []}
        sources: dict[int, dict[str, Any]] = {}
        for e in self.index.of("DataRegistry", "SourceRegistered"):
            a = e.args
            sources[a["source_id"]] = {"id": a["source_id"], "owner": a["owner"], "uri": a["uri"],
                                       "license": a["license"], "withdrawn": False, "batches": 0, "records": 0}
        for e in self.index.of("DataRegistry", "SourceWithdrawn"):
            if e.args["source_id"] in sources:
                sources[e.args["source_id"]]["withdrawn"] = True
        batches: dict[int, dict[str, Any]] = {}
        for e in self.index.of("DataRegistry", "BatchPublished"):
            a = e.args
            batches[a["batch_id"]] = {"id": a["batch_id"], "source": a["source_id"], "contributor": a["contributor"],
                                      "root": a["root"], "records": a["record_count"], "tokens": a["token_count"],
                                      "bond": from_wei(a["bond"]), "manifest_cid": a["manifest_cid"],
                                      "attestations": 0, "quality_bps": None, "duplicate_bps": None,
                                      "duplicates_proven": 0, "taken_down": 0, "status": "challengeable",
                                      "reward": "0", "block": e.block}
            if a["source_id"] in sources:
                sources[a["source_id"]]["batches"] += 1
                sources[a["source_id"]]["records"] += a["record_count"]
        quality: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for e in self.index.of("DataRegistry", "Attested"):
            if e.args["batch_id"] in batches:
                quality[e.args["batch_id"]].append((e.args["quality_bps"], e.args["duplicate_bps"]))
        for bid, qs in quality.items():
            batches[bid].update(attestations=len(qs), quality_bps=sorted(q for q, _ in qs)[len(qs) // 2],
                                duplicate_bps=sorted(d for _, d in qs)[len(qs) // 2])
        for e in self.index.of("DataRegistry", "DuplicateProven"):
            if e.args["batch_id"] in batches:
                batches[e.args["batch_id"]]["duplicates_proven"] += 1
        for e in self.index.of("DataRegistry", "RecordTakenDown"):
            if e.args["batch_id"] in batches:
                batches[e.args["batch_id"]]["taken_down"] += 1
        for e in self.index.of("DataRegistry", "BatchFinalized"):
            if e.args["batch_id"] in batches:
                batches[e.args["batch_id"]].update(status="finalized", reward=from_wei(e.args["reward"]))
        for b in batches.values():
            b["dedup"] = self._dedup_stats(b["manifest_cid"], b["contributor"])
        return {"deployed": True, "sources": list(sources.values()), "batches": list(reversed(batches.values()))}

    def _dedup_stats(self, cid: str, contributor: str) -> dict[str, int] | None:
        """Counts of manifest lines by status (``kept``, ``exact``, ``near``, …), cached by CID."""
        import json

        from proofmesh.errors import ProofmeshError
        from proofmesh.store.blobstore import BlobStore

        if not cid:
            return None
        if cid in self._dedup:
            return self._dedup[cid]
        failed_at = self._dedup_failed.get(cid)
        if failed_at is not None and time.monotonic() - failed_at < 60:
            return None
        store = BlobStore(self.node.home.store_dir)
        try:
            if not store.has(cid):
                from proofmesh.chain.core import Registry
                from proofmesh.store.fetch import fetch

                endpoint = Registry(self.chain).info(contributor).endpoint
                if not endpoint.startswith(("http://", "https://")):
                    raise ProofmeshError("contributor serves no endpoint")
                fetch(cid, [endpoint], store, timeout=2.0, max_bytes=_MAX_MANIFEST)
            counts: dict[str, int] = defaultdict(int)
            for line in store.get_bytes(cid).splitlines():
                if line.strip():
                    counts[str(json.loads(line).get("status", "?"))] += 1
        except (ProofmeshError, ValueError, OSError):
            self._dedup_failed[cid] = time.monotonic()
            return None
        self._dedup[cid] = dict(counts)
        return self._dedup[cid]


def explorer_router(node: Any) -> Any:
    """``/api/explorer/...`` JSON routes for ``node`` (a :class:`~proofmesh.node.daemon.NodeDaemon`)."""
    import anyio
    from fastapi import APIRouter, HTTPException, Query

    ex = Explorer(node)
    router = APIRouter(prefix="/api/explorer", tags=["explorer"])

    async def run(fn: Any, *args: Any) -> Any:
        # chain reads block: keep them off the event loop that also serves /rpc
        return _js(await anyio.to_thread.run_sync(fn, *args))

    @router.get("/overview")
    async def overview() -> Any:
        return await run(ex.overview)

    @router.get("/events")
    async def events(contract: str | None = None, limit: int = Query(50, ge=1, le=500)) -> Any:
        return await run(ex.events, contract, limit)

    @router.get("/nodes")
    async def nodes() -> Any:
        return await run(ex.nodes)

    @router.get("/token")
    async def token() -> Any:
        return await run(ex.token)

    @router.get("/models")
    async def models() -> Any:
        return await run(ex.models)

    @router.get("/models/{version_id}")
    async def model(version_id: int) -> Any:
        out = await run(ex.model, version_id)
        if out is None:
            raise HTTPException(404, f"model version {version_id} is not registered")
        return out

    @router.get("/jobs")
    async def jobs() -> Any:
        return await run(ex.jobs)

    @router.get("/jobs/{job_id}")
    async def job(job_id: int) -> Any:
        out = await run(ex.job, job_id)
        if out is None:
            raise HTTPException(404, f"job {job_id} does not exist")
        return out

    @router.get("/inference")
    async def inference() -> Any:
        return await run(ex.inference)

    @router.get("/devices")
    async def devices() -> Any:
        return await run(ex.devices)

    @router.get("/tools")
    async def tools() -> Any:
        return await run(ex.tools)

    @router.get("/datasets")
    async def datasets() -> Any:
        return await run(ex.datasets)

    return router


def static_router() -> Any:
    """``/`` (the single-page explorer) and ``/static/<file>`` from package data."""
    from fastapi import APIRouter, HTTPException
    from fastapi.responses import Response

    router = APIRouter(tags=["explorer"])
    files = resources.files("proofmesh.node.explorer") / "static"

    def serve(name: str) -> Response:
        if name not in _STATIC:
            raise HTTPException(404, f"no such file: {name}")
        return Response((files / name).read_bytes(), media_type=_STATIC[name],
                        headers={"cache-control": "no-cache"})

    @router.get("/", include_in_schema=False)
    def index() -> Response:
        return serve("index.html")

    @router.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        return serve(name)

    return router
