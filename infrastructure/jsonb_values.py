"""JSON for jsonb columns that gives every number back as it was written.

PostgreSQL keeps a jsonb number as `numeric` and prints it positionally:
Python writes the float 1e20 as `1e+20`, jsonb answers `100000000000000000000`,
and the reader gets an integer back, which the response encoder (orjson, 64
bits) refuses and which verify finds different from the event's float. Floats
are therefore written positionally with a decimal point (`100000000000000000000.0`):
numeric keeps the scale, and the reader gets the same float back, bit for bit.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson
from psycopg.types.json import Jsonb


def _float_text(value: float) -> str:
    text = repr(value)
    if "e+" not in text:
        return text  # 0.5, 1e-05: numeric prints these back as the same float
    positional = format(Decimal(text), "f")
    return positional if "." in positional else positional + ".0"


def dumps(value: Any) -> str:
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))}:{dumps(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value)


def jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=dumps)


# An integer of 19 digits or more may not fit orjson's 64 bits, which it would
# read as a float; such text (rare: details are bounded to ±2^53-1, older events
# may hold more) goes through json.loads, which keeps it an int. Found by mapping
# every digit to "0" and the rest to " ": a tenth of a regular expression's time.
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGITS = b"0" * 19


def loads(data: str | bytes) -> Any:
    """jsonb text (or any JSON text) to Python, as json.loads reads it, in less time
    (half, on profiles): streams' backlogs decode whole pages of them on the event
    loop, and a rebuild opens every sealed value (infrastructure/sealing.py)."""
    if isinstance(data, str):  # psycopg's loaders pass bytes; its type allows both
        data = data.encode()
    if _LONG_DIGITS not in data.translate(_DIGITS_AS_ZEROS):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:  # what json accepts and orjson does not (lone surrogates)
            pass
    return json.loads(data)
