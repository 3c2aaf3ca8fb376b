"""Keystore: encrypted files, atomic 0600 writes, clear errors."""

from __future__ import annotations

import json
import os
import stat

import pytest
from eth_account import Account

from proofmesh.config import Home
from proofmesh.crypto.keys import Keystore
from proofmesh.errors import AccountError, InputError


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch):
    monkeypatch.setenv("PROOFMESH_KDF", "fast")
    monkeypatch.delenv("PROOFMESH_PASSWORD", raising=False)


@pytest.fixture
def ks(tmp_path):
    return Keystore(Home(path=tmp_path / "home"))


def test_create_load_list(ks):
    a = ks.create("alice", "pw-a")
    b = ks.import_key("bob", "0x" + "22" * 32, "pw-b")
    assert b.address == Account.from_key(b"\x22" * 32).address
    assert ks.list() == sorted([("alice", a.address), ("bob", b.address)])
    assert ks.load("alice", "pw-a").key == a.key
    assert ks.address_of("bob") == b.address
    path = ks.dir / "alice.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert a.key.hex() not in path.read_text() and data["crypto"]["kdf"] == "pbkdf2"
    assert sorted(p.name for p in ks.dir.iterdir()) == ["alice.json", "bob.json"]  # no temp files left


def test_default_kdf_is_scrypt(ks, monkeypatch):
    monkeypatch.delenv("PROOFMESH_KDF")
    ks.import_key("s", "0x" + "33" * 32, "pw")
    assert json.loads((ks.dir / "s.json").read_text())["crypto"]["kdf"] == "scrypt"


def test_password_from_env(ks, monkeypatch):
    monkeypatch.setenv("PROOFMESH_PASSWORD", "from-env")
    a = ks.create("envkey")
    assert ks.load("envkey").address == a.address


def test_errors(ks):
    ks.create("alice", "pw")
    with pytest.raises(AccountError, match="wrong password") as e:
        ks.load("alice", "nope")
    assert e.value.fix
    with pytest.raises(AccountError, match=r"unknown account 'carol' \(known: alice\)"):
        ks.load("carol", "pw")
    with pytest.raises(AccountError, match="already exists"):
        ks.create("alice", "pw2")
    with pytest.raises(AccountError, match="already exists"):
        ks.import_key("alice", "0x" + "44" * 32, "pw2")
    assert ks.load("alice", "pw")  # untouched by the failed attempts
    with pytest.raises(AccountError, match="no password"):
        ks.create("dave")
    with pytest.raises(AccountError, match="empty password"):
        ks.create("dave", "")
    with pytest.raises(InputError, match="invalid account name"):
        ks.create("../evil", "pw")
    with pytest.raises(InputError, match="private key"):
        ks.import_key("erin", "0x1234", "pw")
    assert [n for n, _ in ks.list()] == ["alice"]  # failures left no files


def test_unknown_when_empty(ks):
    with pytest.raises(AccountError, match="no accounts yet"):
        ks.address_of("x")
    assert ks.list() == []


def test_corrupted_keystore(ks):
    ks.create("alice", "pw")
    (ks.dir / "alice.json").write_text("{not json")
    with pytest.raises(AccountError, match="corrupted"):
        ks.load("alice", "pw")
    assert ks.list() == []


def test_bad_kdf_setting(ks, monkeypatch):
    monkeypatch.setenv("PROOFMESH_KDF", "md5")
    with pytest.raises(InputError, match="PROOFMESH_KDF"):
        ks.create("x", "pw")
