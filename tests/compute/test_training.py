"""Deterministic training: bit-identical across processes, resumable per segment, tolerance."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from proofmesh.compute.training import (Checkpoint, DataRef, ExecutionProfile, JobSpec, TrainConfig, Trainer,
                                        build_base_weights, compare_checkpoints, compare_results)
from proofmesh.errors import InputError

RECORDS = [f"record {i}: the quick brown fox jumps over the lazy dog {i * 7}".encode() for i in range(120)]


def spec(mode: str = "lora", **train) -> JobSpec:
    cfg = dict(mode=mode, steps=8, checkpoint_every=2, seed=5)
    cfg.update(train)
    return JobSpec(base_version=1, base_weights_cid="bafkbase", data=(DataRef("0x" + "22" * 32, "bafkdata"),),
                   train=TrainConfig(**cfg), profile=ExecutionProfile.current(1))


@pytest.fixture(scope="module")
def base():
    return build_base_weights(seed=1)


_CHILD = """
import sys, json
from proofmesh.compute.training import *
from tests.compute.test_training import spec, RECORDS
base = build_base_weights(seed=1)
print(json.dumps({m: [h.hex() for h in Trainer(spec(m), base, RECORDS).run().trace] for m in ("lora", "full")}))
"""


def test_bit_identical_in_another_process_and_resumable(base):
    # One child process for both modes: importing torch + transformers is the slow part.
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    there = json.loads(out.stdout.splitlines()[-1])
    for mode in ("lora", "full"):
        s = spec(mode)
        here = Trainer(s, base, RECORDS).run()
        assert there[mode] == [h.hex() for h in here.trace]
        assert len(here.trace) == 5 and len(set(here.trace)) == 5
        # A referee re-executes segment 3 from checkpoint 2 alone (after a round trip through bytes).
        start = Checkpoint.from_bytes(here.checkpoints[2].to_bytes())
        seg = Trainer(s, base, RECORDS).run(start=start, until_step=6)
        assert seg.trace == here.trace[2:4]
        assert compare_checkpoints(here.checkpoints[3], seg.checkpoints[-1]).exact


def test_training_learns_and_tolerance_separates_noise_from_cheating(base):
    s = spec("full", steps=8, lr=3e-3)
    t = Trainer(s, base, RECORDS)
    r = t.run()
    assert t.heldout_loss(r.weights) < t.heldout_loss(base)
    noisy = {k: v + 1e-7 * torch.randn_like(v) if v.is_floating_point() else v for k, v in r.weights.items()}
    cmp = compare_results(t, noisy, r.weights)
    assert not cmp.exact and cmp.within                      # float noise: accepted
    cheat = t.run(perturb=0.05).weights
    assert not compare_results(t, cheat, r.weights).within   # perturbed weights: rejected
    skipped = t.run(skip_fraction=0.5)
    assert skipped.trace != r.trace and skipped.trace[0] == r.trace[0]


def test_thread_count_is_part_of_the_profile(base):
    assert ExecutionProfile.current(1).profile_id != ExecutionProfile.current(2).profile_id
    other = ExecutionProfile(threads=1, torch="0.0", transformers="0", peft="0")
    with pytest.raises(InputError, match="execution profile mismatch"):
        other.require_local()


@pytest.mark.parametrize("change,match", [
    (dict(steps=7), "multiple of checkpoint_every"),
    (dict(mode="qlora"), "mode must be one of"),
    (dict(lr=2.0), "lr must be in"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(seq_len=1000), "exceeds n_positions"),
])
def test_bad_spec_is_refused_naming_the_field(change, match):
    with pytest.raises(InputError, match=match):
        spec(**change).validate()


def test_malformed_spec_bytes():
    with pytest.raises(InputError, match="malformed"):
        JobSpec.from_bytes(b"{not json")
    d = json.loads(spec().to_bytes())
    d["base_version"] = 0
    with pytest.raises(InputError, match="base_version"):
        JobSpec.from_bytes(json.dumps(d).encode())
    assert JobSpec.from_bytes(spec().to_bytes()) == spec()
