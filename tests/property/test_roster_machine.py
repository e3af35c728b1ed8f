"""Random command sequences over several accounts: the service agrees with the
model after every step, and every account keeps exactly one default while it
has active profiles (and none otherwise)."""

from __future__ import annotations

from hypothesis import settings

from tests.property.roster_model import RosterMachine


class InMemoryRosterMachine(RosterMachine):
    """The in-memory ProfilesService (the base machine's default factory)."""


# max_examples from the hypothesis profile (tests/conftest.py): 200 in `make test` (thorough), 25 in a
# quick run. The PostgreSQL machine (test_roster_machine_postgres.py) runs its 25 in every profile.
InMemoryRosterMachine.TestCase.settings = settings(stateful_step_count=30, deadline=None)
TestInMemoryRoster = InMemoryRosterMachine.TestCase
