"""IPFS-compatible content IDs (CIDv1), equal to ``ipfs add --cid-version=1 --raw-leaves``.

The CID of a blob is not a hash of the whole blob: kubo splits it into fixed-size chunks
and builds a UnixFS DAG over them. This module reproduces kubo's defaults exactly:

* chunker ``size-262144`` (fixed 256 KiB chunks, the last one shorter);
* raw leaves (each chunk is a ``raw`` block, CID codec 0x55, sha2-256);
* balanced layout with at most 174 links per node;
* inner nodes are dag-pb ``PBNode`` blocks whose ``Data`` is a UnixFS ``File`` message
  with ``filesize`` and one ``blocksizes`` entry per child, encoded canonically
  (``Links`` before ``Data``, every link with ``Hash``, an empty ``Name`` and ``Tsize``).

A blob of at most one chunk (including the empty blob) therefore has the ``raw`` CID of its
bytes (``bafkrei…``); a larger one has a dag-pb root (``bafybei…``).

Hashing is streaming: :class:`CidBuilder` keeps at most one chunk plus one pending list of
links per tree level in memory, so a file of any size is hashed in bounded memory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from multiformats import CID

from proofmesh.errors import InputError

CHUNK_SIZE = 262144
"""kubo's default chunker, ``size-262144``."""

MAX_LINKS = 174
"""kubo's default maximum number of links per balanced-layout node."""

RAW_CODEC = 0x55
DAG_PB_CODEC = 0x70
SHA2_256 = 0x12

# CID prefix bytes: <version 1><codec varint><multihash code><digest length>.
_RAW_PREFIX = bytes([0x01, RAW_CODEC, SHA2_256, 32])
_DAG_PB_PREFIX = bytes([0x01, DAG_PB_CODEC, SHA2_256, 32])

# Read files in multiples of the chunk size so that most reads map to whole chunks.
_READ_SIZE = 4 * CHUNK_SIZE


def _varint(n: int) -> bytes:
    """Unsigned LEB128, as protobuf writes ``uint64`` fields and lengths."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _cid_to_str(cid_bytes: bytes) -> str:
    """Binary CIDv1 -> multibase base32 (lower case, ``b`` prefix), the kubo default."""
    return str(CID.decode(cid_bytes).encode("base32"))


class _Link:
    """One child of a UnixFS node: binary CID, cumulative DAG size, file bytes covered."""

    __slots__ = ("cid", "tsize", "filesize")

    def __init__(self, cid: bytes, tsize: int, filesize: int) -> None:
        self.cid = cid
        self.tsize = tsize
        self.filesize = filesize


def _leaf(chunk: bytes) -> _Link:
    digest = hashlib.sha256(chunk).digest()
    return _Link(_RAW_PREFIX + digest, len(chunk), len(chunk))


def encode_file_node(children: list[_Link]) -> bytes:
    """Canonical dag-pb encoding of a UnixFS ``File`` node over ``children``.

    PBNode  = Links (field 2, repeated PBLink) then Data (field 1) — dag-pb's canonical order.
    PBLink  = Hash (1, bytes) Name (2, string, always present, empty) Tsize (3, uint64).
    UnixFS  = Type (1) = File (2), filesize (3), blocksizes (4, repeated, not packed).
    """
    out = bytearray()
    for c in children:
        link = b"\x0a" + _varint(len(c.cid)) + c.cid + b"\x12\x00" + b"\x18" + _varint(c.tsize)
        out += b"\x12" + _varint(len(link)) + link
    filesize = sum(c.filesize for c in children)
    data = bytearray(b"\x08\x02")
    data += b"\x18" + _varint(filesize)
    for c in children:
        data += b"\x20" + _varint(c.filesize)
    out += b"\x0a" + _varint(len(data)) + data
    return bytes(out)


def _node(children: list[_Link]) -> _Link:
    block = encode_file_node(children)
    digest = hashlib.sha256(block).digest()
    return _Link(_DAG_PB_PREFIX + digest,
                 len(block) + sum(c.tsize for c in children),
                 sum(c.filesize for c in children))


class CidBuilder:
    """Incremental CID computation: ``update(bytes)`` any number of times, then ``cid()``.

    Bytes may arrive in pieces of any size; they are re-cut into 256 KiB chunks exactly as
    kubo's fixed-size chunker does. Memory use is one chunk plus at most 174 pending links
    per DAG level (a level holds 174**depth chunks, so a few levels cover any file).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._levels: list[list[_Link]] = [[]]
        self._size = 0
        self._done: str | None = None

    @property
    def size(self) -> int:
        """Bytes fed so far."""
        return self._size

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._done is not None:
            raise InputError("CidBuilder.update() called after cid()",
                             fix="create a new CidBuilder for each blob")
        mv = memoryview(data).cast("B")
        self._size += len(mv)
        if self._buf:
            need = CHUNK_SIZE - len(self._buf)
            self._buf += mv[:need]
            mv = mv[need:]
            if len(self._buf) < CHUNK_SIZE:
                return
            self._add_leaf(bytes(self._buf))
            self._buf.clear()
        # Whole chunks straight from the input: no copy into the buffer.
        while len(mv) >= CHUNK_SIZE:
            self._add_leaf(mv[:CHUNK_SIZE])
            mv = mv[CHUNK_SIZE:]
        # kubo emits a chunk only once it is full or the input ended, so a trailing
        # partial chunk waits for more bytes.
        self._buf += mv

    def _add_leaf(self, chunk: bytes | memoryview) -> None:
        self._push(0, _leaf(chunk))

    def _push(self, level: int, link: _Link) -> None:
        # A full level becomes one node of the level above at once, so no level ever
        # holds more than MAX_LINKS links. kubo's balanced builder fills each node to
        # MAX_LINKS before starting the next, which is exactly this grouping.
        while True:
            if level == len(self._levels):
                self._levels.append([])
            links = self._levels[level]
            links.append(link)
            if len(links) < MAX_LINKS:
                return
            link = _node(links)
            self._levels[level] = []
            level += 1

    def cid(self) -> str:
        """Finish and return the CID string (base32 CIDv1). Idempotent."""
        if self._done is not None:
            return self._done
        if self._buf or self._size == 0:
            # The last (short) chunk; an empty input is one empty raw leaf, as in kubo.
            self._push(0, _leaf(bytes(self._buf)))
            self._buf.clear()
        self._done = _cid_to_str(self._root().cid)
        return self._done

    def _root(self) -> _Link:
        levels = self._levels
        level = -1
        while level + 1 < len(levels):
            level += 1
            links = levels[level]
            if not links:
                continue
            above = any(levels[k] for k in range(level + 1, len(levels)))
            if len(links) == 1 and not above:
                return links[0]
            # A partial node is closed even with a single child when a level above
            # exists: kubo's fillNodeRec wraps at every depth, it never hoists a child.
            levels[level] = []
            if level + 1 == len(levels):
                levels.append([])
            levels[level + 1].append(_node(links))
        raise AssertionError("unreachable: a non-empty builder always has a root")


def cid_of_stream(chunks: Iterable[bytes | bytearray | memoryview]) -> str:
    """CID of the concatenation of ``chunks`` (any piece sizes), in bounded memory."""
    b = CidBuilder()
    for piece in chunks:
        b.update(piece)
    return b.cid()


def cid_of_bytes(data: bytes | bytearray | memoryview) -> str:
    """CID of ``data``: ``ipfs add --cid-version=1 --raw-leaves`` gives the same string."""
    b = CidBuilder()
    b.update(data)
    return b.cid()


def cid_of_file(path: str | os.PathLike[str]) -> str:
    """CID of a file's bytes, read in 1 MiB pieces (bounded memory for any size)."""
    p = Path(path)
    try:
        f = p.open("rb")
    except FileNotFoundError as exc:
        raise InputError(f"no such file: {p}", fix="check the path") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{p} is a directory, not a file",
                         fix="give the path of a file (directories are not supported)") from exc
    b = CidBuilder()
    with f:
        while piece := f.read(_READ_SIZE):
            b.update(piece)
    return b.cid()


def parse_cid(text: str) -> CID:
    """Parse and validate a CID string this project can verify.

    Accepted: CIDv1 in any multibase, codec ``raw`` or ``dag-pb``, hash ``sha2-256``
    (32-byte digest). Raises :class:`~proofmesh.errors.InputError` otherwise. CIDv0
    (``Qm…``) is refused because kubo builds those DAGs without raw leaves, which this
    module does not reproduce.
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"not a CID: {text!r}", fix="give a CIDv1 string such as bafkrei…")
    text = text.strip()
    try:
        cid = CID.decode(text)
    except Exception as exc:  # multiformats raises several unrelated exception types
        raise InputError(f"not a valid CID: {text!r} ({exc})",
                         fix="give a CIDv1 string such as bafkrei… or bafybei…") from exc
    if cid.version != 1:
        raise InputError(f"CIDv0 is not supported: {text}",
                         fix="use CIDv1 (`ipfs add --cid-version=1 --raw-leaves`, or cid_of_file)")
    if cid.codec.code not in (RAW_CODEC, DAG_PB_CODEC):
        raise InputError(f"CID codec {cid.codec.name!r} is not supported: {text}",
                         fix="only raw (bafk…) and dag-pb (bafy…) CIDs of files are supported")
    if cid.hashfun.code != SHA2_256 or len(cid.raw_digest) != 32:
        raise InputError(f"CID hash {cid.hashfun.name!r} is not supported: {text}",
                         fix="only sha2-256 CIDs are supported (the kubo default)")
    return cid


def normalize_cid(text: str) -> str:
    """Validate ``text`` (see :func:`parse_cid`) and return its canonical base32 form."""
    return str(parse_cid(text).encode("base32"))
