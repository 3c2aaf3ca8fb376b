"""Committee duty of an inference node: re-execute a disputed request, commit a vote,
reveal it after the vote window, claim the reward.

InferenceDisputes votes are commit-reveal (see its docstring): in the vote window a
bonded node that is not a party commits keccak256(abi.encode(voter, dispute, count,
values, salt)); after it, it reveals. The salt is derived from the node's key (HMAC), so
it never needs storing; the re-executed values are kept in a small journal
(:class:`Ballots`, ``<workdir>/ballots-<version>.jsonl``) so a node restarted between
commit and reveal can still reveal, and its daemon's duty loop (:func:`committee_tick`)
reveals and claims with nobody asking.

The contract keeps only the hashes of the two disputed chunks; a reveal hands the chunks
back, read from the dispute's ``Disputed`` event (:meth:`InferenceRegistry.dispute_chunks`).
A node reads them before it commits: one that cannot (its RPC keeps no logs of that block)
never commits a vote it could not reveal.

Only nodes drawn for the dispute's committee may vote (:func:`drawn`, the contract's
``eligible``): a node that is not drawn says so and commits nothing. A vote locks the
voter's bond until the dispute is settled; then the duty loop penalises the voters that
committed and never revealed or revealed for the losing side (their penalty grows the
winners' reward: :func:`penalise_wrong_voters`, which any keeper may run), claims, or
releases the node's own bond.
"""

from __future__ import annotations

import hmac
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proofmesh.errors import ContractRevert, InputError, NotAvailableError
from proofmesh.inference.receipt import COMMIT_CIRCUIT, circuit_input_hash, input_hash, output_values
from proofmesh.store.journal import Journal

if TYPE_CHECKING:
    from proofmesh.http_pool import PeerPool
    from proofmesh.http_reads import Answer
    from proofmesh.inference.registry import InferenceRegistry
    from proofmesh.inference.server import InferenceNode

log = logging.getLogger(__name__)


def drawn(seed: bytes, voter: str, bond: int, bond_per_seat: int) -> bool:
    """The committee draw, as InferenceDisputes computes it: ``voter`` is drawn iff
    uint256(keccak256(abi_encode(seed, voter))) < (2**256 - 1) // bond_per_seat * bond, or its
    bond is at least ``bond_per_seat`` (total bond / committee size when the dispute
    opened): probability min(1, bond / bond_per_seat), about committee-size nodes drawn."""
    from eth_abi import encode

    from proofmesh.crypto.keccak import keccak256

    if bond >= bond_per_seat:
        return True
    h = int.from_bytes(keccak256(encode(["bytes32", "address"], [bytes(seed), voter])), "big")
    return h < (2**256 - 1) // bond_per_seat * bond


class Ballots:
    """A node's votes in flight: committed (values kept for the reveal) and revealed
    (reward not yet claimed), kept across restarts."""

    def __init__(self, path: Path | None) -> None:
        # fsync per record: a vote is committed rarely, and values lost after the commit
        # transaction mean a vote that can never be revealed
        self._journal = Journal(path, durability="fsync")
        self.committed: dict[int, list[int]] = {}
        self.revealed: set[int] = set()
        for key, rec in self._journal.records.items():
            if rec is None:
                continue
            if rec["revealed"]:
                self.revealed.add(int(key))
            else:
                self.committed[int(key)] = rec["values"]

    def commit(self, dispute_id: int, values: list[int]) -> None:
        self._journal.put(int(dispute_id), {"values": [int(v) for v in values], "revealed": False})
        self.committed[int(dispute_id)] = values

    def reveal(self, dispute_id: int) -> None:
        self._journal.put(int(dispute_id), {"values": [], "revealed": True})
        self.committed.pop(int(dispute_id), None)
        self.revealed.add(int(dispute_id))

    def done(self, dispute_id: int) -> None:
        """Nothing left to do for this dispute (claimed, lost, or too late to reveal)."""
        self._journal.put(int(dispute_id), None)
        self.committed.pop(int(dispute_id), None)
        self.revealed.discard(int(dispute_id))

    def close(self) -> None:
        self._journal.close()


class Defence:
    """What a node keeps to defend its answers: the inputs it answered (bounded in bytes,
    oldest dropped first) and the disputes it has sent a committee.

    The chain holds only a disputed input's hash, and committee members re-execute only
    what someone sends them. Left to the disputer, a disputer who is also the liar sends
    the input to its own drawn sybil alone: one bond meets the quorum and the honest node is
    slashed (review 6, R6-4). The accused node served the same request, so it holds the
    input too: :func:`defend` sends it to every node drawn for the committee."""

    # how far back a node that has just started looks for disputes naming it
    SCAN_BACK_BLOCKS = 1_000

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        # receipt input_hash -> (inputs, their bytes), oldest first
        self._inputs: dict[bytes, tuple[dict[str, Any], int]] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.cursor: int | None = None                     # next block to scan for Disputed events
        self.pending: dict[int, dict[str, Any]] = {}       # open disputes against this node -> input
        # (dispute, node) done with: sent the input, or not drawn (which cannot change once
        # the seed is fixed: only bonds posted before the opening count)
        self.settled: set[tuple[int, str]] = set()

    def keep(self, input_hash: bytes, inputs: dict[str, Any]) -> None:
        """Remember the input a receipt committed to (the node's request path: a dict insert;
        the arrays are the request's own, not copied)."""
        size = sum(int(getattr(a, "nbytes", 0)) for a in inputs.values())
        if size > self.max_bytes:
            return
        with self._lock:
            if input_hash in self._inputs:
                return
            self._inputs[input_hash] = (inputs, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._bytes -= self._inputs.pop(next(iter(self._inputs)))[1]

    def get(self, input_hash: bytes) -> dict[str, Any] | None:
        with self._lock:
            held = self._inputs.get(input_hash)
        return held[0] if held is not None else None


def defend(node: InferenceNode, *, deadline_s: float = 120.0) -> list[int]:
    """Duty of a node named in a dispute (either side): send the disputed input, which it
    kept when it answered, to every node drawn for the dispute's committee that has not had
    it, during the vote window; fix the committee's seed first if nobody has. Returns the
    disputes whose committee got the input from this call. A node that no longer holds the
    input (restarted, or past ``keep_inputs_mb``) cannot help and says so in its log."""
    from proofmesh.chain.core import Registry
    from proofmesh.chain.deploy import ROLES
    from proofmesh.inference.model import encode_tensor
    from proofmesh.inference.registry import DISPUTES

    reg, d = node.registry, node.defence
    if reg is None:
        return []
    head = reg.chain.block_number()
    start = d.cursor if d.cursor is not None else max(0, head - Defence.SCAN_BACK_BLOCKS)
    if start <= head:
        for side in ("node_a", "node_b"):
            for ev in reg.chain.events(DISPUTES, "Disputed", from_block=start, to_block=head,
                                       argument_filters={side: node.address}):
                did, ih = int(ev["args"]["dispute"]), bytes(ev["args"]["input_hash"])
                inputs = d.get(ih)
                if inputs is None:
                    log.warning("dispute %s names %s, which no longer holds its input: it cannot send it to the "
                                "committee", did, node.address)
                else:
                    d.pending[did] = inputs
        d.cursor = head + 1
    defended = []
    now = reg.chain.timestamp()
    for did, inputs in list(d.pending.items()):
        st = reg.dispute_state(did)
        if st["state"] != 1 or now > st["deadline"]:
            del d.pending[did]                  # settled, or past the vote window
            continue
        if st["seed"] == bytes(32):
            reg.draw(did, sender=node.account)  # the accused has the most reason to
        parties = {st["node_a"].lower(), st["node_b"].lower()}
        members = []
        for n in Registry(reg.chain).nodes_with_role(ROLES["inference"]):
            if (did, n.address) in d.settled or n.address.lower() in parties or not n.endpoint.startswith("http"):
                continue
            if reg.eligible(did, n.address):
                members.append((n.address, n.endpoint.rstrip("/")))
            else:
                d.settled.add((did, n.address))
        if not members:
            continue
        answers = ask_committee(node.peers, members, did, "vote", {k: encode_tensor(v) for k, v in inputs.items()},
                               max_bytes=1 << 20, deadline_s=deadline_s)
        # a member that answered voted, or refused for a reason of its own; one that is down is
        # tried again next tick, while the vote window lasts
        d.settled.update((did, a) for a in answers)
        sent_now = sum(r.status_code == 200 for r in answers.values())
        if sent_now:
            log.info("dispute %s: %s sent the disputed input to %d drawn committee member(s)", did, node.address,
                     sent_now)
            defended.append(did)
    return defended


def ask_committee(pool: PeerPool, members: list[tuple[str, str]], dispute_id: int, duty: str, raw_input: Any, *,
                  max_bytes: int, deadline_s: float) -> dict[str, Answer]:
    """``POST <endpoint>/v1/committee/<duty>`` (vote or reveal) with the disputed input to each
    ``(address, endpoint)`` member: the answers of those that answered, whatever their status
    (a member that is down, too slow or not speaking HTTP is left out)."""
    from proofmesh.http_reads import PEER_ERRORS

    answers = {}
    for address, endpoint in members:
        try:
            answers[address] = pool.request("POST", f"{endpoint}/v1/committee/{duty}", max_bytes=max_bytes,
                                            deadline_s=deadline_s, json={"dispute": dispute_id, "input": raw_input})
        except PEER_ERRORS:
            continue
    return answers


def vote_on_dispute(node: InferenceNode, dispute_id: int, raw_input: Any) -> dict:
    """Step 1 (in the vote window): check this node is drawn for the dispute's committee
    (if not, it says so and does nothing), check the input matches the dispute, re-run the
    model, keep the values, commit to the vote."""
    if node.registry is None:
        raise NotAvailableError("node has no chain connection", fix="start it with a chain")
    if not node.registry.eligible(dispute_id, node.address):
        log.info("dispute %s: %s is not drawn for its committee (or may not vote in it): no vote",
                 dispute_id, node.address)
        return {"committed": False, "eligible": False, "node": node.address}
    values = _reexecute(node, dispute_id, raw_input)
    node.registry.dispute_chunks(dispute_id)       # what the reveal needs (cached): no vote it cannot reveal
    node.ballots.commit(dispute_id, values)        # before the transaction: never a vote without its values
    node.registry.commit_vote(dispute_id, values, _vote_salt(node, dispute_id), sender=node.account)
    log.info("dispute %s: %s is drawn for its committee and committed a vote", dispute_id, node.address)
    return {"committed": True, "eligible": True, "node": node.address}


def reveal_vote_on_dispute(node: InferenceNode, dispute_id: int, raw_input: Any = None) -> dict:
    """Step 2 (after the vote window): reveal the committed vote, with the disputed chunks
    the contract checks it against. A node without the values (its ballot journal lost)
    re-executes ``raw_input``: the same model on the same input gives the same fixed-point
    values."""
    values = node.ballots.committed.get(dispute_id)
    if values is None:
        if raw_input is None:
            raise InputError(f"this node holds no vote for dispute {dispute_id}",
                             fix="send the disputed input so the node can re-execute it")
        values = _reexecute(node, dispute_id, raw_input)
    side = node.registry.reveal_vote(dispute_id, values, _vote_salt(node, dispute_id), sender=node.account,
                                     chunks=node.registry.dispute_chunks(dispute_id))
    node.ballots.reveal(dispute_id)
    return {"revealed": True, "side": side, "node": node.address}


def committee_tick(node: InferenceNode) -> dict[str, list]:
    """Duty that needs no disputer: send the input of a dispute naming this node to its
    drawn committee (:func:`defend`); reveal committed votes once their vote window is over;
    once a dispute is settled, penalise the wrong and silent voters of a vote this node won
    (it grows the node's reward), claim its share, or release its own bond (a vote for
    neither side, a void dispute, one settled by proof). The node daemon runs it every few
    seconds; returns what was done ("penalised" lists (dispute, voter) pairs, "defended"
    the disputes whose committee this call sent the input)."""
    done: dict[str, list] = {"revealed": [], "claimed": [], "penalised": [], "released": [], "defended": []}
    if node.registry is None:
        return done
    done["defended"] = defend(node)
    ballots = node.ballots
    if not (ballots.committed or ballots.revealed):
        return done
    reg = node.registry
    now = reg.chain.timestamp()
    for did in list(ballots.committed):
        st = reg.dispute_state(did)
        if st["state"] != 1:
            _settle_own(reg, node, did, st, done)      # never revealed: penalised if a vote decided
            ballots.done(did)
        elif reg.chain.call(reg.disputes.functions.voted(did, node.address)):
            ballots.reveal(did)                        # revealed already (asked by the router)
        elif st["deadline"] < now <= st["reveal_deadline"]:
            reveal_vote_on_dispute(node, did)
            done["revealed"].append(did)
    for did in list(ballots.revealed):
        st = reg.dispute_state(did)
        if st["state"] == 1:
            continue
        _settle_own(reg, node, did, st, done)
        ballots.done(did)
    return done


def _settle_own(reg: InferenceRegistry, node: InferenceNode, did: int, st: dict, done: dict) -> None:
    # what is left for this node's vote in a settled dispute: on the winning side, penalise
    # the others' wrong votes first (their penalties grow the pool), then claim (which
    # releases its bond); not penalisable, release; penalisable, nothing (anyone penalises)
    v = reg.vote(did, node.address)
    winner = st["winner"]
    if v["settled"] or not v["committed"]:
        return
    if winner and v["revealed"] and v["side"] == winner:
        done["penalised"] += [(did, voter) for voter in penalise_wrong_voters(reg, did, sender=node.account)]
        pool = reg.chain.call(reg.disputes.functions.voter_reward(did))
        total = st["weight_a"] if winner == 1 else st["weight_b"]
        if pool * v["weight"] // total > v["paid"]:
            reg.claim_vote_reward(did, sender=node.account)
            done["claimed"].append(did)
            return
    if not winner or (v["revealed"] and v["side"] in (0, winner)):
        reg.release_voter(did, node.address, sender=node.account)
        done["released"].append(did)


def penalise_wrong_voters(reg: InferenceRegistry, dispute_id: int, sender=None) -> list[str]:
    """Keeper duty (anyone): penalise every voter of a dispute resolved by vote that
    committed and never revealed, or revealed for the losing side. Returns those penalised
    (one that someone else penalised meanwhile is skipped)."""
    out = []
    for voter in reg.penalisable(dispute_id):
        try:
            reg.penalise_voter(dispute_id, voter, sender=sender)
        except ContractRevert as exc:
            if "already settled" not in exc.reason:
                raise
            continue
        out.append(voter)
    return out


def _vote_salt(node: InferenceNode, dispute_id: int) -> bytes:
    # secret to everyone else (keyed by the node's key), so a committed vote cannot be
    # guessed from the few possible outcomes; recomputable, so nothing must be stored
    msg = (b"proofmesh dispute vote" + bytes.fromhex(node.registry.disputes.address[2:])
           + int(dispute_id).to_bytes(32, "big"))
    return hmac.new(bytes(node.account.key), msg, "sha256").digest()


def _reexecute(node: InferenceNode, dispute_id: int, raw_input: Any) -> list[int]:
    """The node's fixed-point outputs for the disputed input (the circuit's, for CIRCUIT
    receipts), after checking the input is the disputed one."""
    from proofmesh.inference.server import circuit_output

    if node.registry is None:
        raise NotAvailableError("node has no chain connection", fix="start it with a chain")
    st = node.registry.dispute_state(dispute_id)
    if st["version"] != node.config.version:
        raise InputError(f"dispute {dispute_id} is about version {st['version']}, this node serves "
                         f"{node.config.version}", fix="ask a node serving that version")
    inputs = node.model.prepare(raw_input)
    if st.get("commitment") == COMMIT_CIRCUIT:
        # circuit receipts commit the circuit's output: re-execute the circuit
        if node.circuit is None:
            raise NotAvailableError("the dispute is over circuit receipts and this node has no circuit",
                                    fix="ask a node serving the version with its circuit")
        w = node.circuit.witness(next(iter(inputs.values())), node.workdir / "witness")
        w.path.unlink(missing_ok=True)
        from proofmesh.inference.registry import circuit_output_scale
        ih, outputs = (circuit_input_hash(input_hash(inputs), w.input_hash),
                       [circuit_output(w, circuit_output_scale(node.circuit))])
    else:
        ih, outputs = input_hash(inputs), None
    if ih != bytes(st["input_hash"]):
        raise InputError("input does not match the disputed input hash", fix="send the exact disputed input")
    return output_values(outputs if outputs is not None else node.model.run(inputs))
