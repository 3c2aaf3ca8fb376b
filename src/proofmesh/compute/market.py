"""Typed client of the JobMarket and OptimisticVerifier contracts.

Every write checks what it can before sending (so bad input fails with a clear
:class:`InputError` and nothing on chain changes), then lets the contract enforce the
rest (a revert becomes :class:`ContractRevert` with the contract's reason).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from eth_abi import encode as abi_encode
from eth_hash.auto import keccak
from web3 import Web3
from web3.logs import DISCARD

from proofmesh.chain.client import Chain
from proofmesh.chain.core import Registry, Token
from proofmesh.crypto.merkle import MerkleTree, leaf_hash
from proofmesh.errors import InputError

MODES = {"replicated": 0, "optimistic": 1}
MODE_NAMES = {v: k for k, v in MODES.items()}
STATUS = {1: "open", 2: "assigning", 3: "working", 4: "reveal", 5: "submitted", 6: "disputed",
          7: "settled", 8: "refunded", 9: "cancelled"}
SLOT_STATES = {0: "none", 1: "applied", 2: "assigned", 3: "committed", 4: "revealed", 5: "done", 6: "dropped"}
OUTCOME_VERIFIED, OUTCOME_FAULT, OUTCOME_VOID = 1, 2, 3
GAME_STATUS = {0: "none", 1: "open", 2: "disputed", 3: "closed"}
TURNS = {0: "none", 1: "worker", 2: "challenger", 3: "referee"}
ROLE_COMPUTE = 2
_JOB_FIELDS = ("poster", "reward", "mode", "status", "replicas", "n_segments", "base_version", "profile",
               "apply_close", "deadline", "work_seconds", "phase_deadline", "seed_block", "round", "committed",
               "revealed", "worker_bond", "weights_root", "trace_root", "version_id")


def _hex(b: bytes) -> str:
    return "0x" + bytes(b).hex()


@dataclass
class JobInfo:
    """A job as the contract sees it, plus its workers and locators."""

    job_id: int
    poster: str
    reward: int
    mode: str
    status: str
    replicas: int
    n_segments: int
    base_version: int
    profile: str
    apply_close: int
    deadline: int
    work_seconds: int
    phase_deadline: int
    seed_block: int
    round: int
    committed: int
    revealed: int
    worker_bond: int
    weights_root: str
    trace_root: str
    version_id: int
    workers: list[str]
    applicants: list[str]
    spec_cid: str
    name: str
    manifest_cid: str
    result_cid: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- trace
class Trace:
    """The checkpoint trace of a run: Merkle tree over leaves (index, checkpoint_hash)."""

    def __init__(self, hashes: Sequence[bytes]) -> None:
        if len(hashes) < 2:
            raise InputError("a trace needs at least the initial and the final checkpoint",
                             fix="train at least one segment")
        self.hashes = [bytes(h) for h in hashes]
        self.tree = MerkleTree([leaf_hash(["uint256", "bytes32"], [i, h]) for i, h in enumerate(self.hashes)])

    @property
    def root(self) -> bytes:
        return self.tree.root

    @property
    def n_segments(self) -> int:
        return len(self.hashes) - 1

    def proof(self, index: int) -> list[bytes]:
        return self.tree.proof(index)

    def to_json(self) -> list[str]:
        return [_hex(h) for h in self.hashes]

    @classmethod
    def from_json(cls, items: Sequence[str]) -> "Trace":
        return cls([bytes.fromhex(x.removeprefix("0x")) for x in items])


def commitment(job_id: int, worker: str, weights_root: bytes, trace_root: bytes, salt: bytes) -> bytes:
    """keccak(abi.encode(job_id, worker, weights_root, trace_root, salt)): binds the sender."""
    return keccak(abi_encode(["uint256", "address", "bytes32", "bytes32", "bytes32"],
                             [job_id, Web3.to_checksum_address(worker), weights_root, trace_root, salt]))


# --------------------------------------------------------------------------- client
class JobMarketClient:
    """Reads and writes the compute market for one chain connection."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.c = chain.contract("JobMarket")
        self.v = chain.contract("OptimisticVerifier")
        self.token = Token(chain)
        self.registry = Registry(chain)

    def _tx(self, fn: Any, sender: Any = None):
        """Send with head-room over the gas estimate.

        anvil's estimate for some of these calls equals the gas *used* after storage
        refunds, and a transaction given exactly that much runs out of gas before the
        refund applies (seen on bisect_reveal and commit). A 25% margin covers it;
        unused gas is not charged.
        """
        sender = sender or self.chain.account
        try:
            est = fn.estimate_gas({"from": sender.address})
        except Exception:
            return self.chain.transact(fn, sender=sender)   # raises ContractRevert with the reason
        return self.chain.transact(fn, sender=sender, gas=int(est * 1.25) + 50_000)

    # ------------------------------------------------------------------ reads
    def job_count(self) -> int:
        return self.chain.call(self.c.functions.job_count())

    def job(self, job_id: int) -> JobInfo:
        """The job's on-chain record; InputError for an unknown id."""
        if not 1 <= job_id <= self.job_count():
            raise InputError(f"no job {job_id} (jobs are 1..{self.job_count()})",
                             fix="list jobs with `proofmesh compute list`")
        raw = dict(zip(_JOB_FIELDS, self.chain.call(self.c.functions.jobs(job_id))))
        spec_cid, name, manifest_cid, result_cid = self.chain.call(self.c.functions.locators(job_id))
        return JobInfo(
            job_id=job_id, poster=raw["poster"], reward=raw["reward"], mode=MODE_NAMES[raw["mode"]],
            status=STATUS.get(raw["status"], str(raw["status"])), replicas=raw["replicas"],
            n_segments=raw["n_segments"], base_version=raw["base_version"], profile=_hex(raw["profile"]),
            apply_close=raw["apply_close"], deadline=raw["deadline"], work_seconds=raw["work_seconds"],
            phase_deadline=raw["phase_deadline"], seed_block=raw["seed_block"], round=raw["round"],
            committed=raw["committed"], revealed=raw["revealed"], worker_bond=raw["worker_bond"],
            weights_root=_hex(raw["weights_root"]), trace_root=_hex(raw["trace_root"]),
            version_id=raw["version_id"], workers=list(self.chain.call(self.c.functions.workers_of(job_id))),
            applicants=list(self.chain.call(self.c.functions.applicants_of(job_id))),
            spec_cid=spec_cid, name=name, manifest_cid=manifest_cid, result_cid=result_cid)

    def jobs(self) -> list[JobInfo]:
        return [self.job(i) for i in range(1, self.job_count() + 1)]

    def slot(self, job_id: int, node: str) -> dict[str, Any]:
        state, comm, wr, tr, stake = self.chain.call(self.c.functions.slots(job_id, Web3.to_checksum_address(node)))
        return {"state": SLOT_STATES[state], "commitment": _hex(comm), "weights_root": _hex(wr),
                "trace_root": _hex(tr), "stake_at_apply": stake}

    def game(self, job_id: int) -> dict[str, Any]:
        """The optimistic verification game of a job: status, dispute, audit."""
        worker, status, n, trace_root, h_first, h_last, deadline = self.chain.call(self.v.functions.games(job_id))
        d = self.chain.call(self.v.functions.disputes(job_id))
        a = self.chain.call(self.v.functions.audits(job_id))
        return {"worker": worker, "status": GAME_STATUS[status], "n_segments": n, "trace_root": _hex(trace_root),
                "challenge_deadline": deadline,
                "dispute": {"challenger": d[0], "bond": d[1], "lo": d[2], "hi": d[3], "h_lo": _hex(d[4]),
                            "h_hi": _hex(d[5]), "h_mid": _hex(d[6]), "turn": TURNS[d[7]], "turn_deadline": d[8]},
                "audit": {"block": a[0], "drawn": a[1], "pending": a[2], "seed": _hex(a[3]), "deadline": a[4],
                          "segments": list(self.chain.call(self.v.functions.audit_plan(job_id)))}}

    def referee(self) -> str:
        return self.chain.call(self.c.functions.referee())

    def param(self, name: str) -> int:
        """A parameter of either contract by name (e.g. worker_bond, audit_rate_bps)."""
        for c in (self.c, self.v):
            if any(f.get("name") == name for f in c.abi):
                return self.chain.call(getattr(c.functions, name)())
        raise InputError(f"unknown market parameter {name!r}", fix="see JobMarket/OptimisticVerifier set_parameter")

    def total_escrowed(self) -> int:
        return self.chain.call(self.c.functions.total_escrowed())

    # ------------------------------------------------------------------ poster
    def post(self, *, spec_cid: str, name: str, base_version: int, batches: Sequence[bytes], mode: str,
             replicas: int, n_segments: int, profile_id: bytes, reward: int, apply_seconds: int,
             work_seconds: int, deadline: int, sender: Any = None) -> int:
        """Escrow ``reward`` and post a job; every check that can fail does so before any transaction."""
        sender = sender or self.chain.account
        if mode not in MODES:
            raise InputError(f"unknown mode {mode!r}", fix="use --mode replicated or --mode optimistic")
        if mode == "replicated" and (replicas < 3 or replicas % 2 == 0 or replicas > 9):
            raise InputError(f"replicated mode needs an odd number of replicas in 3..9, got {replicas}",
                             fix="use --replicas 3 (or 5, 7, 9)")
        if mode == "optimistic" and replicas != 1:
            raise InputError("optimistic mode has exactly one worker", fix="drop --replicas or pass --replicas 1")
        models = self.chain.contract("ModelRegistry")
        if not name or len(name.encode()) > 64:
            raise InputError(f"lineage name {name!r} must be 1-64 bytes", fix="choose a shorter --name")
        owner = self.chain.call(models.functions.name_owner(Web3.keccak(text=name)))
        if int(owner, 16) != 0 and owner.lower() != sender.address.lower():
            # post claims the name for the poster (audit L2), so the contract would revert.
            raise InputError(f"lineage {name!r} is owned by {owner}; the result could not be registered under it",
                             fix="post under a lineage name you own or one nobody has claimed (--name)")
        count = self.chain.call(models.functions.version_count())
        if not 1 <= base_version <= count:
            raise InputError(f"unknown base model version {base_version} (registry has 1..{count})",
                             fix="register the base model with `proofmesh model register` and pass its id")
        minimum = self.param("min_reward")
        if reward < minimum:
            raise InputError(f"reward {reward} wei is below the market minimum {minimum} wei",
                             fix=f"offer at least {minimum / 10**18:g} MESH")
        workers = [n for n in self.registry.nodes_with_role(ROLE_COMPUTE)
                   if n.address.lower() != sender.address.lower()]
        if replicas > len(workers):
            raise InputError(f"{replicas} replicas requested but only {len(workers)} active COMPUTE node(s) exist",
                             fix="lower --replicas or wait for more workers to stake")
        have = self.token.balance(sender.address)
        if have < reward:
            raise InputError(f"balance {have} wei is below the reward {reward} wei", fix="fund the account first")
        self.token.ensure_allowance(self.c.address, reward, sender=sender)
        tx = self._tx(self.c.functions.post(
            spec_cid, name, base_version, list(batches), MODES[mode], replicas, n_segments, profile_id, reward,
            apply_seconds, work_seconds, deadline), sender)
        return self.c.events.JobPosted().process_receipt(tx.receipt, errors=DISCARD)[0]["args"]["job_id"]

    def cancel(self, job_id: int, sender: Any = None):
        return self._tx(self.c.functions.cancel(job_id), sender)

    # ------------------------------------------------------------------ workers
    def apply(self, job_id: int, profile_id: bytes, sender: Any = None):
        return self._tx(self.c.functions.apply(job_id, profile_id), sender)

    def close_applications(self, job_id: int, sender: Any = None):
        return self._tx(self.c.functions.close_applications(job_id), sender)

    def draw(self, job_id: int, sender: Any = None) -> list[str]:
        self._tx(self.c.functions.draw(job_id), sender)
        return list(self.chain.call(self.c.functions.workers_of(job_id)))

    def commit(self, job_id: int, weights_root: bytes, trace_root: bytes, salt: bytes | None = None,
               sender: Any = None) -> bytes:
        """Commit to a result; returns the salt (keep it to reveal)."""
        sender = sender or self.chain.account
        salt = salt or os.urandom(32)
        self._tx(self.c.functions.commit(
            job_id, commitment(job_id, sender.address, weights_root, trace_root, salt)), sender)
        return salt

    def reveal(self, job_id: int, weights_root: bytes, trace_root: bytes, salt: bytes, manifest_cid: str,
               result_cid: str, sender: Any = None):
        return self._tx(self.c.functions.reveal(job_id, weights_root, trace_root, salt, manifest_cid,
                                                           result_cid), sender)

    def finalize_replicated(self, job_id: int, sender: Any = None):
        return self._tx(self.c.functions.finalize_replicated(job_id), sender)

    def rule_replicated(self, job_id: int, accepted: Sequence[str], manifest_cid: str = "", result_cid: str = "",
                        sender: Any = None):
        """Referee's ruling; the CIDs are accepted[0]'s (registered with the result)."""
        return self._tx(self.c.functions.rule_replicated(
            job_id, [Web3.to_checksum_address(a) for a in accepted], manifest_cid, result_cid), sender)

    def timeout_dispute(self, job_id: int, sender: Any = None):
        """Void a replicated dispute the referee let lapse: bonds released, poster refunded."""
        return self._tx(self.c.functions.timeout_dispute(job_id), sender)

    def reassign(self, job_id: int, sender: Any = None):
        return self._tx(self.c.functions.reassign(job_id), sender)

    def expire(self, job_id: int, sender: Any = None):
        return self._tx(self.c.functions.expire(job_id), sender)

    # ------------------------------------------------------------------ optimistic
    def submit(self, job_id: int, weights_root: bytes, trace: Trace, manifest_cid: str, result_cid: str,
               sender: Any = None):
        n = trace.n_segments
        return self._tx(self.v.functions.submit(
            job_id, weights_root, trace.root, trace.hashes[0], trace.proof(0), trace.hashes[n], trace.proof(n),
            manifest_cid, result_cid), sender)

    def challenge(self, job_id: int, sender: Any = None):
        return self._tx(self.v.functions.challenge(job_id), sender)

    def bisect_reveal(self, job_id: int, trace: Trace, sender: Any = None):
        d = self.game(job_id)["dispute"]
        mid = (d["lo"] + d["hi"]) // 2
        return self._tx(self.v.functions.bisect_reveal(job_id, trace.hashes[mid], trace.proof(mid)),
                                   sender=sender)

    def bisect_respond(self, job_id: int, agree: bool, sender: Any = None):
        return self._tx(self.v.functions.bisect_respond(job_id, agree), sender)

    def rule_segment(self, job_id: int, worker_right: bool, sender: Any = None):
        return self._tx(self.v.functions.rule_segment(job_id, worker_right), sender)

    def timeout_turn(self, job_id: int, sender: Any = None):
        return self._tx(self.v.functions.timeout_turn(job_id), sender)

    def draw_audit(self, job_id: int, sender: Any = None):
        return self._tx(self.v.functions.draw_audit(job_id), sender)

    def rule_audit_pass(self, job_id: int, sender: Any = None):
        return self._tx(self.v.functions.rule_audit(job_id, True, 0, b"\0" * 32, [], b"\0" * 32, []),
                                   sender=sender)

    def rule_audit_fail(self, job_id: int, segment: int, trace: Trace, sender: Any = None):
        return self._tx(self.v.functions.rule_audit(
            job_id, False, segment, trace.hashes[segment - 1], trace.proof(segment - 1), trace.hashes[segment],
            trace.proof(segment)), sender)

    def finalize_optimistic(self, job_id: int, sender: Any = None):
        return self._tx(self.v.functions.finalize(job_id), sender)


def expected_draw(seed_blockhash: bytes, job_id: int, round_: int, applicants: Sequence[str],
                  stakes: Sequence[int], max_share_bps: int, need: int) -> list[str]:
    """The workers ``JobMarket.draw`` picks, recomputed off chain (same algorithm, same bits).

    Stake-weighted sampling without replacement, each weight capped at
    ``max_share_bps`` of the applicants' total stake. Anyone can audit a draw with it.
    """
    seed = keccak(abi_encode(["bytes32", "uint256", "uint256"], [seed_blockhash, job_id, round_]))
    total = sum(stakes)
    cap = max(total * max_share_bps // 10_000, 1)
    weights = [min(s, cap) for s in stakes]
    total = sum(weights)
    picked = [False] * len(applicants)
    out = []
    for k in range(need):
        r = int.from_bytes(keccak(abi_encode(["bytes32", "uint256"], [seed, k])), "big") % max(total, 1)
        acc, chosen = 0, None
        for i, w in enumerate(weights):
            if picked[i]:
                continue
            acc += w
            if r < acc:
                chosen = i
                break
        if chosen is None:
            chosen = picked.index(False)
        picked[chosen] = True
        total -= weights[chosen]
        out.append(applicants[chosen])
    return out


def audit_plan(seed: bytes, n_segments: int, m: int) -> list[int]:
    """Segments ``OptimisticVerifier.audit_plan`` draws from an audit seed (same algorithm).

    Segment i (1-based) runs from checkpoint i-1 to checkpoint i.
    """
    m = min(m, n_segments)
    out: list[int] = []
    for nonce in range(4 * 32):
        if len(out) == m:
            break
        seg = int.from_bytes(keccak(abi_encode(["bytes32", "uint256"], [seed, nonce])), "big") % n_segments + 1
        if seg not in out:
            out.append(seg)
    for s in range(1, 257):
        if len(out) == m:
            break
        if s not in out:
            out.append(s)
    return out
