"""Request and response bodies. Shapes and types are checked here; the domain
checks the rules (lengths, blank names) and names the field it rejects."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VehicleFields(Strict):
    name: str = Field(description="1-80 characters after trimming", examples=["Rotax Max"])
    vehicle_class: str | None = Field(default=None, description="up to 40 characters")
    race_number: str | None = Field(default=None, description="1-6 letters or digits", examples=["07"])


class VehicleCreate(VehicleFields):
    reason: str | None = Field(default=None, max_length=500)


class VehicleUpdate(Strict):
    name: str | None = None
    vehicle_class: str | None = None
    race_number: str | None = None
    reason: str | None = Field(default=None, max_length=500)


class VehiclePublic(BaseModel):
    id: str
    name: str
    vehicle_class: str | None
    race_number: str | None


class ProfileCreate(Strict):
    name: str = Field(description="1-80 characters after trimming", examples=["Alex Junior"])
    vehicles: list[VehicleFields] = Field(default_factory=list, max_length=50)
    details: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, description="up to 20 short free-form entries"
    )
    reason: str | None = Field(default=None, max_length=500)


class ProfileUpdate(Strict):
    name: str = Field(description="the new name, 1-80 characters after trimming")
    reason: str | None = Field(default=None, max_length=500)


class ArchiveRequest(Strict):
    successor_id: UUID | None = Field(
        default=None, description="the profile that becomes default if this one is the default"
    )
    reason: str | None = Field(default=None, max_length=500)


class RestoreRequest(Strict):
    reason: str | None = Field(default=None, max_length=500)


class DefaultRequest(Strict):
    profile_id: UUID
    reason: str | None = Field(default=None, max_length=500)


class ProfilePublic(BaseModel):
    id: UUID
    name: str
    details: dict[str, str | int | float | bool | None]
    is_default: bool
    archived: bool
    vehicles: list[VehiclePublic]
    vehicle_count: int
    version: int
    created_at: datetime
    updated_at: datetime


class ProfilePage(BaseModel):
    items: list[ProfilePublic]
    next_cursor: str | None


class Accepted(BaseModel):
    """A command was stored but the read table did not catch up in time."""

    profile_id: UUID
    position: int
