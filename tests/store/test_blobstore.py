"""BlobStore: content addressing, atomic writes, dedup, corruption, takedown."""

from __future__ import annotations

import os
import stat

import pytest

from proofmesh.crypto.cid import CHUNK_SIZE, cid_of_bytes
from proofmesh.errors import InputError, StoreError
from proofmesh.store.blobstore import BlobStore


def test_put_get_roundtrip_and_dedup(store):
    data = b"hello world"
    cid = store.put_bytes(data)
    assert cid == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    assert store.put_bytes(data) == cid
    assert list(store.list()) == [cid]
    assert store.get_bytes(cid) == data and store.has(cid) and store.size(cid) == 11
    path = store._path(cid)
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert list(store.tmp_dir.iterdir()) == []


def test_put_file_streams_multichunk(store, tmp_path):
    data = os.urandom(2 * CHUNK_SIZE + 99)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    cid = store.put_file(src)
    assert cid == cid_of_bytes(data) and cid.startswith("bafybei")
    with store.open(cid) as r:
        assert r.read() == data
    assert store.total_size() == len(data)


def test_other_multibase_is_accepted(store):
    from multiformats import CID
    cid = store.put_bytes(b"x")
    b58 = str(CID.decode(cid).encode("base58btc"))
    assert store.get_bytes(b58) == b"x" and store.has(b58)


def test_corrupted_blob_is_quarantined(store):
    cid = store.put_bytes(b"precious bytes")
    path = store._path(cid)
    os.chmod(path, 0o644)
    path.write_bytes(b"precious bytez")
    with pytest.raises(StoreError, match="corrupted"):
        store.get_bytes(cid)
    assert not store.has(cid)
    assert len(list(store.quarantine_dir.iterdir())) == 1
    with pytest.raises(StoreError, match="not in the store"):
        store.get_bytes(cid)


def test_streaming_reader_detects_corruption_at_end(store):
    data = os.urandom(CHUNK_SIZE + 5)
    cid = store.put_bytes(data)
    path = store._path(cid)
    os.chmod(path, 0o644)
    with path.open("r+b") as f:
        f.seek(CHUNK_SIZE + 1)
        f.write(b"\x00" if data[CHUNK_SIZE + 1] else b"\x01")
    assert store.verify(cid) is False
    assert not store.has(cid)


def test_expected_cid_mismatch_leaves_nothing(store):
    want = cid_of_bytes(b"right")
    with pytest.raises(StoreError, match="not the expected"):
        store.put_stream([b"wrong"], expected_cid=want)
    assert list(store.list()) == [] and list(store.tmp_dir.iterdir()) == []


def test_max_bytes(store):
    with pytest.raises(StoreError, match="limit"):
        store.put_stream([b"a" * 10, b"b" * 10], max_bytes=15)
    assert list(store.list()) == [] and list(store.tmp_dir.iterdir()) == []


def test_failed_source_leaves_nothing(store):
    def broken():
        yield b"partial"
        raise OSError("disk on fire")
    with pytest.raises(OSError):
        store.put_stream(broken())
    assert list(store.list()) == [] and list(store.tmp_dir.iterdir()) == []


def test_delete_and_block(store):
    cid = store.put_bytes(b"takedown me")
    assert store.delete(cid) is True
    assert not store.has(cid) and store.delete(cid) is False
    store.put_bytes(b"takedown me")  # allowed again: not blocked
    store.delete(cid, block=True)
    with pytest.raises(StoreError, match="taken down"):
        store.put_bytes(b"takedown me")
    assert cid in BlobStore(store.root).blocked()  # persisted


def test_bad_input(store, tmp_path):
    with pytest.raises(InputError):
        store.get_bytes("not-a-cid")
    with pytest.raises(InputError):
        store.has("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH")
    with pytest.raises(InputError, match="no such file"):
        store.put_file(tmp_path / "nope")
    with pytest.raises(StoreError, match="not in the store"):
        store.size(cid_of_bytes(b"never stored"))


def test_store_without_hard_links(store, monkeypatch):
    """On filesystems that refuse link(), blobs are renamed into place instead."""
    import errno as _errno

    def no_links(src, dst):
        raise OSError(_errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(os, "link", no_links)
    cid = store.put_bytes(b"on a FUSE mount")
    assert store.get_bytes(cid) == b"on a FUSE mount"
    assert store.put_bytes(b"on a FUSE mount") == cid and list(store.tmp_dir.iterdir()) == []
