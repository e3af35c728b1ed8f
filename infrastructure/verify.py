"""verify: replay every roster and profile from the events and compare them
with the invariant and, row by row, with the read table."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from domain.profile import RacerProfile
from domain.roster import Roster
from domain.service import ProfilesService
from infrastructure.audit import Audit
from infrastructure.chain_check import chain_problems
from infrastructure.event_log import EventLog
from infrastructure.keys import KeyStore
from infrastructure.profile_queries import ProfileQueries
from infrastructure.profiles_view import PostgresProfilesView
from infrastructure.projection_status import ProjectionStatus
from projections.rows import REPLAYED, replayed_row


def _aggregate_ids(log: EventLog) -> dict[str, list[UUID]]:
    """Ids of every aggregate, by the topic of its created event."""
    ids: dict[str, list[UUID]] = defaultdict(list)
    for aggregate_id, topic in log.aggregate_ids():
        ids[topic].append(aggregate_id)
    return ids


def expected_rows(app: ProfilesService, log: EventLog) -> dict[UUID, dict[str, Any]]:
    ids = _aggregate_ids(log)
    rosters: dict[str, Roster] = {}
    for roster_id in ids[get_topic(Roster.Created)]:
        replayed: Roster = app.repository.get(roster_id)
        rosters[replayed.account_id] = replayed
    rows: dict[UUID, dict[str, Any]] = {}
    for profile_id in ids[get_topic(RacerProfile.Created)]:
        p: RacerProfile = app.repository.get(profile_id)
        roster = rosters.get(p.account_id)
        row = replayed_row(p, is_default=roster is not None and roster.default == str(p.id))
        rows[p.id] = {column: getattr(row, column) for column in REPLAYED}
    return rows


def _invariant_problems(app: ProfilesService, rows: dict[UUID, dict[str, Any]]) -> list[str]:
    problems = []
    active: dict[str, set[str]] = defaultdict(set)
    for pid, row in rows.items():
        if not row["archived"]:
            active[row["account_id"]].add(str(pid))
    accounts = {row["account_id"] for row in rows.values()}
    for account in sorted(accounts):
        roster = app.get_roster(account)
        members = set(roster.members) if roster else set()
        default = roster.default if roster else None
        if members != active[account]:
            problems.append(
                f"roster of account {account}: members {sorted(members)} differ "
                f"from active profiles {sorted(active[account])}"
            )
        if members and default not in members:
            problems.append(f"roster of account {account}: default {default} is not an active member")
        if not members and default is not None:
            problems.append(f"roster of account {account}: default {default} but no active profile")
    return problems


def _same(have: Any, want: Any) -> bool:
    """Equal as JSON, kinds included: 1 == 1.0 == True in Python, but a float that
    came back as an integer (or a lost sign) is a difference clients see."""
    if isinstance(have, datetime) or isinstance(want, datetime):
        return bool(have == want)
    return json.dumps(have, sort_keys=True) == json.dumps(want, sort_keys=True)


def _erasure_problems(key_store: KeyStore, rows: dict[UUID, dict[str, Any]]) -> list[str]:
    """An erased profile whose key still exists was not erased completely (the
    key store failed after the Erased event was stored): DELETE it again."""
    erased = [pid for pid, row in rows.items() if row["erased_at"] is not None]
    live = key_store.live_keys(erased) if erased else []
    return [f"profile {pid}: erased, but its data key still exists; erase it again" for pid in live]


def verify_store(
    app: ProfilesService,
    view: PostgresProfilesView,
    audit: Audit,
    status: ProjectionStatus,
    key_store: KeyStore,
    queries: ProfileQueries,
    *,
    catch_up_timeout: float = 30.0,
) -> list[str]:
    head = app.recorder.max_notification_id() or 0
    try:
        view.wait(app.name, head, timeout=catch_up_timeout)
    except TimeoutError:
        return [f"read table is behind: it has not reached position {head}"]
    problems = chain_problems(audit.log)
    try:
        expected = expected_rows(app, audit.log)
    except Exception as e:  # a tampered event may not even load
        return [*problems, f"the events cannot be replayed: {e!r}"]
    problems += _invariant_problems(app, expected)
    listed, stored = audit.listed(head), audit.log.count(head)
    # A skipped event was never applied, so it is not listed either: the skip is its
    # record (racer_profiles_skips), and the event itself is reported above if it is
    # unreadable. Anything else missing, e.g. a database made before the audit index
    # existed, is an incomplete index that `rebuild` fills.
    skipped = status.skipped(head)
    if listed + skipped != stored:
        problems.append(
            f"audit index lists {listed} of the {stored} events up to position {head}"
            + (f" ({skipped} skipped)" if skipped else "")
            + ": run racer-profiles rebuild"
        )
    problems += _erasure_problems(key_store, expected)
    actual = {row.id: row for row in queries.all_rows()}
    for pid in sorted(set(expected) | set(actual), key=str):
        want, have = expected.get(pid), actual.get(pid)
        if want is None:
            problems.append(f"profile {pid}: in the read table but not in the events")
            continue
        if have is None:
            problems.append(f"profile {pid}: in the events but missing from the read table")
            continue
        for column, value in want.items():
            if not _same(getattr(have, column), value):
                problems.append(
                    f"profile {pid}: {column} is {getattr(have, column)!r} in the read table, "
                    f"{value!r} in the events"
                )
    defaults: dict[str, int] = defaultdict(int)
    with_active: set[str] = set()
    for row in actual.values():
        defaults[row.account_id] += row.is_default
        if not row.archived:
            with_active.add(row.account_id)
    for account in sorted(with_active | set(defaults)):
        want_count = 1 if account in with_active else 0
        if defaults[account] != want_count:
            problems.append(
                f"account {account}: read table shows {defaults[account]} defaults, expected {want_count}"
            )
    return problems
