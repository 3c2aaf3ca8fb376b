"""`proofmesh blob …` commands on a temporary home (the Typer group, invoked directly)."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from proofmesh.cli.context import reset_state
from proofmesh.config import Home
from proofmesh.crypto.cid import cid_of_bytes
from proofmesh.errors import StoreError
from proofmesh.store.blobstore import BlobStore
from proofmesh.store.cli import app

from .conftest import node_app, serve


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = Home.resolve(tmp_path / "home")
    h.init()
    monkeypatch.setenv("PROOFMESH_HOME", str(h.path))
    return h


def run(*args):
    reset_state()
    return CliRunner().invoke(app, list(args))


def test_add_ls_get_rm(home, tmp_path):
    f = tmp_path / "data.bin"
    data = os.urandom(300_000)
    f.write_bytes(data)
    r = run("add", str(f), "--json")
    assert r.exit_code == 0, r.output
    cid = json.loads(r.stdout)[0]["cid"]
    assert cid == cid_of_bytes(data)
    assert json.loads(run("cid", str(f), "--json").stdout)[0]["cid"] == cid
    assert json.loads(run("ls", "--json").stdout) == [{"cid": cid, "size": len(data)}]
    out = tmp_path / "out.bin"
    assert run("get", cid, "-o", str(out)).exit_code == 0
    assert out.read_bytes() == data
    assert json.loads(run("verify", "--json").stdout) == {"checked": 1, "corrupted": []}
    assert json.loads(run("rm", cid, "--json").stdout)["removed"] is True
    assert json.loads(run("ls", "--json").stdout) == []


def test_get_corrupted_leaves_no_file(home, tmp_path):
    store = BlobStore(home.store_dir)
    cid = store.put_bytes(b"original")
    p = store._path(cid)
    os.chmod(p, 0o644)
    p.write_bytes(b"tampered")
    out = tmp_path / "out.bin"
    r = run("get", cid, "-o", str(out))
    assert isinstance(r.exception, StoreError)
    assert not out.exists() and list(tmp_path.glob(".out.bin*")) == []


def test_fetch_from_peer(home, tmp_path):
    source = BlobStore(tmp_path / "peer-store")
    cid = source.put_bytes(b"shared dataset shard" * 1000)
    with serve(node_app(source)) as url:
        r = run("fetch", cid, "--peer", url, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["from"] == url
    assert BlobStore(home.store_dir).get_bytes(cid) == b"shared dataset shard" * 1000
