"""First-call time of proofmesh's cached numba kernels in a fresh process.

Each trial is a new Python process that imports numba, then times the first call of a
crypto kernel (keccak tree: proofmesh.crypto.keccak.build_tree) and of an edge kernel that
calls keccak_into from another module (proofmesh.edge.reading.runs_root), and reports how
many of their kernels came from numba's on-disk cache (hits) or were compiled (misses).
Baseline: numba's own stamps (proofmesh's dependency-stamp locators taken out of numba's
list in the child, so kernels are keyed by their own file only, as before
proofmesh.crypto._numba_cache). Both share the cache files (different stamps), so each mode
first runs one warm-up process (which recompiles) and the figure is the median of the
others. The dependency-stamped mode runs last and leaves the cache in its state.

    python bench/numba_cold_start.py [--trials 5]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numba, numpy as np
t1 = time.perf_counter()
if sys.argv[1] == "numba":
    from numba.core import caching
    from proofmesh.crypto import _numba_cache
    caching.CacheImpl._locator_classes[:] = [c for c in caching.CacheImpl._locator_classes
                                             if c not in _numba_cache.LOCATORS]
    t1 = time.perf_counter()
from proofmesh.crypto import keccak
n = 64
tree = np.zeros((2 * n - 1, 32), np.uint8)
tree[n - 1:] = np.arange(n * 32, dtype=np.uint64).reshape(n, 32).astype(np.uint8)
keccak.build_tree(tree, n)
t2 = time.perf_counter()
from proofmesh.edge.reading import runs_root
runs_root([(bytes([i]) * 20, 1, i, i + 1) for i in range(4)])
t3 = time.perf_counter()
from proofmesh.crypto import _keccak_numba as k
from proofmesh.edge import _verify_numba as v
disp = [d for m in (k, v) for d in vars(m).values() if isinstance(d, numba.core.registry.CPUDispatcher)]
hits = sum(sum(d.stats.cache_hits.values()) for d in disp)
misses = sum(sum(d.stats.cache_misses.values()) for d in disp)
print(json.dumps({"import_numba_ms": (t1 - t0) * 1e3, "crypto_first_call_ms": (t2 - t1) * 1e3,
                  "edge_first_call_ms": (t3 - t2) * 1e3, "hits": hits, "misses": misses}))
"""


def trial(mode: str) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=600, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    print(f"load: {os.getloadavg()}")
    for mode in ("numba", "dependency"):
        print(f"--- {mode} stamps" + (" (baseline)" if mode == "numba" else " (proofmesh.crypto._numba_cache)"))
        first = trial(mode)
        print(f"warm-up process: {json.dumps({k: round(v, 1) for k, v in first.items()})}")
        runs = [trial(mode) for _ in range(args.trials)]
        for key in ("import_numba_ms", "crypto_first_call_ms", "edge_first_call_ms"):
            print(f"{key:24s} median {statistics.median(r[key] for r in runs):8.1f}  "
                  f"(min {min(r[key] for r in runs):.1f}, max {max(r[key] for r in runs):.1f})")
        print(f"cache hits/misses per process: {[(r['hits'], r['misses']) for r in runs]}")
    print(f"load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
