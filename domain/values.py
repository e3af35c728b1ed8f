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


def _has_control_chars(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in text)


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


def clean_name(value: object, field: str = "name") -> str:
    return clean_text(field, value, NAME_MAX)


def clean_optional(field: str, value: object, max_len: int) -> str | None:
    if value is None:
        return None
    return clean_text(field, value, max_len)


def clean_race_number(value: object, field: str = "race_number") -> str | None:
    number = clean_optional(field, value, RACE_NUMBER_MAX)
    if number is not None and not number.isalnum():
        raise InvalidValue(field, "must contain only letters and digits")
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
SAFE_INTEGER = 2**53 - 1


def clean_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """Free-form details (e.g. columns kept from an import): a flat map of short
    keys to short text, numbers, booleans or null."""
    if len(details) > DETAILS_MAX:
        raise InvalidValue("details", f"at most {DETAILS_MAX} entries")
    cleaned: dict[str, Any] = {}
    for key, value in details.items():
        name = clean_text("details", key, DETAIL_KEY_MAX)
        if isinstance(value, str):
            value = clean_text(f"details.{name}", value, DETAIL_VALUE_MAX)
        elif value is not None and not isinstance(value, (bool, int, float)):
            raise InvalidValue(f"details.{name}", "must be text, a number, a boolean or null")
        elif isinstance(value, float) and not math.isfinite(value):
            # JSON has no NaN or Infinity: such a value could never be projected.
            raise InvalidValue(f"details.{name}", "must be a finite number")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > SAFE_INTEGER:
            # Beyond 2^53 JSON readers (browsers) lose digits, and beyond 64 bits
            # the encoders refuse: keep to integers every client reads exactly.
            raise InvalidValue(f"details.{name}", f"must be an integer within ±{SAFE_INTEGER}")
        cleaned[name] = value
    return cleaned
