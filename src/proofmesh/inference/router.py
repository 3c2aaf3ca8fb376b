"""The router: find nodes serving a model version, pick one, verify, pay, fail over.

Nodes are found in NodeRegistry (INFERENCE role, active stake) and asked over HTTP
which version they serve. Each candidate is scored by stake x reputation / latency
(latency: exponentially weighted average of measured round trips; reputation: share of
good answers, starting at 1). A node that dies mid-request (connection error or
timeout) is marked down and the request goes to the next node.

Every answer is checked before it is paid for: the receipt must be signed by the node
that answered, commit to *our* input (recomputed locally) and to the output returned.
Payment is one channel per (payer, node): each request carries a voucher covering the
previous answers from that node (the node extends one answer of credit), so many
requests settle in one on-chain transaction; a zk answer is paid by a voucher
conditional on its receipt.

Verification modes: ``none`` (one node), ``redundant`` (k nodes, answers compared with
the version's tolerance; conflicting receipts become an on-chain dispute voted by
bonded nodes that re-execute — or, on a version with a zk circuit when the router holds
that circuit, CIRCUIT receipts whose dispute the router settles at once with a proof),
``zk`` (circuit output + proof, checked locally and
optionally on chain), ``tee`` (NotAvailableError: no enclave here).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from proofmesh import http_reads
from proofmesh.http_pool import PeerConnectionError, PeerPool
from proofmesh.errors import InputError, NotAvailableError, ProofmeshError, VerificationError
from proofmesh.http_limits import BadJSON
from proofmesh.inference import wire
from proofmesh.inference.model import prepare_inputs, spec_from_json
from proofmesh.inference.nonces import dated_nonce
from proofmesh.inference.tee import require_tee
from proofmesh.inference.receipt import (COMMIT_CIRCUIT, COMMIT_VALUES, COMMIT_ZK, FIXED_POINT, Receipt,
                                         circuit_input_hash, input_hash, instances_hash, values_hash)

ROLE_INFERENCE = 4
# a node that fails these is down for a while and the request goes to the next: it did not
# answer (refused, reset, per-read timeout), or flooded or stalled its answer past the cap or
# the deadline
_NODE_DOWN = (PeerConnectionError, http_reads.AnswerTooLarge, http_reads.AnswerTimeout)


class NoNodeError(ProofmeshError):
    """No live node serves the requested version."""


@dataclass
class NodeHandle:
    address: str
    endpoint: str
    stake: int
    price: int = 0
    zk: bool = False
    circuit_receipts: bool = False   # signs CIRCUIT value receipts (holds the circuit, scale checked)
    dev_srs: bool | None = None
    latency: float = 0.05          # seconds, EWMA
    good: int = 0
    bad: int = 0
    down_until: float = 0.0
    inflight: int = 0              # requests this router has open at the node now
    last_error: str = ""

    @property
    def reputation(self) -> float:
        return (self.good + 1) / (self.good + self.bad + 1)

    def score(self) -> float:
        # stake (in MESH) and reputation attract traffic, latency and open requests repel it,
        # so concurrent requests spread across nodes instead of piling on the best one
        return (self.stake / 1e18 + 1.0) * self.reputation / max(self.latency, 1e-4) / (1 + self.inflight)


@dataclass
class Answer:
    """A checked answer: output, the node's receipt, and what verified it."""

    output: Any
    receipt: Receipt
    node: str
    mode: str
    values: list[int] | None = None
    receipt_digest: bytes | None = None
    proof: Any = None
    agreeing: list[str] = field(default_factory=list)
    dispute: int | None = None
    settled: dict | None = None       # a CIRCUIT dispute settled by proof: {a_wrong, b_wrong, slashed}
    failovers: int = 0


def _values_array(values: Any, node: str) -> np.ndarray:
    """An answer's fixed-point values as int64s: the binary answer's array as it came (a
    Python int per value cost ~0.1 ms at batch 32), a JSON list checked value by value."""
    if isinstance(values, np.ndarray):
        if values.dtype != np.int64 or values.ndim != 1:
            raise VerificationError(f"node {node} sent values as {values.dtype} {values.shape}, not a flat int64 array",
                                    fix="the node is misbehaving; the router tries another")
        return values
    try:
        return np.asarray([int(v) for v in values], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise VerificationError(f"node {node} sent values that are not int64s",
                                fix="the node is misbehaving; the router tries another") from None


class Router:
    """Client-side router for one model version."""

    def __init__(self, chain, version: int, *, account=None, wallet=None, model=None, deposit: int = 10**18,
                 timeout: float = 30.0, registry=None, circuit=None, workdir=None) -> None:
        from proofmesh.inference.registry import InferenceRegistry

        self.chain = chain
        self.version = int(version)
        self.account = account or chain.account
        self.registry = registry or InferenceRegistry(chain)
        self.domain = self.registry.domain
        self.terms = self.registry.terms(self.version)
        if not self.terms.registered:
            raise InputError(f"model version {self.version} has no serving terms in InferenceRegistry",
                             fix="register it first (proofmesh inference register) or check the version id")
        self.wallet = wallet
        self.model = model           # optional local OnnxModel: checks input shape/dtype before sending
        self.deposit = deposit
        # a node found on chain is not trusted to bound its own answer: every answer is read
        # within a byte cap and a total deadline, on kept-alive connections (http_pool: the
        # router's client is part of every answer's latency)
        self.http = PeerPool()
        self.timeout = timeout
        home = getattr(chain, "home", None)
        self.max_answer = http_reads.max_answer_bytes(home.settings if home is not None else None)
        self.nodes: dict[str, NodeHandle] = {}
        self._lock = threading.Lock()
        self._hashed = threading.local()     # this thread's request: (inputs, input_hash(inputs))
        self._specs = None                     # input specs learnt from a node's /v1/info
        self._unpaid: dict[str, int] = {}      # node -> price of checked answers not yet in a voucher
        self._disputes: dict[int, Any] = {}    # dispute id -> the disputed input (for the committee)
        self._committees: dict[int, list[str]] = {}    # dispute id -> nodes that committed votes
        # the version's circuit (zk.Circuit) held locally: redundant mode then asks for CIRCUIT
        # receipts, checks their Poseidon input instance and settles conflicts with a proof
        self.circuit = circuit
        self.workdir = workdir
        self._circuit_usable: bool | None = None
        self._last_circuit_input: tuple | None = None   # (raw input hash, _circuit_input result)

    # --- discovery ----------------------------------------------------------------
    def discover(self) -> list[NodeHandle]:
        """Nodes with the INFERENCE role and active stake that answer /v1/info for our version."""
        from proofmesh.chain.core import Registry

        found = []
        for n in Registry(self.chain).nodes_with_role(ROLE_INFERENCE):
            if not n.endpoint.startswith("http"):
                continue
            if self._leaving(n.address):
                continue   # withdrawing its service bond: its answers may no longer be slashable
            try:
                t0 = time.perf_counter()
                # ?version=: a daemon may serve several versions on one endpoint
                info = self._peer("GET", n.endpoint.rstrip("/") + "/v1/info", params={"version": self.version},
                                  max_bytes=1 << 20, deadline_s=10.0).raise_for_status().json()
                rtt = time.perf_counter() - t0
            except http_reads.PEER_ERRORS:
                continue
            if not isinstance(info, dict):
                continue
            if int(info.get("version", -1)) != self.version or info.get("node", "").lower() != n.address.lower():
                continue   # wrong version, or an endpoint answering for another key
            prev = self.nodes.get(n.address)
            if self._specs is None and info.get("input_specs"):
                self._specs = [spec_from_json(d) for d in info["input_specs"]]
            h = NodeHandle(n.address, n.endpoint.rstrip("/"), n.stake, int(info.get("price", 0)),
                           bool(info.get("zk")), info.get("dev_srs"), latency=rtt)
            h.circuit_receipts = bool(info.get("circuit_receipts"))
            if prev is not None:
                h.good, h.bad, h.latency = prev.good, prev.bad, prev.latency
            found.append(h)
        with self._lock:
            self.nodes = {h.address: h for h in found}
        return found

    def _leaving(self, node: str) -> bool:
        from proofmesh.inference.registry import InferenceRegistry

        try:
            return InferenceRegistry(self.chain).bond_unlock_at(node) != 0
        except Exception:  # noqa: BLE001 - an older deployment without the view
            return False

    def ranked(self, *, zk: bool = False, circuit: bool = False) -> list[NodeHandle]:
        now = time.monotonic()
        cands = [h for h in self.nodes.values() if h.down_until <= now and (h.zk or not zk)
                 and (h.circuit_receipts or not circuit)]
        return sorted(cands, key=lambda h: -h.score())

    # --- one request to one node --------------------------------------------------
    def _body(self, node: NodeHandle, data: Any, mode: str, nonce: int) -> dict:
        body = {"version": self.version, "input": data, "nonce": str(nonce), "mode": mode}
        if mode == "circuit":
            body.update(mode="plain", commit="circuit")
        if node.price and self.wallet is not None:
            cid = self.wallet.ensure_channel(node.address, self.deposit)
            body["channel"] = "0x" + cid.hex()
            with self._lock:
                owed_unpaid = self._unpaid.pop(node.address, 0)
            if owed_unpaid:
                # cumulative: if this request is lost, the next voucher still covers it
                body["voucher"] = self.wallet.pay(node.address, owed_unpaid).to_json()
        return body

    def _send(self, node: NodeHandle, data: Any, mode: str, *, reserved: bool = False) -> dict:
        nonce = dated_nonce()     # dated: replay-proof for good (nodes refuse stale dates)
        if not reserved:
            with self._lock:
                node.inflight += 1
        try:
            body = self._body(node, data, mode, nonce)
            if isinstance(data, dict) and data and all(isinstance(v, np.ndarray) for v in data.values()):
                # checked arrays go as raw bytes (wire.py): no base64, no JSON lists
                kw: dict[str, Any] = {"content": wire.encode_request(body, data),
                                      "headers": {"content-type": wire.CONTENT_TYPE, "accept": wire.ANSWER_TYPE}}
            else:
                kw = {"json": body}
            # a daemon serving several versions on one endpoint routes by this header
            # (without parsing a binary body)
            kw["headers"] = {**kw.get("headers", {}), "x-proofmesh-version": str(self.version)}
            t0 = time.perf_counter()
            r = self._peer("POST", node.endpoint + "/v1/infer", **kw)
        finally:
            with self._lock:
                node.inflight -= 1
        dt = time.perf_counter() - t0
        node.latency = 0.8 * node.latency + 0.2 * dt
        if r.status_code != 200:
            try:
                err = r.json()
            except BadJSON:
                err = None
            if not isinstance(err, dict):
                err = {"error": r.excerpt}
            exc_type = {422: InputError, 501: NotAvailableError}.get(r.status_code, ProofmeshError)
            raise exc_type(f"node {node.address}: {err.get('error')}", fix=err.get("fix"))
        # the binary answer frame (asked for with the binary request): output and values as
        # raw bytes, no JSON numbers to parse
        try:
            out = wire.decode_answer(r.content) if r.headers.get("content-type") == wire.ANSWER_TYPE else r.json()
            if not isinstance(out, dict):
                raise BadJSON("the answer is not a JSON object", fix="")
        except InputError as exc:     # (BadJSON too) a node's garbage is the node's fault: fail over
            raise VerificationError(f"node {node.address} sent a malformed answer: {exc.message}",
                                    fix="the node is misbehaving; the router tries another") from None
        out["_nonce"] = nonce
        return out

    def _peer(self, method: str, url: str, *, max_bytes: int | None = None, deadline_s: float | None = None,
              **request: Any) -> http_reads.Answer:
        """A node's answer, read whole within ``max_bytes`` (default ``http_max_answer_mb``) and
        ``deadline_s`` in all (default the router's timeout), on the router's connection pool."""
        return self.http.request(method, url, max_bytes=max_bytes or self.max_answer,
                                 deadline_s=deadline_s or self.timeout, **request)

    def _check(self, node: NodeHandle, out: dict, inputs: dict[str, np.ndarray], mode: str) -> Answer:
        """Verify the receipt binds this node, our input, the returned output; then owe the price."""
        receipt = Receipt.from_json(out["receipt"])
        if receipt.signer(self.domain) != node.address:
            raise VerificationError(f"receipt not signed by {node.address}", fix="node is misbehaving; try another")
        if receipt.version != self.version or receipt.nonce != out["_nonce"]:
            raise VerificationError("receipt is for another version or request", fix="retry with another node")
        if receipt.price > node.price:
            raise VerificationError("receipt price above the advertised price", fix="use another node")
        if mode == "zk":
            if receipt.commitment != COMMIT_ZK:
                raise VerificationError("zk answer without a zk receipt", fix="use another node")
            outs = [int(v, 16) for v in out["instances"]]
            if instances_hash(outs) != receipt.output_hash:
                raise VerificationError("receipt does not commit to the returned instances", fix="use another node")
            digest = receipt.digest(self.domain)
            return Answer(np.asarray(out["output"], dtype=np.float32), receipt, node.address, mode,
                          receipt_digest=digest)
        if receipt.commitment != (COMMIT_CIRCUIT if mode == "circuit" else COMMIT_VALUES):
            raise VerificationError("receipt has the wrong commitment kind", fix="use another node")
        # a CIRCUIT receipt's Poseidon instance is recomputed here: one that commits a wrong
        # instance is no answer to this request (and could not be disputed by proof)
        want = self._circuit_input(inputs)[0] if mode == "circuit" else self._input_hash(inputs)
        if receipt.input_hash != want:
            raise VerificationError("receipt commits to another input", fix="use another node")
        values = _values_array(out["values"], node.address)
        if values_hash(values) != receipt.output_hash:
            raise VerificationError("receipt does not commit to the returned values", fix="use another node")
        output = np.asarray(out["output"], dtype=np.float64)
        if not np.array_equal(np.rint(output.reshape(-1) * FIXED_POINT).astype(np.int64), values):
            raise VerificationError("returned output differs from the committed values", fix="use another node")
        if node.price:
            with self._lock:
                self._unpaid[node.address] = self._unpaid.get(node.address, 0) + receipt.price
        return Answer(output.astype(np.float32), receipt, node.address, mode, values=values.tolist())

    def _input_hash(self, inputs: dict[str, np.ndarray]) -> bytes:
        """``input_hash(inputs)``, computed once per request on its thread: not again per node
        asked (failover, redundant mode), and before the wait for an answer rather than after
        it, when the input (64 KB at batch 32) and the hashing code have left the caches
        (measured ~0.1 ms cold against ~0.02 ms warm). The entry holds ``inputs`` itself, so
        an identity match cannot be a recycled object id."""
        held = getattr(self._hashed, "entry", None)
        if held is not None and held[0] is inputs:
            return held[1]
        digest = input_hash(inputs)
        self._hashed.entry = (inputs, digest)
        return digest

    def _prepare(self, data: Any) -> dict[str, np.ndarray]:
        """Check and canonicalise the input exactly as the nodes do (its hash must match)."""
        if self.model is not None:
            return self.model.prepare(data)
        if self._specs is None:
            raise NoNodeError(f"no live node serves version {self.version}",
                              fix="start one with `proofmesh serve VERSION` or check the node registry")
        return prepare_inputs(self._specs, data)

    # --- public API ---------------------------------------------------------------
    def infer(self, data: Any, *, verify: str = "none", k: int = 2) -> Answer:
        """One answer for ``data``, verified as asked; fails over across nodes."""
        if verify == "tee":
            require_tee()
        if verify not in ("none", "zk", "redundant"):
            raise InputError(f"unknown verification mode {verify!r}", fix="use zk, redundant or tee")
        if not self.nodes:
            self.discover()
        inputs = self._prepare(data)
        self._input_hash(inputs)      # now, while the input is in cache (see _input_hash)
        if verify == "redundant":
            return self._redundant(data, inputs, k)
        return self._single(data, inputs, "zk" if verify == "zk" else "plain")

    def _single(self, data: Any, inputs: dict, mode: str) -> Answer:
        tried, failovers = set(), 0
        while True:
            cands = [h for h in self.ranked(zk=mode == "zk") if h.address not in tried]
            if not cands:
                known = len(self.nodes)
                with_zk = sum(1 for h in self.nodes.values() if h.zk)
                raise NoNodeError(f"no live node serves version {self.version}"
                                  + (" with a zk circuit" if mode == "zk" else "")
                                  + f" ({known} found, {with_zk} with zk, {len(tried)} tried and failed"
                                  + "".join(f"; {a[:10]}: {self.nodes[a].last_error}" for a in tried
                                            if a in self.nodes and self.nodes[a].last_error) + ")",
                                  fix="start one with `proofmesh serve VERSION` or check the node registry")
            with self._lock:   # pick under the lock so concurrent callers see each other's inflight
                node = max(cands, key=lambda h: h.score())
                node.inflight += 1
            tried.add(node.address)
            try:
                out = self._send(node, inputs, mode, reserved=True)   # releases the reservation
                ans = self._check(node, out, inputs, mode)
            except _NODE_DOWN as exc:
                node.down_until = time.monotonic() + 30   # died mid-request (or flooded, or stalled): fail over
                node.bad += 1
                node.last_error = f"{type(exc).__name__}: {exc}"
                failovers += 1
                continue
            except VerificationError as exc:
                node.bad += 1
                node.last_error = exc.message
                failovers += 1
                continue
            node.good += 1
            ans.failovers = failovers
            if mode == "zk" and node.price and self.wallet is not None:
                self._pay_conditional(node, ans)
            return ans

    def _pay_conditional(self, node: NodeHandle, ans: Answer) -> None:
        v = self.wallet.pay(node.address, ans.receipt.price, oracle=self.registry.address,
                            condition=ans.receipt_digest)
        r = self._peer("POST", node.endpoint + "/v1/pay", json={"voucher": v.to_json(),
                                                                "receipt": "0x" + ans.receipt_digest.hex()})
        if r.status_code != 200:
            raise ProofmeshError(f"node refused the conditional voucher: {r.excerpt}")

    def fetch_proof(self, ans: Answer, *, circuit=None, workdir=None, timeout: float = 300.0):
        """Wait for a zk answer's proof; verify it locally (if a circuit is given) and release payment."""
        from proofmesh.inference.zk import ZkProof

        node = self.nodes[ans.node]
        deadline = time.monotonic() + timeout
        no_proof = "challenge the receipt on chain (proofmesh inference challenge)"
        while True:
            try:
                r = self._peer("GET", node.endpoint + f"/v1/proof/0x{ans.receipt_digest.hex()}")
            except (http_reads.AnswerTooLarge, http_reads.AnswerTimeout) as exc:
                raise VerificationError(f"no proof from {node.address}: {exc.message}", fix=no_proof) from None
            if r.status_code == 200:
                break
            if r.status_code != 202 or time.monotonic() > deadline:
                raise VerificationError(f"no proof from {node.address}: {r.excerpt}",
                                        fix=no_proof)
            time.sleep(0.2)
        try:
            proof = ZkProof.from_json(r.json())
        except BadJSON as exc:
            raise VerificationError(f"no proof from {node.address}: {exc.message}", fix=no_proof) from None
        if proof.instances[0] != int.from_bytes(ans.receipt.input_hash, "big") or \
                instances_hash(proof.instances[1:]) != ans.receipt.output_hash:
            raise VerificationError("proof instances do not match the receipt", fix="challenge the receipt on chain")
        if circuit is not None:
            circuit.verify_proof(proof, workdir)
        ans.proof = proof
        if node.price and self.wallet is not None and circuit is not None:
            # checked locally: owe it unconditionally from the next voucher on
            self.wallet.release(node.address, ans.receipt_digest)
        return proof

    # --- circuit receipts (redundant mode on a version with a zk circuit) ------------------
    def circuit_usable(self) -> bool:
        """True when our circuit is the version's registered one and its output scale is
        recorded: CIRCUIT disputes can then be settled by our proofs."""
        if self._circuit_usable is None:
            ok = False
            if self.circuit is not None:
                from proofmesh.inference.registry import circuit_output_scale

                rec = self.registry.circuit(self.version)
                ok = (rec.registered and rec.vk_hash == self.circuit.vk_hash
                      and self.registry.output_scale(self.version) == circuit_output_scale(self.circuit))
            self._circuit_usable = ok
        return self._circuit_usable

    def _workdir(self):
        import tempfile
        from pathlib import Path

        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="proofmesh-router-"))
        Path(self.workdir).mkdir(parents=True, exist_ok=True)
        return Path(self.workdir)

    def _circuit_input(self, inputs: dict) -> tuple[bytes, int, Any]:
        """(CIRCUIT input_hash, Poseidon instance, witness) of ``inputs``, from our circuit."""
        raw = self._input_hash(inputs)
        cached = self._last_circuit_input
        if cached is not None and cached[0] == raw:
            return cached[1]
        w = self.circuit.witness(next(iter(inputs.values())), self._workdir() / "witness")
        got = (circuit_input_hash(raw, w.input_hash), w.input_hash, w)
        self._last_circuit_input = (raw, got)
        if cached is not None:
            cached[1][2].path.unlink(missing_ok=True)   # one witness file kept: the latest request's
        return got

    def settle_with_proof(self, dispute_id: int, inputs: dict) -> dict:
        """Prove the disputed input with our circuit and settle the CIRCUIT dispute on chain:
        the node(s) whose values disagree with the proof are slashed at once. The transaction
        carries the two disputed chunks (the contract stores only their hashes), read from
        the dispute's ``Disputed`` event before proving (cached when this router opened it)."""
        chunks = self.registry.dispute_chunks(dispute_id)
        _, _, w = self._circuit_input(inputs)
        proof = self.circuit.prove(w, self._workdir() / f"dispute-{dispute_id}.proof.json")
        return self.registry.settle_by_proof(dispute_id, input_hash(inputs), proof, sender=self.account,
                                             chunks=chunks)

    def _redundant(self, data: Any, inputs: dict, k: int) -> Answer:
        if k < 2:
            raise InputError("redundant mode needs k >= 2 nodes", fix="pass k=2 or more")
        # CIRCUIT receipts need every compared node to hold the circuit, and our input to be
        # the circuit's shape; otherwise plain value receipts (disputes settled by vote)
        mode = "plain"
        if self.circuit_usable() and len(self.ranked(circuit=True)) >= k:
            try:
                self.circuit.check_input(next(iter(inputs.values())))
                self._circuit_input(inputs)
                mode = "circuit"
            except ProofmeshError:
                mode = "plain"
        cands = self.ranked(circuit=mode == "circuit")
        if len(cands) < k:
            raise NoNodeError(f"redundant mode needs {k} live nodes for version {self.version}, found {len(cands)}",
                              fix="start more nodes or lower k")
        answers: list[Answer] = []
        pool = list(cands)
        with ThreadPoolExecutor(max_workers=k) as ex:
            while len(answers) < k and pool:
                batch, pool = pool[:k - len(answers)], pool[k - len(answers):]
                futs = {ex.submit(self._send, n, inputs, mode): n for n in batch}
                for f, n in futs.items():
                    try:
                        answers.append(self._check(n, f.result(), inputs, mode))
                        n.good += 1
                    except _NODE_DOWN:
                        n.down_until = time.monotonic() + 30
                        n.bad += 1
                    except VerificationError:
                        n.bad += 1
        if len(answers) < 2:
            raise NoNodeError("fewer than 2 nodes answered in redundant mode", fix="start more nodes")
        tol = self.terms.tolerance
        groups: list[list[Answer]] = []
        for a in answers:
            for g in groups:
                if _within(a.values, g[0].values, tol):
                    g.append(a)
                    break
            else:
                groups.append([a])
        groups.sort(key=len, reverse=True)
        best = groups[0]
        result = best[0]
        result.agreeing = [a.node for a in best]
        if len(groups) > 1:
            if len(best) == len(groups[1]):
                # no majority: ask one more node as tie-breaker
                asked = {a.node for a in answers}
                extra = [h for h in self.ranked(circuit=mode == "circuit") if h.address not in asked]
                if not extra:
                    raise VerificationError("nodes disagree and no node is left to break the tie",
                                            fix="retry with a larger k")
                tb = self._check(extra[0], self._send(extra[0], inputs, mode), inputs, mode)
                for g in groups:
                    if _within(tb.values, g[0].values, tol):
                        g.append(tb)
                groups.sort(key=len, reverse=True)
                best = groups[0]
                result = best[0]
                result.agreeing = [a.node for a in best]
            liar = groups[1][0]
            result.dispute = self.registry.dispute(result.receipt, result.values, liar.receipt, liar.values,
                                                   sender=self.account)
            self.nodes[liar.node].bad += 1
            self._disputes[result.dispute] = data
            if mode == "circuit":
                try:
                    result.settled = self.settle_with_proof(result.dispute, inputs)
                except ProofmeshError as exc:   # e.g. the proof agrees with both: the vote decides
                    result.settled = {"error": exc.message}
        return result

    def call_committee(self, dispute_id: int) -> list[str]:
        """Ask the known nodes drawn for the dispute's committee (``eligible`` on chain: not
        parties, bonded before the dispute, selected by its seed) to re-execute the disputed
        input and commit their votes (in the vote window). Returns the nodes that committed."""
        if dispute_id not in self._disputes:
            raise InputError(f"dispute {dispute_id} was not opened by this router: it holds no input for the committee",
                             fix="call the committee from the router that opened the dispute")
        if self.registry.dispute_state(dispute_id)["state"] == 1:
            self.registry.draw(dispute_id, sender=self.account)    # a no-op unless the opening's draw failed
        members = [h for h in self.ranked() if self.registry.eligible(dispute_id, h.address)]
        voted = [a for a, body in self._committee_duty(dispute_id, members, "vote").items() if body.get("committed")]
        self._committees[dispute_id] = voted
        return voted

    def reveal_committee(self, dispute_id: int) -> dict[str, int]:
        """After the vote window: ask the nodes that committed to reveal their votes (node
        daemons also do it by themselves). Returns {node: side voted for (1 a, 2 b, 0 neither)}."""
        members = [self.nodes[a] for a in self._committees.get(dispute_id, []) if a in self.nodes]
        return {a: int(body["side"]) for a, body in self._committee_duty(dispute_id, members, "reveal").items()
                if isinstance(body.get("side"), int)}

    def _committee_duty(self, dispute_id: int, members: list[NodeHandle], duty: str) -> dict[str, dict]:
        # the disputed input to each member (committee.ask_committee); the answers of those
        # that did it (a node that is down or refuses is skipped)
        from proofmesh.inference.committee import ask_committee

        answers = ask_committee(self.http, [(h.address, h.endpoint) for h in members], dispute_id, duty,
                                self._disputes.get(dispute_id), max_bytes=self.max_answer, deadline_s=self.timeout)
        done = {}
        for address, r in answers.items():
            try:
                body = r.json() if r.status_code == 200 else None
            except BadJSON:
                continue
            if isinstance(body, dict):
                done[address] = body
        return done

    def settle_note(self) -> dict[str, int]:
        """What this router still owes each node (to be covered by the next voucher)."""
        return dict(self._unpaid)

    def close(self) -> None:
        self.http.close()


def _within(a: list[int], b: list[int], tol: int) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))
