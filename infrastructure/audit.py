"""Audit views replayed from the events alone: a profile's history, the
profile as it was at a version or a time, the default timeline, the export."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.profile import RacerProfile
from domain.roster import Roster, roster_id
from domain.service import ProfilesService
from infrastructure.event_log import EventLog, LoggedEvent

METADATA = {
    "originator_id",
    "originator_version",
    "originator_topic",
    "timestamp",
    "actor",
    "reason",
    "request_id",
    "prev_hash",
    "event_hash",
}


def _plain(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def describe(logged: LoggedEvent, event: Any) -> dict[str, Any]:
    """An event as auditors read it: where, what, when, who, why, and its data."""
    qualname = logged.stored.topic.partition(":")[2]
    aggregate_type, _, event_type = qualname.partition(".")
    return {
        "position": logged.position,
        "aggregate_id": str(logged.aggregate_id),
        "aggregate_type": aggregate_type,
        "version": logged.version,
        "type": event_type,
        "recorded_at": event.timestamp.isoformat(),
        "actor": getattr(event, "actor", None),
        "reason": getattr(event, "reason", None),
        "request_id": getattr(event, "request_id", None),
        "data": {k: _plain(v) for k, v in vars(event).items() if k not in METADATA},
    }


def export_record(logged: LoggedEvent, event: Any) -> dict[str, Any]:
    """describe() plus the exact stored form, so an export can be replayed."""
    record = describe(logged, event)
    record["topic"] = logged.stored.topic
    record["stored_state"] = base64.b64encode(logged.stored.state).decode()
    return record


UNDECODABLE = "undecodable"  # the marker of an exported event that could not be decoded


def raw_record(logged: LoggedEvent, error: BaseException) -> dict[str, Any]:
    """An event that cannot be decoded, exported as stored, with the reason under UNDECODABLE:
    the export goes on past it, and replay still copies it exactly."""
    return {
        "position": logged.position,
        "aggregate_id": str(logged.aggregate_id),
        "version": logged.version,
        UNDECODABLE: f"{type(error).__name__}: {error}",
        "topic": logged.stored.topic,
        "stored_state": base64.b64encode(logged.stored.state).decode(),
    }


def export_entry(log: EventLog, logged: LoggedEvent) -> dict[str, Any]:
    """The export line of one event: decoded, or raw with the marker."""
    try:
        event = log.decode(logged)
    except Exception as e:  # any decoding failure: a bad topic, state, upcaster or cipher
        return raw_record(logged, e)
    return export_record(logged, event)


def _roster_concerns(event: Any, member: str) -> str | None:
    if isinstance(event, Roster.MemberAdded) and event.profile_id == member:
        return "joined the active profiles"
    if isinstance(event, Roster.MemberRemoved) and event.profile_id == member:
        return "left the active profiles"
    if isinstance(event, Roster.DefaultChanged):
        if event.new == member:
            return "became the default"
        if event.previous == member:
            return "stopped being the default"
    return None


@dataclass(frozen=True)
class ProfileTimeline:
    """A profile's own events and its roster's events, each with its position."""

    account_id: str
    profile: list[tuple[LoggedEvent, Any]]
    roster: list[tuple[LoggedEvent, Any]]


class Audit:
    def __init__(self, app: ProfilesService) -> None:
        self.app = app
        self.log = EventLog(app)

    def timeline(self, profile_id: UUID) -> ProfileTimeline | None:
        profile_events = [(e, self.log.decode(e)) for e in self.log.of(profile_id)]
        if not profile_events or not isinstance(profile_events[0][1], RacerProfile.Created):
            return None
        account_id = profile_events[0][1].account_id
        roster_events = [(e, self.log.decode(e)) for e in self.log.of(roster_id(account_id))]
        return ProfileTimeline(account_id, profile_events, roster_events)

    def history(self, timeline: ProfileTimeline, profile_id: UUID) -> list[dict[str, Any]]:
        entries = [describe(logged, event) for logged, event in timeline.profile]
        for logged, event in timeline.roster:
            concerns = _roster_concerns(event, str(profile_id))
            if concerns:
                entries.append({**describe(logged, event), "concerns": concerns})
        return sorted(entries, key=lambda entry: entry["position"])

    def as_it_was(
        self,
        timeline: ProfileTimeline,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> dict[str, Any] | None:
        """The profile replayed up to a version (as the command that made it
        left things) or a time; None when it did not exist yet or the version is
        beyond the last. Each command counts as one moment: its roster events
        (a new default, say) belong to the same moment as its profile event."""
        if version is not None and not 1 <= version <= len(timeline.profile):
            return None
        included: list[Any] = []
        for started, events in _commands(timeline):
            if as_of is not None and started > as_of:
                break
            included.extend(events)
            if version is not None and any(
                isinstance(e, RacerProfile.Event) and e.originator_version == version for e in events
            ):
                break
        seen_version = sum(isinstance(e, RacerProfile.Event) for e in included)
        if seen_version == 0:
            return None
        default = None
        for event in included:
            if isinstance(event, Roster.DefaultChanged):
                default = event.new
        profile = self.app.get_profile(timeline.profile[0][0].aggregate_id, version=seen_version)
        return profile_state(profile, default == str(profile.id))

    def defaults(self, account_id: str) -> list[dict[str, Any]]:
        """Every change of the account's default: when, from, to, who, why."""
        changes = []
        for logged in self.log.of(roster_id(account_id)):
            event = self.log.decode(logged)
            if isinstance(event, Roster.DefaultChanged):
                changes.append(
                    {
                        "position": logged.position,
                        "changed_at": event.timestamp.isoformat(),
                        "from_profile_id": event.previous,
                        "to_profile_id": event.new,
                        "actor": getattr(event, "actor", None),
                        "reason": getattr(event, "reason", None),
                        "request_id": getattr(event, "request_id", None),
                    }
                )
        return changes

    def account_aggregates(self, account_id: str) -> list[UUID]:
        """The account's roster and every profile that ever joined it (all do, at creation)."""
        rid = roster_id(account_id)
        ids = [rid]
        for logged in self.log.of(rid):
            event = self.log.decode(logged)
            if isinstance(event, Roster.MemberAdded):
                member = UUID(event.profile_id)
                if member not in ids:
                    ids.append(member)
        return ids


def _commands(timeline: ProfileTimeline) -> list[tuple[datetime, list[Any]]]:
    """The timeline's events grouped by command: a command's events are stored
    in one transaction, so they are contiguous in position and share a request id."""
    merged = sorted(timeline.profile + timeline.roster, key=lambda pair: pair[0].position)
    groups: list[tuple[datetime, list[Any]]] = []
    last_position, last_request = -1, None
    for logged, event in merged:
        request_id = getattr(event, "request_id", None)
        if groups and request_id and request_id == last_request and logged.position == last_position + 1:
            groups[-1][1].append(event)
        else:
            groups.append((event.timestamp, [event]))
        last_position, last_request = logged.position, request_id
    return groups


def profile_state(profile: RacerProfile, is_default: bool) -> dict[str, Any]:
    return {
        "id": str(profile.id),
        "name": profile.name,
        "details": profile.details,
        "is_default": is_default,
        "archived": profile.archived,
        "vehicles": [dict(v) for v in profile.vehicles],
        "vehicle_count": len(profile.vehicles),
        "version": profile.version,
        "created_at": profile.created_on.isoformat(),
        "updated_at": profile.modified_on.isoformat(),
    }
