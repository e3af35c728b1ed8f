"""A sealed value opens as the value sealed, whatever JSON makes of it: unsealing
reads the plaintext with jsonb_values.loads (orjson where it reads as json does)."""

from __future__ import annotations

import json
import math
import os
from uuid import uuid4

from infrastructure.sealing import is_sealed, seal, unseal

ODD_VALUES = [
    "Ann",
    "émile ✓ 🏁",
    "\ud800 lone surrogate",
    0,
    -0.0,
    1e20,
    1.5e-7,
    2**70,
    -(2**63) - 1,
    9007199254740993,
    True,
    None,
    ["a", 1, 2.5],
]


def test_every_kind_of_value_opens_as_it_was_sealed() -> None:
    key, key_id = os.urandom(32), uuid4()
    state = {"name": "Ann", "details": {str(i): v for i, v in enumerate(ODD_VALUES)}, "version": 3}
    sealed = seal(state, key, key_id)
    assert all(is_sealed(v) for v in sealed["details"].values() if v is not None)

    opened = unseal(sealed, lambda: key, key_id)

    assert opened == state
    assert [type(v) for v in opened["details"].values()] == [type(v) for v in ODD_VALUES]
    assert json.dumps(opened, sort_keys=True) == json.dumps(state, sort_keys=True)
    assert math.copysign(1, opened["details"]["4"]) == -1  # -0.0 keeps its sign


def test_not_a_number_opens_too() -> None:
    key, key_id = os.urandom(32), uuid4()
    opened = unseal(seal({"details": {"x": math.nan}}, key, key_id), lambda: key, key_id)
    assert math.isnan(opened["details"]["x"])
