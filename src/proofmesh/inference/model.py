"""An ONNX model as a node serves it: file hash, onnxruntime session, input checking."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from proofmesh.errors import InputError

# onnxruntime type strings -> numpy dtypes we accept for them
_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
               "tensor(int32)": np.int32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
               "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


def file_sha256(path: str | Path) -> bytes:
    """sha256 of a file (the ONNX hash pinned per version in InferenceRegistry)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.digest()


def export_mlp(path: str | Path, sizes: tuple[int, ...] = (4, 8, 3), *, seed: int = 0) -> Path:
    """Export a small Linear/ReLU MLP (random init from ``seed``) to ONNX with a dynamic
    batch axis: the model the demo, the tests and the benches serve and prove."""
    import torch

    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    m = torch.nn.Sequential(*layers).eval()
    torch.onnx.export(m, torch.rand(1, sizes[0]), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch_size"}, "y": {0: "batch_size"}}, dynamo=False)
    return Path(path)


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: Any            # numpy dtype class
    shape: tuple          # ints, or None/str for dynamic dimensions

    def describe(self) -> str:
        dims = ",".join(str(d) if isinstance(d, int) else "N" for d in self.shape)
        return f"{self.name}: {np.dtype(self.dtype).name}[{dims}]"


def prepare_inputs(specs: list[InputSpec], data: Any, *, finite: bool = True) -> dict[str, np.ndarray]:
    """Turn request input into checked arrays. ``data`` is a nested list for a
    single-input model, or {name: value} where a value is a nested list, a tensor object
    (:func:`encode_tensor`) or an ``np.ndarray`` decoded from the binary wire form
    (:mod:`proofmesh.inference.wire`). Typed tensors must have the model's exact dtype;
    lists are converted. Wrong names, shapes or dtypes raise InputError naming the field.
    ``finite=False`` leaves the finite-values check of ``np.ndarray`` inputs to the caller
    (:func:`check_finite`: a node runs it beside the model run)."""
    if not isinstance(data, Mapping):
        if len(specs) != 1:
            raise InputError(f"model has {len(specs)} inputs; give an object {{name: array}}",
                             fix=f"inputs: {_describe(specs)}")
        data = {specs[0].name: data}
    if len(data) != len(specs) or any(s.name not in data for s in specs):
        raise InputError(f"input names {sorted(data)} do not match the model's {sorted(s.name for s in specs)}",
                         fix=f"inputs: {_describe(specs)}")
    out = {}
    for spec in specs:
        raw = data[spec.name]
        if isinstance(raw, np.ndarray):
            out[spec.name] = check_tensor(spec, raw, finite=finite)
            continue
        if isinstance(raw, Mapping):
            out[spec.name] = decode_tensor(spec, raw)
            continue
        try:
            arr = np.asarray(raw)
        except Exception as exc:
            raise InputError(f"input {spec.name!r} is ragged or not a numeric array ({exc})",
                             fix=f"send {spec.describe()}") from exc
        if arr.dtype == object:
            raise InputError(f"input {spec.name!r} is ragged or not numeric", fix=f"send {spec.describe()}")
        want = np.dtype(spec.dtype)
        if arr.dtype.kind == "b" and want.kind != "b" or arr.dtype.kind in "USO":
            raise InputError(f"input {spec.name!r} has dtype {arr.dtype}, model wants {want.name}",
                             fix=f"send {spec.describe()}")
        if want.kind in "iu" and arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise InputError(f"input {spec.name!r} has non-integer values, model wants {want.name}",
                                 fix=f"send {spec.describe()}")
        if want.kind == "f" and arr.size and not np.all(np.isfinite(arr.astype(np.float64))):
            raise InputError(f"input {spec.name!r} contains NaN or infinity", fix="send finite numbers")
        _check_shape(spec, arr.shape)
        out[spec.name] = arr.astype(want, copy=False)
    return out


def _describe(specs: list[InputSpec]) -> str:
    return "; ".join(s.describe() for s in specs)


def _check_shape(spec: InputSpec, shape: tuple) -> None:
    if len(shape) != len(spec.shape) or any(isinstance(d, int) and d != a for d, a in zip(spec.shape, shape)):
        raise InputError(f"input {spec.name!r} has shape {list(shape)}, model wants {spec.describe()}",
                         fix="reshape the input (N = any batch size)")


def check_tensor(spec: InputSpec, arr: np.ndarray, *, finite: bool = True) -> np.ndarray:
    """A typed tensor (binary or base64 wire form): exact dtype, shape, finite floats
    (unless ``finite=False``)."""
    want = np.dtype(spec.dtype)
    if arr.dtype != want and arr.dtype.newbyteorder("=") != want:
        raise InputError(f"input {spec.name!r} has dtype {arr.dtype.name}, model wants {want.name}",
                         fix=f"send {spec.describe()}")
    _check_shape(spec, arr.shape)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(want)
    if finite:
        check_finite({spec.name: arr})
    return arr


def check_finite(inputs: Mapping[str, np.ndarray]) -> None:
    """InputError naming the first floating-point input holding a NaN or an infinity."""
    for name, arr in inputs.items():
        # a finite sum means every element is finite (NaN and infinities propagate); only a
        # non-finite sum (which an overflow can also give) needs the element-wise check
        if arr.dtype.kind == "f" and not np.isfinite(arr.sum(dtype=np.float64)) and not np.isfinite(arr).all():
            raise InputError(f"input {name!r} contains NaN or infinity", fix="send finite numbers")


def encode_tensor(a: np.ndarray) -> dict:
    """The compact wire form of a tensor: raw little-endian bytes in base64 + dtype + shape
    (JSON lists of floats cost ~10x more to encode and parse than the model run itself)."""
    a = np.ascontiguousarray(a)
    return {"b64": base64.b64encode(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()).decode(),
            "dtype": a.dtype.name, "shape": list(a.shape)}


def decode_tensor(spec: InputSpec, raw: Mapping) -> np.ndarray:
    """Inverse of :func:`encode_tensor`, checked against the model's input spec."""
    want = np.dtype(spec.dtype)
    try:
        dtype = np.dtype(raw["dtype"])
        shape = tuple(int(d) for d in raw["shape"])
        buf = base64.b64decode(raw["b64"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"input {spec.name!r}: a tensor object needs b64, dtype, shape ({exc})",
                         fix="send a nested list, or {b64, dtype, shape} with little-endian bytes") from exc
    if dtype != want:
        raise InputError(f"input {spec.name!r} has dtype {dtype.name}, model wants {want.name}",
                         fix=f"send {spec.describe()}")
    if any(d < 0 for d in shape) or int(np.prod(shape)) * dtype.itemsize != len(buf):
        raise InputError(f"input {spec.name!r}: {len(buf)} bytes do not fill shape {list(shape)} of {dtype.name}",
                         fix="check shape and dtype")
    return check_tensor(spec, np.frombuffer(buf, dtype=dtype.newbyteorder("<")).reshape(shape))


def spec_to_json(spec: InputSpec) -> dict:
    return {"name": spec.name, "dtype": np.dtype(spec.dtype).name,
            "shape": [d if isinstance(d, int) else None for d in spec.shape]}


def spec_from_json(d: dict) -> InputSpec:
    try:
        return InputSpec(str(d["name"]), np.dtype(d["dtype"]).type, tuple(d["shape"]))
    except (KeyError, TypeError) as exc:
        raise InputError(f"bad input spec {d!r}", fix="node /v1/info must list input_specs") from exc


class OnnxModel:
    """An ONNX file loaded in onnxruntime, with strict input validation."""

    def __init__(self, path: str | Path, *, threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"ONNX file {self.path} does not exist", fix="give the path of the model's .onnx file")
        self.sha256 = file_sha256(self.path)
        opts = ort.SessionOptions()
        # one intra-op thread per session: a node serves many requests concurrently and
        # the benchmark compares against raw onnxruntime with the same setting
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise InputError(f"{self.path} is not a loadable ONNX model: {exc}",
                             fix="export the model with torch.onnx.export or check the file") from exc
        self.inputs = []
        for i in self.session.get_inputs():
            if i.type not in _ORT_DTYPES:
                raise InputError(f"input {i.name} has unsupported type {i.type}", fix="use float/int tensor inputs")
            self.inputs.append(InputSpec(i.name, _ORT_DTYPES[i.type], tuple(i.shape)))
        self.output_names = [o.name for o in self.session.get_outputs()]

    def describe_inputs(self) -> str:
        return "; ".join(s.describe() for s in self.inputs)

    def prepare(self, data: Any, *, finite: bool = True) -> dict[str, np.ndarray]:
        """Turn JSON input into checked arrays (see :func:`prepare_inputs`)."""
        return prepare_inputs(self.inputs, data, finite=finite)

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run the model on prepared inputs; returns the outputs in model order."""
        return self.session.run(self.output_names, dict(inputs))

    def batch_size(self, inputs: Mapping[str, np.ndarray]) -> int:
        first = next(iter(inputs.values()))
        return int(first.shape[0]) if first.ndim else 1
