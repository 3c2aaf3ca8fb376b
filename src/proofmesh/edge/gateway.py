"""The edge gateway: verifies, stores, acknowledges and publishes device readings.

Pipeline of one HTTP batch (``POST /edge/readings``, wire format of
:mod:`proofmesh.edge.reading`):

1. split the batch (malformed → 400, nothing stored);
2. verify every signature in the :class:`~proofmesh.edge.verifier.VerifierPool` (native kernel on threads, all cores);
3. in the event loop, under one lock, judge each reading: signer is the device's key at
   its timestamp (DeviceRegistry, mirrored by :class:`DeviceDirectory`), seq above the
   device's last, timestamp not in the future nor in a closed epoch, nonce one of this
   gateway's beacons for that epoch and not later than the timestamp; every rejection is
   counted by reason in ``/edge/stats``;
4. append the accepted readings to the :class:`~proofmesh.edge.readlog.ReadingLog` and
   ``fsync`` once, then answer with a signed EIP-712 receipt (covering every run of consecutive
   accepted seqs of a device in an epoch; one signature per batch over their Merkle root).

A publisher thread closes each epoch (after a grace period for late batches), builds the
:class:`~proofmesh.edge.epoch_tree.EpochCommitment`, writes it to
``epochs/<n>.json`` (content-addressed: its CID is recorded), and publishes the roots and
the beacon seed on chain (``EdgeEpochs.publish``). Back from downtime, it skips the missed
epochs it holds no readings of in one transaction (``EdgeEpochs.skip``) instead of
publishing them empty one by one.

:func:`make_router` gives an ``APIRouter`` (mountable in the node daemon);
:func:`make_app` / :func:`serve` run it standalone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from proofmesh.crypto.cid import cid_of_bytes
from proofmesh.edge.beacon import Beacons
from proofmesh.edge.epoch_tree import EpochCommitment
from proofmesh.edge.identity import KeyHolder
from proofmesh.edge.reading import ReadingDomain, decode_record, runs_root, sign_digest, split_batch
from proofmesh.edge.readlog import ReadingLog
from proofmesh.edge.verifier import OK, STATUS_NAMES, Verdicts, VerifierPool
from proofmesh.errors import InputError, ProofmeshError
from proofmesh.http_limits import HttpLimits

log = logging.getLogger("proofmesh.edge.gateway")

MAX_FUTURE_SKEW = 5          # seconds a device clock may run ahead
MAX_AGE_EPOCHS = 2           # readings older than this many epochs are refused as closed
_BIG = 2**64 - 1
_HEAD_FIELDS = struct.Struct(">20sQ32sQ")      # device, seq, nonce, timestamp of a wire record


class DeviceDirectory:
    """The gateway's mirror of DeviceRegistry keys: key → (device, valid_from, valid_until).

    Refreshed from the registry's events (registration, rotation, revocation,
    deregistration); a key's record is read from the contract, so the mirror can only lag,
    never disagree. Before publishing, the gateway refreshes it once more.
    """

    EVENTS = ("DeviceRegistered", "KeyRotated", "KeyRevoked", "DeviceDeregistered")

    def __init__(self, edge: Any) -> None:
        self.edge = edge
        self.keys: dict[bytes, tuple[bytes, int, int]] = {}
        self._next_block = 0
        self._lock = threading.Lock()

    def refresh(self) -> int:
        """Pull new events; returns how many keys changed."""
        with self._lock:
            chain = self.edge.chain
            head = chain.block_number()
            if head < self._next_block:
                return 0
            touched: set[str] = set()
            for name in self.EVENTS:
                for ev in chain.events("DeviceRegistry", name, from_block=self._next_block, to_block=head):
                    a = ev["args"]
                    for k in ("device", "key", "old_key", "new_key"):
                        if k in a and int(a[k], 16):
                            touched.add(a[k])
            for key in touched:
                device, start, until = self.edge.key_record(key)
                if int(device, 16):
                    self.keys[bytes.fromhex(key[2:])] = (bytes.fromhex(device[2:]), start, until)
            self._next_block = head + 1
            return len(touched)

    def valid(self, device: bytes, signer: bytes, timestamp: int) -> bool:
        rec = self.keys.get(signer)
        return rec is not None and rec[0] == device and rec[1] <= timestamp < rec[2]


@dataclass
class GatewayConfig:
    """Where the gateway keeps its state and how it judges time."""

    directory: Path
    grace: float = 2.0                  # seconds after an epoch ends before it is closed
    max_future_skew: int = MAX_FUTURE_SKEW
    workers: int | None = None          # verifier threads (default: all cores)
    publish: bool = True                # publish epochs on chain (off for pure benchmarks)


@dataclass
class _EpochBucket:
    entries: list[tuple[bytes, int]] = field(default_factory=list)   # (record, interval)


class GatewayCore:
    """Everything but HTTP: state, verification, durability, receipts, epochs."""

    def __init__(self, config: GatewayConfig, key: KeyHolder, *, edge: Any = None,
                 directory: DeviceDirectory | None = None, domain: ReadingDomain | None = None,
                 epoch_length: int | None = None, interval_length: int | None = None) -> None:
        self.config = config
        self.key = key
        self.edge = edge
        self.dir = config.directory
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "epochs").mkdir(exist_ok=True)
        self.domain = domain or edge.domain
        self.epoch_length = epoch_length or edge.epoch_length
        self.interval_length = interval_length or edge.interval_length
        self.devices = directory or DeviceDirectory(edge)
        self.beacons = Beacons.load_or_create(self.dir / "beacon.key", self.epoch_length, self.interval_length)
        self.stats: Counter[str] = Counter()
        self.last: dict[bytes, tuple[int, int]] = {}          # device -> (seq, timestamp)
        self.open: dict[int, _EpochBucket] = defaultdict(_EpochBucket)
        self.closed_through = -1                               # epochs <= this accept nothing
        self.first_epoch = 0
        self.published: dict[int, dict[str, Any]] = self._load_published()
        self.skipped: list[dict[str, Any]] = self._load_skipped()
        self._lock = threading.Lock()
        self.log = ReadingLog(self.dir / "readings.log")
        self._recover()
        self.pool = VerifierPool(config.workers)
        self.last_publish_error = ""
        self._last_cid = ""
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ state
    def _load_published(self) -> dict[int, dict[str, Any]]:
        p = self.dir / "published.json"
        return {int(k): v for k, v in json.loads(p.read_text()).items()} if p.exists() else {}

    def _save_published(self) -> None:
        p = self.dir / "published.json"
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps({str(k): v for k, v in sorted(self.published.items())}, indent=1))
        os.replace(tmp, p)

    def _load_skipped(self) -> list[dict[str, Any]]:
        p = self.dir / "skipped.json"
        return json.loads(p.read_text()) if p.exists() else []

    def _save_skipped(self) -> None:
        p = self.dir / "skipped.json"
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.skipped, indent=1))
        os.replace(tmp, p)

    def _recover(self) -> None:
        """Rebuild per-device state and open epochs from the log (after a crash or restart)."""
        n = 0
        for interval, rec in self.log.replay():
            device, seq, ts = rec[:20], int.from_bytes(rec[20:28], "big"), int.from_bytes(rec[60:68], "big")
            prev = self.last.get(device)
            if prev is None or seq > prev[0]:
                self.last[device] = (seq, ts)
            e = ts // self.epoch_length
            if e not in self.published:
                self.open[e].entries.append((rec, interval))
            n += 1
        if self.published:
            self.closed_through = max(self.published)
        self.stats["recovered"] = n
        self.stats["recovered_torn_bytes"] = self.log.recovered_bytes_dropped

    def start(self) -> None:
        """Enrol on chain if needed, then start the directory and publisher threads."""
        if self.edge is not None:
            self.devices.refresh()
            g = self.edge.gateway(self.key.address)
            if not g["active"] and self.config.publish:
                if g["slashed"]:
                    raise ProofmeshError("this gateway was slashed in EdgeEpochs",
                                         fix="a slashed gateway cannot publish again; use a new node key")
                now = max(self.edge.chain.timestamp(), int(time.time()))
                # Start with the current epoch unless it ends before the enrolment can be mined.
                first = now // self.epoch_length + (1 if now % self.epoch_length > self.epoch_length - 4 else 0)
                self.edge.enroll(first, self.beacons.seed_hash(first), sender=self.key.account)
                g = self.edge.gateway(self.key.address)
            self.first_epoch = g["next_epoch"]
            self.closed_through = max(self.closed_through, g["next_epoch"] - 1)
            self._reconcile_published()
            self._spawn(self._directory_loop)
            if self.config.publish:
                self._spawn(self._publisher_loop)

    def _reconcile_published(self) -> None:
        """Adopt epochs whose publish transaction landed although the gateway died before
        recording it: the epoch file is written before publishing, so its root can be
        matched against the chain."""
        for path in sorted((self.dir / "epochs").glob("*.json")):
            e = int(path.stem)
            if e in self.published:
                continue
            onchain = self.edge.epoch(self.key.address, e)
            data = json.loads(path.read_text())
            if onchain["published_at"] and "0x" + onchain["root"].hex() == data["root"]:
                self.published[e] = {"root": data["root"], "counts_root": data["counts_root"],
                                     "leaves": data["leaf_count"], "total_uptime": data["total_uptime"],
                                     "cid": cid_of_bytes(path.read_bytes()), "tx": None, "gas": None,
                                     "recovered": True}
                self.open.pop(e, None)
                self.stats["epochs_reconciled"] += 1
        self._save_published()

    def _spawn(self, fn: Any) -> None:
        t = threading.Thread(target=fn, daemon=True, name=fn.__name__)
        t.start()
        self._threads.append(t)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self.pool.close()
        self.log.sync()
        self.log.close()

    def _directory_loop(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.devices.refresh()
            except Exception as exc:  # the chain may be briefly unreachable; keep serving
                self.stats["directory_errors"] += 1
                log.warning("device directory refresh failed: %s", exc)

    # ------------------------------------------------------------------ beacons
    def beacon(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        interval = int(now) // self.interval_length
        return {"gateway": self.key.address, "interval": interval, "nonce": "0x" + self.beacons.nonce(interval).hex(),
                "epoch": int(now) // self.epoch_length, "interval_length": self.interval_length,
                "epoch_length": self.epoch_length, "chain_id": self.domain.chain_id,
                "verifying_contract": "0x" + self.domain.verifying_contract.hex(), "server_time": now}

    # ------------------------------------------------------------------ readings
    async def submit(self, body: bytes, now: float | None = None) -> dict[str, Any]:
        """Verify, judge, persist and acknowledge one wire batch (``now``: the gateway clock)."""
        try:
            offsets = split_batch(body)
        except InputError:
            self.stats["rejected_malformed_batch"] += 1
            raise
        verdicts, futures = self.pool.submit(self.domain.prefix, body, offsets)
        for f in futures:
            await asyncio.wrap_future(f)
        with self._lock:
            frame, codes, runs = self._judge(body, offsets, verdicts, time.time() if now is None else now)
            if frame:
                self.log.append(frame)
        if frame:
            # One fsync per batch, off the event loop; acknowledged only once durable.
            await asyncio.get_running_loop().run_in_executor(None, self.log.sync)
        accepted = codes.count("ok")
        return {"accepted": accepted, "rejected": len(codes) - accepted, "codes": codes,
                "receipt": self._receipt(runs) if runs else None}

    def _judge(self, body: bytes, offsets: list[int], verdicts: Verdicts, now: float
               ) -> tuple[list[bytes], list[str], list[tuple[bytes, int, int, int]]]:
        """Judge verified records; returns (log entries, a code per record, receipt runs)."""
        el, il = self.epoch_length, self.interval_length
        current_epoch = int(now) // el
        # Only the current epoch and the MAX_AGE_EPOCHS before it can still take readings.
        lo_epoch = max(self.closed_through + 1, self.first_epoch, current_epoch - MAX_AGE_EPOCHS)
        self.beacons.prepare(lo_epoch * el // il, (current_epoch + 1) * el // il)
        horizon = now + self.config.max_future_skew
        keys, last, stats, open_ = self.devices.keys, self.last, self.stats, self.open
        interval_of = self.beacons.interval_of_nonce
        unpack = _HEAD_FIELDS.unpack_from
        status = verdicts.status.tolist()
        signers = verdicts.signers.tobytes()
        entries: list[bytes] = []
        codes: list[str] = []
        runs: list[tuple[bytes, int, int, int]] = []     # (device, epoch, first, last)
        bucket_epoch, bucket = -1, None
        rejected: Counter[str] = Counter()
        for i, st in enumerate(status):
            if st != OK:
                code = STATUS_NAMES[st]
                codes.append(code)
                rejected[code] += 1
                continue
            off = offsets[i]
            device, seq, nonce, ts = unpack(body, off)
            epoch = ts // el
            interval = interval_of(nonce)
            prev = last.get(device)
            key = keys.get(signers[20 * i:20 * i + 20])     # DeviceDirectory.valid, inlined
            if key is None or key[0] != device or not key[1] <= ts < key[2]:
                code = "unknown_or_revoked_key"
            elif prev is not None and seq <= prev[0]:
                code = "replayed_seq"
            elif prev is not None and ts < prev[1]:
                code = "timestamp_went_back"
            elif ts > horizon:
                code = "timestamp_in_future"
            elif epoch < lo_epoch:
                code = "epoch_closed"
            elif interval is None or interval * il // el != epoch:
                code = "unknown_nonce"
            elif ts // il < interval:
                code = "timestamp_before_beacon"
            else:
                codes.append("ok")
                last[device] = (seq, ts)
                rec = body[off:offsets[i + 1]]
                entries.append(interval.to_bytes(8, "big"))
                entries.append(rec)
                if epoch != bucket_epoch:
                    bucket_epoch, bucket = epoch, open_[epoch].entries
                bucket.append((rec, interval))
                if runs and runs[-1][0] == device and runs[-1][1] == epoch and runs[-1][3] == seq - 1:
                    runs[-1] = (device, epoch, runs[-1][2], seq)
                else:
                    runs.append((device, epoch, seq, seq))
                continue
            codes.append(code)
            rejected[code] += 1
        stats["accepted"] += len(entries) // 2
        for code, n in rejected.items():
            stats["rejected_" + code] += n
        stats["batches"] += 1
        return entries, codes, runs

    def _receipt(self, runs: list[tuple[bytes, int, int, int]]) -> dict[str, Any]:
        """One signature per batch: EIP-712 Receipt over the Merkle root of its accepted runs.

        Each run is (device, epoch, firstSeq, lastSeq) of consecutive accepted seqs. Anyone
        holding the receipt rebuilds the tree from ``runs`` to prove a run on chain.
        """
        root = runs_root(runs)
        r, s, v = sign_digest(self.key.private_key, self.domain.receipt_digest(root))
        return {"runsRoot": "0x" + root.hex(), "signature": "0x" + (r + s + bytes([v])).hex(),
                "runs": [["0x" + d.hex(), e, a, b] for d, e, a, b in runs]}

    # ------------------------------------------------------------------ epochs
    def close_epoch(self, epoch: int) -> EpochCommitment:
        """Stop accepting readings of ``epoch`` and build its commitment (file written)."""
        with self._lock:
            self.closed_through = max(self.closed_through, epoch)
            bucket = self.open.pop(epoch, _EpochBucket())
        self.log.sync()
        readings = [(decode_record(rec), interval) for rec, interval in bucket.entries]
        c = EpochCommitment.build(epoch, readings, self.interval_length)
        data = json.dumps({"epoch": epoch, "gateway": self.key.address, "root": "0x" + c.root.hex(),
                           "counts_root": "0x" + c.counts_root.hex(), "leaf_count": len(c.leaves),
                           "depth": c.tree.depth, "total_uptime": c.total_uptime,
                           "counts": {"0x" + d.hex(): u for d, u in sorted(c.counts.items())},
                           "leaves": [lf.to_json() for lf in c.leaves],
                           "payloads": {f"0x{r.device.hex()}:{r.seq}": "0x" + r.payload.hex() for r, _ in readings}},
                          separators=(",", ":")).encode()
        path = self.dir / "epochs" / f"{epoch}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        self._last_cid = cid_of_bytes(data)
        return c

    def publish_epoch(self, epoch: int) -> dict[str, Any]:
        """Close ``epoch``, publish it on chain, record the publication."""
        c = self.close_epoch(epoch)
        self.devices.refresh()
        tx = self.edge.publish(c, self.beacons.seed(epoch), self.beacons.seed_hash(epoch + 1), sender=self.key.account)
        rec = {"root": "0x" + c.root.hex(), "counts_root": "0x" + c.counts_root.hex(), "leaves": len(c.leaves),
               "total_uptime": c.total_uptime, "cid": str(self._last_cid), "tx": tx.tx_hash, "gas": tx.gas_used}
        with self._lock:
            self.published[epoch] = rec
            self._save_published()
        self.stats["epochs_published"] += 1
        return rec

    def skip_to(self, target: int) -> dict[str, Any]:
        """Come back from downtime: declare the epochs from the gateway's next one up to
        ``target`` (excluded) published empty in one transaction (``EdgeEpochs.skip``).

        Refused when this gateway holds readings of an epoch in that range: it receipted
        them, so skipping it would be a provable omission; publish those epochs instead.
        The range is closed first (under the judging lock), so no reading is accepted into
        it while the transaction is in flight.
        """
        first = self.edge.gateway(self.key.address)["next_epoch"]
        if target <= first:
            raise InputError(f"cannot skip to epoch {target}: the gateway's next epoch is {first}",
                             fix="skip only forward, to an epoch after the next one")
        with self._lock:
            held = sorted(e for e, b in self.open.items() if first <= e < target and b.entries)
            if held:
                raise InputError(f"this gateway holds readings of epoch {held[0]}, inside the range to skip",
                                 fix=f"publish epoch {held[0]} (and those before it) instead of skipping it")
            self.closed_through = max(self.closed_through, target - 1)
        tx = self.edge.skip(target, self.beacons.seed(first), self.beacons.seed_hash(target), sender=self.key.account)
        rec = {"first_epoch": first, "end_epoch": target, "tx": tx.tx_hash, "gas": tx.gas_used}
        with self._lock:
            self.skipped.append(rec)
            self._save_skipped()
        self.stats["epochs_skipped"] += target - first
        return rec

    def _skip_target(self, e: int, now: float) -> int:
        """How far the publisher may skip from epoch ``e``: to the first epoch it holds readings
        of, but not into an epoch still in its grace period nor past the chain's current one."""
        limit = min(self.edge.chain.timestamp() // self.epoch_length,
                    int(now - self.config.grace) // self.epoch_length)
        with self._lock:
            held = [k for k, b in self.open.items() if e <= k < limit and b.entries]
        return min([limit, *held])

    def _publisher_loop(self) -> None:
        while not self._stop.wait(0.25):
            try:
                g = self.edge.gateway(self.key.address)
                if not g["active"]:
                    continue
                e = g["next_epoch"]
                end = (e + 1) * self.epoch_length
                now = time.time()
                if now >= end + self.config.grace:
                    # Two or more empty epochs behind: one skip instead of one publish each.
                    target = self._skip_target(e, now)
                    if target > e + 1:
                        rec = self.skip_to(target)
                        log.info("skipped epochs %d..%d: %s", e, target - 1, rec)
                        continue
                    rec = self.publish_epoch(e)
                    log.info("published epoch %d: %s", e, rec)
            except Exception as exc:  # retry next tick; the epoch stays closed, its file is rebuilt
                self.stats["publish_errors"] += 1
                self.last_publish_error = f"{type(exc).__name__}: {exc}"
                log.warning("publishing failed: %s", exc)

    # ------------------------------------------------------------------ queries
    def epoch_file(self, epoch: int) -> dict[str, Any]:
        path = self.dir / "epochs" / f"{epoch}.json"
        if not path.exists():
            raise InputError(f"epoch {epoch} is not closed on this gateway", fix="see GET /edge/epochs")
        return json.loads(path.read_text())

    def device_readings(self, device: bytes) -> list[dict[str, Any]]:
        out = []
        for e in sorted(self.published):
            f = self.epoch_file(e)
            out += [dict(lf, epoch=e, state="published") for lf in f["leaves"] if lf["device"] == "0x" + device.hex()]
        with self._lock:
            open_entries = [(e, rec, iv) for e, b in sorted(self.open.items()) for rec, iv in b.entries]
        for e, rec, iv in open_entries:
            if rec[:20] == device:
                r = decode_record(rec)
                out.append(dict(r.to_json(), epoch=e, interval=iv, state="open"))
        return out

    def stats_view(self) -> dict[str, Any]:
        with self._lock:
            open_counts = {str(e): len(b.entries) for e, b in self.open.items()}
        return {"gateway": self.key.address, "counts": dict(self.stats), "devices_seen": len(self.last),
                "open_epochs": open_counts, "published": {str(k): v for k, v in self.published.items()},
                "skipped": list(self.skipped),
                "known_keys": len(self.devices.keys), "last_publish_error": self.last_publish_error}


def make_router(core: GatewayCore, prefix: str = "/edge") -> Any:
    """The gateway's HTTP API as a FastAPI ``APIRouter`` (the node daemon can include it)."""
    router = APIRouter(prefix=prefix)

    @router.get("/beacon")
    def beacon() -> dict[str, Any]:
        return core.beacon()

    @router.post("/readings")
    async def readings(request: Request) -> Response:
        body = await request.body()
        try:
            # orjson: the answer carries a code and a receipt run per reading (~5x faster than json)
            return Response(orjson.dumps(await core.submit(body)), media_type="application/json")
        except InputError as exc:
            raise HTTPException(status_code=400, detail={"error": exc.message, "fix": exc.fix}) from None

    @router.get("/stats")
    def stats() -> dict[str, Any]:
        return core.stats_view()

    @router.get("/epochs")
    def epochs() -> dict[str, Any]:
        return {str(k): v for k, v in core.published.items()}

    @router.get("/epochs/{epoch}")
    def epoch(epoch: int) -> dict[str, Any]:
        try:
            return core.epoch_file(epoch)
        except InputError as exc:
            raise HTTPException(status_code=404, detail={"error": exc.message, "fix": exc.fix}) from None

    @router.get("/devices/{device}/readings")
    def device_readings(device: str) -> list[dict[str, Any]]:
        try:
            d = bytes.fromhex(device.removeprefix("0x"))
        except ValueError:
            raise HTTPException(status_code=400, detail={"error": "device must be a hex address"}) from None
        return core.device_readings(d)

    return router


def make_app(core: GatewayCore, *, limits: HttpLimits | None = None) -> Any:
    """The standalone gateway app, behind a :class:`~proofmesh.http_limits.BodyLimit`: a batch
    over ``limits.max_body_bytes`` (default: the home's ``http_max_body_mb``) gets 413."""
    from fastapi import FastAPI

    app = FastAPI(title="proofmesh edge gateway")
    app.include_router(make_router(core))
    return (limits or HttpLimits.from_settings()).wrap(app)


def serve(core: GatewayCore, host: str = "127.0.0.1", port: int = 8710, *, limits: HttpLimits | None = None) -> None:
    """Run the gateway until SIGINT/SIGTERM (uvicorn), then close it cleanly. ``limits``
    (default: the home's settings) bound body size and connections (503 past them)."""
    import uvicorn

    limits = limits or HttpLimits.from_settings()
    core.start()
    try:
        uvicorn.run(make_app(core, limits=limits), host=host, port=port, log_level="warning", access_log=False,
                    **limits.uvicorn_options())
    finally:
        core.close()
