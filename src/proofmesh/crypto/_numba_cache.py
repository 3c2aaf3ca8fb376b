"""numba's on-disk cache for proofmesh kernels, invalidated by a change of any module they use.

Why. ``@nb.njit(cache=True)`` keys a kernel's cached machine code by the content of the
kernel's *own* source file only. A kernel that calls an ``njit`` function of another module
(``keccak_into`` from :mod:`proofmesh.crypto._keccak_numba`) has that callee compiled into
it, and a module-level array it reads (``_RC`` of :mod:`proofmesh.crypto.keccak`) frozen in
as a constant. When such a module changes (an upgrade of proofmesh) and the caller's file
does not, numba loads the caller's old code: a silently wrong hash or signature.

What. :func:`register` adds, in front of numba's own cache locators, locators that apply
only to source files under a registered package directory (proofmesh's, on import of this
module); files elsewhere fall through to numba's locators unchanged, so other libraries'
caching is untouched and numba's global configuration (``NUMBA_CACHE_DIR``, ...) is left
alone and still honoured. These locators keep numba's cache directories (``__pycache__``
next to the source, ``NUMBA_CACHE_DIR``, or the user-wide cache when the tree is
read-only) and change only the *source stamp* stored in each kernel's index: a hash of
the kernel's file and of every module of the package it imports, transitively (import
statements read from the sources, relative ones included). numba discards an index whose
stamp differs and recompiles once, so a dependency change costs one compile per affected
kernel and a restart with nothing changed still loads everything from the cache.

A locator is chosen when a kernel is decorated, so every proofmesh module with
``cache=True`` kernels imports this module before its first ``@nb.njit`` (importing a
module that does, like :mod:`proofmesh.crypto._keccak_numba`, is enough).
``tests/crypto/test_numba_cache.py`` checks that every cached proofmesh kernel has it.

Limits: a dependency the import statements do not show (``importlib``, a function passed
in as an argument) is not part of the stamp; neither are other packages' modules (numpy,
numba itself: numba's index already records its own version).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path

from numba.core import caching

_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]*)"
                     r"|import[ \t]+([^\n#;]+))", re.M)

_packages: dict[Path, str] = {}     # registered package directory -> its import name
_stamps: dict[str, bytes] = {}      # kernel source file -> dependency stamp (once per process)
_guard = threading.Lock()


def _package_of(py_file: str) -> tuple[Path, str] | None:
    path = Path(os.path.realpath(py_file))
    for root, name in list(_packages.items()):
        if root in path.parents:
            return root, name
    return None


def _module_file(root: Path, name: str, module: str) -> Path | None:
    """The source file of ``module`` if it lies in the package ``name`` at ``root``."""
    parts = module.split(".")
    if parts[0] != name:
        return None
    base = root.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(root: Path, name: str, path: Path, source: str) -> set[Path]:
    """Files of the package that ``path`` (source ``source``) imports."""
    here = ".".join((name, *path.relative_to(root).with_suffix("").parts))
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    if package.endswith(".__init__"):
        package = package[: -len(".__init__")]
    found: set[Path] = set()
    for m in _IMPORT.finditer(source):
        frm, names, plain = m.groups()
        if plain is not None:
            modules = [n.split(" as ")[0].strip() for n in plain.split(",")]
        else:
            if frm.startswith("."):
                dots = len(frm) - len(frm.lstrip("."))
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (dots - 1)] if dots > 1 else anchor
                frm = ".".join(anchor + ([frm.lstrip(".")] if frm.lstrip(".") else []))
            modules = [frm]
            # `from pkg import submodule` imports a module too
            for n in names.strip("()").split(","):
                n = n.split(" as ")[0].strip()
                if n.isidentifier():
                    modules.append(f"{frm}.{n}")
        for module in modules:
            f = _module_file(root, name, module)
            if f is not None:
                found.add(f)
    return found


def dependency_stamp(py_file: str) -> bytes:
    """sha256 over ``py_file`` and every module of its package it imports, transitively."""
    key = os.path.realpath(py_file)
    with _guard:
        stamp = _stamps.get(key)
    if stamp is not None:
        return stamp
    owner = _package_of(key)
    if owner is None:
        raise ValueError(f"{py_file} is not in a package registered with proofmesh.crypto._numba_cache")
    root, name = owner
    seen: dict[Path, bytes] = {}
    todo = [Path(key)]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        data = path.read_bytes()
        seen[path] = hashlib.sha256(data).digest()
        todo.extend(_imports(root, name, path, data.decode("utf-8", "replace")) - seen.keys())
    h = hashlib.sha256(b"proofmesh numba dependency stamp v1\0")
    for path in sorted(seen):
        h.update(str(path.relative_to(root)).encode() + b"\0" + seen[path])
    stamp = h.digest()
    with _guard:
        _stamps[key] = stamp
    return stamp


class _DependencyStamp:
    """Locator mixin: only for registered packages' files; stamp = :func:`dependency_stamp`."""

    @classmethod
    def from_function(cls, py_func, py_file):
        if _package_of(py_file) is None:
            return None                   # not ours: numba's own locators decide
        return super().from_function(py_func, py_file)

    def get_source_stamp(self):
        return ("proofmesh-deps", dependency_stamp(self._py_file))


def _numba_class(*names):
    for n in names:     # numba 0.61+ dropped the leading underscore of these names
        if hasattr(caching, n):
            return getattr(caching, n)
    raise ImportError(f"numba.core.caching has none of {names}: update proofmesh.crypto._numba_cache")


_CacheImpl = _numba_class("CacheImpl", "_CacheImpl")
LOCATORS = tuple(
    type(f"Dependency{base.__name__.lstrip('_')}", (_DependencyStamp, base), {"__module__": __name__})
    for base in (_numba_class("UserProvidedCacheLocator", "_UserProvidedCacheLocator"),
                 _numba_class("InTreeCacheLocator", "_InTreeCacheLocator"),
                 _numba_class("UserWideCacheLocator", "_UserWideCacheLocator"))
)


def register(package_dir: str | os.PathLike, name: str) -> None:
    """Cache the kernels of package ``name`` (its directory ``package_dir``) with dependency stamps."""
    with _guard:
        _packages[Path(os.path.realpath(package_dir))] = name
        classes = _CacheImpl._locator_classes     # the list numba's cache implementations share
        if classes[: len(LOCATORS)] != list(LOCATORS):
            classes[:0] = LOCATORS


register(Path(__file__).resolve().parent.parent, "proofmesh")
