"""Gateway beacons: the fresh nonce a device must put in every reading.

For each epoch the gateway has a secret seed; the beacon of interval ``i`` (``i =
timestamp // interval_length``) is ``keccak(abi_encode(seed, i))``. The seed's hash is
committed on chain before the epoch (at the previous publication, or at enrolment) and
the seed is revealed when the epoch is published, so:

* devices cannot predict a beacon before its interval (the seed is secret), hence cannot
  sign readings in advance or backfill a gap;
* anyone can check after publication that every nonce in the root was the gateway's
  beacon for the interval it claims (``EdgeEpochs.challenge_reading``).

Seeds are derived from one master secret kept in the gateway's directory
(``seed_e = keccak(master ‖ epoch)``), so a restarted gateway serves the same beacons and
nothing per epoch has to be stored.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from proofmesh.crypto.keccak import keccak256
from proofmesh.errors import ConfigError


class Beacons:
    """Seeds and beacon nonces of one gateway."""

    def __init__(self, master: bytes, epoch_length: int, interval_length: int) -> None:
        if len(master) != 32:
            raise ConfigError("beacon master secret must be 32 bytes", fix="delete the corrupt beacon.key")
        if epoch_length % interval_length:
            raise ConfigError("epoch length is not a multiple of the interval length",
                              fix="check EdgeEpochs.epoch_length / interval_length")
        self._master = master
        self.epoch_length = epoch_length
        self.interval_length = interval_length
        self._cache: dict[int, bytes] = {}        # interval -> nonce
        self._by_nonce: dict[bytes, int] = {}     # nonce -> interval

    @classmethod
    def load_or_create(cls, path: Path, epoch_length: int, interval_length: int) -> "Beacons":
        """Read the master secret at ``path``, creating it (mode 0600) the first time."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        return cls(path.read_bytes(), epoch_length, interval_length)

    def seed(self, epoch: int) -> bytes:
        """The secret seed of ``epoch`` (revealed on chain when it is published)."""
        return keccak256(self._master + epoch.to_bytes(8, "big"))

    def seed_hash(self, epoch: int) -> bytes:
        """The on-chain commitment to ``seed(epoch)``."""
        return keccak256(self.seed(epoch))

    def epoch_of_interval(self, interval: int) -> int:
        return interval * self.interval_length // self.epoch_length

    def nonce(self, interval: int) -> bytes:
        """The beacon of ``interval`` (cached: the gateway looks nonces up per reading)."""
        n = self._cache.get(interval)
        if n is None:
            n = beacon_nonce(self.seed(self.epoch_of_interval(interval)), interval)
            self._cache[interval] = n
            self._by_nonce[n] = interval
            if len(self._cache) > 100_000:        # bound memory on a long-running gateway
                self._cache.clear()
                self._by_nonce.clear()
        return n

    def prepare(self, first_interval: int, last_interval: int) -> None:
        """Compute and index the beacons of an interval range (so lookups are one dict hit)."""
        for i in range(first_interval, last_interval + 1):
            self.nonce(i)

    def interval_of_nonce(self, nonce: bytes) -> int | None:
        """The interval whose beacon is ``nonce``, among the prepared ones (None if unknown)."""
        return self._by_nonce.get(nonce)


def beacon_nonce(seed: bytes, interval: int) -> bytes:
    """``keccak(abi_encode(bytes32 seed, uint64 interval))``, as EdgeEpochs computes it."""
    return keccak256(seed + interval.to_bytes(32, "big"))
