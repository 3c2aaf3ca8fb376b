"""numba's cache follows a kernel's dependencies (proofmesh.crypto._numba_cache)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import pytest

from proofmesh.crypto import _numba_cache

SRC = Path(_numba_cache.__file__).resolve().parents[2]


def _package(tmp_path: Path, registered: bool) -> Path:
    """A two-module package: ``caller.g`` inlines ``callee.f`` and a constant of ``consts``."""
    pkg = tmp_path / "nbdep_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        import os
        from proofmesh.crypto import _numba_cache
        _numba_cache.register(os.path.dirname(__file__), "nbdep_pkg")
    """) if registered else "")
    (pkg / "consts.py").write_text("import numpy as np\nK = np.array([7, 0])\n")
    (pkg / "callee.py").write_text(textwrap.dedent("""
        import numba as nb

        @nb.njit(cache=True)
        def f(x):
            return x + 1
    """))
    (pkg / "caller.py").write_text(textwrap.dedent("""
        import numba as nb

        from nbdep_pkg.callee import f
        from .consts import K

        @nb.njit(cache=True)
        def g(x):
            return f(x) * 10 + K[0]
    """))
    return pkg


def _run(tmp_path: Path) -> dict:
    code = textwrap.dedent("""
        import json
        from nbdep_pkg.caller import g
        from nbdep_pkg import callee, consts
        value = g(1)
        print(json.dumps({"value": int(value), "expected": int(callee.f.py_func(1) * 10 + consts.K[0]),
                          "hits": sum(g.stats.cache_hits.values()), "misses": sum(g.stats.cache_misses.values())}))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(SRC)]), PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_dependency_change_recompiles_the_caller(tmp_path):
    pkg = _package(tmp_path, registered=True)
    first = _run(tmp_path)
    assert first == {"value": 27, "expected": 27, "hits": 0, "misses": 1}
    assert _run(tmp_path) == {"value": 27, "expected": 27, "hits": 1, "misses": 0}   # from the cache

    _edit(pkg / "callee.py", "x + 1", "x + 200")         # a callee in another module changes
    assert _run(tmp_path) == {"value": 2017, "expected": 2017, "hits": 0, "misses": 1}
    assert _run(tmp_path) == {"value": 2017, "expected": 2017, "hits": 1, "misses": 0}

    _edit(pkg / "consts.py", "[7, 0]", "[5, 0]")         # a constant frozen into the code changes
    assert _run(tmp_path) == {"value": 2015, "expected": 2015, "hits": 0, "misses": 1}
    assert _run(tmp_path) == {"value": 2015, "expected": 2015, "hits": 1, "misses": 0}


def test_plain_numba_keeps_the_stale_callee(tmp_path):
    """The defect the mechanism exists for (if numba ever fixes it, this test says so)."""
    pkg = _package(tmp_path, registered=False)
    assert _run(tmp_path)["value"] == 27
    _edit(pkg / "callee.py", "x + 1", "x + 200")
    stale = _run(tmp_path)
    assert (stale["value"], stale["expected"], stale["hits"]) == (27, 2017, 1)


def test_unregistered_files_keep_numbas_locators(tmp_path):
    def plain(x):
        return x

    assert _numba_cache.LOCATORS[0].from_function(plain, __file__) is None   # tests/ is not proofmesh


def _kernel_modules() -> list[str]:
    root = SRC / "proofmesh"
    return sorted(".".join(p.relative_to(SRC).with_suffix("").parts) for p in root.rglob("*.py")
                  if "cache=True" in p.read_text() and p.name != "_numba_cache.py")


def test_every_cached_proofmesh_kernel_is_keyed_by_its_dependencies():
    import importlib

    modules = _kernel_modules()
    assert "proofmesh.crypto._keccak_numba" in modules and "proofmesh.edge._verify_numba" in modules
    kernels = 0
    for name in modules:
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if isinstance(obj, numba.core.registry.CPUDispatcher) and obj.py_func.__module__ == name \
                    and obj._cache.cache_path is not None and type(obj._cache).__name__ != "NullCache":
                kernels += 1
                locator = obj._cache._impl.locator
                assert isinstance(locator, _numba_cache.LOCATORS), f"{name}.{obj.__name__}: {type(locator)}"
    assert kernels >= 20


@pytest.mark.parametrize("trial", ["warm", "cached"])
def test_proofmesh_kernels_load_from_cache_in_a_fresh_process(trial):
    code = textwrap.dedent("""
        import json, numba, numpy as np
        from proofmesh.crypto import keccak, _keccak_numba as k
        from proofmesh.edge import _verify_numba as v
        from proofmesh.edge.reading import runs_root
        n = 8
        tree = np.zeros((2 * n - 1, 32), np.uint8)
        tree[n - 1:] = 1
        keccak.build_tree(tree, n)
        runs_root([(bytes([i]) * 20, 1, i, i + 1) for i in range(4)])
        print(json.dumps({d.__name__: [sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values())]
                          for d in (k.tree, v.run_leaves)}))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    if trial == "cached":            # the "warm" run before it filled the cache if it was stale
        assert got == {"tree": [1, 0], "run_leaves": [1, 0]}    # [hits, misses]: loaded, not compiled
