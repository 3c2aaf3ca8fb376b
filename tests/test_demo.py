"""`proofmesh demo` end to end, as a user runs it: one process, the embedded chain, every step."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from proofmesh.cli.demo import DEMO_STEPS

EXPECTED_STEPS = ["foundation"] + [name for name, _ in DEMO_STEPS]


@pytest.mark.slow
def test_demo_runs_every_step_on_the_embedded_chain(tmp_path):
    env = dict(os.environ, PROOFMESH_KDF="fast", HOME=str(tmp_path / "user-home"))
    (tmp_path / "user-home").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "proofmesh.cli.main", "--home", str(tmp_path / "demo"), "demo", "--json"],
        capture_output=True, text=True, env=env, timeout=1500)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")  # the report is printed last
    report = json.loads("\n".join(lines[start:]))
    assert list(report["steps"]) == EXPECTED_STEPS
    foundation = report["steps"]["foundation"]
    assert foundation["contracts"] >= 10 and float(foundation["node_stake"]) > 0
    # nothing was left running: the chain lock is free again
    from proofmesh.chain.embedded import EmbeddedChain

    EmbeddedChain.open(tmp_path / "demo" / "chain").close()
