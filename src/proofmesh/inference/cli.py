"""CLI of the inference capability.

Top level: ``proofmesh serve VERSION --onnx FILE`` and ``proofmesh infer VERSION INPUT.json
--verify zk|redundant|tee``. Group ``proofmesh inference``: publish a model for serving,
build/register its zk circuit, post a service bond, show a version's terms, list, draw the
committee of, resolve, claim from and penalise wrong voters of redundant-mode disputes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from proofmesh.cli.context import (AccountOpt, JsonOpt, console, ctx_account, ctx_chain, ctx_home, err_console,
                                   output)
from proofmesh.errors import InputError

app = typer.Typer(help="Verifiable inference: publish models for serving, zk circuits, bonds.",
                  no_args_is_help=True)


def _circuits_dir() -> Path:
    return ctx_home().dir("inference") / "circuits"


def find_circuit(cache: Path, onnx_sha256: bytes, vk_hash: bytes):
    """The locally built circuit for this ONNX whose verifying key is the registered one."""
    from proofmesh.inference.zk import Circuit

    if not cache.exists():
        return None
    for d in sorted(cache.iterdir()):
        if (d / "circuit.json").exists():
            c = Circuit(d)
            if c.onnx_hash == onnx_sha256 and c.vk_hash == vk_hash:
                return c
    return None


@app.command("publish")
def publish(name: str, onnx: Path, tolerance: Annotated[float, typer.Option(help="Absolute output tolerance for redundant mode.")] = 1e-3,
            account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Register ONNX weights as a ModelRegistry version and pin the file for serving."""
    from proofmesh.inference.publish import publish_model

    p = publish_model(ctx_chain(account), name, onnx, tolerance=tolerance)
    output({"version": p.version, "onnx_sha256": p.onnx_sha256.hex(), "weights_root": p.weights_root}, json_)


@app.command("circuit")
def circuit(version: int, onnx: Path,
            batch: Annotated[int, typer.Option(help="Inputs per proof (batched circuit).")] = 1,
            srs: Annotated[Optional[Path], typer.Option(help="Ceremony SRS file (production). Without it: dev SRS.")] = None,
            max_logrows: Annotated[int, typer.Option(help="Upper bound on circuit size (2^rows).")] = 14,
            verifier: Annotated[str, typer.Option(help="auto | dedicated | reusable (shared verifier + VK artifact: "
                                                       "fits EIP-170 for batched circuits).")] = "auto",
            account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Build the ezkl circuit of a published version, deploy its verifier, register it."""
    from proofmesh.inference.publish import publish_circuit
    from proofmesh.inference.zk import Circuit

    home = ctx_home()
    chain = ctx_chain(account)
    dev = srs is None
    if dev and not home.settings.dev_mode:
        raise InputError("no --srs given and dev mode is off", fix="pass a ceremony SRS file with --srs")
    with console.status("building circuit (settings, calibration, setup)…"):
        c = Circuit.build(onnx, _circuits_dir(), batch=batch, srs=srs, dev=dev, max_logrows=max_logrows)
    with console.status("generating and compiling the verifier…"):
        verifier = publish_circuit(chain, version, c, verifier=verifier)
    if c.dev_srs:
        console.print("[yellow]WARNING: locally generated SRS (dev mode): whoever made it can forge proofs; "
                      "recorded on chain as dev_srs=true[/yellow]")
    output({"version": version, "circuit_dir": str(c.dir), "verifier": verifier, "logrows": c.logrows,
            "batch": c.batch, "dev_srs": c.dev_srs, "vk_hash": c.vk_hash.hex()}, json_)


@app.command("bond")
def bond(amount: str, account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Lock part of this node's stake as its inference service bond."""
    from proofmesh.chain.core import to_wei
    from proofmesh.inference.registry import InferenceRegistry

    reg = InferenceRegistry(ctx_chain(account))
    reg.post_bond(to_wei(amount))
    output({"node": ctx_account(account).address, "bond": str(reg.service_bond(ctx_account(account).address))}, json_)


@app.command("status")
def status(version: int, json_: JsonOpt = False) -> None:
    """Serving terms and circuit of a version (flags a dev SRS)."""
    from proofmesh.inference.registry import InferenceRegistry

    reg = InferenceRegistry(ctx_chain(signer=False))
    t, c = reg.terms(version), reg.circuit(version)
    if not t.registered:
        raise InputError(f"version {version} has no serving terms", fix="publish it: proofmesh inference publish")
    data = {"version": version, "onnx_sha256": t.onnx_hash.hex(), "tolerance": t.tolerance / 1e6,
            "circuit": c.registered}
    if c.registered:
        data.update(verifier=c.verifier, batch=c.batch, vk_hash=c.vk_hash.hex(), settings_hash=c.settings_hash.hex(),
                    srs_hash=c.srs_hash.hex(), dev_srs=c.dev_srs)
        if c.dev_srs:
            console.print("[yellow]dev SRS: proofs for this version are only as trustworthy as its maker[/yellow]")
    output(data, json_)


def serve(version: int,
          onnx: Annotated[Path, typer.Option(help="The ONNX file registered for this version.")],
          circuit: Annotated[Optional[Path], typer.Option(help="Circuit dir (default: the one built here for this version).")] = None,
          price: Annotated[str, typer.Option(help="MESH per request (0 = free).")] = "0",
          host: Annotated[Optional[str], typer.Option(help="Bind address when it starts the daemon (default: settings.node_host).")] = None,
          port: Annotated[Optional[int], typer.Option(help="Port when it starts the daemon (default: settings.node_port).")] = None,
          epoch_seconds: Annotated[int, typer.Option(help="Commit an epoch root of proofs this often.")] = 600,
          delay_ms: Annotated[int, typer.Option(help="Artificial latency (benchmarks/failover drills).", hidden=True)] = 0,
          account: AccountOpt = None) -> None:
    """Serve a registered model version (POST /v1/infer) from this node's daemon.

    With the home's node daemon running, the version is registered with it and this
    returns; otherwise the daemon starts here, in the foreground, serving it. Either way
    the daemon serves it again after a restart (config.toml's inference table lists
    versions to serve too: serve = [{version = 3, onnx = "/m.onnx"}])."""
    from proofmesh.cli.context import password_for
    from proofmesh.crypto.keys import Keystore
    from proofmesh.inference.service import serve_with_daemon
    from proofmesh.node.daemon import running_daemon

    home = ctx_home()
    spec: dict = {"version": version, "onnx": str(onnx.resolve()), "price": price, "epoch_seconds": epoch_seconds}
    if circuit is not None:
        spec["circuit"] = str(circuit.resolve())
    if delay_ms:
        spec["delay_ms"] = delay_ms
    name = account or home.settings.default_account
    password = None
    if running_daemon(home) is None and Keystore(home).exists(name):
        password = password_for(name)
    serve_with_daemon(home, spec, host=host, port=port, account_name=name, password=password,
                      announce=lambda msg: console.print(msg, highlight=False))


def _redundant_circuit(router_chain, version: int):
    """The locally built circuit registered for ``version`` (None: none here or none
    registered): with it, redundant mode settles conflicts with a proof instead of a vote."""
    from proofmesh.inference.registry import InferenceRegistry

    reg = InferenceRegistry(router_chain)
    rec = reg.circuit(version)
    if not rec.registered:
        return None
    return find_circuit(_circuits_dir(), reg.terms(version).onnx_hash, rec.vk_hash)


def _phase(st: dict, now: int) -> str:
    if st["state"] == 2:
        return "resolved"
    if st["state"] == 3:
        return "void"
    if now <= st["deadline"]:
        return "voting"
    return "revealing" if now <= st["reveal_deadline"] else "resolvable"


@app.command("disputes")
def disputes(last: Annotated[int, typer.Option(help="How many of the latest disputes to show.")] = 20,
             json_: JsonOpt = False) -> None:
    """Redundant-mode disputes on chain: parties, phase (voting, revealing, resolvable,
    resolved, void), vote weights, the disputed chunk."""
    from proofmesh.inference.registry import InferenceRegistry

    chain = ctx_chain(signer=False)
    reg = InferenceRegistry(chain)
    count, now = chain.call(reg.disputes.functions.dispute_count()), chain.timestamp()
    rows = []
    for did in range(count, max(0, count - last), -1):
        st = reg.dispute_state(did)
        rows.append({"dispute": did, "version": st["version"], "phase": _phase(st, now), "node_a": st["node_a"],
                     "node_b": st["node_b"], "weight_a": str(st["weight_a"]), "weight_b": str(st["weight_b"]),
                     "chunk": st["chunk"], "vote_deadline": st["deadline"], "reveal_deadline": st["reveal_deadline"]})
    output(rows, json_, title="disputes",
           columns=["dispute", "version", "phase", "node_a", "node_b", "weight_a", "weight_b", "reveal_deadline"])


@app.command("resolve")
def resolve(dispute: int, account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """After the reveal window: slash the side with less vote weight (anyone may call)."""
    from proofmesh.inference.registry import InferenceRegistry

    reg = InferenceRegistry(ctx_chain(account))
    st = reg.dispute_state(dispute)
    phase = _phase(st, reg.chain.timestamp())
    if phase != "resolvable":
        raise InputError(f"dispute {dispute} is {phase}, not resolvable",
                         fix=f"wait until after its reveal deadline ({st['reveal_deadline']})"
                         if phase in ("voting", "revealing") else "nothing left to do")
    loser = reg.resolve_dispute(dispute)
    output({"dispute": dispute, "slashed": loser if int(loser, 16) else None,
            "state": _phase(reg.dispute_state(dispute), reg.chain.timestamp())}, json_)


@app.command("claim")
def claim(dispute: int, account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """A winning voter's share of a resolved dispute's reward (node daemons claim it themselves)."""
    from proofmesh.inference.registry import InferenceRegistry

    reg = InferenceRegistry(ctx_chain(account))
    amount = reg.claim_vote_reward(dispute)
    output({"dispute": dispute, "voter": ctx_account(account).address, "reward": str(amount)}, json_)


@app.command("draw")
def draw(dispute: int, account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Fix the committee seed of an open dispute (anyone, e.g. a keeper or the accused node):
    within 256 blocks of the opening, or the dispute can no longer be voted on. The client
    that opens a dispute already does it; no transaction if the seed is stored."""
    from proofmesh.inference.registry import InferenceRegistry

    reg = InferenceRegistry(ctx_chain(account))
    output({"dispute": dispute, "seed": "0x" + reg.draw(dispute).hex()}, json_)


@app.command("penalise")
def penalise(dispute: int, voter: str, account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Slash a voter of a dispute resolved by vote that never revealed or revealed for the
    losing side (anyone, once per voter); the penalty joins the winning voters' reward."""
    from eth_utils import is_address

    from proofmesh.inference.registry import InferenceRegistry

    if not is_address(voter):
        raise InputError(f"{voter!r} is not an address", fix="pass the voter's 0x… address (see the VoteCommitted events)")
    reg = InferenceRegistry(ctx_chain(account))
    got = reg.penalise_voter(dispute, voter)
    output({"dispute": dispute, "voter": voter, "slashed": str(got["slashed"]), "to_pool": str(got["to_pool"])}, json_)


def infer(version: int, input_json: Annotated[Path, typer.Argument(help="JSON: a nested list, or {input name: list}.")],
          verify: Annotated[str, typer.Option(help="none | zk | redundant | tee")] = "none",
          k: Annotated[int, typer.Option(help="Nodes asked in redundant mode.")] = 2,
          deposit: Annotated[str, typer.Option(help="MESH to deposit per node channel when a node charges.")] = "1",
          wait_proof: Annotated[bool, typer.Option(help="zk: wait for the proof and check it.")] = True,
          account: AccountOpt = None, json_: JsonOpt = False) -> None:
    """Ask the network: find nodes for VERSION, pick, verify, pay, fail over."""
    from proofmesh.chain.core import to_wei
    from proofmesh.inference.router import Router
    from proofmesh.payments import PaymentChannels, Wallet

    try:
        data = json.loads(input_json.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {input_json}: {exc}", fix="give a JSON file with the input array") from exc
    if isinstance(data, dict) and "input" in data and len(data) == 1:
        data = data["input"]
    home = ctx_home()
    chain = ctx_chain(account)
    acct = ctx_account(account)
    wallet = Wallet(PaymentChannels(chain), acct, path=home.dir("payments") / f"wallet-{acct.address}.json")
    try:
        router = Router(chain, version, account=acct, wallet=wallet, deposit=to_wei(deposit),
                        circuit=_redundant_circuit(router_chain=chain, version=version) if verify == "redundant" else None,
                        workdir=home.dir("inference") / "router")
        router.discover()
        ans = router.infer(data, verify=verify, k=k)
        out = {"output": ans.output.tolist(), "node": ans.node, "verify": verify, "receipt": ans.receipt.to_json(),
               "failovers": ans.failovers}
        if verify == "redundant":
            out.update(agreeing=ans.agreeing, dispute=ans.dispute, circuit_receipts=ans.receipt.commitment == 2,
                       settled_by_proof=ans.settled)
            if ans.dispute is not None and not (ans.settled and "error" not in ans.settled):
                # the vote decides: hand the input to the committee now (nodes commit, and
                # their daemons reveal when the vote window closes); resolve it afterwards
                out["committee"] = router.call_committee(ans.dispute)
                st = router.registry.dispute_state(ans.dispute)
                out["resolve_after"] = st["reveal_deadline"]
                err_console.print(f"[yellow]dispute #{ans.dispute} opened against a node that disagreed; "
                              f"{len(out['committee'])} committee nodes re-executed and committed votes. "
                              f"Resolve it after the reveal window: proofmesh inference resolve {ans.dispute}[/yellow]")
        if verify == "zk":
            rec = router.registry.circuit(version)
            out["dev_srs"] = rec.dev_srs
            if wait_proof:
                local = None
                cache = _circuits_dir()
                if cache.exists():
                    for d in cache.iterdir():
                        from proofmesh.inference.zk import Circuit
                        if (d / "circuit.json").exists() and Circuit(d).vk_hash == rec.vk_hash:
                            local = Circuit(d)
                with console.status("waiting for the proof…"):
                    proof = router.fetch_proof(ans, circuit=local, workdir=home.dir("inference") / "verify")
                out["proof"] = {"proof_hash": "0x" + proof.proof_hash.hex(), "checked_locally": local is not None,
                                "instances_match_receipt": True}
            if rec.dev_srs:
                console.print("[yellow]dev SRS: this proof is only as trustworthy as whoever generated the SRS[/yellow]")
        router.close()
    finally:
        wallet.close()      # its journal's lock: the next command (in this process too) opens it again
    output(out, json_)
