"""Walks every aggregate's hash chain and digests the log for checkpoints."""

from __future__ import annotations

import hashlib
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from domain.chain import GENESIS, event_digest
from infrastructure.event_log import EventLog


def chain_problems(log: EventLog) -> list[str]:
    """The first broken link of each aggregate whose chain is broken."""
    problems: list[str] = []
    current: UUID | None = None
    expected_version, prev_hash, broken = 1, GENESIS, False
    for stored in log.by_aggregate():
        aggregate = UUID(str(stored.originator_id))
        if aggregate != current:
            current, expected_version, prev_hash, broken = aggregate, 1, GENESIS, False
        if broken:
            continue
        where = f"aggregate {aggregate} version {stored.originator_version}"
        problem = _link_problem(log, stored, expected_version, prev_hash)
        if problem:
            problems.append(f"{where}: {problem}")
            broken = True
            continue
        expected_version, prev_hash = expected_version + 1, _stored_state(log, stored)["event_hash"]
    return problems


def _stored_state(log: EventLog, stored: StoredEvent) -> dict[str, Any]:
    mapper: Any = log.app.mapper
    state: dict[str, Any] = mapper.stored_state(stored)
    return state


def _link_problem(log: EventLog, stored: StoredEvent, expected_version: int, prev_hash: str) -> str | None:
    if stored.originator_version != expected_version:
        return f"expected version {expected_version}: an event was deleted or versions were changed"
    try:
        # The form the hash covers: as stored, before any upcast.
        state = _stored_state(log, stored)
    except Exception as e:
        return f"the stored event cannot be read ({type(e).__name__}): it was altered"
    if not state.get("event_hash"):
        return "the event carries no hash: it was altered or stored outside the service"
    if state.get("prev_hash") != prev_hash:
        return "its previous-event hash does not match the event before it: the chain is broken"
    if event_digest(stored.topic, state) != state["event_hash"]:
        return "its content does not match its hash: the event was altered"
    return None


def checkpoint(log: EventLog, upto: int | None = None) -> tuple[int, str]:
    """A digest of the whole log up to a position (default: the head), to be
    kept outside the database and compared later."""
    position = log.head() if upto is None else upto
    digest = hashlib.sha256()
    last = 0
    for logged in log.iterate(0):
        if logged.position > position:
            break
        s = logged.stored
        digest.update(f"{logged.position}|{s.originator_id}|{s.originator_version}|{s.topic}|".encode())
        digest.update(s.state)
        digest.update(b"\n")
        last = logged.position
    return last, digest.hexdigest()
