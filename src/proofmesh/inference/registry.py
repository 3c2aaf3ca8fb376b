"""Typed client of the InferenceRegistry contract (terms, circuits, bonds, epochs,
challenges) and of InferenceDisputes, its arbiter (redundant-execution disputes).

Challenges and disputes are commit-reveal on chain (audit M8): :meth:`challenge` and
:meth:`dispute` send the commitment, then the reveal in a later block, so the slash
reward cannot be taken by someone copying the reveal from the mempool.

A dispute stores only keccak256 of each side's disputed chunk and logs the chunks in its
``Disputed`` event; :meth:`dispute_chunks` reads them back (cached per client) and
:meth:`reveal_vote` / :meth:`settle_by_proof` pass them to the contract, which checks them
against the stored hashes.

A dispute's committee is drawn from the hash of the block that opened it (:meth:`eligible`,
readable from the next block); a drawn voter's bond is locked until it is penalised
(:meth:`penalise_voter`: it committed and never revealed, or revealed for the losing side),
claims its reward, or is released (:meth:`release_voter`)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from eth_utils import to_checksum_address
from web3.logs import DISCARD

from proofmesh.errors import InputError, ProofmeshError
from proofmesh.inference.receipt import Receipt, receipt_domain
from proofmesh.inference.values import CHUNK, disagreeing_chunk, open_values, unpacked_values

CONTRACT = "InferenceRegistry"
DISPUTES = "InferenceDisputes"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelTerms:
    version: int
    onnx_hash: bytes
    tolerance: int          # fixed point x 1e6
    registered: bool


@dataclass(frozen=True)
class CircuitRecord:
    version: int
    onnx_hash: bytes
    settings_hash: bytes
    vk_hash: bytes
    srs_hash: bytes
    verifier: str
    verifier_codehash: bytes   # extcodehash of the verifier when registered (audit L6)
    dev_srs: bool
    batch: int
    registered: bool


class InferenceRegistry:
    """Client of the InferenceRegistry contract."""

    def __init__(self, chain) -> None:
        self.chain = chain
        self.c = chain.contract(CONTRACT)
        self.address = to_checksum_address(self.c.address)
        self.domain = receipt_domain(chain.chain_id, self.address)
        self._chunks: dict[int, tuple[bytes, bytes]] = {}     # dispute id -> its packed chunks (a, b)

    def _tx(self, fn, sender=None):
        return self.chain.transact(fn, sender=sender)

    # --- terms and circuits ---------------------------------------------------------
    def terms(self, version: int) -> ModelTerms:
        onnx_hash, tol, reg = self.chain.call(self.c.functions.models(int(version)))
        return ModelTerms(int(version), bytes(onnx_hash), tol, reg)

    def circuit(self, version: int) -> CircuitRecord:
        r = self.chain.call(self.c.functions.circuits(int(version)))
        return CircuitRecord(int(version), bytes(r[0]), bytes(r[1]), bytes(r[2]), bytes(r[3]), r[4], bytes(r[5]),
                             r[6], r[7], r[8])

    def check_verifier(self, version: int, verifier_bytecode: bytes) -> CircuitRecord:
        """Audit L6: the code at the registered verifier address must be the code pinned at
        registration, and that code must come from ``verifier_bytecode`` (the creation code
        generated from *our* verifying key, e.g. ``Circuit.verifier_artifact()[1]``): a
        verifier that is not the vk's would accept proofs the vk rejects.
        VerificationError if not."""
        from proofmesh.crypto.keccak import keccak256
        from proofmesh.errors import VerificationError

        rec = self.circuit(version)
        if not rec.registered:
            raise VerificationError(f"version {version} has no registered circuit", fix="register it first")
        code = bytes(self.chain.w3.eth.get_code(rec.verifier))
        if not code or keccak256(code) != rec.verifier_codehash:
            raise VerificationError(f"the verifier at {rec.verifier} is not the code registered for version {version}",
                                    fix="do not trust proofs for this version; re-register the circuit")
        if code not in bytes(verifier_bytecode):
            raise VerificationError(f"the verifier at {rec.verifier} was not compiled from this verifying key",
                                    fix="use the circuit the version was registered with")
        return rec

    def check_circuit(self, version: int, circuit) -> CircuitRecord:
        """Audit L6 for either verifier kind: a dedicated verifier must be compiled from
        ``circuit``'s verifying key (:meth:`check_verifier`); a Halo2VkaBinding (reusable
        verifier + VK artifact) must carry the VKA regenerated from that key, for the
        registered vk hash (``reusable.check_binding``). VerificationError if not."""
        from proofmesh.crypto.keccak import keccak256
        from proofmesh.errors import VerificationError
        from proofmesh.inference import reusable

        rec = self.circuit(version)
        if not rec.registered:
            raise VerificationError(f"version {version} has no registered circuit", fix="register it first")
        if not reusable.is_binding(self.chain, rec.verifier):
            return self.check_verifier(version, circuit.verifier_artifact()[1])
        if keccak256(bytes(self.chain.w3.eth.get_code(rec.verifier))) != rec.verifier_codehash:
            raise VerificationError(f"the verifier at {rec.verifier} is not the code registered for version {version}",
                                    fix="do not trust proofs for this version; re-register the circuit")
        reusable.check_binding(self.chain, rec.verifier, circuit, rec.vk_hash)
        return rec

    def register_model(self, version: int, onnx_hash: bytes, tolerance: int, sender=None):
        if len(onnx_hash) != 32:
            raise InputError("onnx_hash must be 32 bytes (sha256 of the ONNX file)", fix="use file_sha256(path)")
        if self.terms(version).registered:
            raise InputError(f"model version {version} already has serving terms", fix="terms are set once per version")
        return self._tx(self.c.functions.register_model(int(version), onnx_hash, int(tolerance)), sender)

    def register_circuit(self, version: int, settings_hash: bytes, vk_hash: bytes, srs_hash: bytes,
                         verifier: str, dev_srs: bool, batch: int, sender=None):
        return self._tx(self.c.functions.register_circuit(int(version), settings_hash, vk_hash, srs_hash,
                                                         to_checksum_address(verifier), bool(dev_srs), int(batch)),
                        sender)

    # --- bonds and epochs ---------------------------------------------------------
    def service_bond(self, node: str) -> int:
        return self.chain.call(self.c.functions.service_bond(to_checksum_address(node)))

    def min_bond(self) -> int:
        return self.chain.call(self.c.functions.min_bond())

    def total_bond(self) -> int:
        """Sum of all service bonds (what a dispute's committee draw divides by)."""
        return self.chain.call(self.c.functions.total_bond())

    def bonded_at(self, node: str) -> int:
        """Block of the node's last bond posting (a dispute opened in a later block may draw it)."""
        return self.chain.call(self.c.functions.bonded_at(to_checksum_address(node)))

    def committee_params(self) -> dict:
        """{"committee_size": expected nodes drawn per dispute, "voter_penalty_bps": ...}."""
        return {"committee_size": self.chain.call(self.c.functions.committee_size()),
                "voter_penalty_bps": self.chain.call(self.c.functions.voter_penalty_bps())}

    def post_bond(self, amount: int, sender=None):
        return self._tx(self.c.functions.post_bond(int(amount)), sender)

    def request_bond_withdrawal(self, sender=None):
        """Start a bond withdrawal; ``withdraw_bond`` works after the dispute windows."""
        return self._tx(self.c.functions.request_bond_withdrawal(), sender)

    def bond_unlock_at(self, node: str) -> int:
        """When a requested bond withdrawal may run (0: none requested)."""
        return self.chain.call(self.c.functions.bond_unlock_at(to_checksum_address(node)))

    def withdraw_bond(self, amount: int, sender=None):
        return self._tx(self.c.functions.withdraw_bond(int(amount)), sender)

    def commit_epoch(self, root: bytes, count: int, sender=None) -> int:
        res = self._tx(self.c.functions.commit_epoch(root, int(count)), sender)
        ev = self.c.events.EpochCommitted().process_receipt(res.receipt, errors=DISCARD)
        return int(ev[0]["args"]["epoch"])

    def settle_from_epoch(self, epoch: int, receipt: Receipt, proof_hash: bytes, merkle_proof: list[bytes],
                          sender=None):
        return self._tx(self.c.functions.settle_from_epoch(int(epoch), receipt.as_tuple(), receipt.signature,
                                                           proof_hash, merkle_proof), sender)

    def finalize_epoch(self, epoch: int, sender=None):
        return self._tx(self.c.functions.finalize_epoch(int(epoch)), sender)

    # --- proofs and challenges ------------------------------------------------------
    def is_fulfilled(self, receipt_digest: bytes) -> bool:
        return self.chain.call(self.c.functions.is_fulfilled(receipt_digest))

    def submit_proof(self, receipt: Receipt, proof: bytes, instances: list[int], sender=None):
        return self._tx(self.c.functions.submit_proof(receipt.as_tuple(), receipt.signature, proof,
                                                      [int(i) for i in instances]), sender)

    def _sender_address(self, sender) -> str:
        acct = sender or self.chain.account
        return to_checksum_address(acct.address)

    def challenge_commitment(self, receipt: Receipt, salt: bytes, sender=None) -> bytes:
        """keccak256(abi_encode(challenger, receipt digest, salt)): what commit_challenge takes."""
        from eth_abi import encode

        from proofmesh.crypto.keccak import keccak256
        return keccak256(encode(["address", "bytes32", "bytes32"],
                                [self._sender_address(sender), receipt.digest(self.domain), salt]))

    def commit_challenge(self, receipt: Receipt, sender=None) -> bytes:
        """Step 1 of a challenge; returns the salt to reveal with (in a later block)."""
        salt = os.urandom(32)
        res = self._tx(self.c.functions.commit_challenge(self.challenge_commitment(receipt, salt, sender)), sender)
        self.chain.wait_past(res.block_number)
        return salt

    def reveal_challenge(self, receipt: Receipt, salt: bytes, sender=None) -> int:
        deposit = self.chain.call(self.c.functions.challenge_deposit())
        if deposit:
            from proofmesh.chain.core import Token
            Token(self.chain).ensure_allowance(self.address, deposit, sender=sender)
        res = self._tx(self.c.functions.challenge(receipt.as_tuple(), receipt.signature, salt), sender)
        return int(self.c.events.Challenged().process_receipt(res.receipt, errors=DISCARD)[0]["args"]["challenge"])

    def challenge(self, receipt: Receipt, sender=None) -> int:
        """Commit, then reveal in a later block. Returns the challenge id."""
        return self.reveal_challenge(receipt, self.commit_challenge(receipt, sender), sender)

    def challenge_state(self, challenge_id: int) -> dict:
        r = self.chain.call(self.c.functions.challenges(int(challenge_id)))
        keys = ["node", "challenger", "receipt", "version", "input_hash", "output_hash", "deposit", "deadline", "state"]
        return dict(zip(keys, r))

    def answer_challenge(self, challenge_id: int, proof: bytes, instances: list[int], sender=None):
        return self._tx(self.c.functions.answer_challenge(int(challenge_id), proof, [int(i) for i in instances]),
                        sender)

    def expire_challenge(self, challenge_id: int, sender=None):
        return self._tx(self.c.functions.expire_challenge(int(challenge_id)), sender)

    # --- disputes (InferenceDisputes) ------------------------------------------------
    @property
    def disputes(self):
        d = getattr(self, "_disputes", None)
        if d is None:
            d = self._disputes = self.chain.contract(DISPUTES)
        return d

    def dispute_commitment(self, ra: Receipt, rb: Receipt, salt: bytes, sender=None) -> bytes:
        """keccak256(abi_encode(disputer, digest_a, digest_b, salt)): what commit_dispute takes."""
        from eth_abi import encode

        from proofmesh.crypto.keccak import keccak256
        return keccak256(encode(["address", "bytes32", "bytes32", "bytes32"],
                                [self._sender_address(sender), ra.digest(self.domain), rb.digest(self.domain), salt]))

    def commit_dispute(self, ra: Receipt, rb: Receipt, sender=None) -> bytes:
        """Step 1 of a dispute; returns the salt to reveal with (in a later block)."""
        salt = os.urandom(32)
        res = self._tx(self.disputes.functions.commit_dispute(self.dispute_commitment(ra, rb, salt, sender)), sender)
        self.chain.wait_past(res.block_number)
        return salt

    def reveal_dispute(self, ra: Receipt, values_a: list[int], rb: Receipt, values_b: list[int], salt: bytes,
                       sender=None, chunk: int | None = None) -> int:
        """Step 2: reveal the receipts with one chunk of each one's values (``chunk``; by
        default the first where they differ beyond the version's tolerance, see
        :mod:`proofmesh.inference.values`)."""
        if chunk is None:
            chunk = disagreeing_chunk(values_a, values_b, self.terms(ra.version).tolerance)
            chunk = 0 if chunk is None else chunk     # they agree: the contract says so
        res = self._tx(self.disputes.functions.dispute(ra.as_tuple(), ra.signature, open_values(values_a, chunk).as_tuple(),
                                                       rb.as_tuple(), rb.signature, open_values(values_b, chunk).as_tuple(),
                                                       salt), sender)
        ev = self.disputes.events.Disputed().process_receipt(res.receipt, errors=DISCARD)[0]["args"]
        self._remember_chunks(ev)
        return int(ev["dispute"])

    def dispute(self, ra: Receipt, values_a: list[int], rb: Receipt, values_b: list[int], sender=None,
                chunk: int | None = None) -> int:
        """Commit, then reveal, a fraud proof from two conflicting receipts and their full
        values, then fix its committee (:meth:`draw`, in the next block: the seed is lost
        after 256 blocks). Returns the dispute id."""
        did = self.reveal_dispute(ra, values_a, rb, values_b, self.commit_dispute(ra, rb, sender), sender, chunk)
        try:
            self.draw(did, sender=sender)
        except ProofmeshError as exc:   # the dispute is open either way: the first vote also draws
            log.warning("dispute %s: committee not drawn yet (%s); draw it within 256 blocks of the opening "
                        "(Router.call_committee or InferenceRegistry.draw)", did, exc)
        return did

    def draw(self, dispute_id: int, sender=None) -> bytes:
        """Store the committee seed of an open dispute (the contract's ``draw``, anyone): the
        opening block's hash, readable from the next block (waited for, mined on a dev chain)
        for 256 blocks only; a dispute whose seed nobody stored by then cannot be voted on and
        ends void. No transaction if it is stored already. Returns the seed."""
        st = self.dispute_state(dispute_id)
        if st["seed"] != bytes(32):
            return bytes(st["seed"])
        self.chain.wait_past(st["opened"])
        res = self._tx(self.disputes.functions.draw(int(dispute_id)), sender)
        ev = self.disputes.events.CommitteeDrawn().process_receipt(res.receipt, errors=DISCARD)
        return bytes(ev[0]["args"]["seed"]) if ev else bytes(self.dispute_state(dispute_id)["seed"])

    def dispute_state(self, dispute_id: int) -> dict:
        r = self.chain.call(self.disputes.functions.disputes(int(dispute_id)))
        keys = ["version", "input_hash", "node_a", "node_b", "disputer", "deadline", "weight_a", "weight_b",
                "reveal_deadline", "state", "commitment", "chunk", "count_a", "count_b", "opened", "bond_per_seat",
                "seed", "winner"]
        return dict(zip(keys, r))

    def eligible(self, dispute_id: int, address: str) -> bool:
        """Whether ``address`` is drawn for the committee of open dispute ``dispute_id`` and
        may commit a vote (the contract's ``eligible``). The draw's seed is the hash of the
        opening block, which a call can read only from the next block: on a dev chain this
        mines one, elsewhere it waits for it."""
        opened = self.dispute_state(dispute_id)["opened"]
        if opened:
            self.chain.wait_past(opened)
        return self.chain.call(self.disputes.functions.eligible(int(dispute_id), to_checksum_address(address)))

    def vote(self, dispute_id: int, voter: str) -> dict:
        """A voter's record in a dispute: committed, revealed, side (1 a, 2 b, 0 neither),
        weight (its frozen bond), reward paid so far, settled (bond released or penalised)."""
        did, v = int(dispute_id), to_checksum_address(voter)
        side, weight, paid, settled = self.chain.call(self.disputes.functions.votes(did, v))
        committed = self.chain.call(self.disputes.functions.vote_commitments(did, v)) != bytes(32)
        return {"committed": committed, "revealed": self.chain.call(self.disputes.functions.voted(did, v)),
                "side": side, "weight": weight, "paid": paid, "settled": settled}

    def voters(self, dispute_id: int) -> list[str]:
        """Every node that committed a vote in the dispute (its ``VoteCommitted`` events, read
        from the opening block on)."""
        st = self.dispute_state(dispute_id)
        logs = self.chain.events(DISPUTES, "VoteCommitted", from_block=st["opened"],
                                 argument_filters={"dispute": int(dispute_id)})
        return list(dict.fromkeys(to_checksum_address(e["args"]["voter"]) for e in logs))

    def penalisable(self, dispute_id: int) -> list[str]:
        """The voters ``penalise_voter`` would slash now: the dispute was resolved by vote and
        they committed and never revealed, or revealed for the losing side, and nobody has
        penalised them yet."""
        winner = self.dispute_state(dispute_id)["winner"]
        if not winner:
            return []
        out = []
        for voter in self.voters(dispute_id):
            v = self.vote(dispute_id, voter)
            if not v["settled"] and (not v["revealed"] or v["side"] not in (0, winner)):
                out.append(voter)
        return out

    def penalise_voter(self, dispute_id: int, voter: str, sender=None) -> dict:
        """Slash ``voter_penalty_bps`` of a wrong or silent voter's weight (anyone, once per
        voter); what is not burned joins the winners' reward. Returns {"slashed", "to_pool"}."""
        res = self._tx(self.disputes.functions.penalise_voter(int(dispute_id), to_checksum_address(voter)), sender)
        ev = self.disputes.events.VoterPenalised().process_receipt(res.receipt, errors=DISCARD)[0]["args"]
        return {"slashed": int(ev["slashed"]), "to_pool": int(ev["to_pool"]), "gas": res.gas_used}

    def release_voter(self, dispute_id: int, voter: str, sender=None):
        """Unlock the bond of a voter that is not penalised, once the dispute is settled (anyone)."""
        return self._tx(self.disputes.functions.release_voter(int(dispute_id), to_checksum_address(voter)), sender)

    def dispute_values(self, dispute_id: int) -> tuple[list[int], list[int]]:
        """The disputed chunk of each receipt's values (``dispute_state``'s ``chunk``)."""
        a, b = self.dispute_chunks(dispute_id)
        return unpacked_values(a), unpacked_values(b)

    def dispute_chunks(self, dispute_id: int) -> tuple[bytes, bytes]:
        """The disputed chunk of each receipt's values, packed (8-byte big-endian int64s), as
        the ``Disputed`` event logged them: what ``reveal_vote`` and ``settle_by_proof`` take
        back. The contract stores only their hashes; the event is found in the block that
        opened the dispute (its timestamp is ``deadline - (reveal_deadline - deadline)``), so
        no log scan from genesis is needed. Cached per client."""
        did = int(dispute_id)
        if did in self._chunks:
            return self._chunks[did]
        st = self.dispute_state(did)
        if st["deadline"] == 0:
            raise InputError(f"dispute {did} does not exist", fix="check the dispute id (proofmesh inference disputes)")
        first, last = self._blocks_at(2 * st["deadline"] - st["reveal_deadline"])
        logs = self.chain.events(DISPUTES, "Disputed", from_block=first, to_block=last,
                                 argument_filters={"dispute": did})
        if not logs:
            raise InputError(f"the Disputed event of dispute {did} is not in blocks {first}..{last}",
                             fix="ask a node that keeps the chain's logs (an archive or full node)")
        self._remember_chunks(logs[0]["args"])
        return self._chunks[did]

    def _remember_chunks(self, ev) -> None:
        self._chunks[int(ev["dispute"])] = (bytes(ev["packed_a"]), bytes(ev["packed_b"]))

    def _blocks_at(self, timestamp: int) -> tuple[int, int]:
        """The first and last block with this timestamp (a range ending before ``first`` when
        there is none): two binary searches over block headers."""
        eth = self.chain.w3.eth

        def first_after(ts: int) -> int:       # the first block whose timestamp is > ts
            lo, hi = 0, eth.block_number + 1
            while lo < hi:
                mid = (lo + hi) // 2
                if eth.get_block(mid)["timestamp"] > ts:
                    hi = mid
                else:
                    lo = mid + 1
            return lo

        return first_after(timestamp - 1), first_after(timestamp) - 1

    def _ballot(self, dispute_id: int, values: "list[int]") -> tuple[int, list[int]]:
        # what a vote carries: the output count and the disputed chunk of the outputs
        chunk = self.dispute_state(dispute_id)["chunk"]
        return len(values), [int(v) for v in values[CHUNK * chunk: CHUNK * (chunk + 1)]]

    def vote_commitment(self, dispute_id: int, voter: str, values: "list[int]", salt: bytes) -> bytes:
        """keccak256(abi_encode(voter, dispute, count, chunk values, salt)): what commit_vote takes."""
        from eth_abi import encode

        from proofmesh.crypto.keccak import keccak256
        count, part = self._ballot(dispute_id, values)
        return keccak256(encode(["address", "uint256", "uint256", "int256[]", "bytes32"],
                                [to_checksum_address(voter), int(dispute_id), count, part, bytes(salt)]))

    def commit_vote(self, dispute_id: int, values: "list[int]", salt: bytes, sender=None):
        """Step 1 of a vote, in the vote window, with a re-execution's full fixed-point
        outputs; reveal the same values and salt with :meth:`reveal_vote` after it."""
        c = self.vote_commitment(dispute_id, self._sender_address(sender), values, salt)
        return self._tx(self.disputes.functions.commit_vote(int(dispute_id), c), sender)

    def reveal_vote(self, dispute_id: int, values: "list[int]", salt: bytes, sender=None,
                    chunks: "tuple[bytes, bytes] | None" = None) -> int:
        """Step 2, after the vote window: returns the side voted for (1 a, 2 b, 0 neither).
        ``chunks``: the disputed chunks the contract checks the vote against (by default
        :meth:`dispute_chunks`, read from the ``Disputed`` event)."""
        count, part = self._ballot(dispute_id, values)
        a, b = chunks if chunks is not None else self.dispute_chunks(dispute_id)
        res = self._tx(self.disputes.functions.reveal_vote(int(dispute_id), count, part, bytes(salt), bytes(a),
                                                           bytes(b)), sender)
        return int(self.disputes.events.Voted().process_receipt(res.receipt, errors=DISCARD)[0]["args"]["side"])

    def claim_vote_reward(self, dispute_id: int, sender=None) -> int:
        """What a winning voter is owed of the voters' half of the slash and the penalties
        added since (callable again as penalties grow the pool); returns the amount."""
        res = self._tx(self.disputes.functions.claim_vote_reward(int(dispute_id)), sender)
        return int(self.disputes.events.VoteRewardClaimed().process_receipt(res.receipt, errors=DISCARD)[0]["args"]["amount"])

    def resolve_dispute(self, dispute_id: int, sender=None) -> str:
        res = self._tx(self.disputes.functions.resolve_dispute(int(dispute_id)), sender)
        return self.disputes.events.DisputeResolved().process_receipt(res.receipt, errors=DISCARD)[0]["args"]["loser"]

    # --- circuit disputes: settled by a zk proof ---------------------------------------
    def output_scale(self, version: int) -> int | None:
        """The circuit output scale recorded for ``version`` (None: not set)."""
        v = self.chain.call(self.disputes.functions.output_scale(int(version)))
        return None if v == 0 else int(v) - 1

    def set_output_scale(self, version: int, scale: int, sender=None):
        """Record the circuit's output scale (the version's owner, once): what a proof's
        outputs are dequantised with when it settles a CIRCUIT dispute."""
        return self._tx(self.disputes.functions.set_output_scale(int(version), int(scale)), sender)

    def settle_by_proof(self, dispute_id: int, raw_input_hash: bytes, proof, sender=None,
                        chunks: "tuple[bytes, bytes] | None" = None) -> dict:
        """Settle an open CIRCUIT dispute with ``proof`` (a ZkProof for the disputed input):
        the receipts whose values disagree with the proven outputs are slashed now.
        ``chunks``: the disputed chunks (by default :meth:`dispute_chunks`).
        Returns {"a_wrong", "b_wrong", "slashed", "gas"}."""
        a, b = chunks if chunks is not None else self.dispute_chunks(dispute_id)
        res = self._tx(self.disputes.functions.settle_by_proof(int(dispute_id), bytes(raw_input_hash), proof.proof,
                                                               [int(i) for i in proof.instances], bytes(a), bytes(b)),
                       sender)
        # the transaction also logs InferenceRegistry/NodeRegistry events: skip those quietly
        ev = self.disputes.events.SettledByProof().process_receipt(res.receipt, errors=DISCARD)[0]["args"]
        return {"a_wrong": ev["a_wrong"], "b_wrong": ev["b_wrong"], "slashed": int(ev["slashed"]),
                "gas": res.gas_used}


def circuit_output_scale(circuit) -> int:
    """The one output scale of ``circuit`` (ezkl settings' model_output_scales); InputError
    when its outputs have several (a CIRCUIT dispute dequantises all outputs alike)."""
    scales = set(circuit.output_scales or [0])
    if len(scales) != 1:
        raise InputError(f"the circuit's outputs have several scales {sorted(scales)}",
                         fix="build the circuit with one output scale, or settle disputes by vote")
    return int(scales.pop())
