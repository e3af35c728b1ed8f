"""The racer_profiles projection: one handler per event type.

`changes_for` is pure (event in, row changes out), so the same mapping serves
the live runner, the inline projection, the rebuild and the unit tests. Every
event's changes end with its entry in the audit index (projections/history.py).
"""

from __future__ import annotations

from functools import singledispatch
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection

from domain.profile import RacerProfile
from domain.roster import Roster
from projections.history import history_entry
from projections.rows import (
    AddVehicle,
    ChangeDefault,
    ChangeVehicle,
    EraseProfile,
    InsertProfile,
    RemoveVehicle,
    RowChange,
    UpdateProfile,
)
from projections.view import ProfilesView


class RacerProfilesProjection(Projection[ProfilesView]):
    name = "racer_profiles"
    # No topic filter: filtered-out events would never advance the tracking
    # position, and waits for those positions would time out.
    topics = ()

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.apply(changes_for(domain_event), tracking)


def changes_for(event: object) -> list[RowChange]:
    """The event's row changes, then its audit index entry (if it has one)."""
    return [*row_changes(event), *history_entry(event)]


@singledispatch
def row_changes(event: object) -> list[RowChange]:
    """Events that do not touch the table (roster membership, ...) change no
    row, but they are still tracked."""
    return []


@row_changes.register
def _(e: RacerProfile.Created) -> list[RowChange]:
    return [
        InsertProfile(
            profile_id=e.originator_id,
            account_id=e.account_id,
            name=e.name,
            vehicles=[dict(v) for v in e.vehicles],
            details=dict(e.details),
            version=e.originator_version,
            created_at=e.timestamp,
        )
    ]


@row_changes.register
def _(e: RacerProfile.Renamed) -> list[RowChange]:
    return [UpdateProfile(e.originator_id, e.originator_version, e.timestamp, {"name": e.name})]


@row_changes.register
def _(e: RacerProfile.Archived) -> list[RowChange]:
    return [UpdateProfile(e.originator_id, e.originator_version, e.timestamp, {"archived": True})]


@row_changes.register
def _(e: RacerProfile.Restored) -> list[RowChange]:
    return [UpdateProfile(e.originator_id, e.originator_version, e.timestamp, {"archived": False})]


@row_changes.register
def _(e: RacerProfile.Erased) -> list[RowChange]:
    return [EraseProfile(e.originator_id, e.originator_version, e.timestamp)]


@row_changes.register
def _(e: RacerProfile.VehicleAdded) -> list[RowChange]:
    return [AddVehicle(e.originator_id, e.originator_version, e.timestamp, dict(e.vehicle))]


@row_changes.register
def _(e: RacerProfile.VehicleChanged) -> list[RowChange]:
    return [ChangeVehicle(e.originator_id, e.originator_version, e.timestamp, e.vehicle_id, dict(e.changes))]


@row_changes.register
def _(e: RacerProfile.VehicleRemoved) -> list[RowChange]:
    return [RemoveVehicle(e.originator_id, e.originator_version, e.timestamp, e.vehicle_id)]


@row_changes.register
def _(e: Roster.DefaultChanged) -> list[RowChange]:
    return [
        ChangeDefault(
            previous=UUID(e.previous) if e.previous else None,
            new=UUID(e.new) if e.new else None,
        )
    ]
