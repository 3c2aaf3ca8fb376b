"""The weights root: what changes it, what does not, and bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from proofmesh.crypto.merkle import verify_proof
from proofmesh.errors import InputError
from proofmesh.models import weights as W



def _tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a.weight": rng.standard_normal((8, 4), dtype=np.float32),
            "b.bias": rng.standard_normal((4,), dtype=np.float32),
            "c.embed": rng.integers(0, 9, (3, 5)).astype(np.int64),
            "d.half": rng.standard_normal((2, 2)).astype(np.float16)}


def test_root_is_deterministic_and_covers_every_tensor(tmp_path: Path) -> None:
    t = _tensors()
    save_file(t, str(tmp_path / "m.safetensors"))
    m = W.manifest(tmp_path / "m.safetensors")
    assert [x.name for x in m.tensors] == sorted(t)
    assert W.weights_root(tmp_path / "m.safetensors", threads=1) == m.root
    assert len(m.root) == 32
    for x in m.tensors:
        assert verify_proof(m.proof(x.name), m.root, x.leaf)


def test_one_element_changes_root_and_diff_names_the_tensor(tmp_path: Path) -> None:
    t = _tensors()
    save_file(t, str(tmp_path / "a.safetensors"))
    t["b.bias"] = t["b.bias"].copy()
    t["b.bias"][2] += 1e-3
    save_file(t, str(tmp_path / "b.safetensors"))
    a, b = W.manifest(tmp_path / "a.safetensors"), W.manifest(tmp_path / "b.safetensors")
    assert a.root != b.root
    d = W.diff(b, a)
    assert d.changed == ["b.bias"] and not d.missing and not d.extra


def test_rename_dtype_and_shape_change_root(tmp_path: Path) -> None:
    t = _tensors()
    save_file(t, str(tmp_path / "a.safetensors"))
    base = W.weights_root(tmp_path / "a.safetensors")
    renamed = dict(t)
    renamed["a.weight2"] = renamed.pop("a.weight")
    save_file(renamed, str(tmp_path / "r.safetensors"))
    assert W.weights_root(tmp_path / "r.safetensors") != base
    reshaped = dict(t)
    reshaped["a.weight"] = t["a.weight"].reshape(4, 8)     # same bytes, other shape
    save_file(reshaped, str(tmp_path / "s.safetensors"))
    assert W.weights_root(tmp_path / "s.safetensors") != base
    retyped = dict(t)
    retyped["a.weight"] = t["a.weight"].view(np.int32)     # same bytes, other dtype
    save_file(retyped, str(tmp_path / "d.safetensors"))
    assert W.weights_root(tmp_path / "d.safetensors") != base


def test_sharding_and_metadata_do_not_change_root(tmp_path: Path, tiny) -> None:
    model = tiny.gpt2()
    one = tiny.save(model, tmp_path / "one")
    sharded = tiny.save(model, tmp_path / "sharded", max_shard_size="40KB")
    assert (sharded / W.INDEX_FILE).exists()
    assert len(list(sharded.glob("*.safetensors"))) > 2
    assert W.weights_root(one) == W.weights_root(sharded)
    t = load_file(str(one / "model.safetensors"))
    save_file(t, str(tmp_path / "meta.safetensors"), metadata={"format": "pt", "note": "other"})
    assert W.weights_root(tmp_path / "meta.safetensors") == W.weights_root(one)


def test_mismatched_shards_are_refused(tmp_path: Path, tiny) -> None:
    sharded = tiny.save(tiny.gpt2(), tmp_path / "sharded", max_shard_size="40KB")
    index = json.loads((sharded / W.INDEX_FILE).read_text())
    name, shard = next(iter(index["weight_map"].items()))
    other = next(s for s in set(index["weight_map"].values()) if s != shard)
    index["weight_map"][name] = other
    (sharded / W.INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(InputError, match="shard mismatch"):
        W.manifest(sharded)
    del index["weight_map"][name]
    (sharded / W.INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(InputError, match="not in the index"):
        W.manifest(sharded)
    (sharded / other).unlink()
    with pytest.raises(InputError, match="missing"):
        W.manifest(sharded)


def test_truncated_and_garbage_files_are_refused(tmp_path: Path) -> None:
    save_file(_tensors(), str(tmp_path / "m.safetensors"))
    raw = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(raw[:-10])
    with pytest.raises(InputError, match="truncated"):
        W.manifest(tmp_path / "t.safetensors")
    (tmp_path / "h.safetensors").write_bytes(raw[:20])
    with pytest.raises(InputError, match="truncated|exceeds"):
        W.manifest(tmp_path / "h.safetensors")
    (tmp_path / "g.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00hello world")
    with pytest.raises(InputError, match="not valid JSON"):
        W.manifest(tmp_path / "g.safetensors")
    (tmp_path / "e.safetensors").write_bytes(b"")
    with pytest.raises(InputError, match="truncated"):
        W.manifest(tmp_path / "e.safetensors")
    with pytest.raises(InputError, match="no such file"):
        W.manifest(tmp_path / "nope.safetensors")
    (tmp_path / "x.bin").write_bytes(raw)
    with pytest.raises(InputError, match="not a .safetensors"):
        W.manifest(tmp_path / "x.bin")


def test_lora_adapter_folder(lora_dir: Path) -> None:
    m = W.manifest(lora_dir)
    assert m.kind == "lora"
    assert all("lora_" in t.name for t in m.tensors)
    (lora_dir / W.ADAPTER_FILE).unlink()
    with pytest.raises(InputError, match="adapter_model.safetensors"):
        W.manifest(lora_dir)


def test_manifest_round_trip_and_tamper(tmp_path: Path) -> None:
    save_file(_tensors(), str(tmp_path / "m.safetensors"))
    m = W.manifest(tmp_path / "m.safetensors")
    back = W.WeightsManifest.from_json(json.loads(m.to_bytes()))
    assert back.root == m.root
    d = json.loads(m.to_bytes())
    d["tensors"][0]["sha256"] = "00" * 32
    with pytest.raises(Exception, match="does not match"):
        W.WeightsManifest.from_json(d)


def test_parallel_equals_serial(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    t = {f"t{i}": rng.standard_normal((256, 64 + i), dtype=np.float32) for i in range(16)}
    save_file(t, str(tmp_path / "m.safetensors"))
    assert W.weights_root(tmp_path / "m.safetensors", threads=1) == W.weights_root(tmp_path / "m.safetensors", threads=4)
