#!/usr/bin/env bash
# Install proofmesh and the node tools it runs (anvil, solc) — then try `proofmesh demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --upgrade pip
# torch is pinned to the CPU build that ships for this platform (see pyproject).
python -m pip install --quiet -e .
npm install --no-audit --no-fund --silent
echo "proofmesh installed: run 'proofmesh demo'"
