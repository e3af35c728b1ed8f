"""The legacy dashboard's tables as import-legacy plans from them: which columns
are used, and each row shrunk, as it streams in, to a bounded summary with its
values converted (details, vehicle fields). Pure: no database, no I/O, so the
plan (infrastructure/legacy_plan.py) is tested on rows made in memory.

Hostile legacy data: a text cell is cut to TEXT_CAP characters as it arrives,
and a JSON value nested deeper than MAX_NESTING makes its row a bad row (the
reader leaves JSON unparsed: RawJson)."""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from domain.errors import InvalidValue
from domain.values import DETAIL_KEY_MAX, DETAIL_VALUE_MAX, DETAILS_MAX, clean_details

PROFILES_TABLE = "racer_profiles"
VEHICLES_TABLE = "vehicles"
PROFILE_REQUIRED = ("id", "name", "created_at")
PROFILE_KNOWN = {"id", "name", "created_at", "updated_at", "is_default"}
VEHICLE_REQUIRED = ("id", "profile_id", "name")
# Legacy column -> vehicle field; the first column present wins.
VEHICLE_FIELDS = {"vehicle_class": ("vehicle_class", "class"), "race_number": ("race_number", "number")}

# Longer names are refused anyway (NAME_MAX); the cap only keeps a huge cell from being held.
TEXT_CAP = 4096
# JSON nested deeper than this is refused: parsing or printing it would exhaust the stack.
MAX_NESTING = 200
_SAFE_INT = 2**53


class RawJson(str):
    """A json or jsonb value as the server sent it, unparsed."""


@dataclass(frozen=True)
class Details:
    """A profile row's detail columns as details, or why the row is bad (problem);
    each note is (column, what had to change)."""

    values: dict[str, Any]
    problem: str | None = None
    notes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class LegacyProfile:
    """What the plan needs of a racer_profiles row."""

    id: Any
    name: Any
    updated_at: Any = None  # also None without an updated_at column
    is_default: Any = None  # also None without an is_default column
    details: Details = field(default_factory=lambda: Details({}))


@dataclass(frozen=True, slots=True)
class LegacyVehicle:
    """What the plan needs of a vehicles row: its id, owner, name and the
    values of the columns chosen for the vehicle fields (VEHICLE_FIELDS)."""

    id: Any
    profile_id: Any
    name: Any
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class LegacyTables:
    profile_columns: list[str]
    profiles: list[LegacyProfile]  # ordered by created_at, then id
    vehicle_columns: list[str] | None  # None: no vehicles table
    vehicles: list[LegacyVehicle]  # ordered by id


# --- columns ---------------------------------------------------------------------


@dataclass(frozen=True)
class DetailColumns:
    kept: list[str]  # the legacy columns kept as details
    unused: list[str]  # the others, as "racer_profiles.column"
    warning: str | None


def detail_columns(profile_columns: Sequence[str]) -> DetailColumns:
    """The columns beyond the known ones become details, as many as details hold."""
    extra = [c for c in profile_columns if c not in PROFILE_KNOWN]
    keep: list[str] = []
    unused: list[str] = []
    seen: set[str] = set()
    for column in extra:
        name = column.strip()[:DETAIL_KEY_MAX]
        if not name or name in seen or len(keep) == DETAILS_MAX:
            unused.append(f"{PROFILES_TABLE}.{column}")
            continue
        seen.add(name)
        keep.append(column)
    warning = None
    if len(keep) < len(extra):
        warning = (
            f"{PROFILES_TABLE} has {len(extra)} extra columns; details hold at most {DETAILS_MAX}"
            f" (names cut to {DETAIL_KEY_MAX} characters must stay distinct), so"
            f" {len(extra) - len(keep)} are not imported"
        )
    return DetailColumns(keep, unused, warning)


def vehicle_columns(columns: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """(vehicle field -> legacy column, the unused columns as "vehicles.column")."""
    chosen: dict[str, str] = {}
    for target, sources in VEHICLE_FIELDS.items():
        for source in sources:
            if source in columns:
                chosen[target] = source
                break
    used = set(VEHICLE_REQUIRED) | set(chosen.values())
    return chosen, [f"{VEHICLES_TABLE}.{c}" for c in columns if c not in used]


# --- rows as they stream in ----------------------------------------------------------


def profile_shrinker(columns: list[str]) -> Callable[[Mapping[str, Any]], LegacyProfile]:
    kept = detail_columns(columns).kept

    def shrink(row: Mapping[str, Any]) -> LegacyProfile:
        return LegacyProfile(
            id=capped(row["id"]),
            name=capped(row["name"]),
            updated_at=capped(row.get("updated_at")),
            is_default=capped(row.get("is_default")),
            details=details_of(row, kept),
        )

    return shrink


def vehicle_shrinker(columns: list[str]) -> Callable[[Mapping[str, Any]], LegacyVehicle]:
    chosen, _ = vehicle_columns(columns)

    def shrink(row: Mapping[str, Any]) -> LegacyVehicle:
        return LegacyVehicle(
            id=capped(row["id"]),
            profile_id=capped(row["profile_id"]),
            name=capped(row["name"]),
            fields={target: capped(row[column]) for target, column in chosen.items()},
        )

    return shrink


def capped(value: Any) -> Any:
    return value[:TEXT_CAP] if isinstance(value, str) and len(value) > TEXT_CAP else value


# --- values ----------------------------------------------------------------------------


def details_of(row: Mapping[str, Any], columns: Sequence[str]) -> Details:
    """The row's detail columns as details (each value converted), or why the row is bad."""
    details: dict[str, Any] = {}
    notes: list[tuple[str, str]] = []
    for column in columns:
        raw = row[column]
        if isinstance(raw, str) and not isinstance(raw, RawJson):
            raw = capped(raw)  # a detail keeps 200 characters: no need to scan megabytes
        if isinstance(raw, RawJson):
            if json_depth(raw) > MAX_NESTING:
                return Details(
                    {}, f"column {column} holds JSON nested deeper than {MAX_NESTING} levels", tuple(notes)
                )
            raw = json.loads(raw)
        value, note = _detail_value(raw)
        if note:
            notes.append((column, note))
        details[column.strip()[:DETAIL_KEY_MAX]] = value
    try:
        return Details(clean_details(details), None, tuple(notes))
    except InvalidValue as e:  # not expected after the conversion above
        return Details({}, f"{e.field} {e.reason}", tuple(notes))


def json_depth(text: str) -> int:
    """How deeply a JSON text nests arrays and objects, without parsing it (no recursion)."""
    depth = deepest = 0
    in_string = escape = False
    for ch in text:
        if in_string:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _detail_value(value: Any) -> tuple[Any, str | None]:
    """A legacy value as a detail (text, number, boolean or null) and a note when
    it had to be changed beyond a plain type conversion."""
    if value is None or isinstance(value, bool):
        return value, None
    if isinstance(value, int):
        return (value, None) if abs(value) < _SAFE_INT else (str(value), None)
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value() and abs(value) < _SAFE_INT:
            return int(value), None
        if value.is_finite() and Decimal(repr(float(value))) == value:
            return float(value), None
        return _text(str(value))
    if isinstance(value, float):
        return (value, None) if math.isfinite(value) else (str(value), None)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return None, "binary data, kept as null"
    if isinstance(value, (datetime, date, time)):
        return _text(value.isoformat())
    if isinstance(value, timedelta):
        return _text(str(value))
    if isinstance(value, (dict, list)):
        return _text(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))
    return _text(value if isinstance(value, str) else str(value))


def _text(text: str) -> tuple[str | None, str | None]:
    note = None
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in text):
        text = " ".join(
            "".join(
                " " if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") else ch for ch in text
            ).split()
        )
        note = "control characters replaced by spaces"
    text = text.strip()
    if not text:
        return None, note
    if len(text) > DETAIL_VALUE_MAX:
        text = text[: DETAIL_VALUE_MAX - 1].rstrip() + "…"
        note = f"longer than {DETAIL_VALUE_MAX} characters, truncated"
    return text, note


def optional_text(value: Any) -> str | None:
    """A vehicle's class or number as text; blank means absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if (isinstance(value, Decimal) and value == value.to_integral_value()) or (
        isinstance(value, float) and value.is_integer()
    ):
        value = int(value)
    text = value if isinstance(value, str) else str(value)
    return text.strip() or None


# --- how ids and counts read -------------------------------------------------------------


def key(value: Any) -> str:
    """A legacy id as compared: ids of any type, by their text."""
    return str(value)


def show(value: Any) -> str:
    """A legacy id or name as a report shows it."""
    if value is None:
        return "(null)"
    return str(value) if isinstance(value, (int, UUID)) else json.dumps(str(value), ensure_ascii=False)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
