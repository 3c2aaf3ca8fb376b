"""Schemas from type hints, argument validation, canonical hashing (no chain needed)."""

from typing import Literal

import pytest

from proofmesh.agents.schema import ArgumentValidator, canonical_json, json_hash, load_function, tool_from_function
from proofmesh.errors import InputError


def add(a: int, b: int = 2) -> int:
    """Add two integers.

    Longer text that is not part of the description."""
    return a + b


def classify(text: str, labels: list[str], mode: Literal["fast", "exact"] = "fast") -> dict:
    return {"label": labels[0], "mode": mode, "n": len(text)}


def test_schema_from_type_hints():
    spec = tool_from_function(add)
    assert spec.name == "add" and spec.description == "Add two integers."
    s = spec.input_schema
    assert s["properties"]["a"]["type"] == "integer"
    assert s["required"] == ["a"]
    assert s["properties"]["b"]["default"] == 2
    assert s["additionalProperties"] is False


def test_validation_names_the_field():
    v = ArgumentValidator(tool_from_function(classify).input_schema)
    v.validate({"text": "hi", "labels": ["x"]})
    errs = v.errors({"text": 3, "labels": ["x"], "mode": "slow", "extra": 1})
    joined = " ".join(errs)
    assert "text" in joined and "mode" in joined and "extra" in joined
    with pytest.raises(InputError, match="labels"):
        v.validate({"text": "hi"})


def test_untyped_and_varargs_are_refused():
    def untyped(x):
        return x

    def varargs(*xs: int):
        return xs

    with pytest.raises(InputError, match="type hint"):
        tool_from_function(untyped)
    with pytest.raises(InputError, match=r"\*args"):
        tool_from_function(varargs)
    with pytest.raises(InputError, match="invalid tool name"):
        tool_from_function(add, name="bad name!")


def test_canonical_json_is_order_independent():
    assert canonical_json({"b": 1, "a": [1, 2]}) == b'{"a":[1,2],"b":1}'
    assert json_hash({"a": 1, "b": 2}) == json_hash({"b": 2, "a": 1})
    assert json_hash({"a": 1}) != json_hash({"a": 2})
    with pytest.raises(InputError):
        canonical_json({"x": float("nan")})


def test_load_function():
    import json
    assert load_function("json:dumps") is json.dumps
    assert load_function("json:JSONEncoder.encode") is json.JSONEncoder.encode
    with pytest.raises(InputError, match="module:function"):
        load_function("nocolon")
    with pytest.raises(InputError, match="cannot import"):
        load_function("no_such_module_xyz:f")
    with pytest.raises(InputError, match="no attribute"):
        load_function("json:nope")


def test_fast_argument_check_never_accepts_what_jsonschema_rejects():
    import itertools

    import jsonschema

    from proofmesh.agents.schema import _fast_check

    def f(text: str, times: int = 1, x: float = 0.5, flag: bool = False) -> str:
        return text
    schema = tool_from_function(f).input_schema
    fast, full = _fast_check(schema), jsonschema.Draft202012Validator(schema)
    assert fast is not None
    values = ["a", 1, 0, 1.0, 2.5, True, None, [], {}]
    accepted = 0
    for keys in itertools.chain.from_iterable(itertools.combinations(["text", "times", "x", "flag", "extra"], n)
                                              for n in range(4)):
        for combo in itertools.product(values, repeat=len(keys)):
            args = dict(zip(keys, combo))
            if fast(args):
                accepted += 1
                assert full.is_valid(args), args
    assert accepted > 0
    assert _fast_check({"type": "object", "properties": {"v": {"type": "array"}}}) is None   # not flat: full path
