"""Weights across nodes: the owner publishes a version's files (blob store + on-chain
locator), another node fetches them by CID over HTTP and checks the weights root."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from proofmesh.errors import ContractRevert, InputError, NotAvailableError
from proofmesh.models.distribution import WeightsBundle, WeightsMismatchError, fetch_weights, publish_weights
from proofmesh.models.registry import ModelRegistryClient
from proofmesh.models.weights import weights_root
from proofmesh.store.api import serve_blobs
from proofmesh.store.blobstore import BlobStore


def _tamper(folder: Path, out: Path) -> Path:
    """A copy of the model with one element of one tensor changed."""
    from safetensors.torch import load_file, save_file

    import shutil
    shutil.copytree(folder, out)
    tensors = load_file(str(out / "model.safetensors"))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1.0
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def test_publish_fetch_verify_and_tampered_bundle_refused(chain, owner, accounts, tiny, tmp_path) -> None:
    store_a, store_b = BlobStore(tmp_path / "store-a"), BlobStore(tmp_path / "store-b")
    a = ModelRegistryClient(chain.with_account(owner), blobs=store_a)
    folder = tiny.save(tiny.gpt2(seed=5), tmp_path / "v1")
    v1, _ = a.register_version("dist", folder)
    b = ModelRegistryClient(chain.with_account(accounts[2]), blobs=store_b)
    with pytest.raises(NotAvailableError, match="no published weights"):
        fetch_weights(b, v1.id, tmp_path / "b", peers=["http://127.0.0.1:9"])
    # publishing checks the files against the registered root first (nothing sent otherwise)
    bad = _tamper(folder, tmp_path / "v1-bad")
    with pytest.raises(WeightsMismatchError, match="h.0.attn.c_attn.bias|changed"):
        publish_weights(a, v1.id, bad)
    with pytest.raises(ContractRevert, match="does not own"):
        publish_weights(b, v1.id, folder, store=store_a)
    cid, _tx = publish_weights(a, v1.id, folder)
    assert a.chain.call(a.registry.functions.weights_cid_of(v1.id)) == cid

    with serve_blobs(store_a) as url_a:
        got = fetch_weights(b, v1.id, tmp_path / "b", peers=["http://127.0.0.1:9", url_a])
        assert got.is_dir() and "0x" + weights_root(got).hex() == v1.weights_root
        assert (got / "config.json").exists()
        # a malicious owner bypasses the client check: a bundle of tampered files on chain
        v2, _ = a.register_version("dist", tiny.save(tiny.gpt2(seed=6), tmp_path / "v2"), parent=v1.id)
        bad2 = _tamper(tmp_path / "v2", tmp_path / "v2-bad")
        files = {f.name: store_a.put_file(f) for f in sorted(bad2.iterdir())}
        forged = WeightsBundle(v2.id, v2.weights_root, files, {}, False)
        a.chain.transact(a.registry.functions.publish_weights(v2.id, store_a.put_bytes(forged.to_bytes())))
        with pytest.raises(WeightsMismatchError, match=f"version {v2.id} .*1 changed.*c_attn.bias.*refusing them"):
            fetch_weights(b, v2.id, tmp_path / "b", peers=[url_a])
        assert not any((tmp_path / "b").glob(f"v{v2.id}-*")) and not any((tmp_path / "b").glob(".v*"))
        # a bundle of another version is refused too (the bundle names its version and root)
        a.chain.transact(a.registry.functions.publish_weights(v2.id, cid))
        with pytest.raises(WeightsMismatchError, match=f"not version {v2.id}"):
            fetch_weights(b, v2.id, tmp_path / "b", peers=[url_a])


def test_bundle_names_cannot_escape_the_folder() -> None:
    for name in ("../x", "a/b", ".hidden"):
        raw = WeightsBundle(1, "0x" + "00" * 32, {name: "bafkqaaa"}, {}, False).to_bytes()
        with pytest.raises(WeightsMismatchError, match="unsafe file name"):
            WeightsBundle.from_bytes(raw, "cid")
    with pytest.raises(WeightsMismatchError, match="not a weights bundle"):
        WeightsBundle.from_bytes(b"{}", "cid")
