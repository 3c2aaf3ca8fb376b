"""The ``rpc`` backend: `proofmesh chain up/deploy/down` with anvil (state kept in the home),
and writes that wait for confirmations."""

from __future__ import annotations

import json


from proofmesh.chain.anvil import free_port, start_anvil
from proofmesh.chain.client import Chain
from proofmesh.chain.embedded import dev_accounts
from tests.conftest import cli_runner


def test_chain_up_deploy_down_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("PROOFMESH_PASSWORD", "pw")
    home_dir = tmp_path / "h"
    run = cli_runner(home_dir)

    run("init", "--no-deploy")  # embedded home, then switch it to a local anvil
    port = free_port()
    try:
        up = json.loads(run("chain", "up", "--port", str(port), "--json").stdout)
        assert up["url"].endswith(str(port))
        again = run("chain", "up", "--port", str(port), ok=False)
        assert again.exit_code != 0 and "already running" in again.output
        run("chain", "deploy")
        info = json.loads(run("chain", "info", "--json").stdout)
        assert info["backend"] == "rpc" and "MeshToken" in info["contracts"]
        balance = json.loads(run("account", "balance", "--json").stdout)["mesh"]
        run("chain", "down")
        # anvil saved its state in the home: a new `chain up` resumes with the same balances
        run("chain", "up", "--port", str(port))
        assert json.loads(run("account", "balance", "--json").stdout)["mesh"] == balance
    finally:
        cli_runner(home_dir)("chain", "down", ok=None)
    down = run("chain", "down", ok=False)
    assert "no anvil is running" in down.output


def test_writes_wait_for_confirmations(tmp_path):
    proc = start_anvil(block_time=0.5)
    try:
        a = dev_accounts(2)
        chain = Chain.from_url(proc.url, account=a[0], confirmations=2)
        result = chain.send_eth(a[1].address, 1)
        assert chain.block_number() >= result.block_number + 2
        canonical = chain.w3.eth.get_block(result.block_number)["hash"]
        assert result.receipt["blockHash"] == canonical
    finally:
        proc.stop()
