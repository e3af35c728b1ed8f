"""import-legacy: move a racing dashboard's `racer_profiles` (and `vehicles`)
tables into racer-profiles as events with actor `import`.

Safe and repeatable:

* The legacy database is only read, in one READ ONLY, REPEATABLE READ
  transaction (one consistent snapshot of both tables).
* A profile's id is uuid5(LEGACY_NAMESPACE, "<account>:<legacy id>"), so a
  second run finds what the first one wrote and writes nothing again; rows
  added to the legacy tables since are imported by the next run.
* Every row is validated before anything is written; a bad row is reported by
  its id and skipped whole (a profile with a bad vehicle is skipped with all of
  its vehicles), never half-imported.
* Writes go through the application service only.

Hostile legacy data: names are printed escaped (format_report), a JSON value
nested deeper than MAX_NESTING makes its row a bad row, and the tables are
streamed (infrastructure/legacy_source.py), each row shrunk to what the plan
needs as it arrives.

Which legacy vehicles were imported is read back from the import's own events:
the reason of an imported profile's Created event lists its legacy vehicle ids
("legacy import: profile 3, vehicles [7, 8]"), and a vehicle added to it later
by an import says "legacy import: vehicle 12 of profile 3".
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from domain.errors import ConcurrencyConflict, DomainError, InvalidValue
from domain.profile import RacerProfile
from domain.roster import Roster, roster_id
from domain.service import Cause
from domain.values import (
    DETAIL_KEY_MAX,
    DETAIL_VALUE_MAX,
    DETAILS_MAX,
    VEHICLES_MAX,
    clean_details,
    clean_name,
    vehicle_record,
)
from infrastructure.container import Container
from infrastructure.legacy_source import LegacyReadError, RawJson, read_legacy
from infrastructure.progress import Progress

ACTOR = "import"
# Fixed for ever: profile ids derive from it, which is what makes re-runs idempotent.
LEGACY_NAMESPACE = uuid5(NAMESPACE_URL, "https://racer-profiles/legacy-import")

PROFILES_TABLE = "racer_profiles"
VEHICLES_TABLE = "vehicles"
PROFILE_REQUIRED = ("id", "name", "created_at")
PROFILE_KNOWN = {"id", "name", "created_at", "updated_at", "is_default"}
VEHICLE_REQUIRED = ("id", "profile_id", "name")
# Legacy column -> vehicle field; the first column present wins.
VEHICLE_FIELDS = {"vehicle_class": ("vehicle_class", "class"), "race_number": ("race_number", "number")}

_PROFILE_MARK = "legacy import: profile "
_VEHICLE_MARK = re.compile(r"^legacy import: vehicle ")
_TRUE_TEXT = {"t", "true", "y", "yes", "1", "on"}
_SAFE_INT = 2**53


class LegacyImportError(Exception):
    """The import cannot start (unknown account, unreadable or unsuitable legacy
    database) or cannot go on. Each profile is written whole, in one transaction,
    so running the import again carries on where it stopped."""


@dataclass(frozen=True)
class BadRow:
    table: str  # "racer_profiles" or "vehicles"
    legacy_id: Any
    reason: str

    def __str__(self) -> str:
        kind = "profile" if self.table == PROFILES_TABLE else "vehicle"
        return f"{kind} {_show(self.legacy_id)}: {self.reason}"


@dataclass(frozen=True)
class PlannedProfile:
    legacy_id: Any
    profile_id: UUID
    name: str
    vehicles: tuple[dict[str, Any], ...]
    vehicle_ids: tuple[Any, ...]
    details: dict[str, Any]


@dataclass(frozen=True)
class PlannedVehicle:
    """A legacy vehicle added since its (already imported) profile was imported."""

    legacy_id: Any
    legacy_profile_id: Any
    profile_id: UUID
    fields: dict[str, Any]


@dataclass
class DefaultChoice:
    legacy_id: Any
    profile_id: UUID
    name: str
    reason: str
    # What happened (or, in a dry run, would happen): "set", "already the default",
    # "kept ..." (the account's own choice is never overridden), "not applied ...".
    outcome: str = ""


@dataclass
class ImportReport:
    account_id: str
    dry_run: bool
    legacy_profiles: int = 0
    legacy_vehicles: int = 0
    has_is_default: bool = False
    has_updated_at: bool = False
    has_vehicles_table: bool = False
    detail_columns: list[str] = field(default_factory=list)
    unused_columns: list[str] = field(default_factory=list)  # "table.column", not imported
    to_create: list[PlannedProfile] = field(default_factory=list)
    to_add: list[PlannedVehicle] = field(default_factory=list)
    already_imported: list[Any] = field(default_factory=list)  # legacy profile ids
    bad_rows: list[BadRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    default: DefaultChoice | None = None
    created: list[UUID] = field(default_factory=list)
    vehicles_added: int = 0
    events_written: bool = False

    @property
    def vehicles_to_create(self) -> int:
        return sum(len(p.vehicles) for p in self.to_create)

    @property
    def created_vehicles(self) -> int:
        made = set(self.created)
        return sum(len(p.vehicles) for p in self.to_create if p.profile_id in made)


def legacy_profile_id(account_id: str, legacy_id: Any) -> UUID:
    return uuid5(LEGACY_NAMESPACE, f"{account_id}:{legacy_id}")


# --- entry point ---------------------------------------------------------


def import_legacy(
    container: Container,
    legacy_url: str,
    account_id: str,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Reads the legacy tables, plans the import, and (unless dry_run) writes it.

    Raises LegacyImportError before writing anything if the account is not an
    owner account of this store or the legacy database cannot be read."""
    account = _check_account(container, account_id)
    report = ImportReport(account_id=account, dry_run=dry_run)
    legacy = _read_legacy(legacy_url, report)
    _plan(container, account, legacy, report)
    if not dry_run:
        _write(container, account, report, progress)
    _settle_default(container, account, report)
    return report


# --- account -------------------------------------------------------------


def _check_account(container: Container, account_id: str) -> str:
    try:
        account = str(UUID(account_id.strip()))
    except ValueError:
        raise LegacyImportError(
            f"--account {account_id!r} is not an account id (the uuid `accounts create` prints)"
        ) from None
    statement = SQL("SELECT role FROM {}.{} WHERE id = %s").format(
        Identifier(container.datastore.schema), Identifier("accounts")
    )
    with container.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(statement, (UUID(account),))
        row = curs.fetchone()
    if row is None:
        raise LegacyImportError(f"no account {account} in this store; create it with `accounts create`")
    if row["role"] != "owner":
        raise LegacyImportError(
            f"account {account} is an {row['role']} account; profiles belong to owner accounts"
        )
    return account


# --- reading the legacy database ----------------------------------------

# The plan's summary of a profile row: its known columns and its details, converted as it streams in.
_DETAILS = "__details"
# Longer names are refused anyway (NAME_MAX); the cap only keeps a huge cell from being held.
_TEXT_CAP = 4096
# JSON nested deeper than this is refused: parsing or printing it would exhaust the stack.
MAX_NESTING = 200


@dataclass
class _Legacy:
    profile_columns: list[str]
    profiles: list[dict[str, Any]]  # summaries, ordered by created_at, then id
    vehicle_columns: list[str] | None  # None: no vehicles table
    vehicles: list[dict[str, Any]]  # the used columns, ordered by id
    detail_columns: list[str]
    vehicle_map: dict[str, str]


def _read_legacy(url: str, report: ImportReport) -> _Legacy:
    shapes: dict[str, Any] = {"details": [], "vehicles": {}}

    def shrink_profile(columns: list[str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
        detail_columns = shapes["details"] = _detail_columns(columns, report)

        def shrink(row: dict[str, Any]) -> dict[str, Any]:
            kept = {c: _capped(row[c]) for c in PROFILE_KNOWN if c in row}
            kept[_DETAILS] = _details(row, detail_columns)
            return kept

        return shrink

    def shrink_vehicle(columns: list[str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
        vehicle_map = shapes["vehicles"] = _vehicle_columns(columns, report)
        used = [*VEHICLE_REQUIRED, *vehicle_map.values()]
        return lambda row: {c: _capped(row[c]) for c in used}

    try:
        tables = read_legacy(
            url,
            PROFILES_TABLE,
            PROFILE_REQUIRED,
            VEHICLES_TABLE,
            VEHICLE_REQUIRED,
            shrink_profile,
            shrink_vehicle,
        )
    except LegacyReadError as e:
        raise LegacyImportError(escaped(str(e))) from None
    return _Legacy(
        tables.profile_columns,
        tables.profiles,
        tables.vehicle_columns,
        tables.vehicles,
        shapes["details"],
        shapes["vehicles"],
    )


def _capped(value: Any) -> Any:
    return value[:_TEXT_CAP] if isinstance(value, str) and len(value) > _TEXT_CAP else value


# --- planning ------------------------------------------------------------


def _plan(container: Container, account: str, legacy: _Legacy, report: ImportReport) -> None:
    """Fills the report's plan: what to create, what to add, what is bad, the default."""
    report.legacy_profiles = len(legacy.profiles)
    report.legacy_vehicles = len(legacy.vehicles)
    report.has_is_default = "is_default" in legacy.profile_columns
    report.has_updated_at = "updated_at" in legacy.profile_columns
    report.has_vehicles_table = legacy.vehicle_columns is not None

    vehicle_map = legacy.vehicle_map

    bad: dict[str, str] = {}  # legacy profile key -> reason
    profile_keys = Counter(_key(p["id"]) for p in legacy.profiles if p["id"] is not None)
    for row in legacy.profiles:
        if row["id"] is None:
            report.bad_rows.append(BadRow(PROFILES_TABLE, None, f"row named {_show(row['name'])} has no id"))
            continue
        key = _key(row["id"])
        if profile_keys[key] > 1:
            bad[key] = f"id appears {profile_keys[key]} times in {PROFILES_TABLE}"
            continue
        try:
            if row["name"] is None:
                raise InvalidValue("name", "is missing")
            clean_name(row["name"])
        except InvalidValue as e:
            bad[key] = f"{e.field} {e.reason}"

    # Vehicles: by profile, in legacy id order; orphans reported.
    vehicles_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    vehicle_keys = Counter(_key(v["id"]) for v in legacy.vehicles if v["id"] is not None)
    for v in legacy.vehicles:
        owner = v["profile_id"]
        if owner is None or _key(owner) not in profile_keys:
            why = (
                "has no profile_id"
                if owner is None
                else (f"profile_id {_show(owner)} is not a profile in {PROFILES_TABLE}")
            )
            report.bad_rows.append(BadRow(VEHICLES_TABLE, v["id"], why))
            continue
        vehicles_of[_key(owner)].append(v)

    # What this account already holds from earlier runs.
    candidates = {
        _key(r["id"]): legacy_profile_id(account, r["id"]) for r in legacy.profiles if r["id"] is not None
    }
    existing = _imported_vehicles(container, list(set(candidates.values())))

    valid: list[dict[str, Any]] = []
    ids: dict[str, UUID] = {}
    notes: dict[tuple[str, str], list[Any]] = defaultdict(list)
    seen: set[str] = set()
    for row in legacy.profiles:
        if row["id"] is None or _key(row["id"]) in seen:
            continue  # a duplicated id is reported once
        key = _key(row["id"])
        seen.add(key)
        pid = candidates[key]
        own_vehicles = vehicles_of.get(key, [])
        if pid in existing:
            # Imported before: never touched again, except for vehicles added since.
            if key in bad:
                report.warnings.append(
                    f"profile {_show(row['id'])} was imported before but is now invalid "
                    f"({bad[key]}); left as imported"
                )
            valid.append(row)
            ids[key] = pid
            report.already_imported.append(row["id"])
            done = existing[pid]
            if done is None:
                report.warnings.append(
                    f"profile {_show(row['id'])} was erased in racer-profiles: nothing of it is imported again"
                )
                continue
            for v in own_vehicles:
                if v["id"] is not None and _key(v["id"]) in done:
                    continue
                problem, fields = _vehicle_fields(v, vehicle_map, vehicle_keys)
                if problem:
                    report.bad_rows.append(BadRow(VEHICLES_TABLE, v["id"], problem))
                else:
                    report.to_add.append(PlannedVehicle(v["id"], row["id"], pid, fields))
            continue
        if key in bad:
            report.bad_rows.append(BadRow(PROFILES_TABLE, row["id"], _with_vehicles(bad[key], own_vehicles)))
            continue
        records, problems = [], []
        for v in own_vehicles:
            problem, fields = _vehicle_fields(v, vehicle_map, vehicle_keys)
            if problem:
                problems.append(f"vehicle {_show(v['id'])} {problem}")
            else:
                records.append(fields)
        if len(own_vehicles) > VEHICLES_MAX:
            problems.append(f"has {len(own_vehicles)} vehicles; at most {VEHICLES_MAX} per profile")
        details, detail_problem, row_notes = row[_DETAILS]
        for note in row_notes:
            notes[note].append(row["id"])
        if detail_problem:
            problems.append(detail_problem)
        if problems:
            reason = "; ".join(problems)
            report.bad_rows.append(BadRow(PROFILES_TABLE, row["id"], _with_vehicles(reason, own_vehicles)))
            continue
        valid.append(row)
        ids[key] = pid
        report.to_create.append(
            PlannedProfile(
                legacy_id=row["id"],
                profile_id=pid,
                name=clean_name(row["name"]),
                vehicles=tuple(records),
                vehicle_ids=tuple(v["id"] for v in own_vehicles),
                details=details,
            )
        )
    for (column, note), which in notes.items():
        shown = ", ".join(_show(i) for i in which[:5]) + (", ..." if len(which) > 5 else "")
        report.warnings.append(f"details.{column}: {note} for {len(which)} profile(s) ({shown})")
    if report.has_is_default:
        skipped = [
            r["id"]
            for r in legacy.profiles
            if r["id"] is not None and _truthy(r["is_default"]) and _key(r["id"]) not in ids
        ]
        if skipped:
            report.warnings.append(
                "marked is_default but skipped as a bad row: "
                + ", ".join(f"profile {_show(i)}" for i in skipped)
            )
    report.bad_rows.sort(key=lambda b: b.table != PROFILES_TABLE)  # profiles first, stable
    report.default = _choose_default(valid, ids, report)


def _with_vehicles(reason: str, vehicles: Sequence[dict[str, Any]]) -> str:
    if not vehicles:
        return reason
    return f"{reason} (skipped with its {_n(len(vehicles), 'vehicle')})"


def _detail_columns(columns: Sequence[str], report: ImportReport) -> list[str]:
    extra = [c for c in columns if c not in PROFILE_KNOWN]
    keep: list[str] = []
    seen: set[str] = set()
    for column in extra:
        name = column.strip()[:DETAIL_KEY_MAX]
        if not name or name in seen or len(keep) == DETAILS_MAX:
            report.unused_columns.append(f"{PROFILES_TABLE}.{column}")
            continue
        seen.add(name)
        keep.append(column)
    if len(keep) < len(extra):
        report.warnings.append(
            f"{PROFILES_TABLE} has {len(extra)} extra columns; details hold at most {DETAILS_MAX}"
            f" (names cut to {DETAIL_KEY_MAX} characters must stay distinct), so"
            f" {len(extra) - len(keep)} are not imported"
        )
    report.detail_columns = keep
    return keep


def _vehicle_columns(columns: Sequence[str], report: ImportReport) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for target, sources in VEHICLE_FIELDS.items():
        for source in sources:
            if source in columns:
                chosen[target] = source
                break
    used = set(VEHICLE_REQUIRED) | set(chosen.values())
    unused = [c for c in columns if c not in used]
    if unused:
        report.unused_columns.extend(f"{VEHICLES_TABLE}.{c}" for c in unused)
    return chosen


def _vehicle_fields(
    row: dict[str, Any], columns: dict[str, str], keys: Counter[str]
) -> tuple[str | None, dict[str, Any]]:
    """(problem, fields): the validated vehicle fields, or why the row is bad."""
    if row["id"] is None:
        return "has no id", {}
    if keys[_key(row["id"])] > 1:
        return f"id appears {keys[_key(row['id'])]} times in {VEHICLES_TABLE}", {}
    fields: dict[str, Any] = {"name": row["name"] if row["name"] is not None else ""}
    if not isinstance(fields["name"], str):
        fields["name"] = str(fields["name"])
    for target, column in columns.items():
        fields[target] = _optional_text(row[column])
    try:
        record = vehicle_record("-", fields)
    except InvalidValue as e:
        return f"{e.field} {e.reason}", {}
    del record["id"]
    return None, record


def _optional_text(value: Any) -> str | None:
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


def _details(
    row: dict[str, Any], columns: Sequence[str]
) -> tuple[dict[str, Any], str | None, list[tuple[str, str]]]:
    """(details, problem, notes): the row's detail columns as details, or why the row is bad; each
    note is (column, what had to change)."""
    details: dict[str, Any] = {}
    notes: list[tuple[str, str]] = []
    for column in columns:
        raw = row[column]
        if isinstance(raw, str) and not isinstance(raw, RawJson):
            raw = _capped(raw)  # a detail keeps 200 characters: no need to scan megabytes
        if isinstance(raw, RawJson):
            if json_depth(raw) > MAX_NESTING:
                return {}, f"column {column} holds JSON nested deeper than {MAX_NESTING} levels", notes
            raw = json.loads(raw)
        value, note = _detail_value(raw)
        if note:
            notes.append((column, note))
        details[column.strip()[:DETAIL_KEY_MAX]] = value
    try:
        return clean_details(details), None, notes
    except InvalidValue as e:  # not expected after the conversion above
        return {}, f"{e.field} {e.reason}", notes


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


def _choose_default(
    valid: list[dict[str, Any]], ids: dict[str, UUID], report: ImportReport
) -> DefaultChoice | None:
    """The row marked is_default if exactly one; of several marked, the most
    recently updated (else the earliest created); with none marked, the most
    recently updated profile, else the earliest created. `valid` is in created
    order, so the first of equals is the earliest created."""
    if not valid:
        return None

    def latest(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        dated = [r for r in rows if r.get("updated_at") is not None]
        if not dated:
            return None
        newest = max(r["updated_at"] for r in dated)
        return next(r for r in dated if r["updated_at"] == newest)

    marked = [r for r in valid if _truthy(r.get("is_default"))] if report.has_is_default else []
    row: dict[str, Any] | None
    if len(marked) == 1:
        row, reason = marked[0], f"legacy profile {_show(marked[0]['id'])} is the only row marked is_default"
    elif marked:
        names = ", ".join(_show(r["id"]) for r in marked)
        row = latest(marked)
        if row is not None:
            how = f"the most recently updated of them ({_when(row['updated_at'])})"
        else:
            row, how = marked[0], "the earliest created of them"
        reason = f"{len(marked)} rows are marked is_default ({names}); chose {_show(row['id'])}, {how}"
        report.warnings.append(
            f"{len(marked)} legacy profiles are marked is_default: {names}; "
            f"only {_show(row['id'])} becomes the default"
        )
    else:
        lead = "no row is marked is_default" if report.has_is_default else "no is_default column"
        row = latest(valid) if report.has_updated_at else None
        if row is not None:
            reason = (
                f"{lead}; legacy profile {_show(row['id'])} is the most recently updated"
                f" ({_when(row['updated_at'])})"
            )
        else:
            row = valid[0]
            why = "no profile has an updated_at" if report.has_updated_at else "no updated_at column"
            reason = f"{lead} and {why}; legacy profile {_show(row['id'])} is the earliest created"
    return DefaultChoice(row["id"], ids[_key(row["id"])], str(row["name"] or "").strip(), reason)


# --- what the store already holds --------------------------------------------


def _imported_vehicles(container: Container, profile_ids: list[UUID]) -> dict[UUID, set[str] | None]:
    """For each of these profiles that exists: the legacy vehicle ids imported
    into it; None for an erased profile, into which nothing is imported again."""
    recorder: Any = container.app.recorder
    created, added = get_topic(RacerProfile.Created), get_topic(RacerProfile.VehicleAdded)
    erased = get_topic(RacerProfile.Erased)
    statement = SQL(
        "SELECT originator_id, originator_version, topic, state FROM {}.{}"
        " WHERE originator_id = ANY(%s) AND topic = ANY(%s) ORDER BY originator_id, originator_version"
    ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
    found: dict[UUID, set[str] | None] = {}
    mapper = container.app.mapper
    for chunk in _chunks(profile_ids, 1000):
        with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            rows = curs.execute(statement, (chunk, [created, added, erased])).fetchall()
        for row in rows:
            if row["topic"] == erased:
                found[row["originator_id"]] = None
                continue
            event = mapper.to_domain_event(
                StoredEvent(
                    row["originator_id"], row["originator_version"], row["topic"], bytes(row["state"])
                )
            )
            ids = found.setdefault(event.originator_id, set())
            if ids is not None and getattr(event, "actor", None) == ACTOR:
                ids.update(_legacy_vehicle_ids(getattr(event, "reason", None) or ""))
    return found


def _legacy_vehicle_ids(reason: str) -> list[str]:
    try:
        return _parse_vehicle_ids(reason)
    except ValueError:  # not written by this module: names no legacy vehicle
        return []


def _parse_vehicle_ids(reason: str) -> list[str]:
    decoder = json.JSONDecoder()
    if reason.startswith(_PROFILE_MARK):
        _, end = decoder.raw_decode(reason, len(_PROFILE_MARK))
        if reason.startswith(", vehicles ", end):
            ids, _ = decoder.raw_decode(reason, end + len(", vehicles "))
            return [_key(i) for i in ids]
        return []
    match = _VEHICLE_MARK.match(reason)
    if match:
        vid, _ = decoder.raw_decode(reason, match.end())
        return [_key(vid)]
    return []


def _profile_reason(p: PlannedProfile) -> str:
    return (
        f"{_PROFILE_MARK}{_json_id(p.legacy_id)}, vehicles [{', '.join(_json_id(i) for i in p.vehicle_ids)}]"
    )


def _vehicle_reason(v: PlannedVehicle) -> str:
    return f"legacy import: vehicle {_json_id(v.legacy_id)} of profile {_json_id(v.legacy_profile_id)}"


# --- writing -------------------------------------------------------------


def _write(container: Container, account: str, report: ImportReport, progress: Progress | None) -> None:
    app = container.app
    roster = app.get_roster(account)
    has_default = roster is not None and roster.default is not None
    total = len(report.to_create) + len(report.to_add)
    if progress is not None and total:
        progress.start(total)
    else:
        progress = None
    for p in report.to_create:
        reason = _profile_reason(p)
        if not has_default and report.default is not None and report.default.profile_id == p.profile_id:
            # This profile joins an empty roster and so becomes the default in
            # the same events: they carry the choice's reason.
            reason += f"; default: {report.default.reason}"
            joins_as_default = True
        else:
            joins_as_default = False
        try:
            app.create_profile(
                account,
                p.name,
                list(p.vehicles),
                Cause(ACTOR, reason),
                profile_id=p.profile_id,
                details=p.details,
            )
        except ConcurrencyConflict as e:
            if not _exists(container, p.profile_id):
                raise LegacyImportError(
                    f"stopped after importing {_n(len(report.created), 'profile')}: {e};"
                    " run the import again to finish it"
                ) from e
            report.warnings.append(f"profile {_show(p.legacy_id)} was imported meanwhile by another run")
        except InvalidValue as e:  # validated above; kept as a safety net
            report.bad_rows.append(BadRow(PROFILES_TABLE, p.legacy_id, f"{e.field} {e.reason}"))
        else:
            report.created.append(p.profile_id)
            report.events_written = True
            has_default = True
            if joins_as_default and report.default is not None:
                report.default.outcome = "set"
        if progress is not None:
            progress.advance(1)
    for v in report.to_add:
        try:
            app.add_vehicle(account, v.profile_id, v.fields, Cause(ACTOR, _vehicle_reason(v)))
        except InvalidValue as e:
            report.bad_rows.append(BadRow(VEHICLES_TABLE, v.legacy_id, f"{e.field} {e.reason}"))
        except DomainError as e:
            report.warnings.append(
                f"vehicle {_show(v.legacy_id)} (new since profile {_show(v.legacy_profile_id)}"
                f" was imported) not added: {e}"
            )
        else:
            report.vehicles_added += 1
            report.events_written = True
        if progress is not None:
            progress.advance(1)


def _exists(container: Container, profile_id: UUID) -> bool:
    return bool(container.app.recorder.select_events(profile_id, limit=1))


def _settle_default(container: Container, account: str, report: ImportReport) -> None:
    """Applies the legacy default unless someone other than the import chose the
    account's current default: that choice is kept, so a re-run never overrides
    a default the user picked (and a run that stopped half-way is completed)."""
    choice = report.default
    if choice is None:
        return
    roster = container.app.get_roster(account)
    members = roster.members if roster is not None else {}
    current = roster.default if roster is not None else None
    planned = report.dry_run and any(p.profile_id == choice.profile_id for p in report.to_create)
    if str(choice.profile_id) not in members and not planned:
        state = "archived" if _exists(container, choice.profile_id) else "not imported"
        choice.outcome = f"not applied: that profile is {state} in racer-profiles"
        return
    if current == str(choice.profile_id):
        choice.outcome = choice.outcome or "already the default"
        return
    chooser = _default_chooser(container, account) if current is not None else None
    if current is not None and chooser != ACTOR:
        choice.outcome = f"not applied: the account's default {current} was chosen by {chooser}; kept"
        return
    if report.dry_run:
        choice.outcome = "would be set"
        return
    container.app.set_default(
        account, choice.profile_id, Cause(ACTOR, f"legacy import default: {choice.reason}")
    )
    report.events_written = True
    choice.outcome = "set"


def _default_chooser(container: Container, account: str) -> str | None:
    """The actor of the roster's latest DefaultChanged event, if any."""
    for event in container.app.repository.event_store.get(roster_id(account), desc=True):
        if isinstance(event, Roster.DefaultChanged):
            return str(getattr(event, "actor", None))
    return None


# --- printing ------------------------------------------------------------


def format_report(report: ImportReport) -> list[str]:
    """The report as the lines the CLI prints."""
    r = report
    yes = {True: "yes", False: "no"}
    lines = [
        f"legacy database: {_n(r.legacy_profiles, 'profile')}, {_n(r.legacy_vehicles, 'vehicle')}"
        f" (is_default column: {yes[r.has_is_default]}, updated_at column: {yes[r.has_updated_at]}"
        + ("" if r.has_vehicles_table else ", no vehicles table")
        + ")",
    ]
    if r.detail_columns:
        lines.append(f"kept as details: {', '.join(r.detail_columns)}")
    if r.unused_columns:
        lines.append(f"not imported: {', '.join(r.unused_columns)}")
    lines.append(
        f"plan: {_n(len(r.to_create), 'new profile')} with {_n(r.vehicles_to_create, 'vehicle')},"
        f" {_n(len(r.to_add), 'new vehicle')} for profiles imported before;"
        f" {_n(len(r.already_imported), 'profile')} already imported"
    )
    if r.bad_rows:
        lines.append(f"problems: {_n(len(r.bad_rows), 'bad row')} skipped, none of them written")
        lines.extend(f"  {bad}" for bad in r.bad_rows)
    lines.extend(f"warning: {w}" for w in r.warnings)
    if r.default is None:
        lines.append("default: none (no profile to import)")
    else:
        d = r.default
        lines.append(f'default: legacy profile {_show(d.legacy_id)} "{d.name}" ({d.profile_id}): {d.outcome}')
        lines.append(f"  reason: {d.reason}")
    if r.dry_run:
        lines.append("dry run: nothing written")
    elif r.events_written:
        lines.append(
            f"imported {_n(len(r.created), 'profile')} with {_n(r.created_vehicles, 'vehicle')}"
            f" and {_n(r.vehicles_added, 'new vehicle')} into account {r.account_id}"
        )
    else:
        lines.append("nothing written: the account is up to date")
    return [escaped(line) for line in lines]


# Control, format (bidi), surrogate, private-use and unassigned characters and line separators.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def escaped(text: str) -> str:
    """Text safe for an operator's terminal: every unprintable character as a Python escape
    (ESC as \\x1b, a bidi override as \\u202e); legacy column names and values reach the report."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in _UNPRINTABLE else ch
        for ch in text
    )


# --- small helpers -------------------------------------------------------


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _key(value: Any) -> str:
    return str(value)


def _show(value: Any) -> str:
    if value is None:
        return "(null)"
    return str(value) if isinstance(value, (int, UUID)) else json.dumps(str(value), ensure_ascii=False)


def _json_id(value: Any) -> str:
    return json.dumps(value if isinstance(value, int) and not isinstance(value, bool) else str(value))


def _when(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_TEXT
    return bool(value)


def _chunks(items: Sequence[UUID], size: int) -> Iterator[list[UUID]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


__all__ = ["ImportReport", "LegacyImportError", "format_report", "import_legacy", "legacy_profile_id"]
