"""Home.init(**overrides) on an existing config.toml sets only the overridden settings and
keeps everything else: [sections] services read (``[inference] serve``), comments, other
settings, and no environment override leaks into the file."""

from __future__ import annotations

import tomllib

import pytest

from proofmesh.config import Home, Settings
from proofmesh.errors import ConfigError

SECTIONS = """
[inference]
# versions this node serves
serve = [{version = 3, onnx = "/m.onnx", price = "0.01"}, {version = 4, onnx = "/n.onnx", price = "0.02"}]

[agents.tools]
allow = ["search", "fetch"]
"""
CONFIG = '# my node\nbackend = "embedded"\nnode_port = 9100\n' + SECTIONS


def test_init_writes_every_setting_in_a_new_home(tmp_path):
    home = Home.resolve(tmp_path / "h")
    home.init()
    assert tomllib.loads(home.config_file.read_text()) == {f: getattr(Settings(), f) for f in Settings().__dict__}


def test_init_with_overrides_keeps_sections_comments_and_other_settings(tmp_path, monkeypatch):
    home = Home.resolve(tmp_path / "h")
    home.init()
    home.config_file.write_text(CONFIG)
    monkeypatch.setenv("PROOFMESH_CONFIRMATIONS", "7")        # an environment override must not be persisted
    home = Home.resolve(tmp_path / "h")
    home.init(backend="rpc", rpc_url="http://127.0.0.1:8545")
    text = home.config_file.read_text()
    assert text.endswith(SECTIONS) and text.startswith("# my node\n")
    data = tomllib.loads(text)
    assert data["inference"]["serve"][1] == {"version": 4, "onnx": "/n.onnx", "price": "0.02"}
    assert data["agents"]["tools"]["allow"] == ["search", "fetch"]
    assert (data["backend"], data["rpc_url"], data["node_port"]) == ("rpc", "http://127.0.0.1:8545", 9100)
    assert "confirmations" not in data
    monkeypatch.delenv("PROOFMESH_CONFIRMATIONS")
    s = Home.resolve(tmp_path / "h").settings
    assert (s.backend, s.rpc_url, s.node_port, s.confirmations) == ("rpc", "http://127.0.0.1:8545", 9100, 0)
    # again, and with no overrides: nothing changes
    home.init(backend="rpc", rpc_url="http://127.0.0.1:8545")
    home.init()
    assert home.config_file.read_text() == text


def test_init_refuses_an_unknown_setting_and_changes_nothing(tmp_path):
    home = Home.resolve(tmp_path / "h")
    home.init()
    home.config_file.write_text(CONFIG)
    with pytest.raises(ConfigError, match="unknown setting"):
        Home.resolve(tmp_path / "h").init(backend="rpc", no_such_setting=1)
    assert home.config_file.read_text() == CONFIG


def test_service_settings_come_from_the_file_or_the_environment_and_are_checked(tmp_path, monkeypatch):
    # the daemon's services read their intervals and threads from Settings like every other
    # knob (they were environment-only before): the file, overridden by PROOFMESH_<NAME>
    for name in ("WORKER_INTERVAL", "WORKER_THREADS", "GATEWAY_WORKERS", "VALIDATOR_INTERVAL", "EVALUATOR_INTERVAL"):
        monkeypatch.delenv(f"PROOFMESH_{name}", raising=False)
    cfg = tmp_path / "config.toml"
    cfg.write_text("worker_interval = 0.5\nworker_threads = 2\ngateway_workers = 3\nvalidator_interval = 4.0\n")
    s = Settings.load(cfg)
    assert (s.worker_interval, s.worker_threads, s.gateway_workers, s.validator_interval) == (0.5, 2, 3, 4.0)
    assert s.evaluator_interval == 2.0 and s.evaluator_retry == 15.0        # defaults
    monkeypatch.setenv("PROOFMESH_EVALUATOR_INTERVAL", "1")
    assert Settings.load(cfg).evaluator_interval == 1.0
    monkeypatch.setenv("PROOFMESH_WORKER_THREADS", "0")         # a worker with no threads trains nothing
    with pytest.raises(ConfigError, match="worker_threads.*at least 1") as info:
        Settings.load(cfg)
    assert "PROOFMESH_WORKER_THREADS" in info.value.fix
    monkeypatch.delenv("PROOFMESH_WORKER_THREADS")
    cfg.write_text("validator_interval = 0\n")                  # a validator loop that would spin
    with pytest.raises(ConfigError, match="validator_interval"):
        Settings.load(cfg)
