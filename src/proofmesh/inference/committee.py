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
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proofmesh.errors import InputError, NotAvailableError
from proofmesh.inference.receipt import COMMIT_CIRCUIT, circuit_input_hash, input_hash, output_values
from proofmesh.store.journal import Journal

if TYPE_CHECKING:
    from proofmesh.inference.server import InferenceNode


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


def vote_on_dispute(node: InferenceNode, dispute_id: int, raw_input: Any) -> dict:
    """Step 1 (in the vote window): check the input matches the dispute, re-run the model,
    keep the values, commit to the vote."""
    values = _reexecute(node, dispute_id, raw_input)
    node.registry.dispute_chunks(dispute_id)       # what the reveal needs (cached): no vote it cannot reveal
    node.ballots.commit(dispute_id, values)        # before the transaction: never a vote without its values
    node.registry.commit_vote(dispute_id, values, _vote_salt(node, dispute_id), sender=node.account)
    return {"committed": True, "node": node.address}


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


def committee_tick(node: InferenceNode) -> dict[str, list[int]]:
    """Duty that needs no disputer: reveal committed votes once their vote window is over,
    and claim the voter's share of the reward from disputes resolved its way. The node
    daemon runs it every few seconds; returns what was done."""
    done: dict[str, list[int]] = {"revealed": [], "claimed": []}
    ballots = node.ballots
    if node.registry is None or not (ballots.committed or ballots.revealed):
        return done
    reg = node.registry
    now = reg.chain.timestamp()
    for did in list(ballots.committed):
        st = reg.dispute_state(did)
        if st["state"] != 1 or now > st["reveal_deadline"]:
            ballots.done(did)                          # settled by proof, or too late to reveal
        elif reg.chain.call(reg.disputes.functions.voted(did, node.address)):
            ballots.reveal(did)                        # revealed already (asked by the router)
        elif now > st["deadline"]:
            reveal_vote_on_dispute(node, did)
            done["revealed"].append(did)
    for did in list(ballots.revealed):
        st = reg.dispute_state(did)
        if st["state"] == 1:
            continue
        winner = 2 if st["weight_b"] > st["weight_a"] else 1
        side, _, claimed = reg.chain.call(reg.disputes.functions.votes(did, node.address))
        if st["state"] == 2 and side == winner and not claimed \
                and reg.chain.call(reg.disputes.functions.voter_reward(did)) > 0:
            reg.claim_vote_reward(did, sender=node.account)
            done["claimed"].append(did)
        ballots.done(did)
    return done


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
