"""Fixtures of the models tests: tiny real models built here (nothing downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


def tiny_gpt2(seed: int = 0):
    """A 2-layer GPT-2 with random init (~100k parameters)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=97, n_positions=64)
    return GPT2LMHeadModel(cfg).eval()


def save(model, folder: Path, **kw) -> Path:
    model.save_pretrained(str(folder), safe_serialization=True, **kw)
    return folder


@pytest.fixture
def gpt2_dir(tmp_path: Path) -> Path:
    return save(tiny_gpt2(), tmp_path / "gpt2")


@pytest.fixture
def lora_dir(tmp_path: Path, gpt2_dir: Path) -> Path:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    base = tiny_gpt2()
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], init_lora_weights=False))
    model.save_pretrained(str(tmp_path / "lora"))
    return tmp_path / "lora"


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


class Tiny:
    """Helpers handed to tests as the ``tiny`` fixture (tests/ is not a package)."""

    gpt2 = staticmethod(tiny_gpt2)
    save = staticmethod(save)
    write_jsonl = staticmethod(write_jsonl)


@pytest.fixture
def tiny() -> type[Tiny]:
    return Tiny


# ------------------------------------------------------------------ chain helpers

EVALUATOR = 32
EVAL_STAKE = 1_000 * 10**18


@pytest.fixture
def owner(accounts):
    """The model owner (holds MESH, not an evaluator)."""
    return accounts[1]


@pytest.fixture
def client(chain, owner):
    from proofmesh.models.registry import ModelRegistryClient

    return ModelRegistryClient(chain.with_account(owner))


@pytest.fixture
def evaluators(chain, accounts):
    """accounts[2..6] registered as EVALUATOR nodes with equal stake."""
    from proofmesh.chain.core import Registry

    evs = accounts[2:7]
    for i, a in enumerate(evs):
        r = Registry(chain.with_account(a))
        r.register(f"http://127.0.0.1:{9100 + i}", EVALUATOR)
        r.stake(EVAL_STAKE)
    return evs


def advance_to(chain, timestamp: int) -> None:
    """Move the dev chain's clock to at least ``timestamp`` (one increase_time can fall
    short when fast blocks have pushed block time ahead of the wall clock)."""
    while chain.timestamp() < timestamp:
        chain.increase_time(timestamp - chain.timestamp() + 1)


def governance_apply(chain, fn) -> None:
    """Schedule ``fn`` on the timelock, wait out the delay, execute it."""
    from proofmesh.chain.core import GovernanceClient

    gov = GovernanceClient(chain)
    gov.schedule(fn)
    advance_to(chain, chain.timestamp() + gov.min_delay() + 1)
    gov.execute(fn)


Tiny.advance_to = staticmethod(advance_to)
Tiny.governance_apply = staticmethod(governance_apply)
