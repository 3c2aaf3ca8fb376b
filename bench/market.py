"""Compute market: simulation of cheating workers against the real contract parameters.

Reads bond, challenge bond, slash burn share, audit rate and audit segments from a
freshly deployed JobMarket / OptimisticVerifier / NodeRegistry (embedded chain), and
simulates jobs with the same stake-weighted capped draw (``expected_draw``) and the
same audit segment selection (``audit_plan``) the contracts use. Training cost is
modelled analytically (C per job, proportional to the fraction of work done).

Baseline: "no verification" (the same market with audits off and one unchecked
worker), where every strategy goes undetected and cheating pays.

Run: python bench/market.py [--jobs 2000]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from math import comb
from pathlib import Path

from web3 import Web3

MESH = 10**18


def contract_parameters() -> dict[str, int]:
    """Deploy core + ModelRegistry + compute contracts on a throwaway embedded chain; read parameters."""
    from proofmesh.chain.client import Chain, EmbeddedProvider, close_embedded, open_embedded
    from proofmesh.chain.deploy import ContractSpec, DeployParams, deploy_all
    from proofmesh.chain.embedded import dev_accounts
    from proofmesh.compute import deployment
    from proofmesh.compute.market import JobMarketClient
    from proofmesh.config import Home

    with tempfile.TemporaryDirectory() as tmp:
        home = Home.resolve(tmp)
        home.init()
        emb = open_embedded(home.chain_dir, home.settings.chain_id)
        chain = Chain(Web3(EmbeddedProvider(emb)), account=dev_accounts()[0], home=home)
        deploy_all(chain, DeployParams(), specs=[ContractSpec(name="ModelRegistry"), *deployment.CONTRACTS])
        m = JobMarketClient(chain)
        out = {k: m.param(k) for k in ("worker_bond", "challenge_bond", "min_reward", "audit_rate_bps",
                                        "audit_segments", "max_share_bps")}
        out["slash_burn_bps"] = chain.call(chain.contract("NodeRegistry").functions.slash_burn_bps())
        close_embedded(home.chain_dir)
    return out


# name -> fraction of the training work faked (None: exactly one segment of n)
STRATEGIES = {
    "honest": 0.0,
    "random weights": 1.0,
    "skip 50% of steps": 0.5,
    "skip 25% of steps": 0.25,
    "skip 10% of steps": 0.10,
    "skip 1 segment": None,
    "go silent": 1.0,
    "copy another's reveal": 1.0,
    "colluding replicas": 1.0,
}
CHEATS = [s for s in STRATEGIES if s != "honest"]


def _bad_segments(rng: random.Random, strategy: str, n: int) -> set[int]:
    frac = STRATEGIES[strategy]
    if frac is None:
        return {rng.randint(1, n)}
    # Worst case for detection: the faked work is concentrated in whole segments.
    return set(rng.sample(range(1, n + 1), round(frac * n)))


def simulate(params: dict[str, int], jobs: int, mode: str, n_segments: int, reward: int, cost: int,
             seed: int, colluding_operator: bool = False) -> tuple[dict[str, dict], float]:
    """Run ``jobs`` jobs of one mode. Returns per-strategy stats and the mode's verification compute.

    Workers: 100 accounts, stakes 1-4k MESH; 20 of them cheat (the strategies in turn);
    each job's 8 applicants are random accounts, drawn with the contract's algorithm.
    ``reward`` is per worker slot (a replicated job escrows 3x). With
    ``colluding_operator`` all 20 cheating accounts belong to one colluding operator
    (the sybil case the stake-share cap and replication must withstand).
    Behaviour by mode: in optimistic mode a "copy" or "colluding" worker has nobody
    to copy or collude with and submits a fake (= random weights); in replicated
    mode any fake disagrees with an honest replica and the referee settles it, a copied
    commitment never opens (it binds the sender), and colluders win only if every
    replica of the job is theirs.
    """
    from proofmesh.compute.market import audit_plan, expected_draw

    rng = random.Random(seed)
    bond = params["worker_bond"]
    audit_rate = params["audit_rate_bps"] / 10_000
    m = params["audit_segments"]
    workers = [f"0x{i:040x}" for i in range(100)]
    stake = {w: rng.randint(1, 4) * 1000 * MESH for w in workers}
    strategy_of = {w: "honest" for w in workers}
    for i, w in enumerate(rng.sample(workers, 20)):
        strategy_of[w] = "colluding replicas" if colluding_operator else CHEATS[i % len(CHEATS)]
    stats = {s: {"slots": 0, "cheat": 0, "detected": 0, "profit": 0} for s in STRATEGIES}
    verify_compute = 0.0
    need = 1 if mode == "optimistic" else 3
    for job in range(jobs):
        pool = rng.sample(workers, 8)
        drawn = expected_draw(rng.randbytes(32), job, 0, pool, [stake[w] for w in pool],
                              params["max_share_bps"], need)
        strat = [strategy_of[w] for w in drawn]
        if mode == "optimistic":
            s = strat[0]
            st = stats[s]
            st["slots"] += 1
            if s == "go silent":
                st["cheat"] += 1
                st["detected"] += 1                       # reassign() slashes a silent worker
                st["profit"] -= bond
                continue
            bad = set() if s == "honest" else _bad_segments(
                rng, "random weights" if s in ("copy another's reveal", "colluding replicas") else s, n_segments)
            plan = audit_plan(rng.randbytes(32), n_segments, m) if rng.random() < audit_rate else []
            verify_compute += len(plan) / n_segments
            caught = bool(bad & set(plan))
            if bad:
                st["cheat"] += 1
                st["detected"] += caught
            work = cost * (n_segments - len(bad)) // n_segments
            st["profit"] += (-bond if caught else reward) - work
        else:
            verify_compute += 2.0                         # two extra replicas of the training
            fake = [s != "honest" for s in strat]
            all_colluding = all(s == "colluding replicas" for s in strat)
            if any(fake) and not all_colluding:
                verify_compute += 1 / n_segments          # the referee re-executes one segment
            for s in strat:
                st = stats[s]
                st["slots"] += 1
                if s == "honest":
                    st["profit"] += reward - cost
                    continue
                st["cheat"] += 1
                if s == "go silent" or s == "copy another's reveal":
                    st["detected"] += 1                   # no (valid) reveal: bond lost
                    st["profit"] -= bond
                elif s == "colluding replicas" and all_colluding:
                    st["profit"] += reward                # undetected (no audit in replicated mode)
                else:
                    st["detected"] += 1
                    frac = STRATEGIES[s]
                    work = cost - (cost // n_segments if frac is None else int(cost * frac))
                    st["profit"] += -bond - work
    for s, st in stats.items():
        st["detection"] = st["detected"] / st["cheat"] if st["cheat"] else None
        st["exp_profit"] = st["profit"] / st["slots"] / MESH if st["slots"] else None
    return stats, verify_compute / jobs


def no_verification_profit(strategy: str, mode: str, n: int, reward: int, cost: int) -> float:
    """Baseline: the same job with no checks at all: every result is paid."""
    share = reward
    if strategy == "go silent":
        return 0.0
    frac = STRATEGIES[strategy]
    faked = 1 / n if frac is None else frac
    return (share - cost * (1 - faked)) / MESH


def exact_detection(frac: float, n: int, m: int) -> float:
    """Hypergeometric: at least one of m audited segments among the k = frac*n faked ones."""
    k = round(frac * n)
    return 1 - comb(n - k, m) / comb(n, m)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--segments", type=int, default=32)
    ap.add_argument("--reward", type=float, default=30.0, help="MESH per worker slot (replicated jobs escrow 3x)")
    ap.add_argument("--cost", type=float, default=20.0, help="MESH-equivalent compute cost of one training run")
    args = ap.parse_args()
    t0 = time.perf_counter()
    params = contract_parameters()
    t_deploy = time.perf_counter() - t0
    print(f"contract parameters (deployed in {t_deploy:.1f}s): bond={params['worker_bond'] / MESH:g} MESH, "
          f"challenge_bond={params['challenge_bond'] / MESH:g}, slash_burn={params['slash_burn_bps'] / 100:g}%, "
          f"audit_rate={params['audit_rate_bps'] / 100:g}%, audit_segments={params['audit_segments']}, "
          f"max_share={params['max_share_bps'] / 100:g}%")
    reward, cost = int(args.reward * MESH), int(args.cost * MESH)
    ok = True
    for mode in ("optimistic", "replicated"):
        t1 = time.perf_counter()
        res, vc = simulate(params, args.jobs, mode, args.segments, reward, cost, seed=1)
        print(f"\n== {mode} mode: {args.jobs} jobs in {time.perf_counter() - t1:.1f}s, 20% of workers cheat, "
              f"{args.segments} segments/job, reward {args.reward:g} MESH, compute cost {args.cost:g} MESH "
              f"-> verification compute {vc:.3f}")
        hdr = (f"{'strategy':24} {'faked':>6} {'cheat jobs':>10} {'detected':>9} {'exact':>7} "
               f"{'E[profit]/job':>14} {'no-verification':>16}")
        print(hdr)
        print("-" * len(hdr))
        for s, frac in STRATEGIES.items():
            st = res[s]
            faked = f"1/{args.segments}" if frac is None else f"{frac:.0%}"
            exact = ""
            if mode == "optimistic" and s not in ("honest", "go silent"):
                f = 1 / args.segments if frac is None else frac
                exact = f"{exact_detection(f, args.segments, params['audit_segments']) * params['audit_rate_bps'] / 10_000:.4f}"
            det = "-" if st["detection"] is None else f"{st['detection']:.4f}"
            base = no_verification_profit(s, mode, args.segments, reward, cost)
            print(f"{s:24} {faked:>6} {st['cheat']:>10} {det:>9} {exact:>7} {st['exp_profit']:>14.2f} {base:>16.2f}")
            if s != "honest":
                ok &= st["exp_profit"] < 0
                if frac is not None and frac >= 0.5:
                    ok &= (st["detection"] or 0) >= 0.99
        if mode == "optimistic":
            ok &= vc <= 0.25
    res, vc = simulate(params, args.jobs, "replicated", args.segments, reward, cost, seed=2, colluding_operator=True)
    st = res["colluding replicas"]
    print(f"\n== replicated, one colluding operator owns all 20 cheating accounts (20% of accounts): "
          f"{st['cheat']} colluder slots, detected {st['detection']:.4f}, E[profit]/slot {st['exp_profit']:.2f} MESH "
          f"(no verification: {no_verification_profit('colluding replicas', 'replicated', args.segments, reward, cost):.2f})")
    ok &= st["exp_profit"] < 0
    print(f"\ntargets (optimistic: detection >= 99% when >= 50% faked, verification compute <= 0.25; "
          f"E[profit] < 0 for every cheating strategy in both modes): {'MET' if ok else 'NOT MET'}")


if __name__ == "__main__":
    sys.exit(main())
