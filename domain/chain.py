"""Tamper evidence: every event carries the hash of its aggregate's previous
event and a hash over its own content, so editing, deleting or reordering a
stored event breaks the chain that verify walks.

The hash covers the event as stored (the mapper's form: its fields, plus
`class_version` when above 1), never the upcast form a reader sees: adding a
field with an upcast default must not turn every older event into a false
alarm. Events hashed before this rule have no `class_version` (no event class
declared one), and their hash was taken over the very fields they store, so
they verify unchanged: no chain version marker is needed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

GENESIS = ""


def _plain(value: Any) -> Any:
    if isinstance(value, (UUID, datetime)):
        return value.isoformat() if isinstance(value, datetime) else str(value)
    raise TypeError(f"cannot hash {type(value).__name__}")


def event_digest(topic: str, state: dict[str, Any]) -> str:
    """SHA-256 over the event's topic and every field but its own hash, in a
    canonical JSON form that survives the store's encode/decode round trip."""
    content = {k: v for k, v in state.items() if k != "event_hash"}
    canonical = json.dumps([topic, content], sort_keys=True, separators=(",", ":"), default=_plain)
    return hashlib.sha256(canonical.encode()).hexdigest()


def stored_form(event_class: type, state: dict[str, Any]) -> dict[str, Any]:
    """The fields the mapper stores for an event of this class (see Mapper.to_stored_event)."""
    class_version = getattr(event_class, "class_version", 1)
    return {**state, "class_version": class_version} if class_version > 1 else state


def digest_of(event: object) -> str:
    """The digest of an event as it is (or will be) stored; for a decoded
    event only while no upcast has changed it (verify hashes the stored form)."""
    return event_digest(get_topic(type(event)), stored_form(type(event), dict(vars(event))))


def with_defaults(event_class: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """kwargs plus the default of every field the caller left out: the event
    stores those defaults too, so its hash must cover them."""
    filled = dict(kwargs)
    for f in dataclasses.fields(event_class):
        if f.name in filled or not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            filled[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            filled[f.name] = f.default_factory()
    return filled


class ChainedAggregate(Aggregate):
    """An aggregate whose events form a hash chain (see module docstring)."""

    if TYPE_CHECKING:
        # Set by Event.apply, not declared as a field: aggregate annotations shape the created event.
        chain_head: str

    class Event(Aggregate.Event):
        prev_hash: str
        event_hash: str

        def apply(self, aggregate: Any) -> None:
            # Events stored before the chain existed have no hash (upcast to None).
            aggregate.chain_head = getattr(self, "event_hash", None) or GENESIS

    class Created(Event, Aggregate.Created):
        pass

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        kwargs = with_defaults(event_class, kwargs)
        if kwargs.get("timestamp") is None:
            kwargs["timestamp"] = event_class.create_timestamp()
        kwargs["prev_hash"] = self.chain_head
        state = {**kwargs, "originator_id": self.id, "originator_version": self.version + 1}
        kwargs["event_hash"] = event_digest(get_topic(event_class), stored_form(event_class, state))
        super().trigger_event(event_class, **kwargs)

    @classmethod
    def _create(cls, event_class: Any, *, id: Any = None, **kwargs: Any) -> Any:
        if id is None:
            raise TypeError(f"{cls.__name__} needs an explicit id")
        kwargs = with_defaults(event_class, kwargs)
        if kwargs.get("timestamp") is None:
            kwargs["timestamp"] = event_class.create_timestamp()
        kwargs["prev_hash"] = GENESIS
        state = {
            **kwargs,
            "originator_topic": get_topic(cls),
            "originator_id": id,
            "originator_version": cls.INITIAL_VERSION,
        }
        kwargs["event_hash"] = event_digest(get_topic(event_class), stored_form(event_class, state))
        return super()._create(event_class, id=id, **kwargs)
