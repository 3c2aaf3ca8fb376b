"""`proofmesh edge …`: devices, the gateway, and checking what they published."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from proofmesh.cli.context import JsonOpt, AccountOpt, ctx_account, ctx_chain, output
from proofmesh.errors import InputError, VerificationError

app = typer.Typer(help="Edge devices (DePIN): identities, signed readings, gateways, epoch roots, rewards.",
                  no_args_is_help=True)
device_app = typer.Typer(help="Register, run, revoke and rotate a device.", no_args_is_help=True)
app.add_typer(device_app, name="device")

DirOpt = Annotated[Path, typer.Option("--dir", help="The device's own directory (its key lives there).")]
PasswordOpt = Annotated[str | None, typer.Option("--password", help="Device key password (or $PROOFMESH_EDGE_PASSWORD).")]


def parse_every(text: str) -> float:
    """'1s', '500ms', '2m' or a number of seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", text)
    if not m:
        raise InputError(f"--every {text!r} is not a duration", fix="use e.g. 1s, 500ms or 2m")
    v = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[m.group(2)]
    if v <= 0:
        raise InputError("--every must be positive", fix="use e.g. 1s")
    return v


def _edge(account: str | None = None, signer: bool = True) -> Any:
    from proofmesh.edge.onchain import EdgeChain

    return EdgeChain(ctx_chain(account, signer=signer))


def _device_id(directory: Path) -> str:
    meta = directory / "device.json"
    if not meta.exists():
        raise InputError(f"{directory} holds no registered device", fix="run `proofmesh edge device register --dir DIR`")
    return json.loads(meta.read_text())["device"]


@device_app.command("register")
def register(directory: DirOpt, device_class: Annotated[str, typer.Option("--class", help="sensor, camera, …")],
             cell: Annotated[str, typer.Option("--cell", help="H3 cell index of the device's location")],
             stake: Annotated[float, typer.Option("--stake", help="MESH to stake for the device")] = 10.0,
             password: PasswordOpt = None, account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Create the device key in DIR (if absent) and bind it on chain to your account."""
    from proofmesh.chain.core import to_wei
    from proofmesh.edge.identity import create_key, load_key

    from proofmesh.edge.onchain import parse_cell

    parse_cell(cell)                       # fail before creating anything
    key_path = directory / "device.key"
    key = load_key(key_path, password) if key_path.exists() else create_key(key_path, password)
    edge = _edge(account)
    tx = edge.register_device(key, device_class=device_class, cell=cell, stake=to_wei(stake))
    meta = {"device": key.address, "owner": edge.chain.account.address, "chain_id": edge.chain.chain_id,
            "registry": edge.registry.address, "class": device_class, "cell": cell}
    (directory / "device.json").write_text(json.dumps(meta, indent=1))
    output(dict(meta, tx=tx.tx_hash), json_, title="device registered")


@device_app.command("run")
def run(directory: DirOpt, gateway: Annotated[str, typer.Option("--gateway", help="Gateway URL")],
        every: Annotated[str, typer.Option("--every", help="Reading period, e.g. 1s")] = "1s",
        source: Annotated[str, typer.Option("--source", help="file | generator | stdin")] = "generator",
        input_file: Annotated[str | None, typer.Option("--input", help="File for --source file")] = None,
        model: Annotated[Path | None, typer.Option("--model", help="ONNX model run on the device")] = None,
        count: Annotated[int | None, typer.Option("--count", help="Stop after N readings")] = None,
        batch: Annotated[int, typer.Option("--batch", help="Readings per HTTP batch")] = 64,
        password: PasswordOpt = None, json_: JsonOpt = False) -> None:
    """Read, (infer,) sign and send readings to a gateway; buffer on disk while it is away."""
    from proofmesh.edge.device import Device, OnDeviceModel, sensor_source

    period = parse_every(every)
    src = sensor_source(source, input_file, seed=hash(str(directory)) & 0xFFFF)
    dev = Device(directory, gateway, password=password, model=OnDeviceModel(model) if model else None,
                 batch_size=batch)
    output(dev.run(src, period, count), json_, title="device run")


@device_app.command("revoke")
def revoke(directory: DirOpt, account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Revoke the device's key on chain: its readings are refused from now on."""
    tx = _edge(account).revoke_key(_device_id(directory))
    output({"device": _device_id(directory), "revoked": True, "tx": tx.tx_hash}, json_)


@device_app.command("rotate")
def rotate(directory: DirOpt, password: PasswordOpt = None, account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Generate a new key in DIR and bind it to the same device (the old key is retired)."""
    from proofmesh.edge.identity import create_key, retire_key

    device = _device_id(directory)
    new_path = directory / "device.key.new"
    new_key = create_key(new_path, password, overwrite=True)
    try:
        tx = _edge(account).rotate_key(device, new_key)
    except Exception:
        new_path.unlink(missing_ok=True)  # nothing changed on chain: leave the old key in place
        raise
    retired = retire_key(directory / "device.key")
    new_path.replace(directory / "device.key")
    output({"device": device, "new_key": new_key.address, "retired_file": str(retired), "tx": tx.tx_hash}, json_)


@device_app.command("deregister")
def deregister(directory: DirOpt, account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Remove the device; its stake is refunded by `withdraw-stake` after the unbonding period."""
    tx = _edge(account).deregister(_device_id(directory))
    output({"device": _device_id(directory), "deregistered": True, "tx": tx.tx_hash}, json_)


@device_app.command("withdraw-stake")
def withdraw_stake(directory: DirOpt, account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Refund a deregistered device's stake once its unbonding period is over."""
    tx = _edge(account).withdraw_stake(_device_id(directory))
    output({"device": _device_id(directory), "withdrawn": True, "tx": tx.tx_hash}, json_)


@app.command("gateway")
def gateway(directory: Annotated[Path, typer.Option("--dir", help="Gateway state directory")] = Path("edge-gateway"),
            host: Annotated[str, typer.Option(help="Bind address")] = "127.0.0.1",
            port: Annotated[int, typer.Option(help="Port")] = 8710,
            workers: Annotated[int | None, typer.Option(help="Verifier threads (default: cores)")] = None,
            grace: Annotated[float, typer.Option(help="Seconds after an epoch before it is closed")] = 2.0,
            account: AccountOpt = None) -> None:
    """Run an edge gateway (your node needs the EDGE_GATEWAY role and stake for the bond)."""
    import coincurve

    from proofmesh.edge.gateway import GatewayConfig, GatewayCore, serve
    from proofmesh.edge.identity import KeyHolder

    acct = ctx_account(account)
    edge = _edge(account)
    key = KeyHolder(acct, coincurve.PrivateKey(bytes(acct.key)), directory)
    core = GatewayCore(GatewayConfig(directory, grace=grace, workers=workers), key, edge=edge)
    serve(core, host, port)


@app.command("devices")
def devices(json_: JsonOpt = False) -> None:
    """Devices registered on chain."""
    rows = [d.as_dict() for d in _edge(signer=False).devices()]
    output(rows, json_, title="devices", columns=["device", "owner", "device_class", "cell", "stake", "active"])


@app.command("readings")
def readings(device: str, gateway: Annotated[str, typer.Option("--gateway")] = "http://127.0.0.1:8710",
             json_: JsonOpt = False) -> None:
    """Readings a gateway holds for DEVICE (open and published epochs)."""
    from proofmesh.http_reads import get_json

    # the gateway is any URL the user names: its answer is read within a cap and a deadline
    rows = get_json(f"{gateway.rstrip('/')}/edge/devices/{device}/readings", deadline_s=30)
    output(rows, json_, title=f"readings of {device}", columns=["epoch", "seq", "timestamp", "state"])


@app.command("verify")
def verify(device: str, seq: int, gateway: Annotated[str, typer.Option("--gateway")] = "http://127.0.0.1:8710",
           json_: JsonOpt = False) -> None:
    """Prove to yourself that reading (DEVICE, SEQ) is in a root published on chain, validly signed."""
    output(verify_reading(_edge(signer=False), gateway, device, seq), json_, title="reading verified")


@app.command("challenge")
def challenge(device: str, seq: int, gateway: Annotated[str, typer.Option("--gateway")] = "http://127.0.0.1:8710",
              account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Slash a gateway whose published root holds reading (DEVICE, SEQ) without a valid device
    signature: commits to the challenge, then reveals it a block later (the bounty is yours)."""
    edge = _edge(account)
    try:
        verify_reading(edge, gateway, device, seq)
    except VerificationError as exc:
        call = getattr(exc, "challenge", None)
        if call is None:
            raise
        tx = edge.commit_and_reveal(call)
        output({"device": device, "seq": seq, "gateway": call.gateway, "epoch": call.epoch,
                "reason": exc.message, "tx": tx.tx_hash, "gas": tx.gas_used}, json_, title="gateway challenged")
        return
    raise InputError(f"reading {device}#{seq} is validly signed and in a published root: nothing to challenge",
                     fix="`proofmesh edge verify` shows the proof")


def verify_reading(edge: Any, gateway_url: str, device: str, seq: int, *,
                   deadline_s: float = 60.0) -> dict[str, Any]:
    """Fetch the reading's epoch from the gateway, recompute leaf, proof and root, check them on chain.

    Each answer of the gateway must arrive whole within ``deadline_s`` and ``http_max_answer_mb``.

    A reading in the root without a valid device signature raises :class:`VerificationError`
    whose ``challenge`` is the ready-made ``challenge_reading`` call.
    """
    from proofmesh.edge.epoch_tree import Leaf, PositionalTree
    from proofmesh.edge.onchain import KIND_READING, ChallengeCall
    from proofmesh.http_reads import get_json

    # The gateway is the party being verified: its answers are read within the http_max_answer_mb
    # cap and a total deadline (AnswerTooLarge, AnswerTimeout, BadJSON), never whole on trust.
    base = gateway_url.rstrip("/")
    published = get_json(f"{base}/edge/epochs", deadline_s=deadline_s)
    dev = device.lower()
    for e in sorted(published, key=int):
        data = get_json(f"{base}/edge/epochs/{e}", deadline_s=deadline_s)
        leaves = [Leaf.from_json(x) for x in data["leaves"]]
        hit = [lf for lf in leaves if "0x" + lf.device.hex() == dev and lf.seq == seq]
        if not hit:
            continue
        tree = PositionalTree([lf.hash() for lf in leaves])
        onchain = edge.epoch(data["gateway"], int(e))
        if onchain["root"] != tree.root:
            raise VerificationError(f"epoch {e}: gateway's leaves give root 0x{tree.root.hex()}, chain has "
                                    f"0x{onchain['root'].hex()}", fix="the gateway's file is not what it published")
        leaf = hit[0]
        digest = edge.chain.call(edge.epochs.functions.reading_digest(
            leaf.as_tuple()[1], leaf.seq, leaf.nonce, leaf.timestamp, leaf.payload_hash, leaf.model_version,
            leaf.output_hash))
        from eth_account import Account

        signer = Account._recover_hash(digest, vrs=(leaf.v, leaf.r, leaf.s))
        valid = edge.chain.call(edge.registry.functions.key_valid_at(leaf.as_tuple()[1], signer, leaf.timestamp))
        if not valid:
            err = VerificationError(f"reading {device}#{seq} is in the root but signed by {signer}, not the device key",
                                    fix=f"challenge it: proofmesh edge challenge {device} {seq} --gateway {gateway_url}")
            err.challenge = ChallengeCall("challenge_reading", KIND_READING, data["gateway"], int(e), leaf.hash(),
                                          [data["gateway"], int(e), leaf.as_tuple(), tree.proof(leaf.index)])
            raise err
        return {"device": device, "seq": seq, "epoch": int(e), "gateway": data["gateway"], "index": leaf.index,
                "root": "0x" + tree.root.hex(), "signer": signer, "key_valid": True, "faulty": onchain["faulty"],
                "proof": ["0x" + p.hex() for p in tree.proof(leaf.index)]}
    raise VerificationError(f"reading {device}#{seq} is in no epoch this gateway published",
                            fix="wait for the epoch to be published, or check the device and seq")
