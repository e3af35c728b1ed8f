"""Request and response bodies. Shapes and types are checked here; the domain
checks the rules (lengths, blank names) and names the field it rejects."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from domain.values import (
    DETAIL_KEY_MAX,
    DETAIL_VALUE_MAX,
    DETAILS_MAX,
    NAME_MAX,
    RACE_NUMBER_MAX,
    REASON_MAX,
    SAFE_INTEGER,
    VEHICLE_CLASS_MAX,
    VEHICLES_MAX,
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The domain's rules, stated in the document for clients (the domain checks
# them, after trimming, and answers 422 naming the field).
NAME_RULES: dict[str, Any] = {"minLength": 1, "maxLength": NAME_MAX, "pattern": r"\S"}
CLASS_RULES: dict[str, Any] = {"minLength": 1, "maxLength": VEHICLE_CLASS_MAX, "pattern": r"\S"}
RACE_NUMBER_RULES: dict[str, Any] = {"pattern": rf"^[A-Za-z0-9]{{1,{RACE_NUMBER_MAX}}}$"}
DETAILS_RULES: dict[str, Any] = {
    "maxProperties": DETAILS_MAX,
    "propertyNames": {"minLength": 1, "maxLength": DETAIL_KEY_MAX, "pattern": r"\S"},
}
NAME = f"1-{NAME_MAX} printable characters after trimming"

# Why the change was made, recorded on its events (wins over X-Reason).
Reason = Annotated[
    str | None,
    Field(
        max_length=REASON_MAX,
        description=(
            f"why (recorded on the events; wins over X-Reason): up to {REASON_MAX} characters after trimming,"
            " no control, bidi or line-break characters; blank means none"
        ),
    ),
]


class VehicleFields(Strict):
    name: str = Field(description=NAME, examples=["Rotax Max"], json_schema_extra=NAME_RULES)
    vehicle_class: str | None = Field(
        default=None,
        description=f"up to {VEHICLE_CLASS_MAX} printable characters",
        examples=["Junior"],
        json_schema_extra=CLASS_RULES,
    )
    race_number: str | None = Field(
        default=None,
        description=f"1-{RACE_NUMBER_MAX} ASCII letters or digits",
        examples=["07"],
        json_schema_extra=RACE_NUMBER_RULES,
    )


class VehicleCreate(VehicleFields):
    reason: Reason = None


class VehicleUpdate(Strict):
    """Only the fields given change (at least one); null clears vehicle_class or race_number."""

    name: str | None = Field(default=None, description=NAME, json_schema_extra=NAME_RULES)
    vehicle_class: str | None = Field(
        default=None,
        description=f"up to {VEHICLE_CLASS_MAX} printable characters",
        json_schema_extra=CLASS_RULES,
    )
    race_number: str | None = Field(
        default=None,
        description=f"1-{RACE_NUMBER_MAX} ASCII letters or digits",
        json_schema_extra=RACE_NUMBER_RULES,
    )
    reason: Reason = None


class VehiclePublic(BaseModel):
    id: str
    name: str
    vehicle_class: str | None
    race_number: str | None


class ProfileCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Alex Junior",
                    "vehicles": [{"name": "Rotax Max", "vehicle_class": "Junior", "race_number": "07"}],
                    "details": {"club": "Karting North"},
                    "reason": "new racer for the season",
                }
            ]
        },
    )

    name: str = Field(description=NAME, examples=["Alex Junior"], json_schema_extra=NAME_RULES)
    vehicles: list[VehicleFields] = Field(default_factory=list, max_length=VEHICLES_MAX)
    details: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict,
        description=(
            f"up to {DETAILS_MAX} free-form entries: keys up to {DETAIL_KEY_MAX} characters, text up to"
            f" {DETAIL_VALUE_MAX}, numbers within ±{SAFE_INTEGER} (2^53-1)"
        ),
        examples=[{"club": "Karting North", "weight_kg": 42.5}],
        json_schema_extra=DETAILS_RULES,
    )
    reason: Reason = None


class ProfileUpdate(Strict):
    name: str = Field(description=f"the new name, {NAME}", examples=["Alex"], json_schema_extra=NAME_RULES)
    reason: Reason = None


class ArchiveRequest(Strict):
    successor_id: UUID | None = Field(
        default=None, description="the profile that becomes default if this one is the default"
    )
    reason: Reason = None


class RestoreRequest(Strict):
    reason: Reason = None


class DefaultRequest(Strict):
    profile_id: UUID
    reason: Reason = None


class ProfilePublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "6f1c2a4e-8d2b-4c3f-9a57-0b8e4f1d2c3a",
                    "name": "Alex Junior",
                    "details": {"club": "Karting North", "weight_kg": 42.5},
                    "is_default": True,
                    "archived": False,
                    "vehicles": [
                        {
                            "id": "0d9c8b7a-6f5e-4d3c-8b2a-1f0e9d8c7b6a",
                            "name": "Rotax Max",
                            "vehicle_class": "Junior",
                            "race_number": "07",
                        }
                    ],
                    "vehicle_count": 1,
                    "version": 3,
                    "created_at": "2026-03-01T09:30:00.123456+00:00",
                    "updated_at": "2026-03-02T17:05:41.000001+00:00",
                }
            ]
        }
    )

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
    next_cursor: str | None = Field(
        description="opaque; pass it as `cursor` for the next page; null on the last page"
    )


class ErasureReceipt(BaseModel):
    """What DELETE /v1/profiles/{id} answers: the erasure is recorded at this position."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "profile_id": "6f1c2a4e-8d2b-4c3f-9a57-0b8e4f1d2c3a",
                    "erased_at": "2026-03-04T10:15:00.000001+00:00",
                    "position": 1042,
                }
            ]
        }
    )

    profile_id: UUID = Field(description="the erased profile")
    erased_at: datetime = Field(description="when the Erased event was recorded")
    position: int = Field(description="the position of the Erased event in the log")


class AccountErasureReceipt(BaseModel):
    """What DELETE /v1/admin/accounts/{id} answers."""

    account_id: str
    erased_profiles: list[UUID] = Field(description="profiles erased by this request")
    already_erased: list[UUID] = Field(description="profiles that were erased before")
    tokens_revoked: int
    position: int = Field(description="the log's head once the account was erased")


class Accepted(BaseModel):
    """A command was stored but the read table did not catch up in time."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"profile_id": "6f1c2a4e-8d2b-4c3f-9a57-0b8e4f1d2c3a", "position": 1042}]
        }
    )

    profile_id: UUID = Field(description="the profile the command changed (or created)")
    position: int = Field(description="the command's last event; wait for it with X-Min-Position")


class FieldError(BaseModel):
    field: str = Field(description="the body field (dotted path), query parameter or header")
    reason: str


class Problem(BaseModel):
    """An RFC 9457 problem document (media type application/problem+json)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "https://racer-profiles.dev/problems/precondition-failed",
                    "title": "Version mismatch",
                    "status": 412,
                    "detail": "expected version 2, current version is 3",
                    "instance": "/v1/profiles/6f1c2a4e-8d2b-4c3f-9a57-0b8e4f1d2c3a",
                    "current_version": 3,
                }
            ]
        }
    )

    type: str = Field(
        description="a stable URI per kind of problem: https://racer-profiles.dev/problems/<kind>",
        examples=["https://racer-profiles.dev/problems/validation"],
    )
    title: str = Field(description="short, the same for every problem of a type")
    status: int = Field(ge=100, le=599, description="the HTTP status code")
    detail: str = Field(description="what went wrong with this request")
    instance: str | None = Field(default=None, description="the request path")
    errors: list[FieldError] | None = Field(
        default=None, description="422 only: every rejected field and why"
    )
    current_version: int | None = Field(
        default=None, description="412 only: the current version (the ETag to send in If-Match)"
    )


class HistoryEntry(BaseModel):
    """One event of the profile, or of its account's roster about it."""

    position: int = Field(description="the event's position in the whole log")
    aggregate_id: str
    aggregate_type: str = Field(examples=["RacerProfile", "Roster"])
    version: int = Field(description="the aggregate's version after this event")
    type: str = Field(description="the event's class", examples=["Renamed"])
    recorded_at: datetime
    actor: str | None = Field(description="the account whose token made the change")
    actor_name: str | None = Field(
        default=None, description="the actor's account name; null when the actor is no account (`import`)"
    )
    reason: str | None = Field(description="X-Reason or a body's reason")
    request_id: str | None = Field(description="the X-Request-ID of the request that made it")
    data: dict[str, Any] = Field(description="the event's own fields")
    concerns: str | None = Field(
        default=None,
        description="roster events only: what the event meant for this profile",
        examples=["became the default"],
    )


class ExportedEvent(HistoryEntry):
    """One line of the NDJSON export: a history entry plus the event as stored."""

    topic: str = Field(description="the event's class as the event store names it")
    stored_state: str = Field(description="the stored event, base64")


class HistoryPage(BaseModel):
    items: list[HistoryEntry]
    next_cursor: str | None = Field(
        description="opaque; pass it as `cursor` for the next page; null on the last page"
    )


class DefaultChange(BaseModel):
    position: int
    changed_at: datetime
    from_profile_id: str | None = Field(description="null: the account had no default before")
    to_profile_id: str | None = Field(description="null: the account has no default since")
    actor: str | None
    actor_name: str | None = Field(
        default=None, description="the actor's account name; null when the actor is no account (`import`)"
    )
    reason: str | None
    request_id: str | None


class DefaultTimeline(BaseModel):
    items: list[DefaultChange]
    next_cursor: str | None = Field(
        description="opaque; pass it as `cursor` for the next page; null on the last page"
    )


class AccountSummary(BaseModel):
    """An account as auditors and admins see it in the list."""

    id: str
    name: str
    role: str = Field(examples=["owner", "auditor", "admin"])
    created_at: datetime
    profile_count: int = Field(description="its profiles, archived ones included")
    active_profile_count: int = Field(description="its active (not archived) profiles")


class AccountPage(BaseModel):
    items: list[AccountSummary]
    next_cursor: str | None = Field(
        description="opaque; pass it as `cursor` for the next page; null on the last page"
    )


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    """200 when ready, 503 (same shape) when not."""

    status: Literal["ready", "not ready"]
    database: str = Field(description='"ok", or "unavailable: <error class>"')
    head: int | None = Field(default=None, description="the last position in the event log")
    position: int | None = Field(default=None, description="the last position the read table applied")
    lag: int | None = Field(default=None, description="head - position")
    projection: str = Field(
        description=(
            "this process's runner: starting, standby, leader, failed or stopped; without one here:"
            " leader (another process holds the leader lock), no leader, or unknown (database unavailable)"
        )
    )
    projection_error: str | None = None
    projection_failed_position: int | None = None


# --- tokens and accounts (api/routers/tokens.py, api/routers/admin.py) ---------------------------

TOKEN_NAME = "1-80 printable characters: the device or app that holds the token"


class TokenPublic(BaseModel):
    """A token as it may be shown: never its secret."""

    id: str = Field(description="the token's id: the part between `rp_` and the next `_`")
    account_id: UUID
    name: str = Field(description=TOKEN_NAME, examples=["pit-wall tablet"])
    role: Literal["owner", "auditor", "admin"]
    created_at: datetime
    last_used_at: datetime | None = Field(
        description="when it last authenticated a request (written every TOKEN_LAST_USED_FLUSH_SECONDS)"
    )
    expires_at: datetime | None = Field(description="refused from this time on; null: never")
    revoked_at: datetime | None = Field(description="refused from this time on; null: live")


class TokenList(BaseModel):
    items: list[TokenPublic]


class TokenIssued(TokenPublic):
    token: str = Field(description="the bearer token; shown this once, stored only as a hash")


class TokenCreate(Strict):
    name: str = Field(description=TOKEN_NAME, examples=["pit-wall tablet"], json_schema_extra=NAME_RULES)
    expires_at: datetime | None = Field(
        default=None, description="an RFC 3339 time with offset, in the future; omitted: never expires"
    )


class AccountCreate(Strict):
    name: str = Field(description=NAME, examples=["Team Rocket"], json_schema_extra=NAME_RULES)
    role: Literal["owner", "auditor", "admin"] = "owner"
    token_name: str = Field(default="initial", description=TOKEN_NAME, json_schema_extra=NAME_RULES)
    token_expires_at: datetime | None = Field(
        default=None, description="the first token's expiry (RFC 3339 with offset); omitted: never"
    )


class AccountIssued(BaseModel):
    id: UUID
    name: str
    role: Literal["owner", "auditor", "admin"]
    token: TokenIssued
