"""Typed client of the edge contracts (DeviceRegistry, EdgeEpochs).

Every write goes through :meth:`proofmesh.chain.client.Chain.transact`, so a revert
surfaces as ``ContractRevert`` with the contract's reason and nothing is half-done.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from web3 import Web3

from proofmesh.chain.client import Chain, TxResult
from proofmesh.chain.core import Token
from proofmesh.crypto.keccak import keccak256
from proofmesh.edge.epoch_tree import EMPTY_LEAF, EpochCommitment, Leaf
from proofmesh.edge.identity import KeyHolder, key_proof
from proofmesh.edge.reading import ReadingDomain
from proofmesh.errors import InputError

MAX_UINT64 = 2**64 - 1
# Challenge kinds (EdgeEpochs._KIND_*), bound into commitments.
KIND_READING, KIND_PAIR, KIND_COUNT, KIND_OMISSION, KIND_EMPTY_SLOT, KIND_SKIPPED = 1, 2, 3, 4, 5, 6


def pair_hash(has_a: bool, a: Leaf, has_b: bool, b: Leaf) -> bytes:
    """``EdgeEpochs._pair_hash``: the boundary leaves of a pair, count or omission challenge."""
    return keccak256(abi_encode(["bool", "bytes32", "bool", "bytes32"], [has_a, a.hash(), has_b, b.hash()]))


@dataclass(frozen=True)
class ChallengeCall:
    """One challenge, ready to commit and reveal: the ``EdgeEpochs`` function, its
    arguments without the salt, and the data its commitment binds."""

    function: str
    kind: int
    gateway: str
    epoch: int
    data: bytes
    args: list

    def challenge_hash(self) -> bytes:
        """keccak256(abi_encode(kind, gateway, epoch, data))."""
        return keccak256(abi_encode(["uint256", "address", "uint64", "bytes32"],
                                    [self.kind, Web3.to_checksum_address(self.gateway), self.epoch, self.data]))

    def commitment(self, challenger: str, salt: bytes) -> bytes:
        """keccak256(abi_encode(challenger, challenge_hash, salt)): only ``challenger`` can reveal it."""
        return keccak256(abi_encode(["address", "bytes32", "bytes32"],
                                    [Web3.to_checksum_address(challenger), self.challenge_hash(), salt]))


def parse_cell(cell: str) -> int:
    """An H3 cell string (``"871f1d489ffffff"``) as its 64-bit index; rejects anything else."""
    try:
        import h3
    except ImportError:  # pragma: no cover - h3 is a dependency
        h3 = None
    text = cell.strip().lower().removeprefix("0x")
    try:
        value = int(text, 16)
    except ValueError:
        raise InputError(f"--cell {cell!r} is not an H3 cell index (hex)",
                         fix="give an H3 cell such as 871f1d489ffffff (h3.latlng_to_cell(lat, lng, 7))") from None
    if h3 is not None and not h3.is_valid_cell(text):
        raise InputError(f"--cell {cell!r} is not a valid H3 cell",
                         fix="compute one with h3.latlng_to_cell(lat, lng, resolution)")
    return value


def _receipt_run(receipt: dict[str, Any], reading: Leaf, epoch: int
                 ) -> tuple[int, int, bytes, list[bytes], bytes]:
    """(first_seq, last_seq, runs_root, run proof, signature) of the receipt's run that covers
    ``reading`` in ``epoch``: what the omission challenges check the gateway signed."""
    from proofmesh.crypto.merkle import MerkleTree
    from proofmesh.edge.reading import run_leaf

    runs = [(bytes.fromhex(d[2:]), e, a, b) for d, e, a, b in receipt["runs"]]
    k = next((i for i, (d, e, a, b) in enumerate(runs)
              if d == reading.device and e == epoch and a <= reading.seq <= b), None)
    if k is None:
        raise InputError(f"the receipt does not cover seq {reading.seq} of that device in epoch {epoch}",
                         fix="use the receipt the gateway returned for that batch")
    tree = MerkleTree([run_leaf(*r) for r in runs])
    _, _, first, last = runs[k]
    return first, last, tree.root, tree.proof(k), bytes.fromhex(receipt["signature"].removeprefix("0x"))


@dataclass
class DeviceInfo:
    """A device as DeviceRegistry holds it."""

    device: str
    owner: str
    key: str
    device_class: str
    cell: str
    stake: int
    registered_at: int
    active: bool
    nonce: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class EdgeChain:
    """DeviceRegistry + EdgeEpochs on one chain connection."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.registry = chain.contract("DeviceRegistry")
        self.epochs = chain.contract("EdgeEpochs")
        self.epoch_length = int(chain.call(self.epochs.functions.epoch_length()))
        self.interval_length = int(chain.call(self.epochs.functions.interval_length()))
        self._committed_in: dict[bytes, int] = {}       # challenge commitment -> its block

    @property
    def domain(self) -> ReadingDomain:
        return ReadingDomain(self.chain.chain_id, self.epochs.address)

    # ------------------------------------------------------------------ devices
    def register_device(self, key: KeyHolder, *, device_class: str, cell: str, stake: int,
                        owner: LocalAccount | None = None) -> TxResult:
        """Bind ``key`` to ``owner`` (approves the stake first)."""
        owner = owner or self.chain.account
        if not device_class or len(device_class) > 32:
            raise InputError(f"device class {device_class!r} must be 1-32 characters", fix="e.g. --class sensor")
        cell_index = parse_cell(cell)
        deadline, v, r, s = key_proof(key, device=key.address, owner=owner.address, nonce=0,
                                      chain_id=self.chain.chain_id, registry=self.registry.address,
                                      deadline=self.chain.timestamp() + 3600)
        Token(self.chain).ensure_allowance(self.registry.address, stake, sender=owner)
        return self.chain.transact(self.registry.functions.register(
            key.address, device_class, cell_index, stake, deadline, v, r, s), sender=owner)

    def rotate_key(self, device: str, new_key: KeyHolder, *, owner: LocalAccount | None = None) -> TxResult:
        owner = owner or self.chain.account
        info = self.device(device)
        deadline, v, r, s = key_proof(new_key, device=info.device, owner=owner.address, nonce=info.nonce,
                                      chain_id=self.chain.chain_id, registry=self.registry.address,
                                      deadline=self.chain.timestamp() + 3600)
        return self.chain.transact(self.registry.functions.rotate_key(info.device, new_key.address, deadline, v, r, s),
                                   sender=owner)

    def revoke_key(self, device: str, *, owner: LocalAccount | None = None) -> TxResult:
        return self.chain.transact(self.registry.functions.revoke_key(Web3.to_checksum_address(device)),
                                   sender=owner or self.chain.account)

    def deregister(self, device: str, *, owner: LocalAccount | None = None) -> TxResult:
        return self.chain.transact(self.registry.functions.deregister(Web3.to_checksum_address(device)),
                                   sender=owner or self.chain.account)

    def withdraw_stake(self, device: str, *, owner: LocalAccount | None = None) -> TxResult:
        """Refund a deregistered device's stake once its unbonding period is over."""
        return self.chain.transact(self.registry.functions.withdraw_stake(Web3.to_checksum_address(device)),
                                   sender=owner or self.chain.account)

    def device(self, device: str) -> DeviceInfo:
        addr = Web3.to_checksum_address(device)
        d = self.chain.call(self.registry.functions.devices(addr))
        if d[0] == "0x" + "00" * 20 or int(d[0], 16) == 0:
            raise InputError(f"device {addr} is not registered", fix="run `proofmesh edge device register`")
        return DeviceInfo(addr, d[0], d[1], d[2], format(d[3], "x"), d[4], d[5], d[6], d[7])

    def devices(self) -> list[DeviceInfo]:
        n = self.chain.call(self.registry.functions.device_count())
        return [self.device(self.chain.call(self.registry.functions.device_at(i))) for i in range(n)]

    def key_record(self, key: str) -> tuple[str, int, int]:
        """(device, valid_from, valid_until) of a key."""
        k = self.chain.call(self.registry.functions.keys(Web3.to_checksum_address(key)))
        return k[0], int(k[1]), int(k[2])

    # ------------------------------------------------------------------ gateways
    def gateway(self, address: str) -> dict[str, Any]:
        g = self.chain.call(self.epochs.functions.gateways(Web3.to_checksum_address(address)))
        return {"bond": g[0], "next_epoch": g[1], "seed_hash": g[2], "last_publish": g[3], "active": g[4],
                "slashed": g[5], "leaving_at": g[6]}

    def enroll(self, first_epoch: int, seed_hash: bytes, *, sender: LocalAccount | None = None) -> TxResult:
        return self.chain.transact(self.epochs.functions.enroll(first_epoch, seed_hash), sender=sender)

    def publish(self, c: EpochCommitment, seed: bytes, next_seed_hash: bytes, *,
                sender: LocalAccount | None = None) -> TxResult:
        return self.chain.transact(self.epochs.functions.publish(
            c.epoch, c.root, c.counts_root, len(c.leaves), c.tree.depth, c.total_uptime, seed, next_seed_hash),
            sender=sender)

    def skip(self, to_epoch: int, seed: bytes, next_seed_hash: bytes, *,
             sender: LocalAccount | None = None) -> TxResult:
        """Declare the epochs from the gateway's next one up to ``to_epoch`` (excluded) published
        empty and continue at ``to_epoch`` (``seed``: the next epoch's; see ``EdgeEpochs.skip``)."""
        return self.chain.transact(self.epochs.functions.skip(to_epoch, seed, next_seed_hash), sender=sender)

    def skipped_range(self, gateway: str, first_epoch: int) -> dict[str, Any]:
        """The range a skip declared empty, by its first epoch (``skipped_at`` 0: none)."""
        s = self.chain.call(self.epochs.functions.skips(Web3.to_checksum_address(gateway), first_epoch))
        return {"first_epoch": first_epoch, "end_epoch": s[0], "seed": s[1], "skipped_at": s[2], "faulty": s[3]}

    def skip_containing(self, gateway: str, epoch: int) -> dict[str, Any] | None:
        """The skipped range of ``gateway`` that holds ``epoch`` (from EpochsSkipped events), or None."""
        for ev in self.chain.events("EdgeEpochs", "EpochsSkipped", from_block=0,
                                    argument_filters={"gateway": Web3.to_checksum_address(gateway)}):
            a = ev["args"]
            if a["first_epoch"] <= epoch < a["end_epoch"]:
                return self.skipped_range(gateway, a["first_epoch"])
        return None

    def epoch(self, gateway: str, epoch: int) -> dict[str, Any]:
        e = self.chain.call(self.epochs.functions.epochs(Web3.to_checksum_address(gateway), epoch))
        return {"root": e[0], "counts_root": e[1], "leaf_count": e[2], "depth": e[3], "seed": e[4],
                "total_uptime": e[5], "published_at": e[6], "faulty": e[7]}

    # ------------------------------------------------------------------ challenges
    # Every challenge is commit-reveal (audit M8): ``commit_challenge`` binds the
    # challenger's address, the challenge and a secret salt; the ``challenge_*`` call
    # reveals it in a later block. ``challenge_reading(...)`` and friends do both steps;
    # ``*_call`` + :meth:`commit_challenge` + :meth:`reveal_challenge` split them.
    def commit_challenge(self, call: ChallengeCall, *, sender: LocalAccount | None = None,
                         salt: bytes | None = None) -> bytes:
        """Send the commitment of ``call`` from ``sender``; returns the salt to reveal with."""
        sender = sender or self.chain.account
        salt = salt if salt is not None else secrets.token_bytes(32)
        commitment = call.commitment(sender.address, salt)
        tx = self.chain.transact(self.epochs.functions.commit_challenge(commitment), sender=sender)
        self._committed_in[commitment] = tx.block_number
        return salt

    def reveal_challenge(self, call: ChallengeCall, salt: bytes, *, sender: LocalAccount | None = None) -> TxResult:
        """Reveal a committed challenge from the committing address, once a later block exists."""
        sender = sender or self.chain.account
        block = self._committed_in.pop(call.commitment(sender.address, salt), None)
        if block is not None:
            self.chain.wait_past(block)   # the reveal must land in a later block
        return self.chain.transact(getattr(self.epochs.functions, call.function)(*call.args, salt), sender=sender)

    def commit_and_reveal(self, call: ChallengeCall, sender: LocalAccount | None = None) -> TxResult:
        """Both steps of a challenge, from ``sender`` (default: the chain's account)."""
        sender = sender or self.chain.account
        salt = self.commit_challenge(call, sender=sender)
        # transact() returns once the commitment is mined, so the reveal lands in a later block.
        return self.reveal_challenge(call, salt, sender=sender)

    def reading_call(self, gateway: str, c: EpochCommitment, index: int) -> ChallengeCall:
        leaf = c.leaves[index]
        return ChallengeCall("challenge_reading", KIND_READING, gateway, c.epoch, leaf.hash(),
                             [Web3.to_checksum_address(gateway), c.epoch, leaf.as_tuple(), c.tree.proof(index)])

    def challenge_reading(self, gateway: str, c: EpochCommitment, index: int, *,
                          sender: LocalAccount | None = None) -> TxResult:
        return self.commit_and_reveal(self.reading_call(gateway, c, index), sender)

    def _pair(self, c: EpochCommitment, i: int | None, j: int | None) -> tuple[list[Any], bytes]:
        a = c.leaves[i] if i is not None else EMPTY_LEAF
        b = c.leaves[j] if j is not None else EMPTY_LEAF
        args = [i is not None, a.as_tuple(), c.tree.proof(i) if i is not None else [],
                j is not None, b.as_tuple(), c.tree.proof(j) if j is not None else []]
        return args, pair_hash(i is not None, a, j is not None, b)

    def pair_call(self, gateway: str, c: EpochCommitment, i: int | None) -> ChallengeCall:
        j = 0 if i is None else i + 1
        args, h = self._pair(c, i, j)
        return ChallengeCall("challenge_pair", KIND_PAIR, gateway, c.epoch, h,
                             [Web3.to_checksum_address(gateway), c.epoch, *args])

    def challenge_pair(self, gateway: str, c: EpochCommitment, i: int | None, *,
                       sender: LocalAccount | None = None) -> TxResult:
        """Challenge leaves i and i+1 (i=None: the first leaf alone)."""
        return self.commit_and_reveal(self.pair_call(gateway, c, i), sender)

    def count_call(self, gateway: str, c: EpochCommitment, device: bytes) -> ChallengeCall:
        uptime = c.counts[device]
        idx = [k for k, lf in enumerate(c.leaves) if lf.device <= device]
        i = idx[-1] if idx else None
        j = (i + 1 if i is not None else 0)
        j = j if j < len(c.leaves) else None
        args, h = self._pair(c, i, j)
        dev = Web3.to_checksum_address("0x" + device.hex())
        data = keccak256(abi_encode(["address", "uint256", "bytes32"], [dev, uptime, h]))
        return ChallengeCall("challenge_count", KIND_COUNT, gateway, c.epoch, data,
                             [Web3.to_checksum_address(gateway), c.epoch, dev, uptime, c.count_proof(device), *args])

    def challenge_count(self, gateway: str, c: EpochCommitment, device: bytes, *,
                        sender: LocalAccount | None = None) -> TxResult:
        return self.commit_and_reveal(self.count_call(gateway, c, device), sender)

    def omission_call(self, gateway: str, c: EpochCommitment, receipt: dict[str, Any], reading: Leaf) -> ChallengeCall:
        """The proof that a receipted reading is missing: its run in the batch receipt, and the gap it would sit in."""
        first, last, root, proof, sig = _receipt_run(receipt, reading, c.epoch)
        key = (reading.device, reading.seq)
        below = [i for i, lf in enumerate(c.leaves) if (lf.device, lf.seq) < key]
        i = below[-1] if below else None
        j = (i + 1) if i is not None else 0
        j = j if j < len(c.leaves) else None
        args, h = self._pair(c, i, j)
        data = keccak256(abi_encode(["bytes32", "uint64", "uint64", "bytes32", "bytes32"],
                                    [reading.hash(), first, last, root, h]))
        return ChallengeCall("challenge_omission", KIND_OMISSION, gateway, c.epoch, data,
                             [Web3.to_checksum_address(gateway), c.epoch, reading.as_tuple(), first, last, root,
                              proof, sig[64], sig[:32], sig[32:64], *args])

    def challenge_omission(self, gateway: str, c: EpochCommitment, receipt: dict[str, Any], reading: Leaf, *,
                           sender: LocalAccount | None = None) -> TxResult:
        return self.commit_and_reveal(self.omission_call(gateway, c, receipt, reading), sender)

    def skipped_call(self, gateway: str, first_epoch: int, epoch: int, receipt: dict[str, Any],
                     reading: Leaf) -> ChallengeCall:
        """The proof that ``gateway`` receipted ``reading`` in ``epoch`` and then skipped it
        (the range that starts at ``first_epoch``): its run in the batch receipt."""
        first, last, root, proof, sig = _receipt_run(receipt, reading, epoch)
        data = keccak256(abi_encode(["bytes32", "uint64", "uint64", "bytes32", "uint64"],
                                    [reading.hash(), first, last, root, first_epoch]))
        return ChallengeCall("challenge_skipped", KIND_SKIPPED, gateway, epoch, data,
                             [Web3.to_checksum_address(gateway), first_epoch, epoch, reading.as_tuple(), first, last,
                              root, proof, sig[64], sig[:32], sig[32:64]])

    def challenge_skipped(self, gateway: str, first_epoch: int, epoch: int, receipt: dict[str, Any], reading: Leaf, *,
                          sender: LocalAccount | None = None) -> TxResult:
        return self.commit_and_reveal(self.skipped_call(gateway, first_epoch, epoch, receipt, reading), sender)

    def empty_slot_call(self, gateway: str, c: EpochCommitment, index: int) -> ChallengeCall:
        return ChallengeCall("challenge_empty_slot", KIND_EMPTY_SLOT, gateway, c.epoch, index.to_bytes(32, "big"),
                             [Web3.to_checksum_address(gateway), c.epoch, index, c.tree.proof(index)])

    def challenge_empty_slot(self, gateway: str, c: EpochCommitment, index: int, *,
                             sender: LocalAccount | None = None) -> TxResult:
        return self.commit_and_reveal(self.empty_slot_call(gateway, c, index), sender)

    # ------------------------------------------------------------------ rewards
    def claim(self, gateway: str, c: EpochCommitment, device: bytes, *, sender: LocalAccount | None = None) -> TxResult:
        return self.chain.transact(self.epochs.functions.claim(
            Web3.to_checksum_address(gateway), c.epoch, Web3.to_checksum_address("0x" + device.hex()), c.counts[device],
            c.count_proof(device)), sender=sender)

    def now(self) -> int:
        return int(time.time())
