"""A content-addressed blob store on disk, keyed by IPFS-compatible CIDv1.

Layout under ``root``::

    blobs/<last 2 chars of cid>/<cid>   one file per blob, read-only (0444)
    tmp/                               partial writes (renamed into blobs/ when complete)
    quarantine/<cid>.<time>            blobs whose bytes no longer match their CID
    blocked                            CIDs taken down with delete(cid, block=True)

Guarantees:

* a blob appears under its CID only once completely written, fsynced and hashed (write to
  ``tmp/``, then an atomic ``link``), so a crash never leaves a partial blob under a CID;
* the same bytes are stored once (dedup by CID);
* every read re-hashes: a file whose bytes no longer match its CID (disk rot, tampering) is
  moved to ``quarantine/`` and the read raises :class:`~proofmesh.errors.StoreError`.

CIDs follow :mod:`proofmesh.crypto.cid` (kubo defaults), so a blob's CID is what
``ipfs add --cid-version=1 --raw-leaves`` prints for the same bytes.
"""

from __future__ import annotations

import errno
import io
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from proofmesh.crypto.cid import CidBuilder, cid_of_bytes, normalize_cid
from proofmesh.errors import InputError, StoreError

__all__ = ["BlobStore", "VerifyingReader"]

_PIECE = 1 << 20


class BlobStore:
    """Blobs by CID under ``root`` (e.g. ``home.store_dir``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs"
        self.tmp_dir = self.root / "tmp"
        self.quarantine_dir = self.root / "quarantine"
        self.blocked_file = self.root / "blocked"
        for d in (self.blobs_dir, self.tmp_dir, self.quarantine_dir):
            d.mkdir(parents=True, exist_ok=True)

    # --- paths ----------------------------------------------------------------------
    def _path(self, cid: str) -> Path:
        return self.blobs_dir / cid[-2:] / cid

    @staticmethod
    def _cid(cid: str) -> str:
        """Validate and canonicalise (base32) a CID given by a caller."""
        return normalize_cid(cid)

    # --- writes ---------------------------------------------------------------------
    def put_bytes(self, data: bytes | bytearray | memoryview) -> str:
        """Store ``data``; returns its CID (no-op if already stored)."""
        return self.put_stream([bytes(data)])

    def put_file(self, path: str | os.PathLike[str]) -> str:
        """Store a file's bytes (streamed: bounded memory for any size); returns its CID."""
        p = Path(path)
        try:
            f = p.open("rb")
        except FileNotFoundError:
            raise InputError(f"no such file: {p}", fix="check the path") from None
        except IsADirectoryError:
            raise InputError(f"{p} is a directory", fix="give the path of a file") from None
        with f:
            return self.put_stream(iter(lambda: f.read(_PIECE), b""))

    def put_stream(self, pieces: Iterable[bytes], *, expected_cid: str | None = None,
                   max_bytes: int | None = None) -> str:
        """Store the concatenation of ``pieces``; returns its CID.

        With ``expected_cid``, bytes that hash to anything else are discarded and
        StoreError is raised (what a fetch from an untrusted peer needs). With
        ``max_bytes``, a longer stream is abandoned (StoreError) as soon as it exceeds the
        limit. On any failure nothing is left in the store.
        """
        want = self._cid(expected_cid) if expected_cid is not None else None
        if want is not None:
            self._check_not_blocked(want)
            if self.has(want):
                # Drain nothing: the caller may pass a lazy network stream; we already have it.
                return want
        builder = CidBuilder()
        fd, tmp_name = _mkstemp(self.tmp_dir)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                for piece in pieces:
                    if not piece:
                        continue
                    if max_bytes is not None and builder.size + len(piece) > max_bytes:
                        raise StoreError(f"blob exceeds the {max_bytes}-byte limit",
                                         fix="raise max_bytes if this blob is expected to be that large")
                    builder.update(piece)
                    out.write(piece)
                out.flush()
                os.fsync(out.fileno())
            cid = builder.cid()
            if want is not None and cid != want:
                raise StoreError(f"content hashes to {cid}, not the expected {want}",
                                 fix="the source sent wrong bytes; fetch from another peer")
            self._check_not_blocked(cid)
            final = self._path(cid)
            final.parent.mkdir(exist_ok=True)
            os.chmod(tmp, 0o444)
            try:
                # link() is atomic and never replaces: a concurrent writer of the same
                # bytes simply finds the blob already there.
                os.link(tmp, final)
            except FileExistsError:
                pass
            except OSError as exc:
                # Filesystems without hard links (some FUSE/SMB mounts): rename instead,
                # still atomic; identical bytes make a lost race harmless.
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                os.replace(tmp, final)
            return cid
        finally:
            tmp.unlink(missing_ok=True)

    # --- reads ----------------------------------------------------------------------
    def has(self, cid: str) -> bool:
        """Whether the blob is stored (not verified; reads verify)."""
        return self._path(self._cid(cid)).is_file()

    def size(self, cid: str) -> int:
        """Size in bytes of a stored blob."""
        cid = self._cid(cid)
        try:
            return self._path(cid).stat().st_size
        except FileNotFoundError:
            raise self._missing(cid) from None

    def get_bytes(self, cid: str) -> bytes:
        """The blob's bytes, re-hashed; a mismatch quarantines the file and raises StoreError."""
        cid = self._cid(cid)
        try:
            data = self._path(cid).read_bytes()
        except FileNotFoundError:
            raise self._missing(cid) from None
        if cid_of_bytes(data) != cid:
            raise self._corrupted(cid)
        return data

    def open(self, cid: str) -> VerifyingReader:
        """A binary reader that re-hashes as it reads; at end of file it raises StoreError
        (and quarantines the blob) if the bytes did not match. For blobs too large for
        :meth:`get_bytes`; callers must read to the end before trusting the content."""
        cid = self._cid(cid)
        try:
            f = self._path(cid).open("rb")
        except FileNotFoundError:
            raise self._missing(cid) from None
        return VerifyingReader(f, cid, self)

    def export(self, cid: str, dest: str | os.PathLike[str]) -> Path:
        """Put the blob's bytes at ``dest`` (a new file) without a second copy when possible.

        A hard link when ``dest`` is on the store's filesystem: blobs are immutable (0444)
        and a quarantine only renames the store's link, so ``dest`` keeps its bytes.
        Otherwise a streamed, re-hashed copy (a mismatch raises StoreError and removes
        ``dest``). Callers that trust the content must still check it (e.g. a weights root).
        """
        cid = self._cid(cid)
        src, out = self._path(cid), Path(dest)
        if not src.is_file():
            raise self._missing(cid)
        try:
            os.link(src, out)
            return out
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise StoreError(f"cannot write {out}: {exc.strerror or exc}", fix="check the destination folder") from exc
        try:
            with self.open(cid) as r, out.open("xb") as w:
                while piece := r.read(_PIECE):
                    w.write(piece)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        return out

    def verify(self, cid: str) -> bool:
        """Re-hash a stored blob (streamed). False and quarantined if corrupted."""
        try:
            with self.open(cid) as r:
                while r.read(_PIECE):
                    pass
            return True
        except StoreError:
            if self.has(cid):
                raise
            return False

    def list(self) -> Iterator[str]:
        """CIDs of all stored blobs (unverified)."""
        for shard in sorted(self.blobs_dir.iterdir()):
            if shard.is_dir():
                for f in sorted(shard.iterdir()):
                    yield f.name

    def total_size(self) -> int:
        """Bytes used by all stored blobs."""
        return sum(self._path(c).stat().st_size for c in self.list())

    # --- removal ----------------------------------------------------------------------
    def delete(self, cid: str, *, block: bool = False) -> bool:
        """Remove a blob (takedown). With ``block=True`` the CID is also refused from now on
        by every put/fetch. Returns whether a blob was removed."""
        cid = self._cid(cid)
        if block and cid not in self.blocked():
            with self.blocked_file.open("a") as f:
                f.write(cid + "\n")
                f.flush()
                os.fsync(f.fileno())
        try:
            self._path(cid).unlink()
            return True
        except FileNotFoundError:
            return False

    def blocked(self) -> set[str]:
        """CIDs taken down with ``delete(cid, block=True)``."""
        try:
            return {line.strip() for line in self.blocked_file.read_text().splitlines() if line.strip()}
        except FileNotFoundError:
            return set()

    def _check_not_blocked(self, cid: str) -> None:
        if cid in self.blocked():
            raise StoreError(f"blob {cid} was taken down on this node",
                             fix=f"remove {cid} from {self.blocked_file} to allow it again")

    # --- errors -----------------------------------------------------------------------
    def _missing(self, cid: str) -> StoreError:
        return StoreError(f"blob {cid} is not in the store at {self.root}",
                          fix="add it (put) or fetch it from a peer")

    def _corrupted(self, cid: str) -> StoreError:
        path = self._path(cid)
        dest = self.quarantine_dir / f"{cid}.{int(time.time())}"
        try:
            os.replace(path, dest)
        except FileNotFoundError:
            pass
        return StoreError(f"blob {cid} is corrupted on disk (moved to {dest})",
                          fix="fetch it again from a peer")


class VerifyingReader(io.RawIOBase):
    """Reads a stored blob and checks its CID when the end is reached."""

    def __init__(self, f: BinaryIO, cid: str, store: BlobStore) -> None:
        super().__init__()
        self._f = f
        self._cid = cid
        self._store = store
        self._builder = CidBuilder()
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[override]
        n = self._f.readinto(buf)
        if n:
            self._builder.update(memoryview(buf)[:n])
        elif not self._checked:
            self._checked = True
            if self._builder.cid() != self._cid:
                self._f.close()
                raise self._store._corrupted(self._cid)
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


def _mkstemp(directory: Path) -> tuple[int, str]:
    return tempfile.mkstemp(dir=directory, suffix=".part")
