"""Serving: receipts, input checks, startup refusal, payments, TEE refusal."""

from __future__ import annotations

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from proofmesh.errors import NotAvailableError, VerificationError
from proofmesh.inference.model import file_sha256
from proofmesh.inference.receipt import COMMIT_VALUES, Receipt, input_hash, values_hash
from proofmesh.inference.router import Router
from proofmesh.inference.server import InferenceNode, NodeConfig, StartupRefused


def test_answer_matches_onnxruntime_and_receipt_verifies(network, accounts, x1):
    n = network.start_node(accounts[3])
    r = httpx.post(n.url + "/v1/infer", json={"version": network.version, "input": x1.tolist(), "nonce": "7"})
    assert r.status_code == 200, r.text
    body = r.json()
    direct = ort.InferenceSession(str(network.onnx)).run(None, {"x": x1})[0]
    assert np.allclose(np.asarray(body["output"], dtype=np.float32), direct, atol=0)
    rc = Receipt.from_json(body["receipt"])
    assert rc.signer(network.registry.domain) == accounts[3].address
    assert rc.version == network.version and rc.nonce == 7 and rc.commitment == COMMIT_VALUES
    assert rc.input_hash == input_hash({"x": x1})
    assert rc.output_hash == values_hash(body["values"])
    # the digest the contract computes is the one the node signed
    assert rc.digest(network.registry.domain) == bytes(network.chain.call(
        network.registry.c.functions.receipt_digest(rc.as_tuple())))


@pytest.mark.parametrize("bad,needle", [
    ([[1.0, 2.0, 3.0]], "shape [1, 3]"),
    ([["a", "b", "c", "d"]], "dtype"),
    ([[1.0, 2.0], [3.0]], "ragged"),
    ({"z": [[1, 2, 3, 4]]}, "do not match"),
    ([[float("nan"), 0, 0, 0]], None),   # NaN is not valid JSON for httpx: sent as a string below
])
def test_bad_input_is_422_with_a_clear_message(network, accounts, bad, needle):
    n = network.start_node(accounts[3])
    if needle is None:
        r = httpx.post(n.url + "/v1/infer", content=b'{"version": %d, "input": [[NaN, 0, 0, 0]], "nonce": 1}'
                       % network.version, headers={"content-type": "application/json"})
        assert r.status_code == 422 and "NaN" in r.json()["error"]
        return
    r = httpx.post(n.url + "/v1/infer", json={"version": network.version, "input": bad, "nonce": 1})
    assert r.status_code == 422
    assert needle in r.json()["error"] and r.json()["fix"]


def test_unknown_version_nonce_reuse_and_tee(network, accounts, x1):
    n = network.start_node(accounts[3])
    r = httpx.post(n.url + "/v1/infer", json={"version": network.version + 99, "input": x1.tolist(), "nonce": 1})
    assert r.status_code == 404
    ok = httpx.post(n.url + "/v1/infer", json={"version": network.version, "input": x1.tolist(), "nonce": 5})
    assert ok.status_code == 200
    again = httpx.post(n.url + "/v1/infer", json={"version": network.version, "input": x1.tolist(), "nonce": 5})
    assert again.status_code == 422 and "nonce" in again.json()["error"]
    tee = httpx.post(n.url + "/v1/infer", json={"version": network.version, "input": x1.tolist(), "nonce": 6,
                                                "mode": "tee"})
    assert tee.status_code == 501 and tee.json()["error"] == "no TEE available"
    router = Router(network.chain, network.version)
    with pytest.raises(NotAvailableError, match="no TEE available"):
        router.infer(x1.tolist(), verify="tee")


def test_node_refuses_to_start_with_other_weights(network, accounts, tmp_path):
    from tests.inference.conftest import export_mlp

    other = export_mlp(tmp_path / "other.onnx", seed=1)
    assert file_sha256(other) != file_sha256(network.onnx)
    cfg = NodeConfig(network.version, other, tmp_path / "w")
    with pytest.raises(StartupRefused, match="pins"):
        InferenceNode(cfg, accounts[3], domain=network.registry.domain, registry=network.registry)
    cfg = NodeConfig(network.version + 50, network.onnx, tmp_path / "w")
    with pytest.raises(StartupRefused, match="no serving terms"):
        InferenceNode(cfg, accounts[3], domain=network.registry.domain, registry=network.registry)


def test_router_rejects_tampered_receipt_and_output(network, accounts, x1):
    network.start_node(accounts[3])
    router = Router(network.chain, network.version)
    router.discover()
    node = router.nodes[accounts[3].address]
    inputs = {"x": x1}
    out = router._send(node, x1.tolist(), "plain")
    router._check(node, dict(out), inputs, "plain")                  # genuine: accepted
    forged = dict(out, values=[v + 1 for v in out["values"]])
    with pytest.raises(VerificationError, match="commit to the returned values"):
        router._check(node, forged, inputs, "plain")
    swapped = dict(out, output=(np.asarray(out["output"]) + 0.5).tolist())
    with pytest.raises(VerificationError, match="differs from the committed"):
        router._check(node, swapped, inputs, "plain")
    other_input = {"x": x1 + 1}
    with pytest.raises(VerificationError, match="another input"):
        router._check(node, out, other_input, "plain")
    rc = dict(out["receipt"])
    rc["price"] = "0"
    rc["nonce"] = str(int(rc["nonce"]) + 1)
    with pytest.raises(VerificationError):
        router._check(node, dict(out, receipt=rc), inputs, "plain")   # signature no longer matches


def test_paid_requests_settle_in_one_transaction(network, accounts, x1):
    from proofmesh.chain.core import Token
    from proofmesh.payments import PaymentChannels, Wallet

    price = 10**15
    n = network.start_node(accounts[3], price=price)
    payer = accounts[6]
    wallet = Wallet(PaymentChannels(network.chain), payer)
    router = Router(network.chain, network.version, account=payer, wallet=wallet, deposit=100 * price)
    for _ in range(10):
        router.infer(x1.tolist())
    # the 10th answer is covered by the next voucher: send it explicitly now
    v = wallet.pay(accounts[3].address, router._unpaid.pop(accounts[3].address))
    assert httpx.post(n.url + "/v1/pay", json={"voucher": v.to_json()}).status_code == 200
    token = Token(network.chain)
    before = token.balance(accounts[3].address)
    paid = n.node.ledger.settle(sender=accounts[3])
    assert paid == 10 * price
    assert token.balance(accounts[3].address) - before == 10 * price
    # a request without paying for the previous answers is refused (402)
    body = {"version": network.version, "input": x1.tolist(), "nonce": 12345,
            "channel": "0x" + wallet.channel_of(accounts[3].address).hex()}
    assert httpx.post(n.url + "/v1/infer", json=body).status_code == 200
    body["nonce"] = 12346
    r = httpx.post(n.url + "/v1/infer", json=body)
    assert r.status_code == 402 and "not paid" in r.json()["error"]


def test_fast_abi_encoding_matches_eth_abi():
    import random

    from eth_abi import encode
    from eth_abi.packed import encode_packed

    from proofmesh.crypto.keccak import keccak256
    from proofmesh.inference.receipt import instances_hash

    rng = random.Random(0)
    for _ in range(200):
        v = [rng.randint(-2**62, 2**62) for _ in range(rng.randint(0, 40))]
        assert values_hash(v) == keccak256(encode_packed(["int64"] * len(v), v))
        u = [rng.randint(0, 2**256 - 1) for _ in range(rng.randint(0, 6))]
        assert instances_hash(u) == keccak256(encode(["uint256[]"], [u]))


def test_binary_tensor_input(network, accounts, x1):
    from proofmesh.inference.model import encode_tensor

    n = network.start_node(accounts[3])
    as_list = httpx.post(n.url + "/v1/infer", json={"version": network.version, "input": x1.tolist(), "nonce": 1})
    as_b64 = httpx.post(n.url + "/v1/infer", json={"version": network.version, "input": {"x": encode_tensor(x1)},
                                                   "nonce": 2})
    assert as_b64.status_code == 200
    assert as_b64.json()["values"] == as_list.json()["values"]
    assert as_b64.json()["receipt"]["input_hash"] == as_list.json()["receipt"]["input_hash"]
    short = dict(encode_tensor(x1), shape=[2, 4])
    r = httpx.post(n.url + "/v1/infer", json={"version": network.version, "input": {"x": short}, "nonce": 3})
    assert r.status_code == 422 and "do not fill" in r.json()["error"]
    wrong = encode_tensor(x1.astype(np.float64))
    r = httpx.post(n.url + "/v1/infer", json={"version": network.version, "input": {"x": wrong}, "nonce": 4})
    assert r.status_code == 422 and "float64" in r.json()["error"]


def test_cached_key_signature_is_identical(accounts):
    import os

    from coincurve import PrivateKey

    from proofmesh.inference.receipt import receipt_domain

    d = receipt_domain(31337, "0x" + "22" * 20)
    sk = PrivateKey(bytes(accounts[3].key))
    for i in range(20):
        r = Receipt(i, os.urandom(32), os.urandom(32), i, i, i % 2)
        assert r.signed_with(sk, d).signature == r.signed(accounts[3], d).signature
        assert r.signed_with(sk, d).signer(d) == accounts[3].address


def test_audit_m3_bond_cannot_be_withdrawn_right_after_serving(network, accounts, x1):
    """Audit M3: a node answers (VALUES receipt), then pulls its service bond at once so a
    later fraud proof finds nothing. Withdrawal is now request -> wait the dispute windows;
    the bond stays slashable meanwhile and routers stop using the leaving node."""
    from proofmesh.errors import ContractRevert
    from tests.inference.conftest import advance_to

    reg, chain = network.registry, network.chain
    n = network.start_node(accounts[3])
    r = httpx.post(n.url + "/v1/infer", json={"version": network.version, "input": x1.tolist(), "nonce": "9"})
    assert r.status_code == 200, r.text
    bond = reg.service_bond(accounts[3].address)
    with pytest.raises(ContractRevert, match="not requested or delay not over"):
        reg.withdraw_bond(bond, sender=accounts[3])          # the attack: withdraw right after serving
    reg.request_bond_withdrawal(sender=accounts[3])
    with pytest.raises(ContractRevert, match="not requested or delay not over"):
        reg.withdraw_bond(bond, sender=accounts[3])
    assert reg.service_bond(accounts[3].address) == bond     # still there for disputes of that receipt
    assert accounts[3].address not in [h.address for h in Router(chain, network.version).discover()]
    c = reg.c.functions
    wait = chain.call(c.challenge_window()) + chain.call(c.response_window()) + chain.call(c.vote_window())
    advance_to(chain, reg.bond_unlock_at(accounts[3].address))
    assert reg.bond_unlock_at(accounts[3].address) - chain.timestamp() <= 0 and wait >= 86400
    reg.withdraw_bond(bond, sender=accounts[3])
    assert reg.service_bond(accounts[3].address) == 0


def test_binary_wire_request_same_answer_and_checks(network, accounts, x1):
    """The raw-bytes request form (wire.py) gives the JSON form's answer and keeps every check."""
    from proofmesh.inference import wire

    n = network.start_node(accounts[3])

    def post(body: bytes) -> httpx.Response:
        return httpx.post(n.url + "/v1/infer", content=body, headers={"content-type": wire.CONTENT_TYPE})

    as_json = httpx.post(n.url + "/v1/infer", json={"version": network.version, "input": x1.tolist(), "nonce": 11})
    as_bin = post(wire.encode_request({"version": network.version, "nonce": 12}, {"x": x1}))
    assert as_bin.status_code == 200, as_bin.text
    assert as_bin.json()["values"] == as_json.json()["values"] and as_bin.json()["output"] == as_json.json()["output"]
    rc = Receipt.from_json(as_bin.json()["receipt"])
    assert rc.input_hash == input_hash({"x": x1}) and rc.nonce == 12
    assert rc.signer(network.registry.domain) == accounts[3].address
    # nonce single use across both forms
    again = post(wire.encode_request({"version": network.version, "nonce": 12}, {"x": x1}))
    assert again.status_code == 422 and "nonce" in again.json()["error"]
    bad = {
        "float64": wire.encode_request({"version": network.version, "nonce": 13}, {"x": x1.astype(np.float64)}),
        "shape": wire.encode_request({"version": network.version, "nonce": 14}, {"x": x1[:, :3]}),
        "NaN": wire.encode_request({"version": network.version, "nonce": 15}, {"x": np.full_like(x1, np.nan)}),
        "do not match": wire.encode_request({"version": network.version, "nonce": 16}, {"z": x1}),
        "trailing": wire.encode_request({"version": network.version, "nonce": 17}, {"x": x1}) + b"\0",
        "needs": wire.encode_request({"version": network.version, "nonce": 18}, {"x": x1})[:-4],
        "PMI1": b"PMI0" + b"\0" * 12,
    }
    for needle, body in bad.items():
        r = post(body)
        assert r.status_code == 422 and needle in r.json()["error"], (needle, r.text)
    wrong_version = post(wire.encode_request({"version": network.version + 5, "nonce": 19}, {"x": x1}))
    assert wrong_version.status_code == 404


def test_routes_work_mounted_in_another_app(network, accounts, x1):
    """The node daemon mounts create_app's routes into its own FastAPI app: /v1/infer must
    answer there too (through the plain Route, not NodeApp's fast path)."""
    from fastapi import FastAPI

    from proofmesh.inference import wire
    from proofmesh.inference.server import ServerHandle, create_app

    node = InferenceNode(NodeConfig(network.version, network.onnx, network.workdir / "mounted"), accounts[4],
                         domain=network.registry.domain, registry=network.registry)
    outer = FastAPI()
    outer.include_router(create_app(node).router)
    srv = ServerHandle(outer).start()
    try:
        r = httpx.post(srv.url + "/v1/infer", json={"version": network.version, "input": x1.tolist(), "nonce": 1})
        assert r.status_code == 200 and Receipt.from_json(r.json()["receipt"]).signer(
            network.registry.domain) == accounts[4].address
        r = httpx.post(srv.url + "/v1/infer", content=wire.encode_request({"version": network.version, "nonce": 2},
                                                                          {"x": x1}),
                       headers={"content-type": wire.CONTENT_TYPE})
        assert r.status_code == 200
        r = httpx.post(srv.url + "/v1/infer", content=b"not json", headers={"content-type": "application/json"})
        assert r.status_code == 422 and "JSON" in r.json()["error"]
    finally:
        srv.stop()
        node.close()


def test_receipt_digest_fast_path_matches_typed_data(accounts):
    from proofmesh.crypto.eip712 import typed_hash
    from proofmesh.errors import InputError
    from proofmesh.inference.receipt import RECEIPT_FIELDS, receipt_domain

    dom = receipt_domain(31337, "0x" + "ab" * 20)
    rc = Receipt(7, b"\x01" * 32, b"\x02" * 32, 2**255 + 3, 10**18, 1)
    assert rc.digest(dom) == typed_hash(dom, "Receipt", {"Receipt": RECEIPT_FIELDS}, rc.message())
    assert rc.signed(accounts[0], dom).signer(dom) == accounts[0].address
    with pytest.raises(InputError):
        Receipt(7, b"\x01" * 31, b"\x02" * 32, 1, 0).digest(dom)
    with pytest.raises(InputError):
        Receipt(-1, b"\x01" * 32, b"\x02" * 32, 1, 0).digest(dom)
