"""Demo step: a small classifier served by staked nodes; a zk-verified answer checked
on chain; redundant serving across nodes with a lying node caught and slashed."""

from __future__ import annotations

import numpy as np


def run(ctx) -> dict:
    from proofmesh.chain.core import MESH, Registry
    from proofmesh.inference.model import export_mlp
    from proofmesh.inference.publish import publish_circuit, publish_model
    from proofmesh.inference.registry import InferenceRegistry
    from proofmesh.inference.router import Router
    from proofmesh.inference.server import InferenceNode, NodeConfig, ServerHandle, create_app
    from proofmesh.inference.zk import Circuit

    chain, log = ctx.chain, ctx.log
    work = ctx.workdir / "inference"
    work.mkdir(parents=True, exist_ok=True)
    onnx = work / "classifier.onnx"
    export_mlp(onnx, (4, 8, 3), seed=7)
    pub = publish_model(chain, "demo-classifier", onnx, tolerance=1e-3)
    reg = InferenceRegistry(chain)
    log(f"published classifier as model version {pub.version} (onnx sha256 {pub.onnx_sha256.hex()[:16]}…)")
    circuit = Circuit.build(onnx, ctx.home.dir("inference") / "circuits", batch=1, dev=True)
    verifier = publish_circuit(chain, pub.version, circuit)
    log(f"ezkl circuit (logrows {circuit.logrows}) registered; verifier at {verifier}; "
        "[yellow]dev SRS (insecure, flagged on chain)[/yellow]")

    nodes, servers = [], []
    try:
        for i, tamper in enumerate((0.0, 0.0, 0.0, 0.3)):
            acct = ctx.actor(5 + i)
            node = InferenceNode(NodeConfig(pub.version, onnx, work / acct.address, tamper=tamper,
                                            circuit_dir=circuit.dir if i == 0 else None),
                                 acct, domain=reg.domain, registry=reg)
            srv = ServerHandle(create_app(node))
            r = Registry(chain)
            info = r.info(acct.address)
            if info.registered:   # keep roles other demo steps gave this actor
                r.update(srv.url, info.roles | 4, sender=acct)
            else:
                r.register(srv.url, 4, sender=acct)
            if r.info(acct.address).stake < 300 * MESH:
                r.stake(300 * MESH, sender=acct)
            if reg.service_bond(acct.address) == 0:
                reg.post_bond(reg.min_bond(), sender=acct)
            servers.append(srv.start())
            nodes.append(node)
        log(f"{len(nodes)} inference nodes staked, bonded and serving (the last one lies by +0.3)")

        client = ctx.actor(2)
        # a generous timeout: the first zk answer loads the circuit (witness + keys), which
        # takes well over the default 30 s on a busy 2-core machine
        router = Router(chain, pub.version, account=client, timeout=180.0)
        router.discover()
        x = np.random.default_rng(0).random((1, 4), dtype=np.float32).tolist()
        ans = router.infer(x, verify="zk")
        proof = router.fetch_proof(ans, circuit=circuit, workdir=work / "verify")
        tx = reg.submit_proof(ans.receipt, proof.proof, proof.instances, sender=client)
        log(f"zk answer {np.round(ans.output, 4).tolist()} from {ans.node[:10]}…; proof checked locally and "
            f"on chain ({tx.gas_used:,} gas): proven={reg.is_fulfilled(ans.receipt_digest)}")

        red = router.infer(x, verify="redundant", k=4)
        log(f"redundant answer agreed by {len(red.agreeing)} nodes; dispute #{red.dispute} opened against the liar")
        voters = router.call_committee(red.dispute)          # re-execute, commit votes
        st = reg.dispute_state(red.dispute)
        chain.advance_to(st["deadline"] + 1)
        router.reveal_committee(red.dispute)                  # then reveal them
        chain.advance_to(st["reveal_deadline"] + 1)
        liar = reg.resolve_dispute(red.dispute, sender=client)
        reward = sum(reg.claim_vote_reward(red.dispute, sender=n.account) for n in nodes if n.address in voters)
        log(f"committee re-executed, committed and revealed votes; slashed {liar[:10]}… (bond now "
            f"{reg.service_bond(liar) / MESH:.0f} MESH; voters shared {reward / MESH:.1f} MESH)")
        router.close()
        return {"version": pub.version, "zk_gas": tx.gas_used, "dev_srs": True,
                "redundant_agreeing": len(red.agreeing), "slashed": liar}
    finally:
        for s in servers:
            s.stop()
        for n in nodes:
            n.close()
