"""The weights root: one Merkle root over the tensors of a model.

A model version is identified on chain by ``weights_root(path)``: every tensor becomes a
leaf ``leaf_hash(name, dtype, shape, sha256(tensor bytes))`` (OpenZeppelin
StandardMerkleTree encoding, so ``ModelRegistry.verify_tensor`` checks a proof with the
same bytes), leaves are sorted by tensor name, and the root is a sorted-pair keccak tree.

Why per tensor and not one file digest:
- shard layout, file order and header padding do not change the root (only the tensors do);
- a mismatch names the tensor and comes with a Merkle proof of the registered value;
- tensors hash in parallel (hashlib releases the GIL), a single file digest cannot.

Files are never read into Python memory: the safetensors header is parsed, the data
section is ``mmap``'ed and each tensor's bytes are handed to ``hashlib`` as a memoryview,
so a multi-GB model sits in the page cache once and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from proofmesh.errors import InputError, VerificationError

# Bytes per element of every dtype safetensors defines.
DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
    "C64": 8,
}
# Sub-byte dtypes (F4, F6_*) pack several elements per byte; size = ceil(bits*n/8).
DTYPE_BITS: dict[str, int] = {"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}

# The types of one leaf, in the order ``leaf_hash`` and ``ModelRegistry.verify_tensor`` use.
LEAF_TYPES = ["string", "string", "uint256[]", "bytes32"]

MAX_HEADER_BYTES = 100 * 1024 * 1024     # safetensors' own limit
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"

# A tensor's bytes are fed to sha256 in slices of this size: the GIL is released for each
# update, and slices keep the page-in of a huge tensor overlapped with hashing.
_SLICE = 64 * 1024 * 1024


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as it lies in a safetensors file (before hashing)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    start: int          # absolute byte offset in ``file``
    length: int


@dataclass(frozen=True)
class TensorHash:
    """What the weights root commits to for one tensor."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    sha256: bytes       # 32 bytes

    @property
    def leaf(self) -> bytes:
        from proofmesh.crypto.merkle import leaf_hash
        return leaf_hash(LEAF_TYPES, [self.name, self.dtype, list(self.shape), self.sha256])

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                "sha256": self.sha256.hex()}

    @classmethod
    def from_json(cls, d: dict) -> "TensorHash":
        try:
            digest = bytes.fromhex(d["sha256"])
            if len(digest) != 32:
                raise ValueError("sha256 must be 32 bytes")
            return cls(str(d["name"]), str(d["dtype"]), tuple(int(x) for x in d["shape"]), digest)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"bad tensor entry in manifest: {d!r} ({exc})",
                             fix="regenerate the manifest with `proofmesh model register`") from exc


@dataclass
class WeightsManifest:
    """Every tensor's hash, sorted by name, plus the Merkle root over them."""

    tensors: list[TensorHash]
    kind: str = "full"                 # "full" | "lora"
    total_bytes: int = 0
    files: list[str] = field(default_factory=list)
    _tree: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.tensors = sorted(self.tensors, key=lambda t: t.name)
        names = [t.name for t in self.tensors]
        dup = {n for n in names if names.count(n) > 1} if len(set(names)) != len(names) else set()
        if dup:
            raise InputError(f"tensor name(s) appear more than once: {sorted(dup)[:5]}",
                             fix="each tensor must live in exactly one shard")
        if not self.tensors:
            raise InputError("no tensors found", fix="point at a safetensors file or a folder holding one")

    @property
    def tree(self):
        if self._tree is None:
            from proofmesh.crypto.merkle import MerkleTree
            self._tree = MerkleTree([t.leaf for t in self.tensors])
        return self._tree

    @property
    def root(self) -> bytes:
        return self.tree.root

    def index_of(self, name: str) -> int:
        for i, t in enumerate(self.tensors):
            if t.name == name:
                return i
        raise KeyError(name)

    def proof(self, name: str) -> list[bytes]:
        """Merkle proof that tensor ``name`` (with its recorded hash) is under ``root``."""
        return self.tree.proof(self.index_of(name))

    def to_json(self) -> dict:
        return {"format": "proofmesh-weights-manifest/1", "kind": self.kind,
                "root": "0x" + self.root.hex(), "total_bytes": self.total_bytes,
                "leaf_types": LEAF_TYPES, "tensors": [t.to_json() for t in self.tensors]}

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, d: dict) -> "WeightsManifest":
        if d.get("format") != "proofmesh-weights-manifest/1":
            raise InputError("not a proofmesh weights manifest", fix="regenerate it with `proofmesh model register`")
        m = cls([TensorHash.from_json(t) for t in d["tensors"]], kind=d.get("kind", "full"),
                total_bytes=int(d.get("total_bytes", 0)))
        claimed = d.get("root", "")
        if claimed and bytes.fromhex(claimed.removeprefix("0x")) != m.root:
            # A manifest is only a cache of hashes: its own root must match its tensors.
            raise VerificationError("manifest root does not match its tensor list",
                                    fix="the manifest was altered; fetch it again or re-hash the weights")
        return m


@dataclass
class TensorDiff:
    """How local weights differ from a registered manifest."""

    changed: list[str]          # same name, different dtype/shape/bytes
    missing: list[str]          # registered but not found locally
    extra: list[str]            # found locally but not registered

    @property
    def identical(self) -> bool:
        return not (self.changed or self.missing or self.extra)


# --------------------------------------------------------------------------- parsing

def _tensor_bytes(dtype: str, shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    if dtype in DTYPE_SIZES:
        return n * DTYPE_SIZES[dtype]
    return (n * DTYPE_BITS[dtype] + 7) // 8


def read_header(path: str | Path) -> list[TensorEntry]:
    """Parse a safetensors header and check every tensor lies inside the file.

    Raises ``InputError`` naming the file for anything unreadable, truncated or
    inconsistent (unknown dtype, size that does not match the shape, overlap).
    """
    p = Path(path)
    fix = f"re-download or re-save {p.name} (e.g. safetensors.torch.save_file)"
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            raw_len = f.read(8)
            if len(raw_len) < 8:
                raise InputError(f"{p}: truncated safetensors file ({size} bytes, no header)", fix=fix)
            (hlen,) = struct.unpack("<Q", raw_len)
            if hlen > MAX_HEADER_BYTES or 8 + hlen > size:
                raise InputError(f"{p}: header length {hlen} exceeds the file ({size} bytes): "
                                 "truncated or not a safetensors file", fix=fix)
            header_bytes = f.read(hlen)
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})", fix="check the path and permissions") from exc
    try:
        header = json.loads(header_bytes)
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{p}: header is not valid JSON: not a safetensors file", fix=fix) from exc
    data_start = 8 + hlen
    data_len = size - data_start
    entries: list[TensorEntry] = []
    for name, info in header.items():
        if name == "__metadata__":
            continue       # free-form strings, not weights: excluded from the root on purpose
        try:
            dtype = info["dtype"]
            shape = tuple(int(x) for x in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{p}: tensor {name!r} has a malformed header entry", fix=fix) from exc
        if dtype not in DTYPE_SIZES and dtype not in DTYPE_BITS:
            raise InputError(f"{p}: tensor {name!r} has unknown dtype {dtype!r}", fix=fix)
        if any(d < 0 for d in shape) or begin < 0 or end < begin:
            raise InputError(f"{p}: tensor {name!r} has negative shape or offsets", fix=fix)
        if end - begin != _tensor_bytes(dtype, shape):
            raise InputError(f"{p}: tensor {name!r} is {end - begin} bytes but {dtype}{list(shape)} "
                             f"needs {_tensor_bytes(dtype, shape)}", fix=fix)
        if end > data_len:
            raise InputError(f"{p}: truncated: tensor {name!r} ends at byte {data_start + end} "
                             f"but the file has {size}", fix=fix)
        entries.append(TensorEntry(name, dtype, shape, p, data_start + begin, end - begin))
    spans = sorted((e.start, e.start + e.length, e.name) for e in entries if e.length)
    for (_, a_end, a), (b_start, _, b) in zip(spans, spans[1:]):
        if b_start < a_end:
            raise InputError(f"{p}: tensors {a!r} and {b!r} overlap", fix=fix)
    return entries


def resolve_files(path: str | Path) -> tuple[list[Path], str]:
    """The safetensors files that make up the model at ``path`` and its kind.

    ``path`` is a ``.safetensors`` file, a folder with ``model.safetensors``, a sharded
    Hugging Face folder (``model.safetensors.index.json``) or a PEFT adapter folder.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder", fix="give a .safetensors file or a model folder")
    if p.is_file():
        if p.name == INDEX_FILE:
            return resolve_files(p.parent)
        if p.suffix != ".safetensors":
            raise InputError(f"{p}: not a .safetensors (or .onnx) file",
                             fix="convert the weights with safetensors.torch.save_file or save_pretrained()")
        return [p], "lora" if p.name == ADAPTER_FILE else "full"
    if (p / ADAPTER_CONFIG).exists():
        if not (p / ADAPTER_FILE).exists():
            raise InputError(f"{p}: {ADAPTER_CONFIG} without {ADAPTER_FILE}",
                             fix="save the adapter with safe_serialization=True")
        return [p / ADAPTER_FILE], "lora"
    if (p / INDEX_FILE).exists():
        return _sharded_files(p), "full"
    if (p / SINGLE_FILE).exists():
        return [p / SINGLE_FILE], "full"
    found = sorted(p.glob("*.safetensors"))
    if len(found) == 1:
        return found, "full"
    if found:
        raise InputError(f"{p}: {len(found)} .safetensors files but no {INDEX_FILE}",
                         fix=f"add {INDEX_FILE} (save_pretrained writes it) or register one file")
    raise InputError(f"{p}: no safetensors weights in this folder",
                     fix="save with model.save_pretrained(path) (safetensors is the default)")


def _sharded_files(folder: Path) -> list[Path]:
    index_path = folder / INDEX_FILE
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError("empty weight_map")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{index_path}: unreadable shard index ({exc})",
                         fix="re-save the model with save_pretrained()") from exc
    files = sorted(set(weight_map.values()))
    for name in files:
        if not (folder / name).is_file():
            raise InputError(f"{index_path}: shard {name!r} is listed but missing",
                             fix="download or copy every shard listed in the index")
    return [folder / n for n in files]


def _check_shards(folder: Path, entries: list[TensorEntry]) -> None:
    """Every tensor must be in the shard the index names, and every indexed tensor present."""
    weight_map: dict[str, str] = json.loads((folder / INDEX_FILE).read_text())["weight_map"]
    fix = "the index and the shards come from different saves: re-save or re-download the model"
    actual: dict[str, str] = {}
    for e in entries:
        actual[e.name] = e.file.name
    for name, shard in weight_map.items():
        if name not in actual:
            raise InputError(f"shard mismatch: index puts {name!r} in {shard} but no shard holds it", fix=fix)
        if actual[name] != shard:
            raise InputError(f"shard mismatch: index puts {name!r} in {shard} but it is in {actual[name]}",
                             fix=fix)
    unlisted = sorted(set(actual) - set(weight_map))
    if unlisted:
        raise InputError(f"shard mismatch: {len(unlisted)} tensor(s) not in the index, e.g. {unlisted[0]!r}",
                         fix=fix)


def list_tensors(path: str | Path) -> tuple[list[TensorEntry], str]:
    """Every tensor of the model at ``path`` (checked headers) and its kind."""
    files, kind = resolve_files(path)
    entries: list[TensorEntry] = []
    for f in files:
        entries.extend(read_header(f))
    p = Path(path)
    if p.is_dir() and (p / INDEX_FILE).exists() and kind == "full":
        _check_shards(p, entries)
    return entries, kind


# --------------------------------------------------------------------------- hashing

def _hash_span(mm: mmap.mmap, start: int, length: int) -> bytes:
    h = hashlib.sha256()
    view = memoryview(mm)
    try:
        for off in range(start, start + length, _SLICE):
            h.update(view[off:min(off + _SLICE, start + length)])
    finally:
        view.release()
    return h.digest()


def hash_tensors(entries: Iterable[TensorEntry], *, threads: int | None = None,
                 progress=None) -> list[TensorHash]:
    """sha256 of every tensor's bytes, in parallel threads over mmap'ed files.

    ``progress(nbytes)`` is called after each tensor (for a progress bar). Largest
    tensors are scheduled first so the threads finish together.
    """
    entries = list(entries)
    threads = threads or min(32, os.cpu_count() or 1)
    maps: dict[Path, tuple[object, mmap.mmap | None]] = {}
    try:
        for e in entries:
            if e.file not in maps:
                f = open(e.file, "rb")
                size = os.fstat(f.fileno()).st_size
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
                if mm is not None and hasattr(mm, "madvise"):
                    mm.madvise(mmap.MADV_SEQUENTIAL)
                maps[e.file] = (f, mm)

        def one(e: TensorEntry) -> TensorHash:
            mm = maps[e.file][1]
            digest = _hash_span(mm, e.start, e.length) if e.length else hashlib.sha256(b"").digest()
            if progress:
                progress(e.length)
            return TensorHash(e.name, e.dtype, e.shape, digest)

        order = sorted(entries, key=lambda e: -e.length)
        if threads <= 1 or len(order) <= 1:
            out = [one(e) for e in order]
        else:
            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="weights-root") as pool:
                out = list(pool.map(one, order))
    except OSError as exc:
        raise InputError(f"cannot read weights: {exc}", fix="check the files are complete and readable") from exc
    finally:
        for f, mm in maps.values():
            if mm is not None:
                mm.close()
            f.close()
    return out


def onnx_tensor_hashes(path: str | Path) -> tuple[list[TensorHash], int]:
    """Per-initializer hashes of an ONNX model (dtype = ONNX type name, bytes = the
    little-endian array bytes), so an ONNX export can be registered and evaluated with
    onnxruntime. ONNX files are protobufs (< 2 GB) and are parsed in memory."""
    import onnx
    from onnx import numpy_helper

    p = Path(path)
    try:
        model = onnx.load(str(p), load_external_data=True)
    except Exception as exc:  # onnx raises DecodeError / ValidationError / OSError
        raise InputError(f"{p}: not a readable ONNX model ({exc.__class__.__name__})",
                         fix="export it again with torch.onnx.export") from exc
    out, total = [], 0
    for t in model.graph.initializer:
        arr = numpy_helper.to_array(t, base_dir=str(p.parent))
        raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        total += len(raw)
        out.append(TensorHash(t.name, onnx.TensorProto.DataType.Name(t.data_type), tuple(int(d) for d in t.dims),
                              hashlib.sha256(raw).digest()))
    return out, total


def manifest(path: str | Path, *, threads: int | None = None, progress=None) -> WeightsManifest:
    """Hash every tensor of the model at ``path``: the full per-tensor manifest."""
    if Path(path).suffix == ".onnx" and Path(path).is_file():
        hashes, total = onnx_tensor_hashes(path)
        if progress:
            progress(total)
        return WeightsManifest(hashes, kind="full", total_bytes=total, files=[str(path)])
    entries, kind = list_tensors(path)
    hashes = hash_tensors(entries, threads=threads, progress=progress)
    return WeightsManifest(hashes, kind=kind, total_bytes=sum(e.length for e in entries),
                           files=sorted({str(e.file) for e in entries}))


def weights_root(path: str | Path, *, threads: int | None = None) -> bytes:
    """The 32-byte weights root of the model at ``path`` (file or folder)."""
    return manifest(path, threads=threads).root


def diff(local: WeightsManifest, registered: WeightsManifest) -> TensorDiff:
    """Tensors that differ between local weights and a registered manifest."""
    a = {t.name: t for t in local.tensors}
    b = {t.name: t for t in registered.tensors}
    changed = sorted(n for n in a.keys() & b.keys() if a[n] != b[n])
    return TensorDiff(changed=changed, missing=sorted(b.keys() - a.keys()), extra=sorted(a.keys() - b.keys()))
