"""ModelRegistry through the client: registration rules, duplicates, verify with proofs, registrars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from proofmesh.errors import ContractRevert, InputError
from proofmesh.models.registry import ModelRegistryClient, name_id
from proofmesh.models.weights import manifest


def test_register_show_and_duplicate_refused(client, gpt2_dir: Path, owner) -> None:
    rec, tx = client.register_version("tiny-gpt2", gpt2_dir, config=gpt2_dir / "config.json",
                                      data_batches=["0x" + "ab" * 32])
    assert rec.id == 1 and rec.parent == 0 and rec.kind == "full" and rec.owner == owner.address
    assert rec.weights_root == "0x" + manifest(gpt2_dir).root.hex()
    assert rec.data_batches == ["0x" + "ab" * 32]
    assert client.get_blob(rec.config_cid) == (gpt2_dir / "config.json").read_bytes()
    assert tx.gas_used > 0
    # the client refuses before sending...
    with pytest.raises(InputError, match="already registered as version 1"):
        client.register_version("tiny-gpt2", gpt2_dir)
    # ...and the contract refuses on its own, naming the version
    m = manifest(gpt2_dir)
    fn = client.registry.functions.register("other", m.root, 0, 0, 0, [], 0, "", "")
    with pytest.raises(ContractRevert, match="duplicate weights, already version 1"):
        client.chain.transact(fn)
    assert client.version_count() == 1


def test_bad_parent_base_and_name_rules(client, chain, gpt2_dir: Path, lora_dir: Path, tmp_path: Path,
                                        tiny, accounts) -> None:
    with pytest.raises(InputError, match="parent version 7 does not exist"):
        client.register_version("m", gpt2_dir, parent=7)
    with pytest.raises(InputError, match="needs its base"):
        client.register_version("m", lora_dir)
    with pytest.raises(InputError, match="32-byte root"):
        client.register_version("m", gpt2_dir, data_batches=["batch-1"])
    m = manifest(gpt2_dir)
    with pytest.raises(ContractRevert, match="parent version does not exist"):
        client.chain.transact(client.registry.functions.register("m", m.root, 5, 0, 0, [], 0, "", ""))
    with pytest.raises(ContractRevert, match="LoRA base version does not exist"):
        client.chain.transact(client.registry.functions.register("m", m.root, 0, 1, 3, [], 0, "", ""))
    assert client.version_count() == 0
    v1, _ = client.register_version("m", gpt2_dir)
    # another account cannot add versions to a lineage it does not own
    other = ModelRegistryClient(chain.with_account(accounts[8]))
    d2 = tiny.save(tiny.gpt2(seed=5), tmp_path / "g5")
    with pytest.raises(InputError, match="lineage 'm' is owned by"):
        other.register_version("m", d2, parent=v1.id)
    m2 = manifest(d2)     # the contract refuses on its own too
    with pytest.raises(ContractRevert, match="name is owned by another account"):
        chain.transact(client.registry.functions.register("m", m2.root, v1.id, 0, 0, [], 0, "", ""),
                       sender=accounts[8])
    v2, _ = other.register_version("their-finetune", d2, parent=v1.id)   # forking under its own name is fine
    assert client.children(v1.id) == [v2.id]
    assert client.versions_of("m") == [1] and client.versions_of("their-finetune") == [2]


def test_verify_names_changed_tensor_with_onchain_proof(client, gpt2_dir: Path, tmp_path: Path) -> None:
    rec, _ = client.register_version("tiny-gpt2", gpt2_dir)
    ok = client.verify(gpt2_dir, rec.id)
    assert ok.match and not ok.changed
    t = load_file(str(gpt2_dir / "model.safetensors"))
    t["transformer.h.1.mlp.c_fc.bias"] = t["transformer.h.1.mlp.c_fc.bias"].copy()
    t["transformer.h.1.mlp.c_fc.bias"][0] += 1.0
    save_file(t, str(tmp_path / "tampered.safetensors"), metadata={"format": "pt"})
    bad = client.verify(tmp_path / "tampered.safetensors", rec.id)
    assert not bad.match
    assert bad.changed == ["transformer.h.1.mlp.c_fc.bias"] and not bad.missing and not bad.extra
    (p,) = bad.proofs
    assert p.accepted_on_chain and p.local_sha256 != p.registered_sha256
    # the contract refuses the local (tampered) tensor with the same proof
    local = {x.name: x for x in manifest(tmp_path / "tampered.safetensors").tensors}[p.name]
    assert not client.chain.call(client.registry.functions.verify_tensor(
        rec.id, p.name, p.dtype, p.shape, local.sha256, [bytes.fromhex(x[2:]) for x in p.proof]))
    # a removed tensor is named as missing
    del t["transformer.h.1.mlp.c_fc.bias"]
    save_file(t, str(tmp_path / "short.safetensors"))
    short = client.verify(tmp_path / "short.safetensors", rec.id)
    assert "transformer.h.1.mlp.c_fc.bias" in short.missing


def test_onchain_leaf_matches_offchain(client, gpt2_dir: Path) -> None:
    m = manifest(gpt2_dir)
    for t in m.tensors[:3]:
        assert client.chain.call(client.registry.functions.tensor_leaf(t.name, t.dtype, list(t.shape), t.sha256)) == t.leaf


def test_registrar_registers_for_owner(client, chain, gpt2_dir: Path, tiny, tmp_path: Path, accounts, owner) -> None:
    """The compute JobMarket path: a governance-authorised registrar registers a child for the owner."""
    v1, _ = client.register_version("tiny-gpt2", gpt2_dir)
    registrar = accounts[7]
    m2 = manifest(tiny.save(tiny.gpt2(seed=9), tmp_path / "trained"))
    fn = client.registry.functions.register_for(owner.address, "tiny-gpt2", m2.root, v1.id, 0, 0, [], 42, "", "")
    with pytest.raises(ContractRevert, match="not a registrar"):
        chain.transact(fn, sender=registrar)
    with pytest.raises(ContractRevert, match="caller is not the owner"):
        chain.transact(client.registry.functions.set_registrar(registrar.address, True), sender=owner)
    tiny.governance_apply(chain, client.registry.functions.set_registrar(registrar.address, True))
    chain.transact(fn, sender=registrar)
    v2 = client.version(2)
    assert (v2.owner, v2.registrar, v2.parent, v2.job_id) == (owner.address, registrar.address, v1.id, 42)
    # a registrar cannot put versions into someone else's lineage
    m3 = manifest(tiny.save(tiny.gpt2(seed=10), tmp_path / "t3"))
    with pytest.raises(ContractRevert, match="name is owned by another account"):
        chain.transact(client.registry.functions.register_for(accounts[9].address, "tiny-gpt2", m3.root, 0, 0, 0,
                                                              [], 0, "", ""), sender=registrar)


def test_name_id_matches_contract(client, gpt2_dir: Path) -> None:
    rec, _ = client.register_version("lineage-x", gpt2_dir)
    assert client.chain.call(client.registry.functions.name_id_of(rec.id)) == name_id("lineage-x")


def test_verify_from_another_home_fetches_manifest_over_http(client, chain, gpt2_dir: Path, tmp_path: Path) -> None:
    """An evaluator with an empty store gets the manifest from the registering node's blob
    server (a real HTTP server on 127.0.0.1) and still names the changed tensor."""
    from proofmesh.store.api import serve_blobs
    from proofmesh.store.blobstore import BlobStore

    rec, _ = client.register_version("served", gpt2_dir)
    t = load_file(str(gpt2_dir / "model.safetensors"))
    t["transformer.ln_f.bias"] = t["transformer.ln_f.bias"].copy()
    t["transformer.ln_f.bias"][3] = 7.0
    save_file(t, str(tmp_path / "edited.safetensors"))
    with serve_blobs(client.blobs) as url:
        other = ModelRegistryClient(chain, blobs=BlobStore(tmp_path / "other-store"), peers=[url])
        assert not other.blobs.has(rec.manifest_cid)
        report = other.verify(tmp_path / "edited.safetensors", rec.id)
    assert report.changed == ["transformer.ln_f.bias"] and report.proofs[0].accepted_on_chain
    assert other.blobs.has(rec.manifest_cid)
    # a peer serving nothing useful: a clear error naming the peer
    with pytest.raises(Exception, match="could not fetch"):
        ModelRegistryClient(chain, blobs=BlobStore(tmp_path / "third"), peers=["http://127.0.0.1:9"]).verify(
            tmp_path / "edited.safetensors", rec.id)
