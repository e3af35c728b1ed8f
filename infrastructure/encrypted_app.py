"""The service as deployed: personal data sealed at the persistence boundary.

Aggregates stay plaintext in memory (the domain knows no keys); the mapper
seals each event's personal fields under the data key of the profile they
concern (infrastructure/sealing.py) and then hashes the event as stored, so
the hash chain covers the ciphertext and destroying a key breaks no chain."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import accumulate
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol, Snapshot
from eventsourcing.persistence import StoredEvent, Transcoder
from eventsourcing.utils import get_topic

from domain.chain import event_digest
from domain.errors import PlaintextHistory
from domain.profile import RacerProfile
from domain.service import ProfilesService
from domain.upcasting import UpcastingMapper
from infrastructure.keys import KeyRing, NewKeys
from infrastructure.sealing import has_personal_data, plaintext_fields, seal, unseal

SEALED_BY = "sealed_by"  # stored next to sealed fields: the id of their key


def key_id_of(domain_event: Any, state: dict[str, Any], command_profile: UUID | None) -> UUID:
    """Whose key seals an event's personal fields: a profile's own; for a
    roster's event (its reason), the profile of the command that caused it (the
    profile whose events were saved with it), else the profile the event names;
    else the roster's own, the account's key. So every reason given about a
    profile goes when that profile is erased."""
    if isinstance(domain_event, RacerProfile.Event):
        return UUID(str(domain_event.originator_id))
    if command_profile is not None:
        return command_profile
    named = state.get("profile_id") or state.get("new") or state.get("previous")
    return UUID(named) if named else UUID(str(domain_event.originator_id))


class SealingMapper(UpcastingMapper):
    def __init__(self, transcoder: Transcoder, keys: KeyRing) -> None:
        super().__init__(transcoder)
        self.keys = keys
        self._batch = threading.local()

    @contextmanager
    def linking(
        self, new_keys: bool = True, command_sizes: Sequence[int] | None = None
    ) -> Iterator[NewKeys | None]:
        """While events of one save are stored: an event's hash is known only
        once it is sealed, so the next event of the same aggregate (which the
        domain linked to the unsealed hash) is re-linked to the stored one.
        Yields the keys made for the save's new aggregates, if new_keys (the
        recorder stores them with the events); they are kept once the save returns.
        command_sizes: the save holds several commands' events, so many of each
        in turn (ProfilesService.run_together); a roster's event is sealed
        under its own command's profile's key, never a command's before it."""
        self._batch.relink = {}
        self._batch.profile = None
        self._batch.starts = set(accumulate([0, *command_sizes[:-1]])) if command_sizes else None
        self._batch.index = 0
        self._batch.new_keys = made = self.keys.new_keys() if new_keys else None
        try:
            yield made
            if made is not None:
                self.keys.stored(made)
        finally:
            self._batch.stored_hashes = self._batch.relink  # see stored_hash
            self._batch.relink = None
            self._batch.profile = None
            self._batch.starts = None
            self._batch.new_keys = None

    def stored_hash(self, provisional: str) -> str:
        """The hash, as stored by this thread's last save, of the event the
        domain hashed as provisional (unchanged if that save did not store it)."""
        stored: dict[str, str] = getattr(self._batch, "stored_hashes", None) or {}
        return stored.get(provisional, provisional)

    def restart_without_new_keys(self) -> None:
        """The save is mapped again with keys from the key store (a row for a
        new aggregate's key was there already); the keys made are dropped."""
        new_keys: NewKeys | None = self._batch.new_keys
        if new_keys is not None:
            new_keys.secrets.clear()
        self._batch.relink = {}
        self._batch.profile = None
        self._batch.index = 0
        self._batch.new_keys = None

    def to_stored_event(self, domain_event: DomainEventProtocol[Any]) -> StoredEvent:
        topic = get_topic(type(domain_event))
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        if isinstance(domain_event, Snapshot):
            if has_personal_data(state["state"]):
                key = self.keys.for_writing(originator_id)
                state["state"] = seal(state["state"], key, originator_id)
        else:
            starts = getattr(self._batch, "starts", None)
            if starts is not None:
                if self._batch.index in starts:  # the next command's first event
                    self._batch.profile = None
                self._batch.index += 1
            if (
                isinstance(domain_event, RacerProfile.Event)
                and getattr(self._batch, "relink", None) is not None
            ):
                self._batch.profile = originator_id
            if has_personal_data(state):
                key_id = key_id_of(domain_event, state, getattr(self._batch, "profile", None))
                state = seal(state, self._writing_key(key_id, originator_id, originator_version), key_id)
                state[SEALED_BY] = str(key_id)
        if "event_hash" in state:
            relink: dict[str, str] | None = getattr(self._batch, "relink", None)
            if relink is not None:
                state["prev_hash"] = relink.get(state["prev_hash"], state["prev_hash"])
            provisional = state["event_hash"]
            state["event_hash"] = event_digest(
                topic, {**state, "originator_id": originator_id, "originator_version": originator_version}
            )
            if relink is not None:
                relink[provisional] = state["event_hash"]
        return StoredEvent(originator_id, originator_version, topic, self.transcoder.encode(state))

    def _writing_key(self, key_id: UUID, originator_id: UUID, originator_version: int) -> bytes:
        """An aggregate stored for the first time gets a key made here, stored
        in the same transaction as its events (one commit per command, not two)."""
        new: NewKeys | None = getattr(self._batch, "new_keys", None)
        if new is not None:
            secret = new.secrets.get(key_id)
            if secret is not None:
                return secret
            if originator_version == 1 and key_id == originator_id:
                secret = self.keys.new_key(key_id)
                if secret is not None:
                    new.secrets[key_id] = secret
                    return secret
        return self.keys.for_writing(key_id)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[Any]:
        event = super().to_domain_event(stored_event)
        state = vars(event)
        originator_id = state["originator_id"]
        if isinstance(event, Snapshot):
            state["state"] = unseal(
                state["state"], lambda: self.keys.for_reading(originator_id), originator_id
            )
        elif SEALED_BY in state:
            key_id = UUID(state.pop(SEALED_BY))
            state.update(unseal(state, lambda: self.keys.for_reading(key_id), key_id))
        return event


class EncryptedProfilesService(ProfilesService):
    # Pinned again: the library names a subclass after itself, and table names derive from it.
    name = ProfilesService.name

    def __init__(
        self,
        env: Any = None,
        *,
        keys: KeyRing,
        also_forget: Sequence[Callable[[UUID], None]] = (),
        **kwargs: Any,
    ) -> None:
        self.keys = keys
        self.also_forget = tuple(also_forget)
        super().__init__(env, **kwargs)

    def construct_mapper(self) -> SealingMapper:
        return SealingMapper(self.construct_transcoder(), self.keys)

    def stored_chain_head(self, provisional: str) -> str:
        mapper: SealingMapper = self.mapper  # type: ignore[assignment]
        return mapper.stored_hash(provisional)

    def check_erasable(self, aggregate_id: UUID) -> None:
        for stored in self.recorder.select_events(aggregate_id):
            fields = plaintext_fields(self.mapper.transcoder.decode(stored.state))
            if fields:
                raise PlaintextHistory(
                    f"profile {aggregate_id} has events stored before personal data was encrypted"
                    f" (version {stored.originator_version}: {', '.join(fields)}); erasing it would leave"
                    " them readable, so it is refused (docs/operators.md, 'Stores written before encryption')"
                )

    def forget(self, aggregate_id: UUID) -> None:
        self.keys.destroy(aggregate_id)
        if self.snapshots is not None:
            # Derived data: loading replays the events instead.
            recorder: Any = self.snapshots.recorder  # infrastructure/recorder.py's SnapshotsRecorder
            recorder.delete_snapshots(aggregate_id)
        for forget in self.also_forget:
            forget(aggregate_id)
