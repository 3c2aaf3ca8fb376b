"""Compile the Vyper contracts shipped in ``proofmesh/chain/contracts``.

Compilation uses the ``vyper`` package's Python API with search paths that include
this directory and ``sys.path`` (where ``snekmate`` lives), so ``from snekmate.tokens
import erc20`` and ``from .interfaces import INodeRegistry`` both resolve. Results are
cached on disk keyed by the hash of every contract source and the compiler version,
because compiling costs ~1-2 s per contract and a CLI call should not pay it twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proofmesh.errors import ProofmeshError

CONTRACTS_DIR = Path(__file__).parent / "contracts"
_lock = threading.Lock()


@dataclass(frozen=True)
class CompiledContract:
    """ABI and deployable bytecode of one contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes


class CompileError(ProofmeshError):
    """A contract failed to compile."""


def contract_path(name: str) -> Path:
    """Path of contract ``name`` (``"MeshToken"`` or ``"test/MerkleVerifier"``)."""
    p = CONTRACTS_DIR / f"{name}.vy"
    if not p.exists():
        known = sorted(str(q.relative_to(CONTRACTS_DIR))[:-3] for q in CONTRACTS_DIR.rglob("*.vy"))
        raise CompileError(f"no contract named {name!r}", fix=f"known contracts: {', '.join(known)}")
    return p


def _cache_dir() -> Path:
    root = os.environ.get("PROOFMESH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "proofmesh")
    d = Path(root) / "vyper"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _sources_digest(path: Path) -> str:
    """Hash of the contract, the shared interfaces/modules it may import, and vyper."""
    import vyper

    h = hashlib.sha256(vyper.__version__.encode())
    shared = [p for d in ("interfaces", "modules") for p in sorted((CONTRACTS_DIR / d).glob("*.vy*"))]
    for p in [path, *shared]:
        h.update(str(p.relative_to(CONTRACTS_DIR)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def compile_contract(name: str) -> CompiledContract:
    """Compile contract ``name`` (cached); raises CompileError with vyper's message."""
    path = contract_path(name)
    cache_file = _cache_dir() / f"{name.replace('/', '__')}-{_sources_digest(path)}.json"
    if cache_file.exists():
        data = json.loads(cache_file.read_text())
        return CompiledContract(name, data["abi"], bytes.fromhex(data["bytecode"]))
    with _lock:
        out = _compile(path)
    tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"abi": out.abi, "bytecode": out.bytecode.hex()}))
    os.replace(tmp, cache_file)
    return CompiledContract(name, out.abi, out.bytecode)


def _compile(path: Path) -> CompiledContract:
    from vyper.compiler import compile_from_file_input
    from vyper.compiler.input_bundle import FilesystemInputBundle

    search = [path.parent, CONTRACTS_DIR, *[Path(p) for p in sys.path if p and Path(p).is_dir()]]
    bundle = FilesystemInputBundle(search)
    try:
        file_input = bundle.load_file(path)
        out = compile_from_file_input(file_input, input_bundle=bundle, output_formats=["abi", "bytecode"])
    except Exception as exc:  # vyper raises many exception types; surface its message
        raise CompileError(f"{path.name} failed to compile: {exc}", fix="fix the contract source") from exc
    return CompiledContract(path.stem, out["abi"], bytes.fromhex(out["bytecode"].removeprefix("0x")))


def compile_all() -> dict[str, CompiledContract]:
    """Compile every contract (except interfaces); used to warm the cache."""
    names = [str(p.relative_to(CONTRACTS_DIR))[:-3] for p in sorted(CONTRACTS_DIR.rglob("*.vy"))]
    return {n: compile_contract(n) for n in names}
