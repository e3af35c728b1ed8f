"""Random command sequences on a profile and a second profile of the same
account: every version of the profile, and every moment between commands,
replays (Audit.as_it_was) to exactly what a simple model said at that step:
name, archived, vehicle names and whether it was the default.

PostgreSQL (the audit reads the projection's audit index and the event table):
one database for the module, a fresh account for every example."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import IllegalState
from domain.service import Cause
from infrastructure.container import Container
from tests.support.databases import running_container, temporary_database

ONE, TWO = 1, 2
NAMES = ["Ann", "Anna", "Bob", "Cy"]
VEHICLES = ["Kart", "Buggy", "Quad"]


@pytest.fixture(scope="module")
def store(pg_server_url: str) -> Iterator[Container]:
    # The audit reads through the index the projection keeps.
    with (
        temporary_database(pg_server_url, "rp_history") as url,
        running_container(url, api_threads=2) as built,
    ):
        yield built


@dataclass
class Profile:
    name: str
    archived: bool = False
    vehicles: list[tuple[str, str]] = field(default_factory=list)  # (id, name)


@dataclass
class Model:
    profiles: dict[int, Profile]
    default: int | None
    version: int = 1  # of profile ONE

    def summary(self) -> tuple[Any, ...]:
        one = self.profiles[ONE]
        return (one.name, one.archived, [n for _, n in one.vehicles], self.default == ONE)

    def other(self, who: int) -> int:
        return TWO if who == ONE else ONE


commands = st.one_of(
    st.tuples(st.just("rename"), st.sampled_from(NAMES)),
    st.tuples(st.just("add_vehicle"), st.sampled_from(VEHICLES)),
    st.tuples(st.just("remove_vehicle"), st.integers(0, 5)),
    st.tuples(st.just("archive"), st.sampled_from([ONE, TWO]), st.booleans()),
    st.tuples(st.just("restore"), st.sampled_from([ONE, TWO])),
    st.tuples(st.just("set_default"), st.sampled_from([ONE, TWO])),
)


def summary(state: dict[str, Any] | None) -> tuple[Any, ...] | None:
    if state is None:
        return None
    return (state["name"], state["archived"], [v["name"] for v in state["vehicles"]], state["is_default"])


def apply(
    c: Container, acc: str, ids: dict[int, UUID], model: Model, command: tuple[Any, ...], cause: Cause
) -> bool:
    """Runs the command on the service and the model; False when it was not applicable."""
    kind, *args = command
    m = model
    if kind == "rename":
        one = m.profiles[ONE]
        if one.archived:
            with pytest.raises(IllegalState):
                c.app.rename(acc, ids[ONE], args[0], cause)
            return False
        c.app.rename(acc, ids[ONE], args[0], cause)
        if args[0] != one.name:
            one.name = args[0]
            m.version += 1
    elif kind == "add_vehicle":
        one = m.profiles[ONE]
        if one.archived:
            with pytest.raises(IllegalState):
                c.app.add_vehicle(acc, ids[ONE], {"name": args[0]}, cause)
            return False
        vehicle_id = c.app.add_vehicle(acc, ids[ONE], {"name": args[0]}, cause).vehicle_id
        assert vehicle_id is not None
        one.vehicles.append((vehicle_id, args[0]))
        m.version += 1
    elif kind == "remove_vehicle":
        one = m.profiles[ONE]
        if one.archived or not one.vehicles:
            return False
        vehicle_id, _ = one.vehicles.pop(args[0] % len(one.vehicles))
        c.app.remove_vehicle(acc, ids[ONE], vehicle_id, cause)
        m.version += 1
    elif kind == "archive":
        who, with_successor = args
        other = m.other(who)
        successor = ids[other] if with_successor else None
        if m.profiles[who].archived or (with_successor and m.profiles[other].archived):
            with pytest.raises(IllegalState):
                c.app.archive(acc, ids[who], cause, successor_id=successor)
            return False
        c.app.archive(acc, ids[who], cause, successor_id=successor)
        m.profiles[who].archived = True
        if m.default == who:
            m.default = other if not m.profiles[other].archived else None
        m.version += who == ONE
    elif kind == "restore":
        (who,) = args
        if not m.profiles[who].archived:
            with pytest.raises(IllegalState):
                c.app.restore(acc, ids[who], cause)
            return False
        c.app.restore(acc, ids[who], cause)
        m.profiles[who].archived = False
        if m.default is None:
            m.default = who
        m.version += who == ONE
    elif kind == "set_default":
        (who,) = args
        if m.profiles[who].archived:
            with pytest.raises(IllegalState):
                c.app.set_default(acc, ids[who], cause)
            return False
        c.app.set_default(acc, ids[who], cause)
        m.default = who
    else:  # pragma: no cover
        raise AssertionError(kind)
    return True


@settings(max_examples=20, deadline=None)
@given(steps=st.lists(commands, min_size=1, max_size=12))
def test_every_version_and_moment_replays_to_the_model(
    store: Container, steps: list[tuple[Any, ...]]
) -> None:
    c = store
    acc = f"acc-{uuid.uuid4().hex}"
    request = iter(f"rq-{n}" for n in range(1000))

    def cause() -> Cause:
        return Cause("alice", None, next(request))

    # The account's roster exists before profile ONE is created: version 1 of an
    # account's very first profile has a test of its own (tests/integration/test_audit.py).
    zero = c.app.create_profile(acc, "Zero", [], cause()).profile_id
    c.app.archive(acc, zero, cause())

    before = datetime.now(UTC)
    ids = {ONE: c.app.create_profile(acc, "Ann", [], cause()).profile_id}
    model = Model({ONE: Profile("Ann")}, default=ONE)
    by_version = {1: model.summary()}
    moments = [(datetime.now(UTC), model.summary())]
    ids[TWO] = c.app.create_profile(acc, "Bob", [], cause()).profile_id
    model.profiles[TWO] = Profile("Bob")
    moments.append((datetime.now(UTC), model.summary()))

    for step in steps:
        version = model.version
        if apply(c, acc, ids, model, step, cause()):
            if model.version != version:
                assert model.version == version + 1
                by_version[model.version] = model.summary()
            moments.append((datetime.now(UTC), model.summary()))

    c.view.wait(c.app.name, c.audit.log.head(), timeout=30)  # the audit index is up to date
    timeline = c.audit.timeline(ids[ONE])
    assert timeline is not None
    assert len(c.audit.log.of(ids[ONE])) == model.version
    for version, expected in by_version.items():
        state = c.audit.as_it_was(timeline, version=version)
        assert summary(state) == expected, f"version {version}"
        assert state is not None and state["version"] == version
    assert c.audit.as_it_was(timeline, version=model.version + 1) is None
    assert c.audit.as_it_was(timeline, as_of=before) is None
    for moment, expected in moments:
        assert summary(c.audit.as_it_was(timeline, as_of=moment)) == expected, moment

    # The service's own current state agrees with the model too.
    current = c.app.get_profile(ids[ONE])
    roster = c.app.get_roster(acc)
    assert roster is not None
    assert (
        current.name,
        current.archived,
        [v["name"] for v in current.vehicles],
        roster.default == str(ids[ONE]),
    ) == model.summary()
