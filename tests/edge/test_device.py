"""The device side without a gateway: on-device ONNX inference, durable queue and seq."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from proofmesh.crypto.keccak import keccak256
from proofmesh.edge.device import Device, OnDeviceModel, sensor_source
from proofmesh.edge.identity import create_key, load_key
from proofmesh.edge.reading import ReadingDomain, decode_record
from proofmesh.errors import AccountError, InputError


def _model(path):
    w = helper.make_tensor("W", TensorProto.FLOAT, [4, 2], np.arange(8, dtype=np.float32).tolist())
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _device(tmp_path, **kw):
    create_key(tmp_path / "device.key", "pw")
    dev = Device(tmp_path, "http://127.0.0.1:9", password="pw", timeout=0.3, **kw)   # nothing listens there
    dev.domain = ReadingDomain(31337, "0x" + "11" * 20)      # as if a beacon had been fetched earlier
    dev.state.nonce = b"\x07" * 32
    return dev


def test_on_device_inference_is_signed(tmp_path):
    model = OnDeviceModel(_model(tmp_path / "m.onnx"))
    dev = _device(tmp_path, model=model)
    r = dev.make(b"[1, 2, 3, 4]", timestamp=1000)
    expected = (np.array([[1, 2, 3, 4]], np.float32) @ np.arange(8, dtype=np.float32).reshape(4, 2)).astype(np.float32)
    assert r.model_version == keccak256((tmp_path / "m.onnx").read_bytes())
    assert r.output_hash == keccak256(expected.tobytes())
    with pytest.raises(InputError, match="expects 4 inputs"):
        dev.make(b"[1, 2]")
    with pytest.raises(InputError, match="not a JSON list"):
        dev.make(b"hello")


def test_unreachable_gateway_buffers_on_disk_and_seq_survives_restart(tmp_path):
    dev = _device(tmp_path)
    src = sensor_source("generator")
    for _ in range(3):
        dev.make(next(src))
    assert dev.flush() == 0 and dev.counts["send_failures"] == 1
    again = Device(tmp_path, "http://127.0.0.1:9", password="pw")
    assert [decode_record(r).seq for r in again.pending] == [1, 2, 3]
    assert again.state.next_seq == 4                         # a restarted device never reuses a seq


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError):
        next(sensor_source("file", str(tmp_path / "missing.txt")))
    with pytest.raises(InputError):
        next(sensor_source("camera"))
    create_key(tmp_path / "k" / "device.key", "pw")
    with pytest.raises(AccountError):
        load_key(tmp_path / "k" / "device.key", "wrong")
    with pytest.raises(InputError):
        create_key(tmp_path / "k" / "device.key", "pw")     # never overwrite a device key
    (tmp_path / "r.txt").write_text("[1,2]\n[3,4]\n")
    it = sensor_source("file", str(tmp_path / "r.txt"))
    assert [next(it) for _ in range(3)] == [b"[1,2]", b"[3,4]", b"[1,2]"]
    assert json.loads(next(sensor_source("generator")))


def test_cli_rejects_bad_cell_before_touching_anything(tmp_path):
    from typer.testing import CliRunner

    from proofmesh.cli.main import app

    res = CliRunner().invoke(app, ["--home", str(tmp_path / "h"), "edge", "device", "register", "--dir",
                                   str(tmp_path / "d"), "--class", "sensor", "--cell", "zzz"])
    assert res.exit_code != 0
    assert "H3" in res.output
    assert not (tmp_path / "d" / "device.key").exists()     # no key created for a refused registration
