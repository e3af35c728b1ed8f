"""The RacerProfile aggregate: a racer's name and vehicles, archived or active."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.chain import ChainedAggregate
from domain.errors import (
    IllegalState,
    InvalidValue,
    ProfileArchived,
    ProfileErased,
    ProfileNotArchived,
    VehicleNotFound,
)
from domain.values import VEHICLES_MAX, clean_details, clean_name, vehicle_changes

# What a personal field reads as once the profile's data key is destroyed.
ERASED = "[erased]"
VEHICLE_FIELDS = ("name", "vehicle_class", "race_number")


class RacerProfile(ChainedAggregate):
    """Guards run in the public methods; the @event bodies only change state, so
    replaying stored events never re-checks rules that held when they were made."""

    # A class default, so that snapshots taken before erasure existed still load.
    erased = False

    class Created(ChainedAggregate.Created):
        account_id: str
        name: str
        vehicles: list[dict[str, Any]]
        details: dict[str, Any]
        actor: str
        reason: str | None
        request_id: str | None
        # Provenance of imported data, as data the importer reads back (e.g. the legacy row's ids);
        # None for what was made here and for events stored before the field existed (upcasting.py).
        source: dict[str, Any] | None = None

    @event(Created)
    def __init__(
        self,
        id: UUID,
        account_id: str,
        name: str,
        vehicles: list[dict[str, Any]],
        details: dict[str, Any],
        actor: str,
        reason: str | None,
        request_id: str | None,
        source: dict[str, Any] | None,
    ) -> None:
        self.account_id = account_id
        self.name = name
        self.vehicles = [dict(v) for v in vehicles]
        self.details = dict(details)
        self.archived = False

    @classmethod
    def start(
        cls,
        profile_id: UUID,
        account_id: str,
        name: str,
        vehicles: list[dict[str, Any]],
        actor: str,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
        source: dict[str, Any] | None = None,
    ) -> RacerProfile:
        if len(vehicles) > VEHICLES_MAX:
            raise InvalidValue("vehicles", f"at most {VEHICLES_MAX} vehicles per profile")
        return cls(
            id=profile_id,
            account_id=account_id,
            name=clean_name(name),
            vehicles=vehicles,
            details=clean_details(details or {}),
            actor=actor,
            reason=reason,
            request_id=request_id,
            source=dict(source) if source is not None else None,
        )

    @property
    def created_at(self) -> datetime:
        return self.created_on

    # --- commands -------------------------------------------------------

    def rename(self, name: str, actor: str, reason: str | None = None, request_id: str | None = None) -> None:
        self._check_active()
        new_name = clean_name(name)
        if new_name != self.name:
            self._renamed(name=new_name, actor=actor, reason=reason, request_id=request_id)

    def add_vehicle(
        self,
        vehicle: dict[str, Any],
        actor: str,
        reason: str | None = None,
        request_id: str | None = None,
        source: dict[str, Any] | None = None,
    ) -> None:
        self._check_active()
        if len(self.vehicles) >= VEHICLES_MAX:
            raise InvalidValue("vehicles", f"at most {VEHICLES_MAX} vehicles per profile")
        self._vehicle_added(
            vehicle=dict(vehicle),
            actor=actor,
            reason=reason,
            request_id=request_id,
            source=dict(source) if source is not None else None,
        )

    def change_vehicle(
        self,
        vehicle_id: str,
        fields: dict[str, Any],
        actor: str,
        reason: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self._check_active()
        current = self.vehicle(vehicle_id)
        changes = {k: v for k, v in vehicle_changes(fields).items() if current[k] != v}
        if changes:
            self._vehicle_changed(
                vehicle_id=vehicle_id, changes=changes, actor=actor, reason=reason, request_id=request_id
            )

    def remove_vehicle(
        self, vehicle_id: str, actor: str, reason: str | None = None, request_id: str | None = None
    ) -> None:
        self._check_active()
        self.vehicle(vehicle_id)
        self._vehicle_removed(vehicle_id=vehicle_id, actor=actor, reason=reason, request_id=request_id)

    def archive(self, actor: str, reason: str | None = None, request_id: str | None = None) -> None:
        self._check_active()
        self._archived(actor=actor, reason=reason, request_id=request_id)

    def restore(self, actor: str, reason: str | None = None, request_id: str | None = None) -> None:
        self._check_not_erased()
        if not self.archived:
            raise ProfileNotArchived(f"profile {self.id} is not archived")
        self._restored(actor=actor, reason=reason, request_id=request_id)

    # --- queries --------------------------------------------------------

    def vehicle(self, vehicle_id: str) -> dict[str, Any]:
        for vehicle in self.vehicles:
            if vehicle["id"] == vehicle_id:
                return vehicle
        raise VehicleNotFound(f"profile {self.id} has no vehicle {vehicle_id}")

    def erase(self, actor: str, reason: str | None = None, request_id: str | None = None) -> None:
        """Marks the profile erased; an active profile must be archived first
        (the service does it in the same command, so the one-default rule holds)."""
        self._check_not_erased()
        if not self.archived:
            raise IllegalState(f"profile {self.id} is active; archive it before erasing it")
        self._erased(actor=actor, reason=reason, request_id=request_id)

    def _check_not_erased(self) -> None:
        if self.erased:
            raise ProfileErased(f"profile {self.id} was erased")

    def _check_active(self) -> None:
        self._check_not_erased()
        if self.archived:
            raise ProfileArchived(f"profile {self.id} is archived; restore it first")

    # --- events ---------------------------------------------------------

    class Renamed(ChainedAggregate.Event):
        name: str
        actor: str
        reason: str | None
        request_id: str | None

    class VehicleAdded(ChainedAggregate.Event):
        vehicle: dict[str, Any]
        actor: str
        reason: str | None
        request_id: str | None
        source: dict[str, Any] | None = None  # as on Created

    class VehicleChanged(ChainedAggregate.Event):
        vehicle_id: str
        changes: dict[str, Any]
        actor: str
        reason: str | None
        request_id: str | None

    class VehicleRemoved(ChainedAggregate.Event):
        vehicle_id: str
        actor: str
        reason: str | None
        request_id: str | None

    class Archived(ChainedAggregate.Event):
        actor: str
        reason: str | None
        request_id: str | None

    class Restored(ChainedAggregate.Event):
        actor: str
        reason: str | None
        request_id: str | None

    class Erased(ChainedAggregate.Event):
        actor: str
        reason: str | None
        request_id: str | None

    @event(Renamed)
    def _renamed(self, name: str, actor: str, reason: str | None, request_id: str | None) -> None:
        self.name = name

    @event(VehicleAdded)
    def _vehicle_added(
        self,
        vehicle: dict[str, Any],
        actor: str,
        reason: str | None,
        request_id: str | None,
        source: dict[str, Any] | None,
    ) -> None:
        self.vehicles.append(dict(vehicle))

    @event(VehicleChanged)
    def _vehicle_changed(
        self,
        vehicle_id: str,
        changes: dict[str, Any],
        actor: str,
        reason: str | None,
        request_id: str | None,
    ) -> None:
        self.vehicle(vehicle_id).update(changes)

    @event(VehicleRemoved)
    def _vehicle_removed(
        self, vehicle_id: str, actor: str, reason: str | None, request_id: str | None
    ) -> None:
        self.vehicles = [v for v in self.vehicles if v["id"] != vehicle_id]

    @event(Archived)
    def _archived(self, actor: str, reason: str | None, request_id: str | None) -> None:
        self.archived = True

    @event(Restored)
    def _restored(self, actor: str, reason: str | None, request_id: str | None) -> None:
        self.archived = False

    @event(Erased)
    def _erased(self, actor: str, reason: str | None, request_id: str | None) -> None:
        # The aggregate in memory forgets too, as replay does once the key is gone.
        self.erased = True
        self.name = ERASED
        self.details = dict.fromkeys(self.details, ERASED)
        self.vehicles = [{"id": v["id"], **dict.fromkeys(VEHICLE_FIELDS, ERASED)} for v in self.vehicles]
