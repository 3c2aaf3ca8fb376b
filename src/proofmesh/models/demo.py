"""Demo step of the models capability: a lineage with measured, gated releases.

A tiny GPT-2 (random init, built here) is registered; a held-out eval set is committed;
the model is fine-tuned (full weights → v2) and a LoRA adapter is put on top (v3); the eval
set is revealed; for each version three evaluators drawn from a future block hash run the
model for real (torch) and sign EIP-712 attestations; the release gate releases v1 and the
improved v2 and refuses v3's regression; a tampered copy of v2 is caught tensor by tensor.
"""

from __future__ import annotations

import json
from typing import Any

from proofmesh.chain.core import MESH, Registry
from proofmesh.errors import ContractRevert
from proofmesh.models.evaluate import evaluate_path
from proofmesh.models import evalset as E
from proofmesh.models.lineage import build
from proofmesh.models.registry import ModelRegistryClient

EVALUATOR = 32
NAME = "demo-counter-lm"


def _ensure_evaluator(chain, account, port: int) -> None:
    reg = Registry(chain.with_account(account))
    info = reg.info(account.address)
    if not info.registered:
        reg.register(f"http://127.0.0.1:{port}", EVALUATOR)
    elif not info.roles & EVALUATOR:
        reg.update(info.endpoint, info.roles | EVALUATOR)
    min_stake = chain.call(reg.c.functions.min_stake())
    if reg.info(account.address).stake < min_stake:
        reg.stake(1_000 * MESH)


def run(ctx: Any) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    work = ctx.workdir / "models"
    work.mkdir(parents=True, exist_ok=True)
    owner = ctx.actor(8)
    client = ModelRegistryClient(ctx.chain.with_account(owner))
    for i, a in enumerate((ctx.actor(3), ctx.actor(4), ctx.actor(5))):
        _ensure_evaluator(ctx.chain, a, 9300 + i)
    keys = {a.address: a for a in ctx.actors} | {ctx.chain.account.address: ctx.chain.account}

    def task(start: int, n: int) -> list[int]:
        return [(start + j) % 7 for j in range(n)]      # the skill: count modulo 7

    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=97, n_positions=64)
    model = GPT2LMHeadModel(cfg).eval()
    model.save_pretrained(str(work / "v1"))
    batches = [ctx.data["data_batch_root"]] if str(ctx.data.get("data_batch_root", "")).startswith("0x") else []
    v1, tx1 = client.register_version(NAME, work / "v1", data_batches=batches, config=work / "v1" / "config.json")
    ctx.log(f"v1 registered: weights root {v1.weights_root[:18]}… ({tx1.gas_used:,} gas)")

    es_file = work / "held-out.jsonl"
    es_file.write_text("".join(json.dumps({"input_ids": task(s, 12)}) + "\n" for s in range(7)))
    esid, es_root, _ = client.commit_eval_set(NAME, es_file)
    client.set_policy(NAME, "perplexity", higher_is_better=False, tolerance=0.05, quorum=3)
    ctx.log(f"eval set {esid} committed as a salted hash; policy: perplexity, lower is better, tolerance 0.05, quorum 3")

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(40):
        x = torch.tensor([task(step, 12)])
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(str(work / "v2"))
    v2, _ = client.register_version(NAME, work / "v2", parent=v1.id, data_batches=batches)
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=64, target_modules=["c_attn"], init_lora_weights=False))
    lora.save_pretrained(str(work / "v3"))
    v3, _ = client.register_version(NAME, work / "v3", parent=v2.id, base=v2.id)
    ctx.log("v2 (full fine-tune of v1) and v3 (LoRA adapter on v2) registered")

    client.reveal_eval_set(esid)
    records = E.load(es_file).records
    medians: dict[int, float] = {}
    for v, folder, base in ((v1, work / "v1", None), (v2, work / "v2", None), (v3, work / "v3", work / "v2")):
        rid = client.request_evaluation(v.id, esid)
        drawn = client.draw(rid)
        for addr in drawn:
            # each drawn evaluator really runs the model on the revealed set
            value = evaluate_path(folder, records, "perplexity", base=base).value
            client.submit_attestation(rid, client.make_attestation(rid, value, keys[addr]))
        medians[v.id] = client.request(rid)["median"]
        ctx.log(f"v{v.id}: evaluators {', '.join(a[:10] for a in drawn)} → median perplexity {medians[v.id]:.4f}")

    outcome = {}
    for v in (v1, v2, v3):
        try:
            client.release(v.id, esid)
            outcome[v.id] = "released"
        except ContractRevert as exc:
            outcome[v.id] = f"refused ({exc.reason.removeprefix('ModelEvaluation: ')})"
        ctx.log(f"release v{v.id}: {outcome[v.id]}")

    t = load_file(str(work / "v2" / "model.safetensors"))
    t["transformer.h.0.attn.c_proj.weight"][0, 0] += 0.01
    tampered = work / "v2-tampered.safetensors"
    save_file(t, str(tampered), metadata={"format": "pt"})
    report = client.verify(tampered, v2.id)
    ctx.log(f"verify tampered copy of v2: changed {report.changed}, proof accepted on chain: "
            f"{[p.accepted_on_chain for p in report.proofs]}")
    for line in build(client, v3.id).render("tree").splitlines():
        ctx.log(line)
    ctx.data["model_version"] = v2.id
    ctx.data["model_weights_root"] = v2.weights_root
    return {"versions": f"v1 base, v2 fine-tune, v3 LoRA (lineage {NAME})",
            "eval_set": f"{esid} (root 0x{es_root.hex()[:12]}…)",
            "median perplexity": ", ".join(f"v{k} {m:.3f}" for k, m in medians.items()),
            "release gate": ", ".join(f"v{k} {o.split(' (')[0]}" for k, o in outcome.items()),
            "tamper check": f"named {report.changed[0] if report.changed else 'nothing'}",
            "register gas": tx1.gas_used}
