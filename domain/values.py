"""Validation of the values a profile holds; each failure names its field."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from typing import Any

from domain.errors import InvalidValue

NAME_MAX = 80
VEHICLE_CLASS_MAX = 40
RACE_NUMBER_MAX = 6
VEHICLES_MAX = 50


# Control (NUL, ESC, CR/LF), format (bidi overrides, zero-width), surrogate,
# private-use and unassigned characters, and the Unicode line and paragraph
# separators: none belongs in a name or a note an auditor reads.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _has_control_chars(text: str) -> bool:
    return any(unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in text)


def clean_text(field: str, value: object, max_len: int) -> str:
    """Trimmed, non-blank, printable text of at most max_len characters."""
    if not isinstance(value, str):
        raise InvalidValue(field, "must be a string")
    text = value.strip()
    if not text:
        raise InvalidValue(field, "must not be blank")
    if len(text) > max_len:
        raise InvalidValue(field, f"must be at most {max_len} characters after trimming")
    if _has_control_chars(text):
        raise InvalidValue(field, "must not contain control or unassigned characters")
    return text


REASON_MAX = 500


def clean_reason(value: object, field: str = "reason") -> str | None:
    """Why a change was made, as auditors read it forever: the rules of names
    (trimmed, no control, bidi or line-break characters) at up to REASON_MAX
    characters; blank means no reason."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return clean_text(field, value, REASON_MAX)


def clean_name(value: object, field: str = "name") -> str:
    return clean_text(field, value, NAME_MAX)


def clean_optional(field: str, value: object, max_len: int) -> str | None:
    if value is None:
        return None
    return clean_text(field, value, max_len)


def clean_race_number(value: object, field: str = "race_number") -> str | None:
    number = clean_optional(field, value, RACE_NUMBER_MAX)
    # ASCII, as the OpenAPI pattern says: str.isalnum alone also takes "Ⅻ" and "١٢".
    if number is not None and not (number.isascii() and number.isalnum()):
        raise InvalidValue(field, "must contain only ASCII letters and digits")
    return number


def vehicle_record(vehicle_id: str, fields: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The stored form of a vehicle: id, name, and the optional class and race number."""
    return {
        "id": vehicle_id,
        "name": clean_name(fields.get("name"), f"{prefix}name"),
        "vehicle_class": clean_optional(
            f"{prefix}vehicle_class", fields.get("vehicle_class"), VEHICLE_CLASS_MAX
        ),
        "race_number": clean_race_number(fields.get("race_number"), f"{prefix}race_number"),
    }


def vehicle_changes(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validated partial update of a vehicle; only the given keys change."""
    allowed = {"name", "vehicle_class", "race_number"}
    unknown = set(fields) - allowed
    if unknown:
        raise InvalidValue(sorted(unknown)[0], "is not a vehicle field")
    if not fields:
        raise InvalidValue("body", "names no vehicle field to change")
    changes: dict[str, Any] = {}
    if "name" in fields:
        changes["name"] = clean_name(fields["name"])
    if "vehicle_class" in fields:
        changes["vehicle_class"] = clean_optional("vehicle_class", fields["vehicle_class"], VEHICLE_CLASS_MAX)
    if "race_number" in fields:
        changes["race_number"] = clean_race_number(fields["race_number"])
    return changes


DETAILS_MAX = 20
DETAIL_KEY_MAX = 40
DETAIL_VALUE_MAX = 200
# The largest integer every JSON reader (JavaScript's doubles, browsers) holds
# exactly; numbers of either kind stay within it.
SAFE_INTEGER = 2**53 - 1


def clean_number(field: str, value: float) -> float:
    """A finite number within ±SAFE_INTEGER, integers and floats alike.

    Beyond 2^53 JSON readers lose digits; beyond 64 bits the response encoder
    (orjson) refuses integers; and PostgreSQL's jsonb keeps numbers as
    `numeric`, printing the float 1e20 back as the integer 100000000000000000000.
    Within the bound a float's shortest form (repr) has no positive exponent, so
    it survives JSON, jsonb, the hash chain and verify digit for digit."""
    if isinstance(value, float):
        if not math.isfinite(value):
            # JSON has no NaN or Infinity: such a value could never be projected.
            raise InvalidValue(field, "must be a finite number")
        if abs(value) > SAFE_INTEGER:
            raise InvalidValue(field, f"must be a number within ±{SAFE_INTEGER}")
        # jsonb's numeric has no negative zero: keep the one zero it gives back.
        return 0.0 if value == 0 else value
    if abs(value) > SAFE_INTEGER:
        raise InvalidValue(field, f"must be an integer within ±{SAFE_INTEGER}")
    return value


def clean_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """Free-form details (e.g. columns kept from an import): a flat map of short
    keys to short text, numbers, booleans or null."""
    if len(details) > DETAILS_MAX:
        raise InvalidValue("details", f"at most {DETAILS_MAX} entries")
    cleaned: dict[str, Any] = {}
    for key, value in details.items():
        name = clean_text("details", key, DETAIL_KEY_MAX)
        if name in cleaned:
            # Two keys that differ only in surrounding spaces would silently become one.
            raise InvalidValue(f"details.{name}", "is given twice (keys are trimmed)")
        if isinstance(value, str):
            value = clean_text(f"details.{name}", value, DETAIL_VALUE_MAX)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = clean_number(f"details.{name}", value)
        elif value is not None and not isinstance(value, bool):
            raise InvalidValue(f"details.{name}", "must be text, a number, a boolean or null")
        cleaned[name] = value
    return cleaned
