"""The per-epoch commitment of a gateway: sorted reading leaves, running uptime, two roots.

Leaves are the accepted readings of one epoch sorted by (device, seq), each extended with
its index and the device's running uptime (``credit`` = distinct credited intervals so
far, ``last_credit_interval``). A reading is *credited* when it was made inside the
interval whose beacon it carries (``timestamp // interval_length == interval``): readings
a device buffered while its gateway was away carry a stale beacon, are stored, and earn
nothing. The last leaf of a device carries its uptime for the epoch.

The readings root is a *positional* tree — fixed depth, slot ``i`` holds leaf ``i``, empty
slots are zero, node = keccak(left ‖ right) — because challenges must prove that two
leaves are adjacent (omissions, counts); sorted-pair trees cannot. Uptime counts go into a
standard OpenZeppelin tree of ``(address device, uint256 uptime)`` (``proofmesh.crypto.merkle``)
so a device claims with one short proof. Both match ``EdgeEpochs.vy``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from proofmesh.crypto.keccak import keccak256
from proofmesh.crypto.merkle import MerkleTree, leaf_hash
from proofmesh.edge.reading import Reading
from proofmesh.errors import InputError

_ZERO = bytes(32)
COUNT_TYPES = ["address", "uint256"]


@dataclass(frozen=True)
class Leaf:
    """A reading as committed in an epoch root (field order = ``EdgeEpochs.Leaf``)."""

    index: int
    device: bytes
    seq: int
    nonce: bytes
    interval: int
    timestamp: int
    payload_hash: bytes
    model_version: bytes
    output_hash: bytes
    v: int
    r: bytes
    s: bytes
    credit: int
    last_credit_interval: int

    def encode(self) -> bytes:
        """``abi_encode`` of the 14 static fields."""
        w = lambda n: n.to_bytes(32, "big")  # noqa: E731 - local word encoder
        return b"".join((w(self.index), bytes(12) + self.device, w(self.seq), self.nonce, w(self.interval),
                         w(self.timestamp), self.payload_hash, self.model_version, self.output_hash, w(self.v),
                         self.r, self.s, w(self.credit), w(self.last_credit_interval)))

    def hash(self) -> bytes:
        """Double keccak of the encoding (as ``EdgeEpochs._leaf_hash``)."""
        return keccak256(keccak256(self.encode()))

    def as_tuple(self) -> tuple:
        """The struct as web3 expects it for a ``Leaf`` argument."""
        from web3 import Web3

        return (self.index, Web3.to_checksum_address("0x" + self.device.hex()), self.seq, self.nonce, self.interval, self.timestamp,
                self.payload_hash, self.model_version, self.output_hash, self.v, self.r, self.s,
                self.credit, self.last_credit_interval)

    def to_json(self) -> dict:
        d = asdict(self)
        return {k: ("0x" + v.hex() if isinstance(v, bytes) else v) for k, v in d.items()}

    @classmethod
    def from_json(cls, d: dict) -> "Leaf":
        b = lambda x: bytes.fromhex(x.removeprefix("0x"))  # noqa: E731
        return cls(d["index"], b(d["device"]), d["seq"], b(d["nonce"]), d["interval"], d["timestamp"],
                   b(d["payload_hash"]), b(d["model_version"]), b(d["output_hash"]), d["v"], b(d["r"]),
                   b(d["s"]), d["credit"], d["last_credit_interval"])


EMPTY_LEAF = Leaf(0, bytes(20), 0, _ZERO, 0, 0, _ZERO, _ZERO, _ZERO, 0, _ZERO, _ZERO, 0, 0)


def credited(timestamp: int, interval: int, interval_length: int) -> bool:
    """Whether a reading earns uptime: made inside the interval of its beacon."""
    return timestamp // interval_length == interval


def build_leaves(readings: Iterable[tuple[Reading, int]], interval_length: int) -> list[Leaf]:
    """Sort (reading, beacon interval) pairs by (device, seq) and compute running uptime."""
    ordered = sorted(readings, key=lambda ri: (ri[0].device, ri[0].seq))
    leaves: list[Leaf] = []
    prev_dev = None
    credit = last = 0
    for idx, (r, interval) in enumerate(ordered):
        if r.device != prev_dev:
            credit = last = 0
            prev_dev = r.device
        if credited(r.timestamp, interval, interval_length) and (interval != last or credit == 0):
            credit += 1
            last = interval
        leaves.append(Leaf(idx, r.device, r.seq, r.nonce, interval, r.timestamp, r.payload_hash,
                           r.model_version, r.output_hash, r.v, r.r, r.s, credit, last))
    return leaves


def uptimes(leaves: Sequence[Leaf]) -> dict[bytes, int]:
    """Device -> uptime (the credit of its last leaf); devices with 0 credit are omitted."""
    out: dict[bytes, int] = {}
    for leaf in leaves:
        out[leaf.device] = leaf.credit
    return {d: u for d, u in out.items() if u > 0}


class PositionalTree:
    """Fixed-depth binary Merkle tree over leaf hashes; slot i = leaf i, padding = zero."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        n = len(leaf_hashes)
        self.count = n
        self.depth = max(0, (n - 1).bit_length()) if n else 0
        level = list(leaf_hashes) + [_ZERO] * ((1 << self.depth) - n if n else 0)
        self.levels = [level]
        while len(level) > 1:
            level = [keccak256(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
            self.levels.append(level)

    @property
    def root(self) -> bytes:
        return self.levels[-1][0] if self.count else _ZERO

    def proof(self, index: int) -> list[bytes]:
        """Sibling hashes from slot ``index`` up (slots beyond count prove zero slots)."""
        if not 0 <= index < (1 << self.depth) or not self.count:
            raise InputError(f"slot {index} outside a tree of depth {self.depth}", fix="use an index < 2**depth")
        out = []
        for level in self.levels[:-1]:
            out.append(level[index ^ 1])
            index //= 2
        return out


def positional_root(leaf: bytes, index: int, proof: Sequence[bytes]) -> bytes:
    """Recompute the root from a slot value and its proof (as ``EdgeEpochs._positional_root``)."""
    node = leaf
    for sib in proof:
        node = keccak256(node + sib) if index % 2 == 0 else keccak256(sib + node)
        index //= 2
    return node


@dataclass
class EpochCommitment:
    """Everything a gateway publishes (and keeps to answer challenges) for one epoch."""

    epoch: int
    leaves: list[Leaf]
    tree: PositionalTree
    counts: dict[bytes, int]
    counts_devices: list[bytes]
    counts_tree: MerkleTree | None

    @classmethod
    def build(cls, epoch: int, readings: Iterable[tuple[Reading, int]], interval_length: int) -> "EpochCommitment":
        leaves = build_leaves(readings, interval_length)
        tree = PositionalTree([lf.hash() for lf in leaves])
        counts = uptimes(leaves)
        devs = sorted(counts)
        ctree = MerkleTree([count_leaf(d, counts[d]) for d in devs]) if devs else None
        return cls(epoch, leaves, tree, counts, devs, ctree)

    @property
    def root(self) -> bytes:
        return self.tree.root

    @property
    def counts_root(self) -> bytes:
        return self.counts_tree.root if self.counts_tree else _ZERO

    @property
    def total_uptime(self) -> int:
        return sum(self.counts.values())

    def count_proof(self, device: bytes) -> list[bytes]:
        """OpenZeppelin proof of (device, uptime) in the counts root."""
        if device not in self.counts or self.counts_tree is None:
            raise InputError(f"device 0x{device.hex()} has no uptime in epoch {self.epoch}",
                             fix="check `proofmesh edge readings` for that device")
        return self.counts_tree.proof(self.counts_devices.index(device))

    def find(self, device: bytes, seq: int) -> int | None:
        """Index of the leaf (device, seq), or None."""
        lo, hi = 0, len(self.leaves)
        key = (device, seq)
        while lo < hi:
            mid = (lo + hi) // 2
            if (self.leaves[mid].device, self.leaves[mid].seq) < key:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(self.leaves) and (self.leaves[lo].device, self.leaves[lo].seq) == key:
            return lo
        return None


def count_leaf(device: bytes, uptime: int) -> bytes:
    """OpenZeppelin leaf of ``(address device, uint256 uptime)``."""
    return leaf_hash(COUNT_TYPES, ["0x" + device.hex(), uptime])
