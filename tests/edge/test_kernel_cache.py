"""The edge verifier's numba kernels load from numba's on-disk cache in a new process
(keccak_into now lives in crypto/_keccak_numba.py; a cross-module callee must not
defeat caching), so a gateway restart does not pay the ~30 s JIT compile again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import proofmesh

_PROBE = """
import json
from proofmesh.edge import _verify_numba as k
from proofmesh.edge.verifier import native
native()
print(json.dumps({name: {"hits": sum(f.stats.cache_hits.values()), "misses": sum(f.stats.cache_misses.values())}
                  for name, f in (("verify_records", k.verify_records), ("run_leaves", k.run_leaves))}))
"""


def _probe() -> dict:
    src = str(Path(proofmesh.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_verifier_kernels_load_from_numba_cache_in_a_new_process():
    _probe()                      # compiles and writes the cache if this checkout has none yet
    second = _probe()
    for name, s in second.items():
        assert s["hits"] >= 1 and s["misses"] == 0, (name, second)
