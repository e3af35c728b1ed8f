"""The plan of an import-legacy run, from the legacy rows read and what the
store already holds: the profiles to create (with their vehicles), the vehicles
to add to profiles imported before, the bad rows with their reasons, and the
default. Pure: no database, no I/O (tests/unit/test_legacy_plan.py).

* A profile's id is uuid5(LEGACY_NAMESPACE, "<account>:<legacy id>"), so a
  second run finds what the first one wrote and plans nothing again; rows
  added to the legacy tables since are planned by the next run.
* A bad row is skipped whole (a profile with a bad vehicle is skipped with all
  of its vehicles), never half-imported."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.errors import InvalidValue
from domain.values import VEHICLES_MAX, clean_name, vehicle_record
from infrastructure.legacy_provenance import profile_reason, profile_source, vehicle_reason, vehicle_source
from infrastructure.legacy_rows import (
    PROFILES_TABLE,
    VEHICLES_TABLE,
    LegacyProfile,
    LegacyTables,
    LegacyVehicle,
    detail_columns,
    key,
    optional_text,
    plural,
    show,
    vehicle_columns,
)

# Fixed for ever: profile ids derive from it, which is what makes re-runs idempotent.
LEGACY_NAMESPACE = uuid5(NAMESPACE_URL, "https://racer-profiles/legacy-import")

_TRUE_TEXT = {"t", "true", "y", "yes", "1", "on"}

# Per profile id found in the store: the legacy vehicle ids (keys) imported into
# it, or None for an erased profile, into which nothing is imported again.
Imported = Mapping[UUID, set[str] | None]


def legacy_profile_id(account_id: str, legacy_id: Any) -> UUID:
    return uuid5(LEGACY_NAMESPACE, f"{account_id}:{legacy_id}")


@dataclass(frozen=True)
class BadRow:
    table: str  # "racer_profiles" or "vehicles"
    legacy_id: Any
    reason: str

    def __str__(self) -> str:
        kind = "profile" if self.table == PROFILES_TABLE else "vehicle"
        return f"{kind} {show(self.legacy_id)}: {self.reason}"


@dataclass(frozen=True)
class PlannedProfile:
    legacy_id: Any
    profile_id: UUID
    name: str
    vehicles: tuple[dict[str, Any], ...]
    vehicle_ids: tuple[Any, ...]
    details: dict[str, Any]

    @property
    def source(self) -> dict[str, Any]:
        return profile_source(self.legacy_id, self.vehicle_ids)

    @property
    def reason(self) -> str:
        return profile_reason(self.legacy_id, self.vehicle_ids)


@dataclass(frozen=True)
class PlannedVehicle:
    """A legacy vehicle added since its (already imported) profile was imported."""

    legacy_id: Any
    legacy_profile_id: Any
    profile_id: UUID
    fields: dict[str, Any]

    @property
    def source(self) -> dict[str, Any]:
        return vehicle_source(self.legacy_id, self.legacy_profile_id)

    @property
    def reason(self) -> str:
        return vehicle_reason(self.legacy_id, self.legacy_profile_id)


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
class Plan:
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

    @property
    def vehicles_to_create(self) -> int:
        return sum(len(p.vehicles) for p in self.to_create)


def candidate_ids(account: str, legacy: LegacyTables) -> list[UUID]:
    """The profile ids the legacy rows map to: what to look up in the store before planning."""
    return list(dict.fromkeys(legacy_profile_id(account, p.id) for p in legacy.profiles if p.id is not None))


def plan(account: str, legacy: LegacyTables, imported: Imported) -> Plan:
    """What to create, what to add, what is bad, and the default."""
    details = detail_columns(legacy.profile_columns)
    result = Plan(
        legacy_profiles=len(legacy.profiles),
        legacy_vehicles=len(legacy.vehicles),
        has_is_default="is_default" in legacy.profile_columns,
        has_updated_at="updated_at" in legacy.profile_columns,
        has_vehicles_table=legacy.vehicle_columns is not None,
        detail_columns=details.kept,
        unused_columns=list(details.unused),
        warnings=[details.warning] if details.warning else [],
    )
    if legacy.vehicle_columns is not None:
        result.unused_columns.extend(vehicle_columns(legacy.vehicle_columns)[1])

    bad: dict[str, str] = {}  # legacy profile key -> reason
    profile_keys = Counter(key(p.id) for p in legacy.profiles if p.id is not None)
    for row in legacy.profiles:
        if row.id is None:
            result.bad_rows.append(BadRow(PROFILES_TABLE, None, f"row named {show(row.name)} has no id"))
            continue
        k = key(row.id)
        if profile_keys[k] > 1:
            bad[k] = f"id appears {profile_keys[k]} times in {PROFILES_TABLE}"
            continue
        try:
            if row.name is None:
                raise InvalidValue("name", "is missing")
            clean_name(row.name)
        except InvalidValue as e:
            bad[k] = f"{e.field} {e.reason}"

    # Vehicles: by profile, in legacy id order; orphans reported.
    vehicles_of: dict[str, list[LegacyVehicle]] = defaultdict(list)
    vehicle_keys = Counter(key(v.id) for v in legacy.vehicles if v.id is not None)
    for v in legacy.vehicles:
        owner = v.profile_id
        if owner is None or key(owner) not in profile_keys:
            why = (
                "has no profile_id"
                if owner is None
                else f"profile_id {show(owner)} is not a profile in {PROFILES_TABLE}"
            )
            result.bad_rows.append(BadRow(VEHICLES_TABLE, v.id, why))
            continue
        vehicles_of[key(owner)].append(v)

    valid: list[LegacyProfile] = []
    ids: dict[str, UUID] = {}
    notes: dict[tuple[str, str], list[Any]] = defaultdict(list)
    seen: set[str] = set()
    for row in legacy.profiles:
        if row.id is None or key(row.id) in seen:
            continue  # a duplicated id is reported once
        k = key(row.id)
        seen.add(k)
        pid = legacy_profile_id(account, row.id)
        own_vehicles = vehicles_of.get(k, [])
        if pid in imported:
            # Imported before: never touched again, except for vehicles added since.
            if k in bad:
                result.warnings.append(
                    f"profile {show(row.id)} was imported before but is now invalid ({bad[k]}); left as imported"
                )
            valid.append(row)
            ids[k] = pid
            result.already_imported.append(row.id)
            done = imported[pid]
            if done is None:
                result.warnings.append(
                    f"profile {show(row.id)} was erased in racer-profiles: nothing of it is imported again"
                )
                continue
            for v in own_vehicles:
                if v.id is not None and key(v.id) in done:
                    continue
                problem, fields = _vehicle_fields(v, vehicle_keys)
                if problem:
                    result.bad_rows.append(BadRow(VEHICLES_TABLE, v.id, problem))
                else:
                    result.to_add.append(PlannedVehicle(v.id, row.id, pid, fields))
            continue
        if k in bad:
            result.bad_rows.append(BadRow(PROFILES_TABLE, row.id, _with_vehicles(bad[k], own_vehicles)))
            continue
        records, problems = [], []
        for v in own_vehicles:
            problem, fields = _vehicle_fields(v, vehicle_keys)
            if problem:
                problems.append(f"vehicle {show(v.id)} {problem}")
            else:
                records.append(fields)
        if len(own_vehicles) > VEHICLES_MAX:
            problems.append(f"has {len(own_vehicles)} vehicles; at most {VEHICLES_MAX} per profile")
        for column_note in row.details.notes:
            notes[column_note].append(row.id)
        if row.details.problem:
            problems.append(row.details.problem)
        if problems:
            reason = "; ".join(problems)
            result.bad_rows.append(BadRow(PROFILES_TABLE, row.id, _with_vehicles(reason, own_vehicles)))
            continue
        valid.append(row)
        ids[k] = pid
        result.to_create.append(
            PlannedProfile(
                legacy_id=row.id,
                profile_id=pid,
                name=clean_name(row.name),
                vehicles=tuple(records),
                vehicle_ids=tuple(v.id for v in own_vehicles),
                details=row.details.values,
            )
        )
    for (column, change), which in notes.items():
        shown = ", ".join(show(i) for i in which[:5]) + (", ..." if len(which) > 5 else "")
        result.warnings.append(f"details.{column}: {change} for {len(which)} profile(s) ({shown})")
    if result.has_is_default:
        skipped = [
            r.id
            for r in legacy.profiles
            if r.id is not None and _truthy(r.is_default) and key(r.id) not in ids
        ]
        if skipped:
            result.warnings.append(
                "marked is_default but skipped as a bad row: "
                + ", ".join(f"profile {show(i)}" for i in skipped)
            )
    result.bad_rows.sort(key=lambda b: b.table != PROFILES_TABLE)  # profiles first, stable
    result.default = choose_default(valid, ids, result)
    return result


def choose_default(valid: list[LegacyProfile], ids: Mapping[str, UUID], plan: Plan) -> DefaultChoice | None:
    """The row marked is_default if exactly one; of several marked, the most
    recently updated (else the earliest created); with none marked, the most
    recently updated profile, else the earliest created. `valid` is in created
    order, so the first of equals is the earliest created. Several marked rows
    add a warning to the plan."""
    if not valid:
        return None

    def latest(rows: list[LegacyProfile]) -> LegacyProfile | None:
        dated = [r for r in rows if r.updated_at is not None]
        if not dated:
            return None
        newest = max(r.updated_at for r in dated)
        return next(r for r in dated if r.updated_at == newest)

    marked = [r for r in valid if _truthy(r.is_default)] if plan.has_is_default else []
    row: LegacyProfile | None
    if len(marked) == 1:
        row, reason = marked[0], f"legacy profile {show(marked[0].id)} is the only row marked is_default"
    elif marked:
        names = ", ".join(show(r.id) for r in marked)
        row = latest(marked)
        if row is not None:
            how = f"the most recently updated of them ({_when(row.updated_at)})"
        else:
            row, how = marked[0], "the earliest created of them"
        reason = f"{len(marked)} rows are marked is_default ({names}); chose {show(row.id)}, {how}"
        plan.warnings.append(
            f"{len(marked)} legacy profiles are marked is_default: {names}; "
            f"only {show(row.id)} becomes the default"
        )
    else:
        lead = "no row is marked is_default" if plan.has_is_default else "no is_default column"
        row = latest(valid) if plan.has_updated_at else None
        if row is not None:
            reason = f"{lead}; legacy profile {show(row.id)} is the most recently updated ({_when(row.updated_at)})"
        else:
            row = valid[0]
            why = "no profile has an updated_at" if plan.has_updated_at else "no updated_at column"
            reason = f"{lead} and {why}; legacy profile {show(row.id)} is the earliest created"
    return DefaultChoice(row.id, ids[key(row.id)], str(row.name or "").strip(), reason)


def _with_vehicles(reason: str, vehicles: Sequence[LegacyVehicle]) -> str:
    if not vehicles:
        return reason
    return f"{reason} (skipped with its {plural(len(vehicles), 'vehicle')})"


def _vehicle_fields(row: LegacyVehicle, keys: Counter[str]) -> tuple[str | None, dict[str, Any]]:
    """(problem, fields): the validated vehicle fields, or why the row is bad."""
    if row.id is None:
        return "has no id", {}
    if keys[key(row.id)] > 1:
        return f"id appears {keys[key(row.id)]} times in {VEHICLES_TABLE}", {}
    fields: dict[str, Any] = {"name": row.name if row.name is not None else ""}
    if not isinstance(fields["name"], str):
        fields["name"] = str(fields["name"])
    for target, value in row.fields.items():
        fields[target] = optional_text(value)
    try:
        record = vehicle_record("-", fields)
    except InvalidValue as e:
        return f"{e.field} {e.reason}", {}
    del record["id"]
    return None, record


def _when(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_TEXT
    return bool(value)
