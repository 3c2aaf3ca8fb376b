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


def test_audit_m8_front_runner_copying_the_reveal_earns_nothing(net, accounts, tmp_path):
    """Audit M8: a challenge is commit-reveal and the commitment binds the challenger, so
    a bot (or the gateway's own sybil) that copies the reveal from the mempool is refused,
    and one that commits a copy only after seeing it comes too late."""
    _fill(net)
    core, t0, edge, gw = net["core"], net["start"], net["edge"], net["gw"].address
    stranger = create_key(tmp_path / "s" / "device.key", "pw")
    fake = make_reading(stranger.private_key, core.domain, device=net["devices"][0].address_bytes, seq=99,
                        nonce=core.beacons.nonce((t0 + 1) // core.interval_length), timestamp=t0 + 1, payload=b"fake")
    core.open[net["epoch"]].entries.append((fake.encode(), (t0 + 1) // core.interval_length))
    c, _ = _publish(net)
    honest, thief = accounts[5], accounts[6]
    call = edge.reading_call(gw, c, c.find(net["devices"][0].address_bytes, 99))
    # no commitment at all: nobody can challenge outright any more
    with pytest.raises(ContractRevert, match="no commitment from this sender"):
        edge.reveal_challenge(call, os.urandom(32), sender=thief)
    salt = edge.commit_challenge(call, sender=honest)
    # not in the commitment's own block (a call run in that block's context is refused)
    from web3.exceptions import ContractLogicError
    with pytest.raises(ContractLogicError, match="reveal in a later block"):
        edge.epochs.functions.challenge_reading(*call.args, salt).call({"from": honest.address},
                                                                        block_identifier="latest")
    # the thief replays the honest reveal byte for byte (same arguments, same salt) from its address
    with pytest.raises(ContractRevert, match="no commitment from this sender"):
        edge.reveal_challenge(call, salt, sender=thief)
    # ... or commits its own copy after seeing the reveal: it cannot reveal in the commit's block,
    # and by the next block the honest reveal has voided the epoch
    thief_salt = edge.commit_challenge(call, sender=thief)
    t_before, h_before = (Token(net["chain"]).balance(a.address) for a in (thief, honest))
    tx = edge.reveal_challenge(call, salt, sender=honest)
    with pytest.raises(ContractRevert, match="already proven faulty"):
        edge.reveal_challenge(call, thief_salt, sender=thief)
    assert Token(net["chain"]).balance(honest.address) - h_before == 500 * MESH      # the bounty: the committer's
    assert Token(net["chain"]).balance(thief.address) == t_before
    ev = net["chain"].events("EdgeEpochs", "FaultProven", from_block=tx.block_number)
    assert [e["args"]["challenger"] for e in ev] == [honest.address]
    # a commitment is single-use and cannot be re-registered to reset its block
    with pytest.raises(ContractRevert, match="commitment exists"):
        net["chain"].transact(edge.epochs.functions.commit_challenge(call.commitment(thief.address, thief_salt)),
                              sender=thief)


def test_audit_m8_commitment_binds_the_challenge(net, accounts):
    """A commitment to one leaf cannot be revealed as a challenge of another leaf or kind."""
    _fill(net)
    c = net["core"].close_epoch(net["epoch"])
    c.leaves[1] = dataclasses.replace(c.leaves[1], credit=c.leaves[1].credit + 3)
    c.tree = PositionalTree([lf.hash() for lf in c.leaves])
    _publish(net, commitment=c)
    edge, gw, who = net["edge"], net["gw"].address, accounts[5]
    salt = edge.commit_challenge(edge.pair_call(gw, c, 2), sender=who)         # committed to the wrong pair
    with pytest.raises(ContractRevert, match="no commitment from this sender"):
        edge.reveal_challenge(edge.pair_call(gw, c, 0), salt, sender=who)
    with pytest.raises(ContractRevert, match="no commitment from this sender"):
        edge.reveal_challenge(edge.empty_slot_call(gw, c, 2), salt, sender=who)
    edge.challenge_pair(gw, c, 0, sender=who)
    assert edge.gateway(gw)["slashed"]


def test_audit_l5_later_fault_or_deregistration_does_not_void_an_honest_epoch(net, accounts, tmp_path):
    """Audit L5: only the epoch's own fault voids its rewards. The gateway is slashed for
    epoch N+1 and a device deregisters after epoch N; epoch N still pays."""
    _fill(net)
    chain, core, edge, gw = net["chain"], net["core"], net["edge"], net["gw"].address
    c, _ = _publish(net)                                         # epoch N: honest
    e1 = net["epoch"] + 1
    t1, il = e1 * edge.epoch_length, core.interval_length
    stranger = create_key(tmp_path / "s" / "device.key", "pw")
    fake = make_reading(stranger.private_key, core.domain, device=net["devices"][0].address_bytes, seq=99,
                        nonce=core.beacons.nonce((t1 + 1) // il), timestamp=t1 + 1, payload=b"fake")
    core.open[e1].entries.append((fake.encode(), (t1 + 1) // il))
    c1, _ = _publish(dict(net, epoch=e1))                        # epoch N+1: a forged reading
    edge.challenge_reading(gw, c1, c1.find(net["devices"][0].address_bytes, 99), sender=accounts[5])
    assert edge.gateway(gw)["slashed"] and edge.epoch(gw, e1)["faulty"]
    owner, dev = net["owner"], net["devices"][2]
    edge.deregister(dev.address, owner=owner)                    # after epoch N ended
    EmissionClient(chain).fund_pool(3, 1_000 * MESH, sender=owner)
    chain.increase_time(3601)
    before = Token(chain).balance(owner.address)
    edge.claim(gw, c, dev.address_bytes)
    assert Token(chain).balance(owner.address) - before == 5 * MESH // 100
    with pytest.raises(ContractRevert, match="faulty"):          # the faulty epoch itself pays nothing
        edge.claim(gw, c1, net["devices"][0].address_bytes)


def test_audit_l5_device_deregistered_during_the_epoch_earns_nothing(net):
    """The stake cap reads the stake at the epoch's end too: a device that left before the
    epoch ended (stake history 0) is not paid for it."""
    _fill(net)
    owner, dev = net["owner"], net["devices"][2]
    net["edge"].deregister(dev.address, owner=owner)             # still inside the epoch
    c, _ = _publish(net)
    EmissionClient(net["chain"]).fund_pool(3, 1_000 * MESH, sender=owner)
    net["chain"].increase_time(3601)
    before = Token(net["chain"]).balance(owner.address)
    net["edge"].claim(net["gw"].address, c, dev.address_bytes)
    assert Token(net["chain"]).balance(owner.address) == before


def test_audit_l1_challenge_period_is_bounded(chain):
    """Audit L1: set_parameters refuses a zero challenge period and one longer than
    NodeRegistry.max_challenge_window (the gateway bond would unbond before it ends)."""
    from web3.exceptions import ContractLogicError

    from proofmesh.errors import ProofmeshError

    edge = EdgeChain(chain)
    window = chain.call(chain.contract("NodeRegistry").functions.max_challenge_window())
    bond = chain.call(edge.epochs.functions.gateway_bond())
    gov = chain.addresses["Governance"]
    for period, reason in ((0, "zero challenge period"), (window + 1, "challenge period too long")):
        fn = edge.epochs.functions.set_parameters(period, bond, MESH // 100, 1_000)
        with pytest.raises(ContractLogicError, match=reason):
            fn.call({"from": gov})
        with pytest.raises(ProofmeshError):
            GovernanceClient(chain).apply_now(fn, salt=period.to_bytes(32, "big"))
    GovernanceClient(chain).apply_now(edge.epochs.functions.set_parameters(window, bond, MESH // 100, 1_000))
    assert chain.call(edge.epochs.functions.challenge_period()) == window


def test_verify_finds_a_forged_reading_and_the_challenge_slashes_over_http(net, accounts, tmp_path):
    """`edge verify` / `edge challenge` against a real gateway HTTP server: the forged
    reading is reported with a ready challenge, which commit-reveal turns into a slash."""
    import socket
    import threading
    import time as _time

    import uvicorn

    from proofmesh.edge.cli import verify_reading
    from proofmesh.edge.gateway import make_app
    from proofmesh.errors import VerificationError

    _fill(net)
    core, t0, gw = net["core"], net["start"], net["gw"].address
    dev0 = net["devices"][0]
    stranger = create_key(tmp_path / "s" / "device.key", "pw")
    fake = make_reading(stranger.private_key, core.domain, device=dev0.address_bytes, seq=99,
                        nonce=core.beacons.nonce((t0 + 1) // core.interval_length), timestamp=t0 + 1, payload=b"fake")
    core.open[net["epoch"]].entries.append((fake.encode(), (t0 + 1) // core.interval_length))
    c, tx = _publish(net)
    core.published[net["epoch"]] = {"root": "0x" + c.root.hex(), "tx": tx.tx_hash}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make_app(core), host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    try:
        while not server.started:
            _time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        ok = verify_reading(net["edge"], url, dev0.address, 1)
        assert ok["key_valid"] and ok["gateway"] == gw
        with pytest.raises(VerificationError, match="not the device key") as info:
            verify_reading(net["edge"], url, "0x" + dev0.address_bytes.hex(), 99)
        call = info.value.challenge
        net["edge"].commit_and_reveal(call, sender=accounts[7])
        assert net["edge"].gateway(gw)["slashed"]
    finally:
        server.should_exit = True
        th.join(10)
