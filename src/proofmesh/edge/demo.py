"""Demo step: three devices, one gateway, one epoch on chain, a reward claimed.

Runs in-process on the demo's chain: device keys are generated in their own
directories and bound on chain with stake; the gateway core (the same code
`proofmesh edge gateway` serves over HTTP) verifies a batch with a replay and a forged
reading in it (both refused and counted), closes the epoch, publishes its roots and
seed on chain; then a reading is proven against the on-chain root and a device's
owner claims its uptime reward after the challenge period. Timestamps follow the
chain's clock, which the demo moves forward. Rerun on a reused home, the gateway first
skips the epochs it missed since the last run (``EdgeEpochs.skip``).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import coincurve

from proofmesh.chain.core import MESH, EmissionClient, Token, from_wei
from proofmesh.edge.epoch_tree import PositionalTree, positional_root
from proofmesh.edge.gateway import GatewayConfig, GatewayCore
from proofmesh.edge.identity import KeyHolder, create_key
from proofmesh.edge.onchain import EdgeChain
from proofmesh.edge.reading import encode_batch, make_reading

CELLS = ["871f1d489ffffff", "871f1d489ffffff", "87283082affffff"]   # Berlin x2, San Francisco


def run(ctx: Any) -> dict[str, Any]:
    chain = ctx.chain
    edge = EdgeChain(chain)
    owner = ctx.actor(3)
    work = ctx.workdir / "edge"
    work.mkdir(parents=True, exist_ok=True)
    devices = []
    for i, cell in enumerate(CELLS):
        d = Path(tempfile.mkdtemp(prefix=f"dev{i}-", dir=work))
        key = create_key(d / "device.key", "")
        edge.register_device(key, device_class="sensor", cell=cell, stake=100 * MESH, owner=owner)
        devices.append(key)
    ctx.log(f"registered {len(devices)} devices (keys made in their own dirs) for owner {owner.address}, "
            f"100 MESH stake each")

    me = chain.account
    gw_key = KeyHolder(me, coincurve.PrivateKey(bytes(me.key)), work / "gateway")
    core = GatewayCore(GatewayConfig(work / "gateway", workers=0, publish=False), gw_key, edge=edge)
    el, il = edge.epoch_length, edge.interval_length
    # Readings go in an epoch that starts after the devices were registered (their keys are
    # valid from now on).
    epoch = chain.timestamp() // el + 1
    g = edge.gateway(me.address)
    skipped = 0
    if not g["active"]:
        edge.enroll(epoch, core.beacons.seed_hash(epoch))
    elif g["next_epoch"] >= epoch:
        epoch = g["next_epoch"]
    else:
        # A rerun on a reused home: the gateway's next epoch is long over. Like a gateway
        # back from downtime, skip the missed epochs in one transaction (published empty).
        chain.advance_to(epoch * el + 1)
        rec = core.skip_to(epoch)
        skipped = rec["end_epoch"] - rec["first_epoch"]
        ctx.log(f"gateway back after {skipped} missed epochs: epochs {rec['first_epoch']}..{epoch - 1} skipped "
                f"(published empty) in one transaction, {rec['gas']:,} gas")
    core.first_epoch = epoch
    core.devices.refresh()
    ctx.log(f"gateway {me.address} enrolled (bond {from_wei(chain.call(edge.epochs.functions.gateway_bond()))} MESH), "
            f"epochs of {el}s, beacon intervals of {il}s")

    t0 = epoch * el
    readings = []
    for k, dev in enumerate(devices):
        for s in range(4 + k):
            ts = t0 + s * il + 1
            readings.append(make_reading(dev.private_key, core.domain, device=dev.address_bytes, seq=s + 1,
                                         nonce=core.beacons.nonce(ts // il), timestamp=ts,
                                         payload=f"[{20 + s},{50 - k}]".encode()))
    replay = readings[0]
    stranger = create_key(work / "stranger.key", "", overwrite=True)
    forged = make_reading(stranger.private_key, core.domain, device=devices[0].address_bytes, seq=99,
                          nonce=core.beacons.nonce((t0 + 1) // il), timestamp=t0 + 1, payload=b"[999]")
    ans = asyncio.run(core.submit(encode_batch(readings + [replay, forged]), now=t0 + 8 * il))
    ctx.log(f"gateway batch: {ans['accepted']} accepted, {ans['rejected']} refused "
            f"({', '.join(c for c in ans['codes'] if c != 'ok')}); one signed receipt over "
            f"{len(ans['receipt']['runs'])} runs")

    chain.advance_to((epoch + 1) * el + 1)
    c = core.close_epoch(epoch)
    tx = edge.publish(c, core.beacons.seed(epoch), core.beacons.seed_hash(epoch + 1))
    ctx.log(f"epoch {epoch} published: {len(c.leaves)} readings, root 0x{c.root.hex()[:16]}…, "
            f"uptimes {sorted(c.counts.values())}, {tx.gas_used:,} gas")

    idx = c.find(devices[1].address_bytes, 2)
    leaf = c.leaves[idx]
    onchain = edge.epoch(me.address, epoch)
    ok = positional_root(leaf.hash(), idx, c.tree.proof(idx)) == onchain["root"] == \
        PositionalTree([lf.hash() for lf in c.leaves]).root
    ctx.log(f"reading (device 1, seq 2) proven against the on-chain root: {ok}")

    EmissionClient(chain).fund_pool(3, 100 * MESH, sender=owner)
    chain.advance_to(chain.timestamp() + int(chain.call(edge.epochs.functions.challenge_period())) + 1)
    before = Token(chain).balance(owner.address)
    claims = [edge.claim(me.address, c, d.address_bytes, sender=owner) for d in devices]
    paid = Token(chain).balance(owner.address) - before
    ctx.log(f"after the challenge period, owner claimed {from_wei(paid)} MESH for uptime "
            f"(2 devices share a cell; cap {chain.call(edge.registry.functions.cell_capacity())} per cell)")
    stats = core.stats_view()["counts"]
    core.close()
    return {"devices": len(devices), "accepted": stats.get("accepted", 0),
            "refused": {k: v for k, v in stats.items() if k.startswith("rejected_")},
            "epoch": epoch, "skipped_epochs": skipped, "leaves": len(c.leaves), "publish_gas": tx.gas_used,
            "proof_ok": ok,
            "reward_mesh": from_wei(paid), "claim_gas": max(t.gas_used for t in claims)}
