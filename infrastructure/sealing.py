"""Which fields of a stored event are personal, and sealing them with AES-GCM.

Each personal value is replaced by {"$enc": base64(nonce | ciphertext | tag)},
encrypted under the data key of the profile it concerns, with that key's id as
associated data (a sealed value moved to another profile does not open). The
structure around it stays readable: vehicle ids, which vehicle fields changed,
detail keys, and every id, version, time, actor and event type. None stays
None (an absent class or race number says nothing about a person).

A sealed value can never be mistaken for a user's value: names, vehicle fields
and detail values are never JSON objects (domain/values.py)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.profile import ERASED
from infrastructure.jsonb_values import loads
from infrastructure.keys import KeyMissing

SEALED = "$enc"
# What a sealed value reads as where its key is not in the key store at all: a
# copy replayed from an export (keys are never exported), or a wrong KEYS_DATABASE_URL.
WITHHELD = "[withheld]"
NONCE_BYTES = 12

LEAF = "leaf"  # the value itself is personal
EACH = "each"  # every value of the map is personal (its keys are not)
VEHICLE = {"name": LEAF, "vehicle_class": LEAF, "race_number": LEAF}
# By field name, in every event and in the profile's snapshot state alike.
PERSONAL: dict[str, Any] = {
    "name": LEAF,
    "reason": LEAF,
    "details": EACH,
    "changes": EACH,
    "vehicle": VEHICLE,
    "vehicles": [VEHICLE],
}


def _walk(value: Any, spec: Any, leaf: Callable[[Any], Any]) -> Any:
    if value is None:
        return None
    if spec == LEAF:
        return leaf(value)
    if spec == EACH:
        return {k: None if v is None else leaf(v) for k, v in value.items()}
    if isinstance(spec, list):
        return [_walk(v, spec[0], leaf) for v in value]
    return {k: _walk(v, spec[k], leaf) if k in spec else v for k, v in value.items()}


def personal_fields(state: dict[str, Any]) -> dict[str, Any]:
    """The part of PERSONAL that applies to these fields."""
    return {k: PERSONAL[k] for k in state if k in PERSONAL}


def has_personal_data(state: dict[str, Any]) -> bool:
    found = False

    def mark(value: Any) -> Any:
        nonlocal found
        found = True
        return value

    _walk(state, personal_fields(state), mark)
    return found


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and SEALED in value


def seal(state: dict[str, Any], key: bytes, key_id: UUID) -> dict[str, Any]:
    """A copy of state with every personal value encrypted."""
    aead, aad = AESGCM(key), key_id.bytes

    def encrypt(value: Any) -> dict[str, str]:
        nonce = os.urandom(NONCE_BYTES)
        plain = json.dumps(value, separators=(",", ":")).encode()
        return {SEALED: base64.b64encode(nonce + aead.encrypt(nonce, plain, aad)).decode()}

    return _walk(state, personal_fields(state), encrypt)  # type: ignore[no-any-return]


def unseal(state: dict[str, Any], key_of: Callable[[], bytes | None], key_id: UUID) -> dict[str, Any]:
    """A copy of state with every sealed value decrypted: ERASED once the key was
    destroyed (key_of() None), WITHHELD where the key store has no such key
    (key_of() is asked only when a value is sealed). Values stored before
    sealing existed pass as they are."""
    opened: list[AESGCM | str] = []
    aad = key_id.bytes

    def decrypt(value: Any) -> Any:
        if not is_sealed(value):
            return value
        if not opened:
            try:
                key = key_of()
                opened.append(AESGCM(key) if key is not None else ERASED)
            except KeyMissing:
                opened.append(WITHHELD)
        aead = opened[0]
        if isinstance(aead, str):
            return aead
        raw = base64.b64decode(value[SEALED])
        try:
            return loads(aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad))
        except InvalidTag:
            raise ValueError(f"a sealed value does not open with data key {key_id}: it was altered") from None

    return _walk(state, personal_fields(state), decrypt)  # type: ignore[no-any-return]


def plaintext_fields(state: dict[str, Any]) -> list[str]:
    """Personal fields holding plaintext (events stored before sealing existed)."""
    found: list[str] = []
    for name, spec in personal_fields(state).items():

        def check(value: Any, name: str = name) -> Any:
            if not is_sealed(value) and name not in found:
                found.append(name)
            return value

        _walk(state[name], spec, check)
    return found


def seal_bytes(data: bytes, key: bytes, key_id: UUID) -> bytes:
    """nonce | ciphertext | tag of data (a stored response body, say)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, data, key_id.bytes)


def open_bytes(sealed: bytes, key: bytes, key_id: UUID) -> bytes:
    return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], key_id.bytes)
