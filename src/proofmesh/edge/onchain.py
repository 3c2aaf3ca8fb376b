"""Typed client of the edge contracts (DeviceRegistry, EdgeEpochs).

Every write goes through :meth:`proofmesh.chain.client.Chain.transact`, so a revert
surfaces as ``ContractRevert`` with the contract's reason and nothing is half-done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from proofmesh.chain.client import Chain, TxResult
from proofmesh.chain.core import Token
from proofmesh.edge.epoch_tree import EMPTY_LEAF, EpochCommitment, Leaf
from proofmesh.edge.identity import KeyHolder, key_proof
from proofmesh.edge.reading import ReadingDomain
from proofmesh.errors import InputError

MAX_UINT64 = 2**64 - 1


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

    def epoch(self, gateway: str, epoch: int) -> dict[str, Any]:
        e = self.chain.call(self.epochs.functions.epochs(Web3.to_checksum_address(gateway), epoch))
        return {"root": e[0], "counts_root": e[1], "leaf_count": e[2], "depth": e[3], "seed": e[4],
                "total_uptime": e[5], "published_at": e[6], "faulty": e[7]}

    # ------------------------------------------------------------------ challenges
    def challenge_reading(self, gateway: str, c: EpochCommitment, index: int, *,
                          sender: LocalAccount | None = None) -> TxResult:
        leaf = c.leaves[index]
        return self.chain.transact(self.epochs.functions.challenge_reading(
            Web3.to_checksum_address(gateway), c.epoch, leaf.as_tuple(), c.tree.proof(index)), sender=sender)

    def _pair(self, c: EpochCommitment, i: int | None, j: int | None) -> list[Any]:
        a = c.leaves[i] if i is not None else EMPTY_LEAF
        b = c.leaves[j] if j is not None else EMPTY_LEAF
        return [i is not None, a.as_tuple(), c.tree.proof(i) if i is not None else [],
                j is not None, b.as_tuple(), c.tree.proof(j) if j is not None else []]

    def challenge_pair(self, gateway: str, c: EpochCommitment, i: int | None, *,
                       sender: LocalAccount | None = None) -> TxResult:
        """Challenge leaves i and i+1 (i=None: the first leaf alone)."""
        j = 0 if i is None else i + 1
        return self.chain.transact(self.epochs.functions.challenge_pair(
            Web3.to_checksum_address(gateway), c.epoch, *self._pair(c, i, j)), sender=sender)

    def challenge_count(self, gateway: str, c: EpochCommitment, device: bytes, *,
                        sender: LocalAccount | None = None) -> TxResult:
        uptime = c.counts[device]
        idx = [k for k, lf in enumerate(c.leaves) if lf.device <= device]
        i = idx[-1] if idx else None
        j = (i + 1 if i is not None else 0)
        j = j if j < len(c.leaves) else None
        return self.chain.transact(self.epochs.functions.challenge_count(
            Web3.to_checksum_address(gateway), c.epoch, Web3.to_checksum_address("0x" + device.hex()), uptime, c.count_proof(device),
            *self._pair(c, i, j)), sender=sender)

    def challenge_omission(self, gateway: str, c: EpochCommitment, receipt: dict[str, Any], reading: Leaf, *,
                           sender: LocalAccount | None = None) -> TxResult:
        """Prove a receipted reading is missing: its run in the batch receipt, and the gap it would sit in."""
        from proofmesh.crypto.merkle import MerkleTree
        from proofmesh.edge.reading import run_leaf

        runs = [(bytes.fromhex(d[2:]), e, a, b) for d, e, a, b in receipt["runs"]]
        k = next((i for i, (d, e, a, b) in enumerate(runs)
                  if d == reading.device and e == c.epoch and a <= reading.seq <= b), None)
        if k is None:
            raise InputError(f"the receipt does not cover seq {reading.seq} of that device in epoch {c.epoch}",
                             fix="use the receipt the gateway returned for that batch")
        tree = MerkleTree([run_leaf(*r) for r in runs])
        key = (reading.device, reading.seq)
        below = [i for i, lf in enumerate(c.leaves) if (lf.device, lf.seq) < key]
        i = below[-1] if below else None
        j = (i + 1) if i is not None else 0
        j = j if j < len(c.leaves) else None
        sig = bytes.fromhex(receipt["signature"].removeprefix("0x"))
        _, _, first, last = runs[k]
        return self.chain.transact(self.epochs.functions.challenge_omission(
            Web3.to_checksum_address(gateway), c.epoch, reading.as_tuple(), first, last, tree.root, tree.proof(k),
            sig[64], sig[:32], sig[32:64], *self._pair(c, i, j)), sender=sender)

    def challenge_empty_slot(self, gateway: str, c: EpochCommitment, index: int, *,
                             sender: LocalAccount | None = None) -> TxResult:
        return self.chain.transact(self.epochs.functions.challenge_empty_slot(
            Web3.to_checksum_address(gateway), c.epoch, index, c.tree.proof(index)), sender=sender)

    # ------------------------------------------------------------------ rewards
    def claim(self, gateway: str, c: EpochCommitment, device: bytes, *, sender: LocalAccount | None = None) -> TxResult:
        return self.chain.transact(self.epochs.functions.claim(
            Web3.to_checksum_address(gateway), c.epoch, Web3.to_checksum_address("0x" + device.hex()), c.counts[device],
            c.count_proof(device)), sender=sender)

    def now(self) -> int:
        return int(time.time())
