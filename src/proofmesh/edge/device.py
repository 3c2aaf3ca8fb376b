"""The device process: read a sensor, optionally infer on device, sign, batch, send, buffer.

Each tick (``--every``) the device takes the next value from its source (a file, a
synthetic generator, or stdin), runs the ONNX model if one is given (onnxruntime, on
the device), and signs a reading with the gateway's most recent beacon. Readings go to
a durable on-disk queue first (``pending.bin``) and are sent in batches; the queue only
shrinks when the gateway answers (accepted, or already had it). While the gateway is
unreachable the queue grows and is resent later: those readings carry a stale beacon,
so they are stored but earn no uptime (see :mod:`proofmesh.edge.epoch_tree`).

The sequence number is persisted (and fsynced) *before* a reading is signed, so a
restarted device never reuses one. Receipts are appended to ``receipts.jsonl``: they are
the device's evidence for an omission challenge.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from proofmesh.crypto.keccak import keccak256
from proofmesh.edge.identity import KeyHolder, load_key
from proofmesh.edge.reading import Reading, ReadingDomain, decode_record, encode_batch, make_reading
from proofmesh.errors import InputError, ProofmeshError
from proofmesh.http_reads import PEER_ERRORS, get_json, max_answer_bytes, read_answer

KEY_FILE = "device.key"
_DONE_CODES = {"ok", "replayed_seq"}   # the gateway has this seq: stop resending it
# A beacon is a few hundred bytes of JSON; a gateway answering more is not one to trust.
BEACON_MAX_BYTES = 64 * 1024


def sensor_source(kind: str, path: str | None = None, seed: int = 0) -> Iterator[bytes]:
    """Readings as bytes: ``file`` (one line each, cycled), ``generator``, or ``stdin``."""
    if kind == "file":
        if not path or not Path(path).is_file():
            raise InputError(f"--source file needs --input FILE (got {path!r})", fix="point --input at a text file")
        lines = [ln.rstrip("\n").encode() for ln in Path(path).read_text().splitlines() if ln.strip()]
        if not lines:
            raise InputError(f"{path} has no readings", fix="one reading per line")
        i = 0
        while True:
            yield lines[i % len(lines)]
            i += 1
    elif kind == "generator":
        rng = random.Random(seed)
        t = 0
        while True:
            # A temperature/humidity-like signal: daily sine plus noise, 4 values.
            vals = [20 + 5 * math.sin(t / 60) + rng.gauss(0, 0.3), 50 + 10 * math.cos(t / 90) + rng.gauss(0, 1),
                    rng.random(), float(t % 7)]
            yield json.dumps([round(v, 4) for v in vals]).encode()
            t += 1
    elif kind == "stdin":
        for line in sys.stdin:
            if line.strip():
                yield line.rstrip("\n").encode()
    else:
        raise InputError(f"unknown --source {kind!r}", fix="use file, generator or stdin")


class OnDeviceModel:
    """An ONNX model run with onnxruntime on the device; version = keccak of the model file."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise InputError(f"model file {path} not found", fix="pass --model PATH.onnx")
        import numpy as np
        import onnxruntime as ort

        self._np = np
        data = path.read_bytes()
        self.version = keccak256(data)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.width = int(inp.shape[-1]) if isinstance(inp.shape[-1], int) else None

    def infer(self, payload: bytes) -> bytes:
        """Parse the payload as a JSON list of numbers, run the model, return the output bytes."""
        np = self._np
        try:
            x = np.asarray(json.loads(payload), dtype=np.float32).reshape(1, -1)
        except (ValueError, TypeError) as exc:
            raise InputError(f"payload {payload[:40]!r} is not a JSON list of numbers", fix="feed numeric readings") from exc
        if self.width is not None and x.shape[1] != self.width:
            raise InputError(f"model expects {self.width} inputs, reading has {x.shape[1]}",
                             fix="match the model to the sensor")
        out = self.session.run(None, {self.input_name: x})[0]
        return np.ascontiguousarray(out, dtype=np.float32).tobytes()


@dataclass
class DeviceState:
    next_seq: int = 1
    nonce: bytes = b""
    nonce_interval: int = -1


class Device:
    """A running device: key, durable queue, gateway link."""

    def __init__(self, directory: Path, gateway_url: str, *, password: str | None = None,
                 model: OnDeviceModel | None = None, batch_size: int = 64, timeout: float = 3.0) -> None:
        self.dir = directory
        self.key: KeyHolder = load_key(directory / KEY_FILE, password)
        self.device_id = bytes.fromhex(json.loads((directory / "device.json").read_text())["device"][2:]) \
            if (directory / "device.json").exists() else self.key.address_bytes
        self.url = gateway_url.rstrip("/")
        self.model = model
        self.batch_size = batch_size
        self.client = httpx.Client(timeout=timeout)
        # The gateway is a peer the device does not control: every answer is read within a cap and
        # a total deadline of ``timeout`` (proofmesh.http_reads), not whole and per read.
        self.timeout = timeout
        self.max_answer = max_answer_bytes()
        self.state = self._load_state()
        self.pending: list[bytes] = self._load_pending()
        self.domain: ReadingDomain | None = None
        self.counts = {"made": 0, "sent_ok": 0, "rejected": 0, "send_failures": 0}

    # ----------------------------------------------------------------- persistence
    def _load_state(self) -> DeviceState:
        p = self.dir / "seq"
        return DeviceState(next_seq=int(p.read_text()) if p.exists() else 1)

    def _reserve_seq(self) -> int:
        seq = self.state.next_seq
        self.state.next_seq += 1
        _atomic_write(self.dir / "seq", str(self.state.next_seq).encode())
        return seq

    def _load_pending(self) -> list[bytes]:
        p = self.dir / "pending.bin"
        if not p.exists():
            return []
        data = p.read_bytes()
        out, off = [], 0
        while off + 4 <= len(data):
            n = int.from_bytes(data[off:off + 4], "big")
            if off + 4 + n > len(data):
                break
            out.append(data[off + 4:off + 4 + n])
            off += 4 + n
        return out

    def _save_pending(self) -> None:
        _atomic_write(self.dir / "pending.bin", b"".join(len(r).to_bytes(4, "big") + r for r in self.pending))

    # ----------------------------------------------------------------- gateway
    def refresh_beacon(self) -> bool:
        """Fetch the gateway's current beacon; False when it is unreachable."""
        try:
            b = get_json(f"{self.url}/edge/beacon", client=self.client, max_bytes=BEACON_MAX_BYTES,
                         deadline_s=self.timeout)
            domain = ReadingDomain(b["chain_id"], b["verifying_contract"])
            nonce, interval = bytes.fromhex(b["nonce"][2:]), b["interval"]
        except (*PEER_ERRORS, KeyError, TypeError, ValueError):   # unreachable, or not a beacon
            return False
        self.domain = domain
        self.state.nonce = nonce
        self.state.nonce_interval = interval
        return True

    def make(self, payload: bytes, timestamp: int | None = None) -> Reading:
        """Sign one reading (with on-device inference if a model is loaded) and queue it durably."""
        if self.domain is None or not self.state.nonce:
            raise ProofmeshError("no beacon yet: the gateway has never been reachable",
                                 fix="start the gateway, or check --gateway URL")
        model_version = output_hash = bytes(32)
        if self.model is not None:
            model_version = self.model.version
            output_hash = keccak256(self.model.infer(payload))
        r = make_reading(self.key.private_key, self.domain, device=self.device_id, seq=self._reserve_seq(),
                         nonce=self.state.nonce, timestamp=int(time.time()) if timestamp is None else timestamp,
                         payload=payload, model_version=model_version, output_hash=output_hash)
        self.pending.append(r.encode())
        self._save_pending()
        self.counts["made"] += 1
        return r

    def flush(self) -> int:
        """Send queued readings in batches; returns how many the gateway now holds."""
        done = 0
        while self.pending:
            batch = self.pending[:self.batch_size]
            try:
                answer = read_answer("POST", f"{self.url}/edge/readings", content=encode_batch(batch),
                                     headers={"content-type": "application/octet-stream"}, client=self.client,
                                     max_bytes=self.max_answer, deadline_s=self.timeout).raise_for_status().json()
                codes = answer["codes"] if isinstance(answer, dict) else None
                if not isinstance(codes, list):
                    raise TypeError("not a batch answer")
            except (*PEER_ERRORS, KeyError, TypeError, ValueError):
                self.counts["send_failures"] += 1
                return done
            if answer.get("receipt"):
                with (self.dir / "receipts.jsonl").open("a") as f:
                    f.write(json.dumps(answer["receipt"]) + "\n")
            keep = []
            for rec, code in zip(batch, codes):
                if code in _DONE_CODES:
                    done += 1
                    self.counts["sent_ok"] += 1
                elif code in ("timestamp_in_future", "unknown_or_revoked_key"):
                    # May succeed later (gateway restarted with a lagging view); keep a bounded time.
                    if time.time() - decode_record(rec).timestamp < 120:
                        keep.append(rec)
                    else:
                        self.counts["rejected"] += 1
                else:
                    self.counts["rejected"] += 1
            self.pending = keep + self.pending[len(batch):]
            self._save_pending()
            if keep:
                return done
        return done

    def run(self, source: Iterator[bytes], every: float, count: int | None = None,
            drain_timeout: float = 60.0) -> dict[str, Any]:
        """The device loop: one reading per ``every`` seconds, ``count`` times (None: forever),
        then up to ``drain_timeout`` seconds to hand the queue over."""
        made = 0
        next_tick = time.monotonic()
        while count is None or made < count:
            if not self.refresh_beacon() and self.domain is None:
                time.sleep(min(every, 0.5))
                continue
            self.make(next(source))
            made += 1
            self.flush()
            next_tick += every
            time.sleep(max(0.0, next_tick - time.monotonic()))
        deadline = time.monotonic() + drain_timeout     # final drain: the gateway may be restarting
        while self.pending and time.monotonic() < deadline:
            self.refresh_beacon()
            self.flush()
            if self.pending:
                time.sleep(0.5)
        return dict(self.counts, pending=len(self.pending), next_seq=self.state.next_seq)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
