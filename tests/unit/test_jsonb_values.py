"""jsonb_values.loads reads jsonb text as json.loads does (types included), faster."""

from __future__ import annotations

import json

import pytest

from infrastructure.jsonb_values import dumps, loads

TEXTS = [
    '{"n": 100000000000000000000}',  # beyond 64 bits: an int, never orjson's float
    '{"n": -9223372036854775809}',
    '{"n": 18446744073709551616, "s": "x"}',
    '{"n": 9007199254740991, "m": -9007199254740991}',
    '{"f": 100000000000000000000.0}',  # a float, as jsonb_values.dumps writes 1e20
    '{"f": 1.7976931348623157e308, "t": 5e-324, "z": -0.0, "third": 0.3333333333333333}',
    '{"id": "1234567890123456789012", "v": [1, 2.5, true, null, "é", {"k": []}]}',
    '["\\ud800"]',  # a lone surrogate: json reads it, orjson refuses it
    '{"big": 1e400}',
]


@pytest.mark.parametrize("text", TEXTS)
def test_loads_reads_as_json_loads_does(text: str) -> None:
    expected = json.loads(text)
    got = loads(text.encode())
    assert got == expected or (got != got and expected != expected)
    assert json.dumps(got) == json.dumps(expected)  # same types: 1e20 and 10**20 print differently


def test_loads_reads_back_what_dumps_wrote() -> None:
    value = {"big": 1e20, "int": 10**20, "small": 1e-7, "nested": [{"a": -(2**70)}]}
    assert json.dumps(loads(dumps(value).encode())) == json.dumps(value)
