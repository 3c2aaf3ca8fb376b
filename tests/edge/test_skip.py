"""EdgeEpochs.skip: a gateway back from downtime skips the epochs it missed in one
transaction. The skipped range counts as published empty: a reading the gateway
receipted in it is a provable omission (challenge_skipped slashes), it pays no rewards,
and bad skips (backwards, into the future, wrong seed) revert with a clear reason. Also
the gateway core's side (it refuses to skip epochs it holds readings of; the publisher
bounds its skips) and the demo's edge step rerun on a reused home.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import proofmesh
from proofmesh.chain.core import MESH, EmissionClient, Token
from proofmesh.edge.epoch_tree import build_leaves
from proofmesh.edge.gateway import GatewayConfig, GatewayCore
from proofmesh.edge.reading import decode_record, encode_batch, make_reading
from proofmesh.errors import ContractRevert, InputError

from .test_epochs import _fill, _holder, _make_net, _publish, _reading, _submit


@pytest.fixture
def net(chain, accounts, tmp_path):
    return _make_net(chain, accounts, tmp_path)


def _downtime(net, epochs: int) -> int:
    """Move the chain `epochs` epochs past the gateway's next epoch; returns the current epoch."""
    el = net["edge"].epoch_length
    net["chain"].advance_to((net["epoch"] + epochs) * el + 1)
    return net["chain"].timestamp() // el


def _leaf(net, record_interval):
    rec, interval = record_interval
    return build_leaves([(decode_record(rec), interval)], net["core"].interval_length)[0]


def test_skip_publishes_the_range_empty_and_the_gateway_continues(net):
    edge, core, gw, e = net["edge"], net["core"], net["gw"], net["epoch"]
    current = _downtime(net, 5)
    rec = core.skip_to(current)
    assert (rec["first_epoch"], rec["end_epoch"]) == (e, current)
    g = edge.gateway(gw.address)
    assert g["next_epoch"] == current and g["seed_hash"] == core.beacons.seed_hash(current)
    assert g["last_publish"] == net["chain"].timestamp()          # the bond stays locked for the skip's period
    r = edge.skipped_range(gw.address, e)
    assert r["end_epoch"] == current and r["seed"] == core.beacons.seed(e) and not r["faulty"]
    ev = net["chain"].events("EdgeEpochs", "EpochsSkipped", from_block=0)
    assert [(x["args"]["gateway"], x["args"]["first_epoch"], x["args"]["end_epoch"]) for x in ev] == \
        [(gw.address, e, current)]
    assert edge.skip_containing(gw.address, current - 1)["first_epoch"] == e
    assert edge.skip_containing(gw.address, current) is None
    assert core.stats_view()["skipped"][0]["end_epoch"] == current
    # the gateway goes on at `current`: readings there are accepted, and the epoch publishes normally
    t = current * edge.epoch_length + 1
    ans = _submit(net, [_reading(net, net["devices"][0], 1, t)], now=t + 1)
    assert ans["accepted"] == 1
    c, _ = _publish(dict(net, epoch=current))
    assert edge.epoch(gw.address, current)["leaf_count"] == len(c.leaves) == 1


def test_bad_skips_revert_with_clear_reasons(net, accounts):
    edge, core, gw, e = net["edge"], net["core"], net["gw"], net["epoch"]
    seed, nxt = core.beacons.seed(e), core.beacons.seed_hash
    # the gateway's next epoch is in the future: nothing to skip yet
    with pytest.raises(ContractRevert, match="skip beyond the current epoch"):
        edge.skip(e + 1, seed, nxt(e + 1), sender=gw)
    current = _downtime(net, 4)
    with pytest.raises(ContractRevert, match="skip must go past the next epoch"):
        edge.skip(e, seed, nxt(e), sender=gw)                    # no-op "skip"
    with pytest.raises(ContractRevert, match="skip must go past the next epoch"):
        edge.skip(e - 1, seed, nxt(e - 1), sender=gw)            # backwards
    with pytest.raises(ContractRevert, match="skip beyond the current epoch"):
        edge.skip(current + 1, seed, nxt(current + 1), sender=gw)  # into the future
    with pytest.raises(ContractRevert, match="seed does not match"):
        edge.skip(current, os.urandom(32), nxt(current), sender=gw)
    with pytest.raises(ContractRevert, match="empty next seed hash"):
        edge.skip(current, seed, b"\0" * 32, sender=gw)
    with pytest.raises(ContractRevert, match="gateway not active"):
        edge.skip(current, seed, nxt(current), sender=accounts[7])
    with pytest.raises(InputError, match="cannot skip to epoch"):
        core.skip_to(e)
    assert edge.gateway(gw.address)["next_epoch"] == e            # nothing changed
    edge.skip(current, seed, nxt(current), sender=gw)
    # skipping again from the new next epoch needs its own (new) seed; backwards stays refused
    with pytest.raises(ContractRevert, match="skip must go past the next epoch"):
        edge.skip(current - 1, core.beacons.seed(current), nxt(current - 1), sender=gw)


@pytest.mark.parametrize("where", ["first", "later"])
def test_receipted_reading_in_a_skipped_epoch_is_a_proven_omission(net, accounts, where):
    """The gateway acknowledges readings, then skips their epoch instead of publishing them.
    In the range's first epoch the beacon nonce is checked against the revealed seed; in a
    later one (seed never committed) the gateway's receipt stands in for it."""
    edge, core, gw, e = net["edge"], net["core"], net["gw"], net["epoch"]
    target = e if where == "first" else e + 2
    t = target * edge.epoch_length
    core.first_epoch = e
    dev = net["devices"][1]
    ans = _submit(net, [_reading(net, dev, s, t + s) for s in (1, 2, 3)], now=t + 4)
    assert ans["accepted"] == 3
    receipt = ans["receipt"]
    current = _downtime(net, 5)
    # an honest gateway core refuses: it holds readings of that epoch
    with pytest.raises(InputError, match=f"holds readings of epoch {target}"):
        core.skip_to(current)
    dropped = core.open.pop(target).entries[1]                   # the cheat: forget them and skip
    edge.skip(current, core.beacons.seed(e), core.beacons.seed_hash(current), sender=gw)
    leaf = _leaf(net, dropped)
    challenger = accounts[6]
    # the challenge must name the range and an epoch inside it
    with pytest.raises(ContractRevert, match="no skipped range starts at first_epoch"):
        edge.challenge_skipped(gw.address, e + 1, target, receipt, leaf, sender=challenger)
    before = Token(net["chain"]).balance(challenger.address)
    tx = edge.challenge_skipped(gw.address, e, target, receipt, leaf, sender=challenger)
    assert Token(net["chain"]).balance(challenger.address) - before == 500 * MESH     # half the 1000 bond
    g = edge.gateway(gw.address)
    assert g["slashed"] and not g["active"] and g["bond"] == 0
    assert edge.skipped_range(gw.address, e)["faulty"]
    ev = net["chain"].events("EdgeEpochs", "FaultProven", from_block=tx.block_number)
    assert [(x["args"]["epoch"], x["args"]["kind"]) for x in ev] == [(target, "skipped-reading")]
    with pytest.raises(ContractRevert, match="already proven faulty"):
        edge.challenge_skipped(gw.address, e, target, receipt, leaf, sender=accounts[7])


def test_honest_skip_cannot_be_challenged(net, accounts, tmp_path):
    """A receipt signed by another key, or one moved to an epoch outside the range, proves
    nothing against an honest skip."""
    edge, core, gw, e = net["edge"], net["core"], net["gw"], net["epoch"]
    il = core.interval_length
    # an impostor "gateway" (another node key) receipts a reading of epoch e
    imp = accounts[8]
    other = GatewayCore(GatewayConfig(tmp_path / "imp", workers=0, publish=False), _holder(imp, tmp_path), edge=edge)
    other.first_epoch = e
    other.devices.refresh()
    t = e * edge.epoch_length
    dev = net["devices"][0]
    r = make_reading(dev.private_key, core.domain, device=dev.address_bytes, seq=1,
                     nonce=other.beacons.nonce((t + 1) // il), timestamp=t + 1, payload=b"x")
    ans = asyncio.run(other.submit(encode_batch([r]), now=t + 2))
    other.close()
    assert ans["accepted"] == 1
    current = _downtime(net, 3)
    core.skip_to(current)
    leaf = build_leaves([(decode_record(r.encode()), (t + 1) // il)], il)[0]
    with pytest.raises(ContractRevert, match="receipt not signed by gateway"):
        edge.challenge_skipped(gw.address, e, e, ans["receipt"], leaf, sender=accounts[6])
    # a receipt names its epoch: it cannot be moved to one outside the range
    with pytest.raises(ContractRevert, match="epoch not in the skipped range"):
        edge.challenge_skipped(gw.address, e, current, dict(ans["receipt"], runs=[[ans["receipt"]["runs"][0][0],
                               current, 1, 1]]), leaf, sender=accounts[6])
    assert not edge.gateway(gw.address)["slashed"]


def test_skipped_epochs_pay_no_rewards_and_cannot_be_published_later(net):
    """The skip creates no counts root: a device 'counted' in a skipped epoch cannot claim,
    and the gateway cannot go back and publish one with uptimes in it."""
    _fill(net)                                                  # readings in epoch e ...
    edge, core, gw, e = net["edge"], net["core"], net["gw"], net["epoch"]
    c = core.close_epoch(e)                                     # ... that the gateway built a tree for
    current = _downtime(net, 3)
    edge.skip(current, core.beacons.seed(e), core.beacons.seed_hash(current), sender=gw)
    EmissionClient(net["chain"]).fund_pool(3, 1_000 * MESH, sender=net["owner"])
    net["chain"].increase_time(3601)
    dev = net["devices"][2].address_bytes
    before = Token(net["chain"]).balance(net["owner"].address)
    for epoch in (e, e + 1):
        with pytest.raises(ContractRevert, match="epoch not published"):
            edge.claim(gw.address, dataclasses.replace(c, epoch=epoch), dev)
    with pytest.raises(ContractRevert, match="wrong epoch"):
        edge.publish(c, core.beacons.seed(e), core.beacons.seed_hash(e + 1), sender=gw)
    assert Token(net["chain"]).balance(net["owner"].address) == before


def test_publisher_skips_only_epochs_without_readings(net):
    """The publisher's skip target stops at the first epoch the gateway holds readings of,
    at the chain's current epoch, and before an epoch still in its grace period."""
    edge, core, e = net["edge"], net["core"], net["epoch"]
    el = edge.epoch_length
    current = _downtime(net, 6)
    later = current * el + el // 2
    assert core._skip_target(e, later) == current
    assert core._skip_target(e, current * el + 1) == current - 1       # epoch current-1 still in its grace
    assert core._skip_target(e, later + 10 * el) == current            # never past the chain's epoch
    core.open[e + 3].entries.append((b"held", 0))                       # a reading the gateway acknowledged
    assert core._skip_target(e, later) == e + 3


@pytest.mark.slow
def test_demo_edge_step_reruns_on_a_reused_home(tmp_path):
    """`proofmesh --home X demo --only edge` twice: the second run skips the epochs missed
    since the first (its devices' keys are only valid from then on)."""
    src = str(Path(proofmesh.__file__).resolve().parents[1])
    env = dict(os.environ, PROOFMESH_KDF="fast", HOME=str(tmp_path / "user-home"),
               PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    (tmp_path / "user-home").mkdir()
    reports = []
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "proofmesh.cli.main", "--home", str(tmp_path / "demo"), "demo", "--only", "edge",
             "--json"], capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr[-4000:]
        lines = result.stdout.splitlines()
        start = max(i for i, line in enumerate(lines) if line == "{")
        reports.append(json.loads("\n".join(lines[start:]))["steps"]["edge"])
    first, second = reports
    assert first["skipped_epochs"] == 0 and second["skipped_epochs"] > 0
    assert second["epoch"] > first["epoch"]
    for r in reports:
        assert r["accepted"] == 15 and r["proof_ok"] and float(r["reward_mesh"]) > 0
