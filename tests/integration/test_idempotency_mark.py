"""The idempotency mark moves a key only from in flight to committed: a second
transaction carrying an already committed key rolls back and stores nothing,
and its request answers as a replay of the committed one."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi import Response
from starlette.requests import Request

from api.idempotency import idempotent
from api.schemas import ProfileCreate
from domain.service import Cause
from infrastructure.container import Container
from infrastructure.idempotency import KeyAlreadyCommitted, fingerprint


def an_account() -> str:
    return f"acc-{uuid.uuid4().hex[:12]}"


def profile_names(c: Container, account: str) -> list[str]:
    return sorted(row.name for row in c.queries.all_rows() if row.account_id == account)


def test_a_second_transaction_with_a_committed_key_stores_nothing(container: Container) -> None:
    c, account, key = container, an_account(), "key-1"
    assert c.idempotency.reserve(account, key, "fp")
    first = c.app.create_profile(account, "First", [], Cause(account, idempotency=(account, key)))
    stored = c.idempotency.get(account, key)
    assert stored is not None and stored.state == "committed" and stored.profile_id == str(first.profile_id)
    head = c.app.recorder.max_notification_id()

    with pytest.raises(KeyAlreadyCommitted):
        c.app.create_profile(account, "Second", [], Cause(account, idempotency=(account, key)))
    assert c.app.recorder.max_notification_id() == head  # rolled back: no event stored
    stored = c.idempotency.get(account, key)
    assert stored is not None and stored.profile_id == str(first.profile_id)
    c.view.wait(c.app.name, head or 0, timeout=10)
    assert profile_names(c, account) == ["First"]


def test_a_key_that_is_no_longer_reserved_stores_nothing(container: Container) -> None:
    """A key dropped while its command ran (expired, purged) is not silently re-created."""
    c, account = container, an_account()
    head = c.app.recorder.max_notification_id()
    with pytest.raises(KeyAlreadyCommitted):
        c.app.create_profile(account, "Orphan", [], Cause(account, idempotency=(account, "never-reserved")))
    assert c.app.recorder.max_notification_id() == head


def a_request(key: str) -> Request:
    return Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/v1/profiles",
            "headers": [(b"idempotency-key", key.encode()), (b"content-type", b"application/json")],
            "query_string": b"",
        }
    )


def test_a_request_whose_key_was_committed_by_another_answers_as_its_replay(container: Container) -> None:
    """Request A outlives its lease; retry B takes the key over; A commits while
    B runs. B's own transaction rolls back and B answers with A's profile."""
    c, account, key = container, an_account(), "key-race"
    body = ProfileCreate(name="Ann")
    fp = fingerprint("POST", "/v1/profiles", body.model_dump_json(exclude_unset=True).encode())
    assert c.idempotency.reserve(account, key, fp)  # A's reservation
    with c.datastore.transaction(commit=True) as curs:  # A's lease runs out
        curs.execute("UPDATE idempotency_keys SET lease_until = now() - interval '1 second'")
    a_profile: list[uuid.UUID] = []
    rebuilt: list[str] = []

    def b_command(cause: Cause) -> Response:
        # A commits while B runs, then B's own command reaches its transaction.
        a_profile.append(c.app.create_profile(account, "Ann", [], cause).profile_id)
        c.app.create_profile(account, "Ann", [], cause)
        raise AssertionError("B's command must not commit")

    def rebuild(profile_id: str) -> Response:
        rebuilt.append(profile_id)
        return Response(json.dumps({"id": profile_id}), status_code=201)

    response = idempotent(a_request(key), c.idempotency, Cause(account), body, b_command, rebuild)
    assert response.status_code == 201
    assert response.headers["Idempotent-Replayed"] == "true"
    assert rebuilt == [str(a_profile[0])]
    c.view.wait(c.app.name, c.app.recorder.max_notification_id() or 0, timeout=10)
    assert profile_names(c, account) == ["Ann"]  # one profile, not two
