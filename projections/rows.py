"""Row changes: what one event does to the racer_profiles table, as data.

The projection turns events into these; the view executes them in SQL, in one
transaction with the event's tracking record.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
from datetime import datetime
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class InsertProfile:
    profile_id: UUID
    account_id: str
    name: str
    vehicles: list[dict[str, Any]]
    details: dict[str, Any]
    version: int
    created_at: datetime


@dataclass(frozen=True)
class UpdateProfile:
    """Sets the given columns (name, archived) and bumps version/updated_at."""

    profile_id: UUID
    version: int
    updated_at: datetime
    columns: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AddVehicle:
    profile_id: UUID
    version: int
    updated_at: datetime
    vehicle: dict[str, Any]


@dataclass(frozen=True)
class ChangeVehicle:
    profile_id: UUID
    version: int
    updated_at: datetime
    vehicle_id: str
    changes: dict[str, Any]


@dataclass(frozen=True)
class RemoveVehicle:
    profile_id: UUID
    version: int
    updated_at: datetime
    vehicle_id: str


@dataclass(frozen=True)
class EraseProfile:
    """Leaves a tombstone: ids and times only (so the profile answers 410 Gone
    and streams see it go), no name, vehicles or details."""

    profile_id: UUID
    version: int
    erased_at: datetime


@dataclass(frozen=True)
class ChangeDefault:
    """Clears the previous default before setting the new one: the unique
    partial index on (account_id) WHERE is_default is not deferrable."""

    previous: UUID | None
    new: UUID | None


@dataclass(frozen=True)
class ListEvent:
    """Lists the event at this position in the audit index, so that audit reads
    cost a page, not the account's history: under its account (the export, and
    the default timeline when default_change) and in the history of each of
    `profiles`, with what a roster event meant for that profile (None: the
    profile's own event). The account is `account_id` where the event names it,
    else that of the read table's row of profile `account_of`, else that of
    `roster` (a roster's first event names its account, and is remembered).
    Written after the event's row changes, so each history entry also keeps the
    profile's version and default flag as they stood after the event."""

    recorded_at: datetime
    account_id: str | None
    account_of: UUID | None = None
    roster: UUID | None = None
    profiles: tuple[tuple[UUID, str | None], ...] = ()
    default_change: bool = False


RowChange = (
    InsertProfile
    | UpdateProfile
    | AddVehicle
    | ChangeVehicle
    | RemoveVehicle
    | ChangeDefault
    | ListEvent
    | EraseProfile
)


def column(sql: str, *, public: bool = True, replayed: bool = True, updatable: bool = False) -> Any:
    """A column of racer_profiles: its SQL type, whether the public JSON shows it, whether verify
    compares it with the profile replayed from its events, and whether UpdateProfile may set it."""
    return field(metadata={"sql": sql, "public": public, "replayed": replayed, "updatable": updatable})


# The public JSON of a vehicle (api/schemas.py VehiclePublic).
VEHICLE_FIELDS = ("id", "name", "vehicle_class", "race_number")


@dataclass(frozen=True)
class ProfileRow:
    """One row of racer_profiles: the one definition of a profile's read shape. The table's DDL,
    INSERT and UPDATE statements and the read queries (infrastructure/profiles_sql.py,
    profile_queries.py), the public JSON (`public`), the audit state and verify's expected rows
    (`replayed_row`) all derive from these fields. A new column with the aggregate's attribute of
    the same name needs nothing more here."""

    id: UUID = column("uuid PRIMARY KEY", replayed=False)
    account_id: str = column("text NOT NULL", public=False)
    name: str = column("text NOT NULL", updatable=True)
    details: dict[str, Any] = column("jsonb NOT NULL DEFAULT '{}'::jsonb")
    vehicles: list[dict[str, Any]] = column("jsonb NOT NULL DEFAULT '[]'::jsonb")
    vehicle_count: int = column("integer NOT NULL DEFAULT 0")
    archived: bool = column("boolean NOT NULL DEFAULT false", updatable=True)
    is_default: bool = column("boolean NOT NULL DEFAULT false")
    version: int = column("integer NOT NULL")
    created_at: datetime = column("timestamptz NOT NULL", replayed=False)
    updated_at: datetime = column("timestamptz NOT NULL", replayed=False)
    position: int = column("bigint NOT NULL", public=False, replayed=False)
    # Set on an erased profile's row, a tombstone: ids and times only.
    erased_at: datetime | None = column("timestamptz", public=False)


COLUMNS: tuple[Field[Any], ...] = fields(ProfileRow)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)
UPDATABLE = frozenset(c.name for c in COLUMNS if c.metadata["updatable"])
REPLAYED = tuple(c.name for c in COLUMNS if c.metadata["replayed"])
JSONB = frozenset(c.name for c in COLUMNS if c.metadata["sql"].startswith("jsonb"))
# Columns the read side computes; every other column is the aggregate's attribute of that name.
_DERIVED = {"vehicle_count", "is_default", "updated_at", "position", "erased_at"}


def _wire(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def public(row: ProfileRow) -> dict[str, Any]:
    """The profile as the API shows it (ProfilePublic)."""
    body = {c.name: _wire(getattr(row, c.name)) for c in COLUMNS if c.metadata["public"]}
    body["vehicles"] = [{k: v.get(k) for k in VEHICLE_FIELDS} for v in row.vehicles]
    return body


def replayed_row(profile: Any, is_default: bool, position: int = 0) -> ProfileRow:
    """The row a profile aggregate (replayed from its events) should have in the table."""
    values = {name: getattr(profile, name) for name in COLUMN_NAMES if name not in _DERIVED}
    values["vehicles"] = [dict(v) for v in profile.vehicles]
    if getattr(profile, "erased", False):
        # A tombstone (EraseProfile): no personal data, never the default.
        values.update(name="", details={}, vehicles=[], archived=True)
        is_default = False
    return ProfileRow(
        **values,
        vehicle_count=len(values["vehicles"]),
        is_default=is_default,
        updated_at=profile.modified_on,
        position=position,
        erased_at=profile.modified_on if getattr(profile, "erased", False) else None,
    )
