"""A new profile's data key is stored in the transaction of the profile's first
events (infrastructure/keys.py NewKeys): one commit per command, and no key
without the events it seals, nor events whose key was never stored."""

from __future__ import annotations

import os
import time
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from domain.service import Cause
from infrastructure.container import Container
from infrastructure.keys import KEY_BYTES, NewKeys


def _key_row(c: Container, key_id: UUID) -> bytes | None:
    with psycopg.connect(c.settings.database_url) as conn:
        row = conn.execute("SELECT secret FROM data_keys WHERE key_id = %s", (key_id,)).fetchone()
    return None if row is None else bytes(row[0])


def test_the_key_commits_with_the_events_and_reads_back(container: Container) -> None:
    account = str(uuid4())
    outcome = container.app.create_profile(account, "Ada", [{"name": "Kart"}], Cause(account))
    stored = _key_row(container, outcome.profile_id)
    assert stored is not None and len(stored) == KEY_BYTES
    assert container.keys.for_reading(outcome.profile_id) == stored
    # A fresh ring (another process) reads the events with the stored key.
    container.keys._cache.clear()
    assert container.app.get_profile(outcome.profile_id).name == "Ada"


def test_a_failed_save_leaves_no_key(container: Container) -> None:
    """The events' transaction fails after the key's insert was sent: the key goes with it."""
    account, profile_id = str(uuid4()), uuid4()
    events = container.app.recorder.events_table_name  # type: ignore[attr-defined]
    with psycopg.connect(container.settings.database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'refused for the test'; END $$"
        )
        conn.execute(
            f"CREATE TRIGGER refuse BEFORE INSERT ON {events} FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    with pytest.raises(Exception, match="refused for the test"):
        container.app.create_profile(account, "Ada", [], Cause(account), profile_id=profile_id)
    assert _key_row(container, profile_id) is None
    assert container.keys._cached(profile_id) is None  # nothing unstored is kept

    with psycopg.connect(container.settings.database_url, autocommit=True) as conn:
        conn.execute(f"DROP TRIGGER refuse ON {events}")
    container.app.create_profile(account, "Ada", [], Cause(account), profile_id=profile_id)
    assert _key_row(container, profile_id) is not None
    assert container.app.get_profile(profile_id).name == "Ada"


@pytest.mark.parametrize("error_back", ["at the sync", "while the lock is sent"])
def test_a_key_row_left_before_is_used(
    container: Container, monkeypatch: pytest.MonkeyPatch, error_back: str
) -> None:
    """Versions before this one committed a key on its own first: a row left by a
    save that failed then is taken, not a second key made. The key's insert
    fails in the events' pipeline; its error may come back at the pipeline's
    sync or already while the next statements are sent (a fast server: seen
    on the embedded one, where the save then failed with "pipeline aborted")."""
    if error_back == "while the lock is sent":
        insert = NewKeys.insert

        def insert_then_wait(self: NewKeys, curs: Any) -> None:
            insert(self, curs)
            curs.connection.pgconn.flush()
            time.sleep(0.2)  # the server's error is back before the next statement is sent

        monkeypatch.setattr(NewKeys, "insert", insert_then_wait)
    account, profile_id, secret = str(uuid4()), uuid4(), os.urandom(KEY_BYTES)
    with psycopg.connect(container.settings.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO data_keys (key_id, secret) VALUES (%s, %s)", (profile_id, secret))
    container.app.create_profile(account, "Ada", [{"name": "Kart"}], Cause(account), profile_id=profile_id)
    assert _key_row(container, profile_id) == secret
    container.keys._cache.clear()
    profile = container.app.get_profile(profile_id)
    assert profile.name == "Ada" and profile.vehicles[0]["name"] == "Kart"
    assert container.app.get_roster(account) is not None
