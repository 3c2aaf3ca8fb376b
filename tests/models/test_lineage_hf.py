"""Lineage walks over a 3-generation tree with LoRA adapters; the Hugging Face callback and model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from proofmesh.models import lineage as L
from proofmesh.models.hf import ProofmeshCallback, read_model_card, write_model_card


def _lora(base_model, folder: Path, seed: int) -> Path:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    m = get_peft_model(base_model, LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"], init_lora_weights=False))
    m.save_pretrained(str(folder))
    return folder


def test_three_generation_lineage_with_lora(client, tiny, tmp_path: Path) -> None:
    """v1 base → v2 full fine-tune → v3 LoRA on v2 → v4 LoRA continued from v3; v5 a sibling of v2."""
    g1, g2 = tiny.gpt2(seed=0), tiny.gpt2(seed=1)
    v1, _ = client.register_version("family", tiny.save(g1, tmp_path / "v1"), data_batches=["0x" + "11" * 32])
    v2, _ = client.register_version("family", tiny.save(g2, tmp_path / "v2"), parent=v1.id, job_id=7,
                                    data_batches=["0x" + "22" * 32])
    v3, _ = client.register_version("family", _lora(tiny.gpt2(seed=1), tmp_path / "v3", 3), parent=v2.id, base=v2.id)
    v4, _ = client.register_version("family", _lora(tiny.gpt2(seed=1), tmp_path / "v4", 4), parent=v3.id, base=v2.id)
    v5, _ = client.register_version("family", tiny.save(tiny.gpt2(seed=5), tmp_path / "v5"), parent=v1.id)
    assert (v3.kind, v3.base, v4.kind, v4.base) == ("lora", v2.id, "lora", v2.id)
    assert client.ancestors(v4.id) == [v3.id, v2.id, v1.id]
    assert client.descendants(v1.id) == [v2.id, v5.id, v3.id, v4.id]
    assert client.descendants(v3.id) == [v4.id]

    lin = L.build(client, v3.id)
    assert set(lin.nodes) == {v1.id, v2.id, v3.id, v4.id}          # the sibling v5 is not v3's family
    assert lin.roots == [v1.id] and lin.children(v2.id) == [v3.id]
    tree = lin.render("tree")
    assert tree.splitlines()[0].startswith("v1 family") and "lora on v2" in tree and "◀" in tree
    assert "job 7" in tree
    data = json.loads(lin.render("json"))
    assert [v["id"] for v in data["versions"]] == [1, 2, 3, 4]
    assert data["versions"][1]["data_batches"] == ["0x" + "22" * 32]
    dot = lin.render("dot")
    assert "v1 -> v2;" in dot and "v2 -> v3;" in dot and "v3 -> v4;" in dot
    assert 'v2 -> v4 [style=dashed, label="base"]' in dot
    mer = lin.render("mermaid")
    assert mer.startswith("graph TD") and "v3 --> v4" in mer and "v2 -.base.-> v4" in mer
    full = L.build(client, v1.id)
    assert set(full.nodes) == {1, 2, 3, 4, 5}
    with pytest.raises(Exception, match="unknown lineage format"):
        lin.render("svg")


def test_model_card_front_matter(client, gpt2_dir: Path) -> None:
    rec, _ = client.register_version("carded", gpt2_dir, data_batches=["0x" + "aa" * 32])
    write_model_card(gpt2_dir, rec, base_model="openai-community/gpt2", registry_address=client.registry.address,
                     chain_id=client.chain.chain_id)
    fm = read_model_card(gpt2_dir)
    assert fm["base_model"] == "openai-community/gpt2"
    assert fm["datasets"] == ["proofmesh:batch:0x" + "aa" * 32]
    assert fm["proofmesh"]["version_id"] == rec.id
    assert fm["proofmesh"]["weights_root"] == rec.weights_root
    # the card is not a weight: writing it does not change the root
    assert client.verify(gpt2_dir, rec.id).match


def test_trainer_callback_registers_each_checkpoint(client, tiny, tmp_path: Path) -> None:
    """A real transformers Trainer run: every saved checkpoint becomes a child version."""
    from transformers import Trainer, TrainingArguments

    base_dir = tiny.save(tiny.gpt2(seed=0), tmp_path / "base")
    base, _ = client.register_version("trained", base_dir)

    class Counting(torch.utils.data.Dataset):
        def __len__(self):
            return 32

        def __getitem__(self, i):
            ids = torch.tensor([(i + j) % 7 for j in range(8)])
            return {"input_ids": ids, "labels": ids}

    cb = ProofmeshCallback(client, "trained", parent=base.id, data_batches=["0x" + "cc" * 32], base_model=None)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=4, save_steps=2, per_device_train_batch_size=4,
                             learning_rate=1e-2, report_to=[], logging_strategy="no", use_cpu=True, seed=0,
                             save_only_model=True, disable_tqdm=True)
    Trainer(model=tiny.gpt2(seed=0), args=args, train_dataset=Counting(), callbacks=[cb]).train()
    assert len(cb.registered) == 2
    first, second = (client.version(v) for v in cb.registered)
    assert first.parent == base.id and second.parent == first.id
    assert second.data_batches == ["0x" + "cc" * 32]
    config = json.loads(client.get_blob(second.config_cid))
    assert config["global_step"] == 4 and config["model_config"]["n_layer"] == 2
    ckpt = tmp_path / "out" / "checkpoint-4"
    fm = read_model_card(ckpt)
    assert fm["proofmesh"]["version_id"] == second.id and fm["base_model"] == f"proofmesh:v{first.id}"
    assert client.verify(ckpt, second.id).match


def test_trainer_callback_with_peft_registers_lora_children(client, tiny, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    base, _ = client.register_version("lora-run", tiny.save(tiny.gpt2(seed=0), tmp_path / "base"))

    class Counting(torch.utils.data.Dataset):
        def __len__(self):
            return 16

        def __getitem__(self, i):
            ids = torch.tensor([(i + j) % 7 for j in range(8)])
            return {"input_ids": ids, "labels": ids}

    model = get_peft_model(tiny.gpt2(seed=0), LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"]))
    cb = ProofmeshCallback(client, "lora-run", parent=base.id, base=base.id, base_model="proofmesh:v1")
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=2, save_steps=2, per_device_train_batch_size=4,
                             learning_rate=1e-2, report_to=[], logging_strategy="no", use_cpu=True, seed=0,
                             save_only_model=True, disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=Counting(), callbacks=[cb]).train()
    (vid,) = cb.registered
    rec = client.version(vid)
    assert (rec.kind, rec.base, rec.parent) == ("lora", base.id, base.id)
    assert "adapter_config" in json.loads(client.get_blob(rec.config_cid))
    assert read_model_card(tmp_path / "out" / "checkpoint-2")["library_name"] == "peft"
