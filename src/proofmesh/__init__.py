"""proofmesh: a toolkit and node for an open, verifiable AI network on an EVM chain."""

import sys as _sys

import py_ecc as _py_ecc  # noqa: F401  (imported here, once, so its limit below is replaced)

__version__ = "0.1.0"

# The interpreter's recursion limit bounds how deep C code such as the stdlib JSON parser may
# recurse. py_ecc (imported by eth-account, so by nearly every proofmesh module) raises it to
# 100,000 at import, more than an 8 MB C stack holds: a 100 KB request body of "[[[[..."
# then crashed any proofmesh server that parsed it with `json.loads` (FastAPI does) with a
# segmentation fault instead of an error. py-evm needs 12,288 (its EVM_RECURSION_LIMIT: 1,024
# nested calls), which the C stack holds with room to spare; py-evm raises the limit to that
# at import if it is lower, and nothing in proofmesh or its tests needs more.
RECURSION_LIMIT = 12_288
_sys.setrecursionlimit(RECURSION_LIMIT)
