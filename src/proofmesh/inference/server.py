"""The inference node: serves one registered model version over HTTP (FastAPI).

``POST /v1/infer`` runs the ONNX model (onnxruntime) and answers with the output and an
EIP-712 receipt signed by the node key (coincurve fast path). Modes per request:

* ``plain`` (also used by the router's ``redundant`` mode): outputs committed as
  fixed-point values (``COMMIT_VALUES``), disputable against another node's receipt;
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

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from proofmesh.crypto.merkle import MerkleTree, leaf_hash
from proofmesh.errors import InputError, NotAvailableError, ProofmeshError, VerificationError
from proofmesh.inference.model import OnnxModel, spec_to_json
from proofmesh.inference.tee import require_tee
from proofmesh.inference.receipt import (COMMIT_VALUES, COMMIT_ZK, Receipt, input_hash, output_values,
                                         values_hash)


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


class InferenceNode:
    """The node's logic, independent of HTTP (the FastAPI app is a thin layer)."""

    def __init__(self, config: NodeConfig, account, *, domain, registry=None, ledger=None,
                 check_registry: bool = True) -> None:
        self.config = config
        self.account = account
        self.address = account.address
        from coincurve import PrivateKey
        self._key = PrivateKey(bytes(account.key))   # built once: receipts are signed per request
        self.domain = domain                      # receipts' EIP-712 domain
        self.registry = registry                  # InferenceRegistry client (None: offline)
        self.ledger = ledger                      # payments Ledger (None: free node)
        self.model = OnnxModel(config.onnx_path, threads=config.threads)
        self.circuit = None
        if config.circuit_dir is not None:
            from proofmesh.inference.zk import Circuit
            self.circuit = Circuit(config.circuit_dir)
        if check_registry:
            self._check_registry()
        self.workdir = Path(config.workdir)
        (self.workdir / "proofs").mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._channels: dict[bytes, _Channel] = {}
        self._seen: dict[tuple[int, int], bytes] = {}
        self._proofs: dict[bytes, Any] = {}       # digest -> ZkProof | Exception | None (pending)
        self._epoch_leaves: list[tuple[bytes, bytes]] = []
        self._epochs: dict[bytes, tuple[int, bytes, list[bytes]]] = {}   # digest -> (epoch, proof_hash, path)
        self._jobs: "queue.Queue[_ProofJob | None]" = queue.Queue()
        self._prover = threading.Thread(target=self._prove_loop, name="proofmesh-prover", daemon=True)
        self._prover.start()
        self.served = 0
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

    def info(self) -> dict:
        c = self.circuit
        return {"node": self.address, "version": self.config.version, "price": str(self.config.price),
                "inputs": self.model.describe_inputs(),
                "input_specs": [spec_to_json(s) for s in self.model.inputs], "onnx_sha256": self.model.sha256.hex(),
                "zk": c is not None, "zk_batch": c.batch if c else None, "dev_srs": c.dev_srs if c else None,
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
        t0 = time.perf_counter()
        version = body.get("version")
        if version is None or int(version) != self.config.version:
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
        inputs = self.model.prepare(body["input"])
        with self._lock:
            if (nonce, 0) in self._seen:
                raise InputError("request nonce already used", fix="use a fresh random nonce per request")
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
        else:
            outputs = self.model.run(inputs)
            if self.config.tamper:
                outputs = [o + np.asarray(self.config.tamper, dtype=o.dtype) for o in outputs]
            values = output_values(outputs)
            receipt = Receipt(self.config.version, input_hash(inputs), values_hash(values), nonce, price,
                              COMMIT_VALUES).signed_with(self._key, self.domain)
            with self._lock:
                if cid is not None:
                    self._channels[cid].unpaid += price
            out = {"output": [o.tolist() for o in outputs] if len(outputs) > 1 else outputs[0].tolist(),
                   "values": values, "receipt": receipt.to_json()}
        with self._lock:
            self._seen[(nonce, 0)] = receipt.signature
            if len(self._seen) > 1_000_000:   # bounded memory; nonces are random 256-bit
                self._seen.clear()
            self.served += 1
        out["node"] = self.address
        out["ms"] = round((time.perf_counter() - t0) * 1000, 3)
        return out

    # --- proofs and epochs --------------------------------------------------------
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
        """Stop the prover after the proofs already queued."""
        self._jobs.put(None)
        self._prover.join(timeout=600)


class PaymentRequired(ProofmeshError):
    """HTTP 402: the request is not paid for."""


class UnknownVersion(ProofmeshError):
    """HTTP 404: the node does not serve that version."""


def _error(status: int, exc: ProofmeshError) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": exc.message, "fix": exc.fix,
                                                     "type": type(exc).__name__})


def create_app(node: InferenceNode) -> FastAPI:
    """The node's HTTP API."""
    app = FastAPI(title="proofmesh inference node", version="1")

    @app.get("/v1/health")
    def health() -> dict:
        return {"ok": True, "node": node.address}

    @app.get("/v1/info")
    def info() -> dict:
        return node.info()

    @app.post("/v1/infer")
    async def infer(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except Exception:
            return _error(422, InputError("body is not JSON", fix="POST a JSON object"))
        if not isinstance(body, dict):
            return _error(422, InputError("body must be a JSON object", fix="send {version, input, nonce, mode}"))
        try:
            # run the model in the threadpool: onnxruntime releases the GIL
            from starlette.concurrency import run_in_threadpool
            return JSONResponse(await run_in_threadpool(node.infer, body))
        except InputError as exc:
            return _error(422, exc)
        except PaymentRequired as exc:
            return _error(402, exc)
        except UnknownVersion as exc:
            return _error(404, exc)
        except NotAvailableError as exc:
            return _error(501, exc)
        except VerificationError as exc:
            return _error(402, exc)
        except ProofmeshError as exc:
            return _error(500, exc)

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
        """Re-execute a disputed request and vote on chain (the disputer sends the input)."""
        body = await request.json()
        try:
            from starlette.concurrency import run_in_threadpool
            return JSONResponse(await run_in_threadpool(vote_on_dispute, node, int(body["dispute"]), body["input"]))
        except (KeyError, ValueError, TypeError):
            return _error(422, InputError("send {dispute, input}", fix="dispute id and the disputed input"))
        except InputError as exc:
            return _error(422, exc)
        except ProofmeshError as exc:
            return _error(409, exc)

    return app


def vote_on_dispute(node: InferenceNode, dispute_id: int, raw_input: Any) -> dict:
    """Committee duty: check the input matches the dispute, re-run the model, vote."""
    if node.registry is None:
        raise NotAvailableError("node has no chain connection", fix="start it with a chain")
    st = node.registry.dispute_state(dispute_id)
    if st["version"] != node.config.version:
        raise InputError(f"dispute {dispute_id} is about version {st['version']}, this node serves "
                         f"{node.config.version}", fix="ask a node serving that version")
    inputs = node.model.prepare(raw_input)
    if input_hash(inputs) != bytes(st["input_hash"]):
        raise InputError("input does not match the disputed input hash", fix="send the exact disputed input")
    values = output_values(node.model.run(inputs))
    node.registry.vote(dispute_id, values, sender=node.account)
    return {"voted": True, "node": node.address}


class ServerHandle:
    """A node's uvicorn server running in a background thread (tests, benchmarks, demo)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        import socket

        import uvicorn

        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.url = f"http://{host}:{port}"
        # keep-alive longer than clients idle between calls, so pooled connections are
        # not closed under them (uvicorn's default is 5 s)
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                                    access_log=False, timeout_keep_alive=75))
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
