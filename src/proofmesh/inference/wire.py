"""The binary request form of ``POST /v1/infer``: tensors as raw bytes, no base64, no JSON lists.

A JSON body (``application/json``) carries inputs as nested lists or base64 tensor objects;
decoding those costs more than a small model's run. This frame carries the same request
with the tensors' little-endian bytes appended, read by the node with zero copies
(``np.frombuffer``)::

    b"PMI1" | u32 LE header length | header (JSON) | padding to 16 | tensor bytes ...

The header is the JSON request without ``input``, plus ``"tensors": [{"name", "dtype",
"shape"}, ...]`` in the order their bytes follow; each tensor starts on a 16-byte
boundary (aligned buffers need no copy in onnxruntime). Every check of the JSON form
still applies (names, dtypes, shapes, finite values): the decoded arrays go through
:func:`proofmesh.inference.model.prepare_inputs` like any typed tensor.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Mapping

import numpy as np
import orjson

from proofmesh.errors import InputError

CONTENT_TYPE = "application/vnd.proofmesh.infer"
MAGIC = b"PMI1"
ANSWER_TYPE = "application/vnd.proofmesh.answer"   # ask for it with ``accept``
ANSWER_MAGIC = b"PMA1"
_ALIGN = 16
MAX_TENSORS = 64


_DTYPE_NAMES: dict[np.dtype, str] = {}


def _dtype_name(dt: np.dtype) -> str:
    # numpy computes ``dtype.name`` in Python (~5 us a call here): twice per answer, cached
    name = _DTYPE_NAMES.get(dt)
    if name is None:
        name = _DTYPE_NAMES[dt] = dt.name
    return name


def _pad(n: int) -> int:
    return -n % _ALIGN


def encode_request(body: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> bytes:
    """Frame ``body`` (the JSON fields: version, nonce, mode, channel, voucher) with
    ``tensors`` as raw little-endian bytes."""
    # JSON numbers stop at 64 bits (orjson refuses more): a 256-bit nonce goes as a string,
    # which the node parses the same way
    return _encode_frame(MAGIC, {k: str(v) if isinstance(v, int) and not -2**63 <= v < 2**63 else v
                                 for k, v in body.items() if k != "input"}, tensors)


def decode_request(buf: bytes) -> dict:
    """The request dict with ``input`` = {name: read-only ndarray view of ``buf``}.
    InputError names what is malformed."""
    body, inputs = _decode_frame(MAGIC, buf, "request")
    body["input"] = inputs
    return body


def encode_answer(out: Mapping[str, Any]) -> bytes:
    """A node's answer as a frame (sent when the request's ``accept`` names
    :data:`ANSWER_TYPE`): every ndarray field (``output``, ``values``; a multi-output
    model's ``output`` list as ``output/0``, ``output/1``, ...) as raw bytes, the rest
    (receipt, node, ms) in the JSON header. Parsing the JSON answer's numbers cost a
    client ~130 us at batch 32 (640 numbers), more than the node's own checks."""
    body: dict[str, Any] = {}
    tensors: dict[str, np.ndarray] = {}
    for k, v in out.items():
        if isinstance(v, np.ndarray):
            tensors[k] = v
        elif isinstance(v, list) and v and all(isinstance(a, np.ndarray) for a in v):
            tensors.update((f"{k}/{i}", a) for i, a in enumerate(v))
        else:
            body[k] = v
    return _encode_frame(ANSWER_MAGIC, body, tensors)


def decode_answer(buf: bytes) -> dict:
    """Inverse of :func:`encode_answer`: the answer dict with ndarray fields (read-only
    views of ``buf``)."""
    body, tensors = _decode_frame(ANSWER_MAGIC, buf, "answer")
    lists: dict[str, dict[int, np.ndarray]] = {}
    for name, a in tensors.items():
        key, sep, idx = name.partition("/")
        if sep:
            lists.setdefault(key, {})[int(idx)] = a
        else:
            body[name] = a
    for key, parts in lists.items():
        body[key] = [parts[i] for i in range(len(parts))]
    return body


def _encode_frame(magic: bytes, body: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> bytes:
    arrays = []
    meta = []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        arrays.append(a)
        meta.append({"name": name, "dtype": _dtype_name(a.dtype), "shape": list(a.shape)})
    header = orjson.dumps({**body, "tensors": meta})
    parts = [magic, struct.pack("<I", len(header)), header]
    off = 8 + len(header)
    for a in arrays:
        parts.append(b"\0" * _pad(off))
        off += _pad(off)
        parts.append(memoryview(a).cast("B"))
        off += a.nbytes
    return b"".join(parts)


def _decode_frame(magic: bytes, buf: bytes, what: str) -> tuple[dict, dict[str, np.ndarray]]:
    if len(buf) < 8 or buf[:4] != magic:
        raise InputError(f"binary {what} must start with {magic.decode()}",
                         fix="encode it with proofmesh.inference.wire")
    (hlen,) = struct.unpack_from("<I", buf, 4)
    if 8 + hlen > len(buf):
        raise InputError(f"binary {what} header is truncated", fix="send the whole frame")
    try:
        body = orjson.loads(buf[8:8 + hlen])
    except orjson.JSONDecodeError:
        raise InputError(f"binary {what} header is not JSON", fix="encode it with proofmesh.inference.wire") from None
    # a request carries at least one input tensor; an answer may carry none (a zk answer's
    # output is the circuit's, in the JSON header)
    least = 1 if magic == MAGIC else 0
    if not isinstance(body, dict) or not isinstance(body.get("tensors"), list) \
            or not least <= len(body["tensors"]) <= MAX_TENSORS:
        raise InputError(f"binary {what} header needs a 'tensors' list",
                         fix="list each input's name, dtype and shape in byte order")
    off = 8 + hlen
    inputs: dict[str, np.ndarray] = {}
    for t in body.pop("tensors"):
        try:
            name, dtype, shape = str(t["name"]), np.dtype(t["dtype"]), tuple(int(d) for d in t["shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"bad tensor entry {t!r:.100} ({exc})", fix="each tensor has name, dtype, shape") from None
        if dtype.kind not in "biuf" or any(d < 0 for d in shape) or name in inputs:
            raise InputError(f"tensor {name!r}: unsupported dtype {dtype}, negative dimension or repeated name",
                             fix="numeric dtypes, non-negative shapes, one entry per input")
        off += _pad(off)
        n = math.prod(shape) * dtype.itemsize
        if off + n > len(buf):
            raise InputError(f"tensor {name!r}: {len(buf) - off} bytes left, shape {list(shape)} of {dtype.name} "
                             f"needs {n}", fix="check shape and dtype")
        inputs[name] = (np.frombuffer(buf, dtype=dtype.newbyteorder("<"), count=n // dtype.itemsize,
                                      offset=off).reshape(shape) if n else np.zeros(shape, dtype))
        off += n
    if off != len(buf):
        raise InputError(f"{len(buf) - off} trailing bytes after the tensors", fix="check shapes and dtypes")
    return body, inputs
