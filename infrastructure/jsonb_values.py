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
