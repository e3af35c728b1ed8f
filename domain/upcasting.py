"""Events stored before a field existed still load: missing metadata fields
(actor, reason, request id, chain hashes, details, source) get neutral defaults."""

from __future__ import annotations

import copy
import dataclasses
from functools import cache
from typing import Any

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent

DEFAULTS: dict[str, Any] = {
    "actor": "unknown",
    "reason": None,
    "request_id": None,
    "prev_hash": None,
    "event_hash": None,
    "details": {},
    "source": None,
}


@cache
def _declared(cls: type) -> frozenset[str]:
    if not dataclasses.is_dataclass(cls):
        return frozenset()
    return frozenset(f.name for f in dataclasses.fields(cls))


class UpcastingMapper(Mapper[Any]):
    def stored_state(self, stored_event: StoredEvent) -> dict[str, Any]:
        """The event's fields as stored, before any upcast (what its chain hash covers)."""
        state = stored_event.state
        if self.cipher:
            state = self.cipher.decrypt(state)
        if self.compressor:
            state = self.compressor.decompress(state)
        fields: dict[str, Any] = self.transcoder.decode(state)
        fields["originator_id"] = stored_event.originator_id
        fields["originator_version"] = stored_event.originator_version
        return fields

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[Any]:
        event = super().to_domain_event(stored_event)
        state = vars(event)
        # Only fields the event class declares: adding others would change
        # the event's content and so its hash.
        for name in _declared(type(event)) & DEFAULTS.keys():
            if name not in state:
                state[name] = copy.deepcopy(DEFAULTS[name])
        return event
