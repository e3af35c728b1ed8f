"""Row changes: what one event does to the racer_profiles table, as data.

The projection turns events into these; the view executes them in SQL, in one
transaction with the event's tracking record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    InsertProfile | UpdateProfile | AddVehicle | ChangeVehicle | RemoveVehicle | ChangeDefault | ListEvent
)


@dataclass(frozen=True)
class ProfileRow:
    """One row of racer_profiles, as queries return it."""

    id: UUID
    account_id: str
    name: str
    details: dict[str, Any]
    vehicles: list[dict[str, Any]]
    vehicle_count: int
    archived: bool
    is_default: bool
    version: int
    created_at: datetime
    updated_at: datetime
    position: int
