"""The node's /v1/infer fast path below ASGI (httpfast.InferProtocol): HTTP semantics a
client relies on — keep-alive, pipelined requests answered in order (inline and on a
worker thread), HTTP/1.0 close, Expect: 100-continue, other routes still through FastAPI."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import orjson

from proofmesh.inference import wire
from proofmesh.inference.httpfast import InferProtocol
from proofmesh.inference.receipt import Receipt


def _request(version: int, nonce: int, x, http: str = "1.1", extra: str = "") -> bytes:
    body = wire.encode_request({"version": version, "nonce": nonce}, {"x": x})
    return (f"POST /v1/infer HTTP/{http}\r\nhost: node\r\ncontent-type: {wire.CONTENT_TYPE}\r\n{extra}"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


def _read_answers(sock: socket.socket, n: int) -> list[tuple[int, dict, bytes]]:
    """n HTTP responses from sock: (status, JSON body, raw head)."""
    buf, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, "connection closed early"
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 100"):
            continue
        length = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")))
        while len(buf) < length:
            buf += sock.recv(65536)
        out.append((int(head.split()[1]), orjson.loads(buf[:length]), head))
        buf = buf[length:]
    return out


def _connect(url: str) -> socket.socket:
    u = urlsplit(url)
    s = socket.create_connection((u.hostname, u.port), timeout=30)
    return s


def test_fast_path_serves_infer_with_http_semantics(network, accounts, x1):
    n = network.start_node(accounts[3])
    assert n.server.server.config.http_protocol_class is InferProtocol
    v = network.version
    with _connect(n.url) as s:
        # three pipelined requests in one write, the middle one a reused nonce: answers in order
        s.sendall(_request(v, 101, x1) + _request(v, 101, x1) + _request(v, 102, x1))
        (s1, a1, h1), (s2, a2, _), (s3, a3, _) = _read_answers(s, 3)
        assert (s1, s2, s3) == (200, 422, 200) and b"connection: close" not in h1
        assert Receipt.from_json(a1["receipt"]).nonce == 101 and Receipt.from_json(a3["receipt"]).nonce == 102
        assert "nonce already used" in a2["error"]
        # a client that waits for 100 Continue before sending a large body
        body = _request(v, 103, x1, extra="expect: 100-continue\r\n")
        head, _, payload = body.partition(b"\r\n\r\n")
        s.sendall(head + b"\r\n\r\n")
        assert s.recv(64).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(payload)
        [(st, a, _)] = _read_answers(s, 1)
        assert st == 200 and Receipt.from_json(a["receipt"]).nonce == 103
    with _connect(n.url) as s:   # HTTP/1.0: answered, then closed
        s.sendall(_request(v, 104, x1, http="1.0"))
        [(st, a, head)] = _read_answers(s, 1)
        assert st == 200 and b"connection: close" in head
        assert s.recv(10) == b""
    # every other route still goes through FastAPI
    with _connect(n.url) as s:
        s.sendall(b"GET /v1/info HTTP/1.1\r\nhost: node\r\n\r\n")
        [(st, info, _)] = _read_answers(s, 1)
        assert st == 200 and info["version"] == v


def test_fast_path_offloaded_answers_stay_in_order(network, accounts, x1):
    """A node with delay_ms answers on worker threads: a request pipelined behind a pending
    one (here /v1/info, which goes through ASGI) is answered after it, not before."""
    n = network.start_node(accounts[4], delay_ms=300)
    v = network.version
    with _connect(n.url) as s:
        s.sendall(_request(v, 201, x1) + b"GET /v1/info HTTP/1.1\r\nhost: node\r\n\r\n" + _request(v, 202, x1))
        (s1, a1, _), (s2, info, _), (s3, a3, _) = _read_answers(s, 3)
        assert (s1, s2, s3) == (200, 200, 200)
        assert Receipt.from_json(a1["receipt"]).nonce == 201 and info["version"] == v
        assert Receipt.from_json(a3["receipt"]).nonce == 202


def test_binary_answer_form_matches_json_answer(network, accounts, x1):
    """accept: application/vnd.proofmesh.answer gives the JSON answer's output, values and
    receipt as a frame (raw bytes); errors stay JSON."""
    import httpx
    import numpy as np

    from proofmesh.inference.receipt import input_hash, values_hash

    n = network.start_node(accounts[5])
    v = network.version
    x = np.random.default_rng(3).random((32, 4), dtype=np.float32)
    as_json = httpx.post(n.url + "/v1/infer", json={"version": v, "input": x.tolist(), "nonce": 301}).json()
    r = httpx.post(n.url + "/v1/infer", content=wire.encode_request({"version": v, "nonce": 302}, {"x": x}),
                   headers={"content-type": wire.CONTENT_TYPE, "accept": wire.ANSWER_TYPE})
    assert r.status_code == 200 and r.headers["content-type"] == wire.ANSWER_TYPE
    # the node's own time for the request (W3C server-timing), so clients can tell it from transit
    name, _, dur = r.headers["server-timing"].partition(";dur=")
    assert name == "node" and 0 < float(dur) < 60_000
    ans = wire.decode_answer(r.content)
    # the frame carries the model's own float32 array; the JSON numbers are those exactly
    assert ans["output"].dtype == np.float32 and ans["output"].astype(np.float64).tolist() == as_json["output"]
    assert ans["values"].dtype == np.int64 and ans["values"].tolist() == as_json["values"]
    rc = Receipt.from_json(ans["receipt"])
    assert rc.nonce == 302 and rc.input_hash == input_hash({"x": x}) and rc.output_hash == values_hash(ans["values"])
    assert rc.signer(network.registry.domain) == accounts[5].address and ans["node"] == accounts[5].address
    again = httpx.post(n.url + "/v1/infer", content=wire.encode_request({"version": v, "nonce": 302}, {"x": x}),
                       headers={"content-type": wire.CONTENT_TYPE, "accept": wire.ANSWER_TYPE})
    assert again.status_code == 422 and "nonce" in again.json()["error"]
    try:
        wire.decode_answer(r.content[:-8])
    except Exception as exc:
        assert "needs" in str(exc)
    else:
        raise AssertionError("a truncated answer frame decoded")


def test_answer_frame_without_tensors_round_trips_but_a_request_needs_one():
    """A zk answer has no arrays (its output is the circuit's, in the header): the binary
    answer frame carries it; a request frame without an input tensor is refused."""
    import pytest

    from proofmesh.errors import InputError

    out = {"output": [[0.5, -1.0]], "receipt": {"nonce": "1"}, "proof": "pending"}
    assert wire.decode_answer(wire.encode_answer(out)) == out
    with pytest.raises(InputError, match="tensors"):
        wire.decode_request(wire._encode_frame(wire.MAGIC, {"version": 1}, {}))


def test_requests_from_several_clients_run_side_by_side(network, accounts, x1, monkeypatch):
    """One client: answered inline on the event loop (no thread hand-off). Two active
    clients: both go to worker threads, so their model runs overlap on separate cores
    instead of the second waiting unread behind the first."""
    import threading
    import time

    from proofmesh.inference import server

    n = network.start_node(accounts[3])
    ran_on: list[str] = []
    infer = n.node._infer
    monkeypatch.setattr(n.node, "_infer", lambda body: (ran_on.append(threading.current_thread().name), infer(body))[1])
    monkeypatch.setattr(server, "CONCURRENT_WINDOW_S", 0.5)
    v = network.version
    with _connect(n.url) as a, _connect(n.url) as b:
        a.sendall(_request(v, 201, x1))
        assert _read_answers(a, 1)[0][0] == 200
        a.sendall(_request(v, 202, x1))
        assert _read_answers(a, 1)[0][0] == 200
        b.sendall(_request(v, 203, x1))          # a second client, while the first is active
        assert _read_answers(b, 1)[0][0] == 200
        a.sendall(_request(v, 204, x1))
        assert _read_answers(a, 1)[0][0] == 200
        time.sleep(0.6)                          # b has gone quiet: a is alone again
        a.sendall(_request(v, 205, x1))
        assert _read_answers(a, 1)[0][0] == 200
    workers = [name.startswith("proofmesh-infer") for name in ran_on]
    assert workers == [False, False, True, True, False], ran_on


def _rss_mb(pid: int | None = None) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def test_body_over_the_limit_is_refused_before_it_is_read(network, accounts, x1):
    """A declared body over max_body_mb gets 413 as its headers arrive (no 100 Continue, no
    buffering), a chunked one as it grows past the limit; the connection is closed and the
    node keeps serving. Under the limit nothing changes."""
    n = network.start_node(accounts[6], max_body_mb=1)
    v = network.version
    with _connect(n.url) as s:      # declared 1 GB: answered without sending a byte of it
        s.sendall(b"POST /v1/infer HTTP/1.1\r\nhost: node\r\ncontent-type: application/json\r\n"
                  b"expect: 100-continue\r\ncontent-length: 1073741824\r\n\r\n")
        [(st, err, head)] = _read_answers(s, 1)
        assert st == 413 and b"connection: close" in head and err["type"] == "BodyTooLarge"
        assert "1,073,741,824 bytes is over this server's limit of 1,048,576" in err["error"]
        assert "http_max_body_mb" in err["fix"]
        assert s.recv(10) == b""
    before = _rss_mb()
    with _connect(n.url) as s:      # streamed (chunked) 3 MB: refused once past 1 MB
        s.sendall(b"POST /v1/infer HTTP/1.1\r\nhost: node\r\ncontent-type: application/json\r\n"
                  b"transfer-encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (1 << 16, b" " * (1 << 16))
        try:
            for _ in range(48):
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass                    # the node closed the connection: what it should do
        [(st, err, _)] = _read_answers(s, 1)
        assert st == 413 and err["type"] == "BodyTooLarge"
    assert _rss_mb() - before < 2.5  # the body was dropped, not kept (3 MB sent)
    # a body under the limit is served as before, on a fresh connection
    with _connect(n.url) as s:
        s.sendall(_request(v, 601, x1))
        [(st, a, _)] = _read_answers(s, 1)
        assert st == 200 and Receipt.from_json(a["receipt"]).nonce == 601


def test_deeply_nested_json_is_a_clear_error_not_a_crash(network, accounts, x1):
    """A 1 MB body of "[[[[..." used to crash the node process (segmentation fault: py_ecc
    raised the recursion limit beyond the C stack, see proofmesh/__init__.py); now it is a
    422 naming the problem, and the node keeps serving."""
    n = network.start_node(accounts[7])
    with _connect(n.url) as s:
        body = b"[" * (1 << 20)
        s.sendall(b"POST /v1/infer HTTP/1.1\r\nhost: node\r\ncontent-type: application/json\r\n"
                  b"content-length: %d\r\n\r\n%s" % (len(body), body))
        [(st, err, _)] = _read_answers(s, 1)
        assert st == 422 and "nests JSON arrays/objects deeper" in err["error"] and err["type"] == "BadJSON"
        s.sendall(_request(network.version, 701, x1))
        [(st, a, _)] = _read_answers(s, 1)
        assert st == 200 and Receipt.from_json(a["receipt"]).nonce == 701


def test_other_routes_have_the_body_limit_too(network, accounts):
    """/v1/pay and the committee routes go through FastAPI: the node's BodyLimit middleware
    answers 413 there, before the route reads the body."""
    import httpx

    n = network.start_node(accounts[8], max_body_mb=1)
    r = httpx.post(n.url + "/v1/pay", content=b"{" + b" " * (2 << 20) + b"}",
                   headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["type"] == "BodyTooLarge"
    assert httpx.get(n.url + "/v1/health").json()["ok"]


def test_a_dripped_request_gets_408_and_a_silent_connection_is_closed(network, accounts, x1):
    """A request must arrive whole within request_timeout_s of its first byte (else 408 and
    close: a client dripping bytes would hold a connection slot for ever), and a connection
    that never sends anything is closed after the keep-alive timeout, like an idle one."""
    import time

    from proofmesh.http_limits import HttpLimits
    from proofmesh.inference.server import InferenceNode, NodeConfig, ServerHandle, create_app

    n = network.start_node(accounts[9], request_timeout_s=1.0)
    with _connect(n.url) as s:
        head, _, body = _request(network.version, 801, x1).partition(b"\r\n\r\n")
        s.sendall(head + b"\r\n\r\n" + body[:10])
        t0 = time.monotonic()
        [(st, err, h)] = _read_answers(s, 1)     # no more bytes sent: the node gives up
        assert st == 408 and err["type"] == "RequestTimeout" and b"connection: close" in h
        assert 0.9 < time.monotonic() - t0 < 10 and s.recv(10) == b""
    with _connect(n.url) as s:   # a request sent at once is unaffected
        s.sendall(_request(network.version, 802, x1))
        [(st, _, _)] = _read_answers(s, 1)
        assert st == 200
    node = InferenceNode(NodeConfig(network.version, network.onnx, network.workdir / "idle"), accounts[9],
                         domain=network.registry.domain, registry=network.registry)
    srv = ServerHandle(create_app(node), limits=HttpLimits(keep_alive_s=1.0)).start()
    try:
        with _connect(srv.url) as s:
            t0 = time.monotonic()
            assert s.recv(10) == b""              # closed by the node, not by us
            assert time.monotonic() - t0 < 10
    finally:
        srv.stop()
        node.close()
