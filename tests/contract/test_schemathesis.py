"""Schemathesis against the live app (in process, real PostgreSQL behind it):
every operation of the OpenAPI document, with a valid owner token; no 5xx, no
response outside the documented status codes, content types, headers and
schemas. The examples, coverage and fuzzing phases run for each operation.

FUZZ_MAX_EXAMPLES raises the fuzzed examples per operation (`make fuzz`)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app, offline_document
from infrastructure.container import Container

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "12"))
# Cases over all operations (every phase); a full run below this fails.
MIN_CASES = int(os.environ.get("FUZZ_MIN_CASES", "300"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# The document the command exports (test_openapi_current checks that the app
# serves the same one); requests go to the live app of the `live` fixture.
schema = schemathesis.openapi.from_dict(
    offline_document(),
    config=schemathesis.Config.from_dict(
        {
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            "request-timeout": 30,
            # The SSE stream never ends: keep its first event, or what came within
            # a second when there is none to send (resuming after the last position).
            "max-stream-events": 1,
            "operations": [{"include-path": "/v1/profiles/stream", "request-timeout": 1}],
        }
    ),
)
OPERATIONS = {result.ok().label for result in schema.get_all_operations()}


@dataclass
class Live:
    """The app, an owner token and the seeded profiles and vehicles, which
    most generated ids are pointed at so operations reach real profiles."""

    app: FastAPI
    token: str
    spare_token_id: str  # another token of the account: what a DELETE of the fuzzer's own revokes
    profiles: list[str]
    vehicles: dict[str, list[str]]
    calls: int = 0
    statuses: dict[str, set[int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _seed(client: TestClient, token: str) -> tuple[list[str], dict[str, list[str]]]:
    headers = {"Authorization": f"Bearer {token}"}
    profiles, vehicles = [], {}
    for i in range(3):
        body = {
            "name": f"Seed {i}",
            "vehicles": [{"name": f"Kart {i}", "race_number": f"{i}7"}, {"name": f"Spare {i}"}],
        }
        response = client.post("/v1/profiles", json=body, headers=headers)
        assert response.status_code == 201, response.text
        created = response.json()
        profiles.append(created["id"])
        vehicles[created["id"]] = [v["id"] for v in created["vehicles"]]
    return profiles, vehicles


@pytest.fixture(scope="module")
def live(module_container: Container) -> Iterator[Live]:
    account = module_container.accounts.create(f"fuzz-{uuid.uuid4().hex[:8]}")
    token = account.token
    spare = module_container.accounts.issue(account.account_id, "spare")
    app = create_app(module_container)
    # No `with`: the lifespan (the change feed) is started by schemathesis's client.
    profiles, vehicles = _seed(TestClient(app), token)
    state = Live(app, token, spare.token_id, profiles, vehicles)
    try:
        yield state
    finally:
        shutdown_lifespans()
    print(f"\nschemathesis: {state.calls} cases over {len(state.statuses)} operations")
    for label, statuses in sorted(state.statuses.items()):
        print(f"  {label}: {sorted(statuses)} in {state.seconds[label]:.1f}s")


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _aim(case: Any, live: Live) -> None:
    """Points three of four well-formed generated ids (path and body) at the
    seeded profiles and vehicles."""
    params = case.path_parameters or {}
    pid = _uuid(params.get("profile_id"))
    if pid is not None and pid.int % 4:
        chosen = live.profiles[pid.int % len(live.profiles)]
        params["profile_id"] = chosen
        vid = _uuid(params.get("vehicle_id"))
        if vid is not None and vid.int % 4:
            params["vehicle_id"] = live.vehicles[chosen][vid.int % len(live.vehicles[chosen])]
    if isinstance(case.body, dict):
        for key in ("profile_id", "successor_id"):
            given = _uuid(case.body.get(key))
            if given is not None and given.int % 4:
                case.body[key] = live.profiles[given.int % len(live.profiles)]


def _reachable(case: Any, live: Live) -> None:
    """Keeps X-Min-Position within the log: a position the log has not reached
    is a documented 503 after WAIT_TIMEOUT (tests/e2e checks it), not a finding."""
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "x-min-position" and str(headers[name]).strip().isdigit():
            head = live.app.state.container.audit.log.head()
            headers[name] = str(int(str(headers[name]).strip()) % (head + 1))


def _spare_own_token(case: Any, live: Live) -> None:
    """A revocation of the fuzzer's own token (GET /v1/tokens links to it) is
    pointed at the account's spare token: revoking itself would turn every
    later case into a 401 (revocation itself is tested in tests/e2e)."""
    params = case.path_parameters or {}
    if params.get("token_id") == live.token.split("_")[1]:
        params["token_id"] = live.spare_token_id


@schema.parametrize()
def test_every_operation_conforms_to_the_document(case: Any, live: Live) -> None:
    _aim(case, live)
    _reachable(case, live)
    _spare_own_token(case, live)
    started = time.monotonic()
    response = case.call_and_validate(
        app=live.app, headers={"Authorization": f"Bearer {live.token}"}, checks=CHECKS
    )
    live.calls += 1
    live.statuses.setdefault(case.operation.label, set()).add(response.status_code)
    label = case.operation.label
    live.seconds[label] = live.seconds.get(label, 0.0) + time.monotonic() - started


STATEFUL_EXAMPLES = int(os.environ.get("FUZZ_STATEFUL_EXAMPLES", "15"))

# Sequences start with a create: names the domain accepts (printable, not blank)
# keep most of them going; the single-request fuzzing above sends anything.
stateful_schema = schemathesis.openapi.from_dict(offline_document())


@stateful_schema.hook
def map_body(context: Any, body: Any) -> Any:
    if isinstance(body, dict):
        for holder in [body, *(v for v in body.get("vehicles") or [] if isinstance(v, dict))]:
            name = holder.get("name")
            if isinstance(name, str):
                printable = "".join(ch for ch in name if ch.isprintable()).strip()[:80]
                holder["name"] = printable or "Racer"
    return body


def test_sequences_along_the_documented_links_conform(live: Live) -> None:
    """Create a profile, then follow the document's links with its id and ETag
    (rename, archive, restore, vehicles, default, history): states the
    single-request fuzzing rarely reaches."""
    machine = stateful_schema.as_state_machine()
    calls: list[str] = []

    class AgainstTheLiveApp(machine):  # type: ignore[valid-type, misc]
        def before_call(self, case: Any) -> None:
            _reachable(case, live)
            _spare_own_token(case, live)
            _spare_own_token(case, live)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"app": live.app, "headers": {"Authorization": f"Bearer {live.token}"}}

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            calls.append(f"{case.operation.label} -> {response.status_code}")
            case.validate_response(
                response, checks=CHECKS, headers=kwargs.get("headers"), transport_kwargs=kwargs
            )

    AgainstTheLiveApp.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=8,
            deadline=None,
            database=None,
            derandomize=os.environ.get("FUZZ_RANDOM") is None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )
    live.calls += len(calls)
    print(f"\nstateful: {len(calls)} calls: {', '.join(sorted(set(calls)))}")
    # Sequences got past the create: profiles were created and then changed.
    assert "POST /v1/profiles -> 201" in calls, sorted(set(calls))
    changed = {
        c for c in calls if c.split()[0] in ("PATCH", "PUT", "DELETE", "POST") and c.endswith(("200", "201"))
    }
    assert changed - {"POST /v1/profiles -> 201"}, sorted(set(calls))


def test_the_runs_above_reached_every_operation_with_enough_cases(
    live: Live, request: pytest.FixtureRequest
) -> None:
    """Last in the module (a check of the runs above, not of the app): each operation
    whose test was selected got cases, and a full run (every operation, no -k
    selection) ran at least MIN_CASES cases in all, sequences included."""
    selected = {
        label
        for item in request.session.items
        if (label := getattr(item, "operation_label", None)) is not None and item.module is request.module
    }
    assert set(live.statuses) == selected, sorted(selected - set(live.statuses))
    if selected == OPERATIONS:
        assert live.calls >= MIN_CASES, f"only {live.calls} cases ran; expected at least {MIN_CASES}"
