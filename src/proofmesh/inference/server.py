"""The inference node: serves one registered model version over HTTP (FastAPI).

``POST /v1/infer`` runs the ONNX model (onnxruntime) and answers with the output and an
EIP-712 receipt signed by the node key (coincurve fast path). Modes per request:

* ``plain`` (also used by the router's ``redundant`` mode): outputs committed as
  fixed-point values (``COMMIT_VALUES``), disputable against another node's receipt;
  With ``"commit": "circuit"`` (routers' redundant mode on a version with a circuit) a
  node holding the circuit answers with the circuit's dequantised output in a
  ``COMMIT_CIRCUIT`` receipt that also commits the Poseidon input instance, so a
  dispute over it is settled by a zk proof instead of a vote;
* ``zk``: the answer is the ezkl circuit's dequantised output, committed as circuit
  instances (``COMMIT_ZK``); the proof is made in the background and fetched from
  ``GET /v1/proof/{receipt}``; proven receipts go into the node's next epoch root;
* ``tee``: refused with "no TEE available" (no enclave here; never faked).

Payment (when the node charges): one payment channel per (payer, node). A request
names its channel; the node extends one answer of credit: each request must carry a
voucher covering every earlier *unconditional* answer, so a client never pays for an
answer it has not checked. A ZK answer is paid by a voucher *conditional* on its
receipt (``POST /v1/pay``), redeemable once the proof is on chain or settled from an
unchallenged epoch.

The node refuses to start when the ONNX file's sha256 differs from the version's
registered ``onnx_hash``, or its circuit's verifying key differs from the registered one.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import Route

from proofmesh.crypto.merkle import MerkleTree, leaf_hash
from proofmesh.errors import InputError, NotAvailableError, ProofmeshError, VerificationError
from proofmesh.http_pool import PeerPool
from proofmesh.http_limits import DEFAULT_MAX_BODY_MB, MB, BodyLimit, BodyTooLarge, HttpLimits, error_json, parse_json
from proofmesh.inference.model import OnnxModel, check_finite, spec_to_json
from proofmesh.inference.nonces import UsedNonces
from proofmesh.inference.tee import require_tee
from proofmesh.inference import committee, wire
from proofmesh.inference.committee import Ballots, Defence
from proofmesh.inference.receipt import (COMMIT_CIRCUIT, COMMIT_ZK, Receipt, ValuesSealer, circuit_input_hash,
                                         input_hash)


class StartupRefused(ProofmeshError):
    """The node will not serve: its files do not match what the registry pins."""


@dataclass
class NodeConfig:
    """What one node serves and how."""

    version: int
    onnx_path: Path
    workdir: Path
    price: int = 0                         # MESH wei per request
    circuit_dir: Path | None = None        # ezkl circuit (zk mode) built for this ONNX
    threads: int = 1
    delay_ms: int = 0                      # artificial latency (benchmarks and failover tests)
    max_concurrency: int = 0               # requests run at once (0 = unlimited), like one accelerator
    # a request body over this is refused (413) as its headers arrive, before it is read
    # (http_max_body_mb in the home's settings; 64 MB holds a batch of 32 224x224 RGB images
    # as float32 three times over)
    max_body_mb: int = DEFAULT_MAX_BODY_MB
    # a request must arrive whole (headers and body) within this many seconds of its first
    # byte, or it is answered 408 and its connection closed: a client dripping bytes would
    # otherwise hold a connection slot for as long as it liked
    request_timeout_s: float = 60.0
    # inputs of answered requests kept in memory (oldest dropped first) so that, if one of
    # its receipts is disputed, the node can send the input to the drawn committee itself
    # (committee.defend) instead of depending on the disputer to
    keep_inputs_mb: int = 256
    # fault injection for tests of the fraud-proof path: a node that adds this to its
    # outputs is a lying node; never set outside tests
    tamper: float = 0.0


@dataclass
class _ProofJob:
    digest: bytes
    witness: Any


@dataclass
class _Channel:
    unpaid: int = 0                        # price of unconditional answers not yet covered
    zk_unpaid: set[bytes] = field(default_factory=set)  # zk receipts awaiting a conditional voucher


class _HashJob:
    """One request's input check and hash, done by whichever thread claims it first."""

    __slots__ = ("inputs", "claim", "done", "value", "error")

    def __init__(self, inputs: dict) -> None:
        self.inputs = inputs
        # two plain locks (C objects, cheap to make): claimed by the thread that does the
        # job; held until it is done (threading.Event builds a Condition in Python per job)
        self.claim = threading.Lock()
        self.done = threading.Lock()
        self.done.acquire()
        self.value: bytes | None = None
        self.error: BaseException | None = None

    def run(self) -> bool:
        """Do the job unless another thread has claimed it; False if it had."""
        if not self.claim.acquire(blocking=False):
            return False
        try:
            check_finite(self.inputs)
            self.value = input_hash(self.inputs)
        except BaseException as exc:     # handed to the request's thread by result()
            self.error = exc
        self.done.release()
        return True

    def result(self) -> bytes:
        """The input hash: computed here if the hasher thread has not started on it (a
        busy machine), else awaited (it is under way)."""
        if not self.run():
            self.done.acquire()
        if self.error is not None:
            raise self.error
        return self.value


class _InputHasher:
    """Checks and hashes a request's input on a thread of its own while the model runs
    (onnxruntime releases the GIL), taking both off the request's critical path when a
    core is free; when none is, the request's thread claims the job after the run and does
    it itself, as it would without this thread."""

    def __init__(self) -> None:
        self._q: "queue.SimpleQueue[_HashJob | None]" = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="proofmesh-input-hash", daemon=True).start()

    def submit(self, inputs: dict) -> _HashJob:
        job = _HashJob(inputs)
        self._q.put(job)
        return job

    def close(self) -> None:
        self._q.put(None)

    def _loop(self) -> None:
        while (job := self._q.get()) is not None:
            job.run()


class InferenceNode:
    """The node's logic, independent of HTTP (the FastAPI app is a thin layer)."""

    def __init__(self, config: NodeConfig, account, *, domain, registry=None, ledger=None,
                 check_registry: bool = True) -> None:
        self.config = config
        self.account = account
        self.address = account.address
        from coincurve import PrivateKey
        self._key = PrivateKey(bytes(account.key))   # built once: receipts are signed per request
        self._sealer = ValuesSealer(bytes(account.key), domain)
        self._hasher = _InputHasher()
        self.domain = domain                      # receipts' EIP-712 domain
        self.registry = registry                  # InferenceRegistry client (None: offline)
        self.ledger = ledger                      # payments Ledger (None: free node)
        self.model = OnnxModel(config.onnx_path, threads=config.threads)
        self.circuit = None
        if config.circuit_dir is not None:
            from proofmesh.inference.zk import Circuit
            self.circuit = Circuit(config.circuit_dir)
        self.circuit_scale: int | None = None   # set when CIRCUIT value receipts are safe to sign
        if check_registry:
            self._check_registry()
        self.workdir = Path(config.workdir)
        (self.workdir / "proofs").mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._channels: dict[bytes, _Channel] = {}
        self.nonces = UsedNonces(self.workdir / f"nonces-{config.version}.jsonl")   # answered; kept across restarts
        self._proofs: dict[bytes, Any] = {}       # digest -> ZkProof | Exception | None (pending)
        self._epoch_leaves: list[tuple[bytes, bytes]] = []
        self._epochs: dict[bytes, tuple[int, bytes, list[bytes]]] = {}   # digest -> (epoch, proof_hash, path)
        self._jobs: "queue.Queue[_ProofJob | None]" = queue.Queue()
        self._prover = threading.Thread(target=self._prove_loop, name="proofmesh-prover", daemon=True)
        self._prover.start()
        self.served = 0
        self.ballots = Ballots(self.workdir / f"ballots-{config.version}.jsonl")   # committee votes in flight
        self.defence = Defence(config.keep_inputs_mb * MB)     # answered inputs, for disputes naming this node
        self.peers = PeerPool()                                  # to committee members (committee.defend)
        self._slots = threading.Semaphore(config.max_concurrency) if config.max_concurrency else None

    # --- startup checks -----------------------------------------------------------
    def _check_registry(self) -> None:
        if self.registry is None:
            raise StartupRefused("no InferenceRegistry to check the model against",
                                 fix="connect the node to the chain the model is registered on")
        terms = self.registry.terms(self.config.version)
        if not terms.registered:
            raise StartupRefused(f"model version {self.config.version} has no serving terms in InferenceRegistry",
                                 fix="register it: `proofmesh inference register VERSION model.onnx`")
        if terms.onnx_hash != self.model.sha256:
            raise StartupRefused(
                f"{self.config.onnx_path} has sha256 {self.model.sha256.hex()}, but version {self.config.version} "
                f"pins {terms.onnx_hash.hex()}", fix="serve the exact ONNX file registered for this version")
        if self.circuit is not None:
            rec = self.registry.circuit(self.config.version)
            if not rec.registered:
                raise StartupRefused(f"version {self.config.version} has no registered circuit",
                                     fix="register it with `proofmesh inference circuit`, or serve without zk")
            if rec.vk_hash != self.circuit.vk_hash or rec.settings_hash != self.circuit.settings_hash:
                raise StartupRefused("the local circuit's verifying key/settings differ from the registered ones",
                                     fix="use the circuit directory the version's circuit was registered from")
            if self.circuit.onnx_hash != terms.onnx_hash:
                raise StartupRefused("the circuit was compiled from another ONNX file", fix="rebuild the circuit")
            try:   # audit L6: the registered verifier must be the one generated from this vk
                self.registry.check_circuit(self.config.version, self.circuit)
            except VerificationError as exc:
                raise StartupRefused(exc.message, fix=exc.fix) from None
            self.circuit_scale = self._checked_output_scale()

    def _checked_output_scale(self) -> int | None:
        """The on-chain output scale if it is this circuit's: a wrong one would let a proof
        slash this node's honest CIRCUIT receipts, so then it signs none (values only)."""
        from proofmesh.inference.registry import circuit_output_scale

        try:
            scale, mine = self.registry.output_scale(self.config.version), circuit_output_scale(self.circuit)
        except ProofmeshError:
            return None
        return scale if scale == mine else None

    def info(self) -> dict:
        c = self.circuit
        return {"node": self.address, "version": self.config.version, "price": str(self.config.price),
                "inputs": self.model.describe_inputs(),
                "input_specs": [spec_to_json(s) for s in self.model.inputs], "onnx_sha256": self.model.sha256.hex(),
                "zk": c is not None, "zk_batch": c.batch if c else None, "dev_srs": c.dev_srs if c else None,
                "circuit_receipts": self.circuit_scale is not None,
                "tee": False, "served": self.served}

    # --- payment ------------------------------------------------------------------
    def _charge(self, channel_hex: str | None, voucher: dict | None) -> bytes | None:
        """Check the request is paid up; returns the channel id (None for a free node)."""
        if self.ledger is None or self.config.price == 0:
            return None
        if not channel_hex:
            raise PaymentRequired("this node charges per request: name your payment channel",
                                  fix=f"open a channel to {self.address} and send 'channel' (and vouchers)")
        try:
            cid = bytes.fromhex(channel_hex.removeprefix("0x"))
        except ValueError:
            raise InputError("channel must be 32 bytes hex", fix="send the channel id as 0x + 64 hex digits") from None
        ch = self._channels.setdefault(cid, _Channel())
        if ch.zk_unpaid:
            raise PaymentRequired(f"{len(ch.zk_unpaid)} zk answer(s) not yet paid",
                                  fix="POST /v1/pay a voucher conditional on each zk receipt")
        if ch.unpaid:
            if voucher is None:
                raise PaymentRequired(f"previous answers ({ch.unpaid} wei) not paid",
                                      fix="attach a voucher covering every earlier answer")
            from proofmesh.payments import Voucher
            v = Voucher.from_json(voucher)
            if v.channel != cid or v.conditional:
                raise PaymentRequired("voucher is for another channel or conditional",
                                      fix="attach an unconditional voucher on the request's channel")
            try:
                self.ledger.accept(v, ch.unpaid)
            except VerificationError as exc:
                raise PaymentRequired(exc.message, fix=exc.fix) from None
            ch.unpaid = 0
        else:
            # first request on this channel: the channel must exist and pay this node
            self.ledger.check_channel(cid)   # VerificationError if not open / not paying us
        return cid

    def pay(self, voucher: dict, receipt_hex: str | None) -> dict:
        """A voucher sent outside a request: a zk answer's conditional one, or a final top-up."""
        from proofmesh.payments import Voucher
        v = Voucher.from_json(voucher)
        ch = self._channels.setdefault(v.channel, _Channel())
        if v.conditional:
            digest = v.condition
            if digest not in ch.zk_unpaid:
                raise InputError("no unpaid zk answer with that receipt on this channel",
                                 fix="condition the voucher on the zk receipt's digest")
            if self.registry is None or v.oracle != self.registry.address:
                raise PaymentRequired("conditional vouchers must name the InferenceRegistry as oracle",
                                      fix=f"oracle = {self.registry.address if self.registry else '?'}")
            self.ledger.accept(v, self.config.price)
            ch.zk_unpaid.discard(digest)
        else:
            self.ledger.accept(v, ch.unpaid)
            ch.unpaid = 0
        return {"accepted": True, "owed": str(self.ledger.owed(v.channel))}

    # --- inference ----------------------------------------------------------------
    def infer(self, body: dict) -> dict:
        """Answer one request (the JSON request object); returns the JSON answer."""
        return _jsonable(self._infer(body))

    def _infer(self, body: dict) -> dict:
        """:meth:`infer` with the output and values left as numpy arrays (serialised by
        orjson straight from the arrays on the HTTP path)."""
        t0 = time.perf_counter()
        version = body.get("version")
        try:
            version = int(version) if version is not None else None
        except (TypeError, ValueError):
            raise InputError(f"version must be an integer, not {version!r:.40}", fix="send the model version number") from None
        if version != self.config.version:
            raise UnknownVersion(f"this node serves version {self.config.version}, not {version}",
                                 fix="ask the router for a node serving your version")
        mode = body.get("mode", "plain")
        if mode == "tee":
            require_tee()
        if mode not in ("plain", "zk"):
            raise InputError(f"unknown mode {mode!r}", fix="use plain, zk or tee")
        try:
            nonce = int(body.get("nonce"))
            if not 0 <= nonce < 2**256:
                raise ValueError
        except (TypeError, ValueError):
            raise InputError("request nonce must be a uint256", fix="send a random 256-bit integer") from None
        if "input" not in body:
            raise InputError("missing 'input'", fix=f"send {self.model.describe_inputs()}")
        # in plain mode the finite-values check of binary tensors runs beside the model
        # (_InputHasher); the zk and circuit paths need finite input before they start
        inputs = self.model.prepare(body["input"], finite=mode != "plain" or body.get("commit") == "circuit")
        with self._lock:
            self.nonces.check(nonce)     # NonceReused / NonceStale (inference/nonces.py)
            cid = self._charge(body.get("channel"), body.get("voucher"))
        if self._slots is not None:
            self._slots.acquire()
        try:
            return self._answer(body, inputs, nonce, cid, mode, t0)
        finally:
            if self._slots is not None:
                self._slots.release()

    def _answer(self, body: dict, inputs: dict, nonce: int, cid: bytes | None, mode: str, t0: float) -> dict:
        if self.config.delay_ms:
            time.sleep(self.config.delay_ms / 1000)
        price = self.config.price
        if mode == "zk":
            if self.circuit is None:
                raise NotAvailableError(f"version {self.config.version} has no circuit on this node",
                                        fix="use verify=redundant")
            x = next(iter(inputs.values()))
            w = self.circuit.witness(x, self.workdir / "witness")
            answer = w.answer
            receipt = Receipt(self.config.version, w.input_hash_bytes, w.output_hash, nonce, price, COMMIT_ZK)
            receipt = receipt.signed_with(self._key, self.domain)
            digest = receipt.digest(self.domain)
            with self._lock:
                self._proofs[digest] = None
                if cid is not None:
                    self._channels[cid].zk_unpaid.add(digest)
            self._jobs.put(_ProofJob(digest, w))
            out = {"output": answer.tolist(), "receipt": receipt.to_json(), "receipt_digest": "0x" + digest.hex(),
                   "instances": [hex(v) for v in w.outputs], "proof": "pending"}
        elif self.circuit is not None and body.get("commit") == "circuit":
            # (a node without a circuit answers plain values: the router refuses their kind)
            receipt, out = self._circuit_answer(inputs, nonce, price, cid)
        else:
            job = self._hasher.submit(inputs)        # input check + hash beside the model run
            t_run = time.perf_counter()
            outputs = self.model.run(inputs)
            run_ms = (time.perf_counter() - t_run) * 1000
            ih = job.result()
            if self.config.tamper:
                outputs = [o + np.asarray(self.config.tamper, dtype=o.dtype) for o in outputs]
            values, receipt = self._sealer.seal(self.config.version, ih, nonce, price, outputs)
            self.defence.keep(ih, inputs)
            with self._lock:
                if cid is not None:
                    self._channels[cid].unpaid += price
            # run_ms: the model run alone, so a client can tell the node's own cost from the model's
            out = {"output": outputs if len(outputs) > 1 else outputs[0], "values": values,
                   "receipt": receipt.to_json(), "run_ms": round(run_ms, 3)}
        with self._lock:
            self.nonces.add(nonce)       # in memory; written behind, bounded by the replay window
            self.served += 1
        out["node"] = self.address
        out["ms"] = round((time.perf_counter() - t0) * 1000, 3)
        return out

    # --- proofs and epochs --------------------------------------------------------
    def _circuit_answer(self, inputs: dict, nonce: int, price: int, cid: bytes | None) -> tuple[Receipt, dict]:
        """A CIRCUIT value receipt: the circuit's dequantised output as fixed-point values,
        ``input_hash`` binding the raw input and its Poseidon instance (a dispute between
        two of them is settled by a proof of that instance)."""
        if self.circuit is None or self.circuit_scale is None:
            raise NotAvailableError(f"this node signs no circuit receipts for version {self.config.version}",
                                    fix="ask a node with the registered circuit, or omit commit=circuit")
        w = self.circuit.witness(next(iter(inputs.values())), self.workdir / "witness")
        w.path.unlink(missing_ok=True)   # nothing to prove here: the disputer proves
        answer = circuit_output(w, self.circuit_scale)
        if self.config.tamper:
            answer = answer + self.config.tamper
        values, receipt = self._sealer.seal(self.config.version, circuit_input_hash(input_hash(inputs), w.input_hash),
                                            nonce, price, [answer], COMMIT_CIRCUIT)
        self.defence.keep(receipt.input_hash, inputs)
        with self._lock:
            if cid is not None:
                self._channels[cid].unpaid += price
        return receipt, {"output": answer, "values": values, "receipt": receipt.to_json(),
                         "circuit_input": hex(w.input_hash)}

    def _prove_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                proof = self.circuit.prove(job.witness, self.workdir / "proofs" / f"{job.digest.hex()}.json")
                with self._lock:
                    self._proofs[job.digest] = proof
                    self._epoch_leaves.append((job.digest, proof.proof_hash))
            except Exception as exc:  # recorded; the client sees it and may challenge
                with self._lock:
                    self._proofs[job.digest] = exc
            finally:
                try:
                    os.unlink(job.witness.path)
                except OSError:
                    pass

    def proof(self, digest: bytes) -> tuple[int, dict]:
        with self._lock:
            if digest not in self._proofs:
                return 404, {"error": "unknown receipt", "fix": "use the receipt_digest of a zk answer from this node"}
            p = self._proofs[digest]
        if p is None:
            return 202, {"status": "pending", "queued": self._jobs.qsize()}
        if isinstance(p, Exception):
            return 500, {"error": f"proving failed: {p}"}
        out = p.to_json()
        out["proof_hash"] = "0x" + p.proof_hash.hex()
        if digest in self._epochs:
            epoch, proof_hash, mproof = self._epochs[digest]
            out["epoch"] = {"id": epoch, "merkle_proof": ["0x" + h.hex() for h in mproof]}
        return 200, out

    def wait_proofs(self, timeout: float = 300.0) -> None:
        """Block until every queued proof is done (tests, CLI)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(v is not None for v in self._proofs.values()):
                    return
            time.sleep(0.05)
        raise TimeoutError("proofs still pending")

    def commit_epoch(self) -> int | None:
        """Commit the Merkle root of proven (receipt, proof hash) leaves since the last epoch."""
        with self._lock:
            leaves = list(self._epoch_leaves)
            self._epoch_leaves.clear()
        if not leaves:
            return None
        hashes = [leaf_hash(["bytes32", "bytes32"], [d, ph]) for d, ph in leaves]
        tree = MerkleTree(hashes)
        try:
            epoch = self.registry.commit_epoch(tree.root, len(leaves), sender=self.account)
        except Exception:
            with self._lock:   # not committed: keep the leaves for the next attempt
                self._epoch_leaves[:0] = leaves
            raise
        with self._lock:
            for i, (d, ph) in enumerate(leaves):
                self._epochs[d] = (epoch, ph, tree.proof(i))
        return epoch

    def close(self) -> None:
        """Stop the prover after the proofs already queued, and the input hasher."""
        self._hasher.close()
        self._jobs.put(None)
        self._prover.join(timeout=600)
        self.nonces.close()
        self.ballots.close()
        self.peers.close()


def _jsonable(out: dict) -> dict:
    o = out.get("output")
    if isinstance(o, np.ndarray):
        out["output"] = o.tolist()
    elif isinstance(o, list) and o and isinstance(o[0], np.ndarray):
        out["output"] = [a.tolist() for a in o]
    if isinstance(out.get("values"), np.ndarray):
        out["values"] = out["values"].tolist()
    return out


class PaymentRequired(ProofmeshError):
    """HTTP 402: the request is not paid for."""


class UnknownVersion(ProofmeshError):
    """HTTP 404: the node does not serve that version."""


def _error(status: int, exc: ProofmeshError) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": exc.message, "fix": exc.fix,
                                                     "type": type(exc).__name__})


def create_app(node: InferenceNode) -> FastAPI:
    """The node's HTTP API."""
    app = NodeApp(title="proofmesh inference node", version="1")
    # every route but the fast /v1/infer (NodeApp.__call__ checks that one itself)
    app.add_middleware(BodyLimit, max_bytes=node.config.max_body_mb * MB)

    @app.get("/v1/health")
    def health() -> dict:
        return {"ok": True, "node": node.address}

    @app.get("/v1/info")
    def info() -> dict:
        return node.info()

    dispatch = _Dispatch(node)

    async def infer(request: Request) -> Response:
        # mounted into another app (the node daemon), whose event loop serves its other
        # services: the model always runs on a worker thread
        accept = request.headers.get("accept", "")
        status, data = await dispatch.answer(await request.body(), request.headers.get("content-type", ""),
                                             inline=False, accept=accept)
        return Response(data, status_code=status, media_type=_media(status, accept))

    app.dispatch = dispatch      # the hot path (NodeApp.__call__)
    app.router.routes.append(Route("/v1/infer", infer, methods=["POST"], include_in_schema=False))

    @app.post("/v1/pay")
    async def pay(request: Request) -> JSONResponse:
        body = await request.json()
        try:
            return JSONResponse(node.pay(body.get("voucher") or {}, body.get("receipt")))
        except (InputError, VerificationError, PaymentRequired) as exc:
            return _error(402 if not isinstance(exc, InputError) else 422, exc)

    @app.get("/v1/proof/{digest}")
    def proof(digest: str) -> JSONResponse:
        try:
            d = bytes.fromhex(digest.removeprefix("0x"))
        except ValueError:
            raise HTTPException(422, "digest must be hex") from None
        status, body = node.proof(d)
        return JSONResponse(status_code=status, content=body)

    @app.post("/v1/committee/vote")
    async def committee_vote(request: Request) -> JSONResponse:
        """Re-execute a disputed request and commit a vote on chain (the disputer sends the input)."""
        return await _committee(request, lambda body: committee.vote_on_dispute(node, int(body["dispute"]),
                                                                                body["input"]))

    @app.post("/v1/committee/reveal")
    async def committee_reveal(request: Request) -> JSONResponse:
        """Reveal this node's committed vote once the vote window is over."""
        return await _committee(request, lambda body: committee.reveal_vote_on_dispute(node, int(body["dispute"]),
                                                                                       body.get("input")))

    async def _committee(request: Request, duty) -> JSONResponse:
        try:
            body = await request.json()
            from starlette.concurrency import run_in_threadpool
            return JSONResponse(await run_in_threadpool(duty, body))
        except (KeyError, ValueError, TypeError):
            return _error(422, InputError("send {dispute, input}", fix="dispute id and the disputed input"))
        except InputError as exc:
            return _error(422, exc)
        except ProofmeshError as exc:
            return _error(409, exc)

    return app


CONCURRENT_WINDOW_S = 0.5    # a connection that sent a request this recently is an active client


class _Dispatch:
    """Runs a node's requests: inline on the event loop while the node is idle, on worker
    threads while another request is running there.

    Handing a request to a worker thread and back costs the event loop more than the node's
    own checks, hashing and signing (a cross-thread wake-up each way), which is the whole of
    a small model's overhead budget. Inline, the loop is busy for one model run, as the
    node's one onnxruntime session would be anyway; a request that sleeps (delay_ms), waits
    for a slot (max_concurrency), builds a zk witness or is paid for (a channel look-up, the
    payment journal) always goes to a worker, and so does any request arriving while one
    runs there, so those never queue behind each other.

    Inline is for one client at a time: a request running inline holds the event loop, so a
    second connection's request waits unread and the node uses one core however many it
    has (measured at batch 32 with two clients on two cores: 5,000 rows/s against raw
    onnxruntime's 11,000 with two threads). So while more than one connection has sent a
    request in the last :data:`CONCURRENT_WINDOW_S`, requests go to worker threads and
    run side by side (onnxruntime releases the GIL)."""

    def __init__(self, node: InferenceNode) -> None:
        self.node = node
        self.pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="proofmesh-infer")
        self.busy = 0          # requests on worker threads (touched only on the event loop)
        self._seen: dict[int, float] = {}     # connection id -> its last request (monotonic s)
        # a paid node may touch the chain (a new channel) or its journal per request: never
        # on the event loop
        self.inline_ok = (not node.config.delay_ms and not node.config.max_concurrency
                          and (node.ledger is None or not node.config.price))
        self.max_body = node.config.max_body_mb * MB

    def too_large(self, size: int) -> tuple[int, bytes]:
        """The 413 answer to a request body of ``size`` bytes (or more) over ``max_body``."""
        return 413, error_json(BodyTooLarge(self.max_body, size))

    async def answer(self, raw: bytes, content_type: str, *, inline: bool = True,
                     accept: str = "") -> tuple[int, bytes]:
        """``POST /v1/infer``: (HTTP status, JSON bytes). orjson in and out; the binary
        form (wire.py) skips base64 and JSON lists. ``inline=False`` where the event loop
        serves other things too (the routes mounted in the node daemon). ``accept`` naming
        ``wire.ANSWER_TYPE`` gets the binary answer frame."""
        if inline:
            now = self.answer_now(raw, content_type, accept)
            return now if isinstance(now, tuple) else await self.answer_offloaded(now, accept)
        try:
            body = self._decode(raw, content_type)
        except ProofmeshError as exc:
            return self._failed(exc)
        return await self.answer_offloaded(body, accept)

    def arrived(self, conn: int) -> bool:
        """Note a request on connection ``conn``; whether it may run inline (no other
        connection sent one within the window)."""
        now = time.monotonic()
        self._seen[conn] = now
        if len(self._seen) == 1:
            return True
        for other, t in list(self._seen.items()):
            if now - t > CONCURRENT_WINDOW_S:
                del self._seen[other]
        return len(self._seen) == 1

    def closed(self, conn: int) -> None:
        self._seen.pop(conn, None)

    def answer_now(self, raw: bytes, content_type: str, accept: str = "", *,
                   alone: bool = True) -> "tuple[int, bytes] | dict":
        """Answer on this thread when the node may run inline (``alone``: no other client is
        active, see :meth:`arrived`); otherwise the decoded request, for
        :meth:`answer_offloaded` (no event-loop round trip either way)."""
        try:
            body = self._decode(raw, content_type)
            if not (alone and self.inline_ok and not self.busy and body.get("mode", "plain") == "plain"):
                return body
            return 200, _encode(self.node._infer(body), accept)
        except ProofmeshError as exc:
            return self._failed(exc)

    async def answer_offloaded(self, body: dict, accept: str = "") -> tuple[int, bytes]:
        """Answer a decoded request on a worker thread."""
        self.busy += 1
        try:
            out = await asyncio.get_running_loop().run_in_executor(self.pool, self.node._infer, body)
            return 200, _encode(out, accept)
        except ProofmeshError as exc:
            return self._failed(exc)
        finally:
            self.busy -= 1

    @staticmethod
    def _decode(raw: bytes, content_type: str) -> dict:
        return wire.decode_request(raw) if content_type.startswith(wire.CONTENT_TYPE) else _loads(raw)

    @staticmethod
    def _failed(exc: ProofmeshError) -> tuple[int, bytes]:
        status = _STATUS.get(type(exc))
        if status is None:
            status = next((v for k, v in _STATUS.items() if isinstance(exc, k)), 500)
        return status, orjson.dumps({"error": exc.message, "fix": exc.fix, "type": type(exc).__name__})


def _encode(out: dict, accept: str) -> bytes:
    if wire.ANSWER_TYPE in accept:
        return wire.encode_answer(out)    # the model's own arrays: a float32 output stays float32
    o = out.get("output")
    # orjson writes a float32 as its shortest float32 decimal, which a JSON reader parses
    # to a different float64 than the value the receipt committed (rarely, a different
    # fixed-point value); as float64 the numbers are the float32 values exactly
    if isinstance(o, np.ndarray) and o.dtype == np.float32:
        out["output"] = o.astype(np.float64)
    elif isinstance(o, list) and o and isinstance(o[0], np.ndarray):
        out["output"] = [a.astype(np.float64) if a.dtype == np.float32 else a for a in o]
    return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)


_STATUS = {InputError: 422, PaymentRequired: 402, UnknownVersion: 404, NotAvailableError: 501, VerificationError: 402}


class NodeApp(FastAPI):
    """The node's FastAPI app, answering ``POST /v1/infer`` before FastAPI's own machinery
    (its per-request telemetry check, exception middlewares, router matching and request
    wrappers cost more event-loop time than the node's checks, hashing and signing). Every
    other route, and ``/v1/infer`` where the routes are mounted into another app (the node
    daemon), goes through FastAPI as usual, to the same :class:`_Dispatch`."""

    dispatch: "_Dispatch | None" = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self.dispatch is None or scope["type"] != "http" or scope["path"] != "/v1/infer" \
                or scope["method"] != "POST":
            return await super().__call__(scope, receive, send)
        ctype = next((v for k, v in scope["headers"] if k == b"content-type"), b"").decode("latin-1")
        accept = next((v for k, v in scope["headers"] if k == b"accept"), b"").decode("latin-1")
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        size = int(declared) if declared is not None and declared.isdigit() else 0
        chunks, read = [], 0
        while size <= self.dispatch.max_body:          # a body over the limit is never read whole
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunks.append(msg.get("body", b""))
            read += len(chunks[-1])
            size = max(size, read)
            if not msg.get("more_body"):
                break
        if size > self.dispatch.max_body:
            status, data = self.dispatch.too_large(size)
        else:
            status, data = await self.dispatch.answer(chunks[0] if len(chunks) == 1 else b"".join(chunks), ctype,
                                                      accept=accept)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", _media(status, accept).encode()),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})


def _media(status: int, accept: str) -> str:
    return wire.ANSWER_TYPE if status == 200 and wire.ANSWER_TYPE in accept else "application/json"


def _loads(raw: bytes) -> dict:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = parse_json(raw)   # integers beyond 64 bits (e.g. a 256-bit nonce sent as a number)
    if not isinstance(body, dict):
        raise InputError("body must be a JSON object", fix="send {version, input, nonce, mode}")
    return body


def uvicorn_config(app: Any, host: str, port: int, *, limits: HttpLimits | None = None, **kw: Any) -> Any:
    """uvicorn settings for a node: httptools and uvloop when installed (the pure-Python
    h11 parser cost more per request than the node's own work), no access log, and the
    connection limits of ``limits`` (503 past ``max_connections``; idle keep-alive closed
    after ``keep_alive_s``, longer than clients idle between calls)."""
    import importlib.util

    import uvicorn

    opts: dict[str, Any] = {"log_level": "warning", "access_log": False, "proxy_headers": False,
                            **(limits or HttpLimits()).uvicorn_options()}
    if importlib.util.find_spec("httptools"):
        from proofmesh.inference.httpfast import protocol_for

        opts["http"] = protocol_for(app) or "httptools"
    if importlib.util.find_spec("uvloop"):
        opts["loop"] = "uvloop"
    opts.update(kw)
    return uvicorn.Config(app, host=host, port=port, **opts)


def run_node(node: InferenceNode, host: str, port: int) -> None:
    """Serve ``node`` in this process until interrupted (``proofmesh serve``, benchmarks)."""
    import gc

    import uvicorn

    app = create_app(node)
    # everything loaded so far (web3, onnxruntime, the ABI caches) lives as long as the
    # process: keep it out of the garbage collector's full passes, which otherwise scan it
    # all every few thousand requests' worth of allocations
    gc.collect()
    gc.freeze()
    uvicorn.Server(uvicorn_config(app, host, port)).run()


def circuit_output(w, scale: int) -> np.ndarray:
    """The circuit's output as exact float64 (felt / 2**scale), shaped like ``w.answer``: what
    CIRCUIT receipts commit (x 1e6, rounded). ``w.answer`` is float32, which for large outputs
    is off by more than the tolerance from what the contract dequantises from a proof; this is
    within one unit of it while |felt| < 2**39 (felt x 15625 fits a float64 significand)."""
    from proofmesh.inference.zk import FIELD_P

    signed = [float(v - FIELD_P if v > FIELD_P // 2 else v) for v in w.outputs]   # exact below 2**53
    return (np.array(signed) / float(2 ** scale)).reshape(w.answer.shape)


class ServerHandle:
    """A node's uvicorn server running in a background thread (tests, benchmarks, demo)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, *,
                 limits: HttpLimits | None = None) -> None:
        import socket

        import uvicorn

        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.url = f"http://{host}:{port}"
        self.server = uvicorn.Server(uvicorn_config(app, host, port, limits=limits))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, timeout: float = 20.0) -> "ServerHandle":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"node server at {self.url} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def kill(self) -> None:
        """Die like a crashed process: stop listening and reset every open connection
        at once, in-flight requests included (failover tests and the demo)."""
        servers = list(self.server.servers)
        if not servers:
            return
        loop = servers[0].get_loop()

        def abort() -> None:
            for s in servers:
                s.close()
            for conn in list(self.server.server_state.connections):
                conn.transport.abort()

        self.server.force_exit = True
        self.server.should_exit = True
        loop.call_soon_threadsafe(abort)
