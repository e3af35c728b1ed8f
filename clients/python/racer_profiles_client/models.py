"""What the API answers, as typed models. Unknown fields are ignored, so a
newer server does not break an older client."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Vehicle(_Model):
    id: UUID
    name: str
    vehicle_class: str | None = None
    race_number: str | None = None


class Profile(_Model):
    id: UUID
    name: str
    details: dict[str, Any] | None = None
    is_default: bool
    archived: bool
    vehicles: list[Vehicle] = Field(default_factory=list)
    vehicle_count: int
    version: int
    created_at: datetime
    updated_at: datetime
    # Not in the JSON body: from the response's headers, or the stream's data.
    position: int | None = Field(default=None, description="X-Position of the command that answered it")
    roster_etag: str | None = Field(
        default=None,
        description=(
            "get_default/set_default only: the ETag of the account's roster, for set_default(if_match=...)"
        ),
    )

    @property
    def etag(self) -> str:
        """The profile's version as an ETag: pass it as `if_match` to refuse a stale change."""
        return f'"{self.version}"'


class HistoryEntry(_Model):
    position: int
    aggregate_id: str
    aggregate_type: str
    version: int
    type: str
    recorded_at: datetime
    actor: str | None = None
    actor_name: str | None = None
    reason: str | None = None
    request_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    concerns: str | None = None


class ExportedEvent(HistoryEntry):
    topic: str
    stored_state: str


class DefaultChange(_Model):
    position: int
    changed_at: datetime
    from_profile_id: str | None = None
    to_profile_id: str | None = None
    actor: str | None = None
    actor_name: str | None = None
    reason: str | None = None
    request_id: str | None = None


class AccountSummary(_Model):
    """An account as auditors and admins list it (`Client.list_accounts`)."""

    id: str
    name: str
    role: str
    created_at: datetime
    profile_count: int
    active_profile_count: int


class Health(_Model):
    status: str


class Readiness(_Model):
    status: Literal["ready", "not ready"] | str
    database: str
    head: int | None = None
    position: int | None = None
    lag: int | None = None
    projection: str
    projection_error: str | None = None
    projection_failed_position: int | None = None

    @property
    def ready(self) -> bool:
        return self.status == "ready"


class Token(_Model):
    """A token as the API shows it: never its secret."""

    id: str
    account_id: UUID
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class IssuedToken(Token):
    token: str = Field(description="the bearer token: shown this once")


class NewAccount(_Model):
    id: UUID
    name: str
    role: str
    token: IssuedToken


class FieldError(_Model):
    field: str
    reason: str


class Problem(_Model):
    """An RFC 9457 problem document; extension members are kept in `extra`."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = "about:blank"
    title: str = ""
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] = Field(default_factory=list)
    current_version: int | None = None

    @property
    def kind(self) -> str:
        """The stable last segment of `type`, such as "not-found" or "validation"."""
        return self.type.rstrip("/").rsplit("/", 1)[-1]


class ErasureReceipt(_Model):
    """DELETE /v1/profiles/{id}: the profile was erased at this time and position."""

    profile_id: UUID
    erased_at: datetime
    position: int


class ProfileErased(_Model):
    """The live stream's `erased` event: the profile was erased (drop it from your display).
    A stream started after the erasure never mentions the profile."""

    id: UUID
    erased_at: datetime
    position: int | None = Field(default=None, description="the erasure's position in the event log")


Change = Profile | ProfileErased
"""What `changes()` yields: a profile's latest state, or its erasure."""


class AccountErasure(_Model):
    """DELETE /v1/admin/accounts/{id} (admin tokens): what erasing the account did."""

    account_id: str
    erased_profiles: list[UUID]
    already_erased: list[UUID]
    tokens_revoked: int
    position: int


class Accepted(_Model):
    """202: the change is stored but the read table had not caught up in time."""

    profile_id: UUID
    position: int


VehicleInput = dict[str, Any]
"""A vehicle to create: {"name": ..., "vehicle_class": ..., "race_number": ...}."""
