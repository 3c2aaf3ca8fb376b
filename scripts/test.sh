#!/usr/bin/env bash
# Install everything the tests need (Python packages, anvil + solc from npm, Debian's
# chromium for the explorer's browser tests) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e ".[test]"
npm install --no-audit --no-fund --silent

# Tests never touch ~/.proofmesh or ~/.ezkl: every test makes its own home.
export PROOFMESH_KDF=fast
set +e
python -m pytest -q -n 2 --dist loadfile --durations=25 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests (is the checkout complete?)" >&2
  exit 1
fi
exit "$rc"
