"""DeviceRegistry + EdgeEpochs on the embedded chain, with the gateway core in-process.

Covers: registration (key proof, cell, stake) and its bad inputs; the gateway's
rejections (replay, future timestamp, revoked key, unknown nonce, forged signer);
publication; each challenge kind (forged reading, wrong count, omission, broken
running count, empty slot) slashing the gateway; and rewards (stake cap, crowding,
double claim).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os

import coincurve
import pytest

from proofmesh.chain.core import MESH, EmissionClient, GovernanceClient, Registry, Token
from proofmesh.edge.epoch_tree import EpochCommitment, PositionalTree
from proofmesh.edge.gateway import GatewayConfig, GatewayCore
from proofmesh.edge.identity import KeyHolder, create_key
from proofmesh.edge.onchain import EdgeChain
from proofmesh.edge.reading import decode_record, encode_batch, make_reading
from proofmesh.errors import ContractRevert, InputError

CELL = "871f1d489ffffff"          # H3 res 7 (Berlin)


def _holder(acct, tmp_path) -> KeyHolder:
    return KeyHolder(acct, coincurve.PrivateKey(bytes(acct.key)), tmp_path / "none")


@pytest.fixture
def net(chain, accounts, tmp_path):
    return _make_net(chain, accounts, tmp_path)


def _make_net(chain, accounts, tmp_path):
    edge = EdgeChain(chain)
    gw_acct, owner = accounts[1], accounts[2]
    reg = Registry(chain)
    reg.register("http://127.0.0.1:1", 8, sender=gw_acct)
    reg.stake(5_000 * MESH, sender=gw_acct)
    devices = []
    for i in range(3):
        k = create_key(tmp_path / f"dev{i}" / "device.key", "pw")
        edge.register_device(k, device_class="sensor", cell=CELL, stake=100 * MESH, owner=owner)
        devices.append(k)
    core = GatewayCore(GatewayConfig(tmp_path / "gw", workers=0, publish=False), _holder(gw_acct, tmp_path), edge=edge)
    epoch = chain.timestamp() // edge.epoch_length + 1
    edge.enroll(epoch, core.beacons.seed_hash(epoch), sender=gw_acct)
    core.first_epoch = epoch
    core.devices.refresh()
    return dict(chain=chain, edge=edge, core=core, gw=gw_acct, owner=owner, devices=devices, epoch=epoch,
                start=epoch * edge.epoch_length)


def _reading(net, dev, seq, ts, nonce_interval=None, payload=b"[1,2,3]"):
    core = net["core"]
    iv = ts // core.interval_length if nonce_interval is None else nonce_interval
    return make_reading(dev.private_key, core.domain, device=dev.address_bytes, seq=seq, nonce=core.beacons.nonce(iv),
                        timestamp=ts, payload=payload)


def _submit(net, readings, now):
    return asyncio.run(net["core"].submit(encode_batch(readings), now=now))


def _fill(net):
    """Three devices, readings over several intervals of the epoch; returns the commitment."""
    il, t0 = net["core"].interval_length, net["start"]
    for k, dev in enumerate(net["devices"]):
        rs = [_reading(net, dev, seq + 1, t0 + seq * il + 1) for seq in range(3 + k)]
        ans = _submit(net, rs, now=t0 + 6 * il)
        assert ans["accepted"] == len(rs), ans["codes"]
    return net


def _publish(net, commitment=None, seed=None):
    core, edge, e = net["core"], net["edge"], net["epoch"]
    net["chain"].increase_time(max(0, (e + 1) * edge.epoch_length - net["chain"].timestamp()) + 1)
    c = commitment or core.close_epoch(e)
    tx = edge.publish(c, seed or core.beacons.seed(e), core.beacons.seed_hash(e + 1), sender=net["gw"])
    return c, tx


def test_register_rejects_bad_input(chain, accounts, tmp_path):
    edge = EdgeChain(chain)
    k = create_key(tmp_path / "d" / "device.key", "pw")
    with pytest.raises(InputError):
        edge.register_device(k, device_class="sensor", cell="not-a-cell", stake=100 * MESH, owner=accounts[2])
    with pytest.raises(InputError):
        edge.register_device(k, device_class="sensor", cell="871f1d489fffff0", stake=100 * MESH, owner=accounts[2])
    with pytest.raises(ContractRevert, match="stake below minimum"):
        edge.register_device(k, device_class="sensor", cell=CELL, stake=1, owner=accounts[2])
    # a key proof for another owner is refused (forged binding)
    from proofmesh.edge.identity import key_proof
    deadline, v, r, s = key_proof(k, device=k.address, owner=accounts[3].address, nonce=0, chain_id=chain.chain_id,
                                  registry=edge.registry.address)
    Token(chain).ensure_allowance(edge.registry.address, 100 * MESH, sender=accounts[2])
    with pytest.raises(ContractRevert, match="bad key proof"):
        chain.transact(edge.registry.functions.register(k.address, "sensor", int(CELL, 16), 100 * MESH,
                                                        deadline, v, r, s), sender=accounts[2])
    edge.register_device(k, device_class="sensor", cell=CELL, stake=100 * MESH, owner=accounts[2])
    with pytest.raises(ContractRevert, match="key already used"):
        edge.register_device(k, device_class="sensor", cell=CELL, stake=100 * MESH, owner=accounts[2])
    assert edge.device(k.address).owner == accounts[2].address
    assert not chain.call(edge.registry.functions.valid_cell(int("871f1d489fffff0", 16)))


def test_gateway_rejects_replay_future_revoked_forged(net, tmp_path):
    core, t0, il = net["core"], net["start"], net["core"].interval_length
    d0, d1 = net["devices"][0], net["devices"][1]
    ok = _reading(net, d0, 1, t0 + 1)
    stranger = create_key(tmp_path / "x" / "device.key", "pw")
    forged = make_reading(stranger.private_key, core.domain, device=d1.address_bytes, seq=1,
                          nonce=core.beacons.nonce(t0 // il), timestamp=t0 + 1, payload=b"x")
    future = _reading(net, d1, 2, t0 + 100 * il)
    bad_nonce = make_reading(d1.private_key, core.domain, device=d1.address_bytes, seq=3, nonce=os.urandom(32),
                             timestamp=t0 + 2, payload=b"x")                  # a nonce no beacon gave out
    early = _reading(net, d1, 4, t0 + 1, nonce_interval=(t0 + 3 * il) // il)  # made before its beacon existed
    ans = _submit(net, [ok, ok, forged, future], now=t0 + 2)
    assert ans["codes"] == ["ok", "replayed_seq", "unknown_or_revoked_key", "timestamp_in_future"]
    ans = _submit(net, [bad_nonce, early], now=t0 + 4 * il)
    assert ans["codes"] == ["unknown_nonce", "timestamp_before_beacon"]
    assert ans["receipt"] is None
    # revoke d1's key on chain: its readings are refused from then on
    net["edge"].revoke_key(d1.address, owner=net["owner"])
    core.devices.refresh()
    ts = net["chain"].timestamp() + 1
    ans = _submit(net, [_reading(net, d1, 5, ts)], now=ts)
    assert ans["codes"] == ["unknown_or_revoked_key"]
    st = core.stats_view()["counts"]
    assert st["rejected_replayed_seq"] == 1 and st["rejected_timestamp_in_future"] == 1
    assert st["rejected_unknown_or_revoked_key"] >= 2


def test_publish_claim_and_double_claim(net):
    _fill(net)
    c, tx = _publish(net)
    assert tx.gas_used < 300_000         # constant: independent of the number of readings
    e = net["edge"].epoch(net["gw"].address, net["epoch"])
    assert e["root"] == c.root and e["leaf_count"] == len(c.leaves) == 3 + 4 + 5
    dev = net["devices"][2].address_bytes
    assert c.counts[dev] == 5
    with pytest.raises(ContractRevert, match="challenge period not over"):
        net["edge"].claim(net["gw"].address, c, dev)
    EmissionClient(net["chain"]).fund_pool(3, 1_000 * MESH, sender=net["owner"])
    net["chain"].increase_time(3601)
    before = Token(net["chain"]).balance(net["owner"].address)
    net["edge"].claim(net["gw"].address, c, dev)
    paid = Token(net["chain"]).balance(net["owner"].address) - before
    # 5 intervals x 0.01 MESH, 3 devices in one res-7 cell (capacity 4: no scaling), under the stake cap
    assert paid == 5 * MESH // 100
    with pytest.raises(ContractRevert, match="already claimed"):
        net["edge"].claim(net["gw"].address, c, dev)


def test_forged_reading_in_root_is_proven_and_gateway_slashed(net, accounts, tmp_path):
    _fill(net)
    core, t0 = net["core"], net["start"]
    # The gateway sneaks in a reading no device signed (a stranger's signature).
    stranger = create_key(tmp_path / "s" / "device.key", "pw")
    fake = make_reading(stranger.private_key, core.domain, device=net["devices"][0].address_bytes, seq=99,
                        nonce=core.beacons.nonce((t0 + 1) // core.interval_length), timestamp=t0 + 1, payload=b"fake")
    bucket = core.open[net["epoch"]]
    bucket.entries.append((fake.encode(), (t0 + 1) // core.interval_length))
    c, _ = _publish(net)
    idx = c.find(net["devices"][0].address_bytes, 99)
    challenger = accounts[5]
    edge = net["edge"]
    # a valid leaf cannot be challenged
    with pytest.raises(ContractRevert, match="reading is valid"):
        edge.challenge_reading(net["gw"].address, c, 0, sender=challenger)
    before = Token(net["chain"]).balance(challenger.address)
    edge.challenge_reading(net["gw"].address, c, idx, sender=challenger)
    assert Token(net["chain"]).balance(challenger.address) - before == 500 * MESH   # half the 1000 bond
    assert net["edge"].gateway(net["gw"].address)["slashed"]
    assert net["edge"].epoch(net["gw"].address, net["epoch"])["faulty"]
    with pytest.raises(ContractRevert):   # no second slash, no rewards from a faulty epoch
        edge.challenge_reading(net["gw"].address, c, idx, sender=challenger)
    net["chain"].increase_time(3601)
    with pytest.raises(ContractRevert, match="faulty"):
        edge.claim(net["gw"].address, c, net["devices"][1].address_bytes)


def test_inflated_count_is_proven(net, accounts):
    _fill(net)
    c = net["core"].close_epoch(net["epoch"])
    dev = net["devices"][1].address_bytes
    c.counts[dev] += 10                      # claim more uptime than the leaves show
    from proofmesh.crypto.merkle import MerkleTree
    from proofmesh.edge.epoch_tree import count_leaf
    c.counts_tree = MerkleTree([count_leaf(d, c.counts[d]) for d in c.counts_devices])
    _publish(net, commitment=c)
    net["edge"].challenge_count(net["gw"].address, c, dev, sender=accounts[5])
    assert net["edge"].gateway(net["gw"].address)["slashed"]


def test_honest_count_cannot_be_challenged(net, accounts):
    _fill(net)
    c, _ = _publish(net)
    with pytest.raises(ContractRevert, match="count matches"):
        net["edge"].challenge_count(net["gw"].address, c, net["devices"][1].address_bytes, sender=accounts[5])
    with pytest.raises(ContractRevert, match="consistent"):
        net["edge"].challenge_pair(net["gw"].address, c, 2, sender=accounts[5])


def test_broken_running_count_is_proven(net, accounts):
    _fill(net)
    c = net["core"].close_epoch(net["epoch"])
    c.leaves[1] = dataclasses.replace(c.leaves[1], credit=c.leaves[1].credit + 3)
    c.tree = PositionalTree([lf.hash() for lf in c.leaves])
    _publish(net, commitment=c)
    net["edge"].challenge_pair(net["gw"].address, c, 0, sender=accounts[5])
    assert net["edge"].gateway(net["gw"].address)["slashed"]


def test_acknowledged_reading_left_out_is_proven(net, accounts):
    core, t0 = net["core"], net["start"]
    dev = net["devices"][0]
    ans = _submit(net, [_reading(net, dev, s, t0 + s) for s in (1, 2, 3)], now=t0 + 4)
    receipt = ans["receipt"]
    assert receipt["runs"] == [["0x" + dev.address_bytes.hex(), net["epoch"], 1, 3]]
    bucket = core.open[net["epoch"]]
    dropped = bucket.entries.pop(1)          # the gateway silently drops seq 2
    c, _ = _publish(net)
    from proofmesh.edge.epoch_tree import build_leaves
    leaf = build_leaves([(decode_record(dropped[0]), dropped[1])], core.interval_length)[0]
    net["edge"].challenge_omission(net["gw"].address, c, receipt, leaf, sender=accounts[6])
    assert net["edge"].gateway(net["gw"].address)["slashed"]


def test_wrong_seed_and_out_of_order_publish_refused(net):
    _fill(net)
    with pytest.raises(ContractRevert, match="seed does not match"):
        _publish(net, seed=os.urandom(32))


def test_rotated_key_takes_over_and_old_key_is_refused(net, tmp_path):
    core, edge, owner = net["core"], net["edge"], net["owner"]
    d0 = net["devices"][0]
    new = create_key(tmp_path / "rot" / "device.key", "pw")
    edge.rotate_key(d0.address, new, owner=owner)
    core.devices.refresh()
    ts = net["chain"].timestamp() + 1
    nonce = core.beacons.nonce(ts // core.interval_length)
    old_signed = make_reading(d0.private_key, core.domain, device=d0.address_bytes, seq=1, nonce=nonce, timestamp=ts,
                              payload=b"a")
    new_signed = make_reading(new.private_key, core.domain, device=d0.address_bytes, seq=2, nonce=nonce, timestamp=ts,
                              payload=b"b")
    core.first_epoch = min(core.first_epoch, ts // core.epoch_length)
    ans = _submit(net, [old_signed, new_signed], now=ts)
    assert ans["codes"] == ["unknown_or_revoked_key", "ok"]
    # the old key stays valid for what it signed before the rotation; a reused key is refused
    old_from, until = edge.key_record(d0.address)[1:]
    assert until <= ts and old_from < until
    with pytest.raises(ContractRevert, match="key already used"):
        edge.rotate_key(d0.address, new, owner=owner)
    with pytest.raises(ContractRevert, match="not the owner"):
        edge.revoke_key(d0.address, owner=net["gw"])


def test_audit_m7_flash_stake_before_claim_does_not_raise_cap_and_stake_unbonds(chain, accounts, tmp_path):
    """Audit M7: add_stake right before claim, deregister right after. The cap counts only
    stake in place since before the epoch started, and deregistered stake unbonds."""
    edge = EdgeChain(chain)
    # a reward above the stake cap: 5 intervals x 10 MESH = 50 MESH vs 10% of 100 MESH = 10 MESH
    GovernanceClient(chain).apply_now(edge.epochs.functions.set_parameters(
        3600, chain.call(edge.epochs.functions.gateway_bond()), 10 * MESH, 1_000))
    net = _fill(_make_net(chain, accounts, tmp_path))
    c, _ = _publish(net)
    owner, dev = net["owner"], net["devices"][2]
    EmissionClient(chain).fund_pool(3, 1_000 * MESH, sender=owner)
    chain.increase_time(3601)
    # the attack: top up 900 MESH just before claiming (cap would become 100 MESH)
    Token(chain).approve(edge.registry.address, 900 * MESH, sender=owner)
    chain.transact(edge.registry.functions.add_stake(dev.address, 900 * MESH), sender=owner)
    before = Token(chain).balance(owner.address)
    edge.claim(net["gw"].address, c, dev.address_bytes)
    assert Token(chain).balance(owner.address) - before == 10 * MESH     # not 50: the top-up does not count
    # ... and deregister right after: the stake is not refunded until unbonding is over
    before = Token(chain).balance(owner.address)
    edge.deregister(dev.address, owner=owner)
    assert Token(chain).balance(owner.address) == before
    with pytest.raises(ContractRevert, match="still unbonding"):
        edge.withdraw_stake(dev.address, owner=owner)
    chain.increase_time(int(chain.call(edge.registry.functions.unbonding_period())) + 1)
    edge.withdraw_stake(dev.address, owner=owner)
    assert Token(chain).balance(owner.address) - before == 1_000 * MESH
