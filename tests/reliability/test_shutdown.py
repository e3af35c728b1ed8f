"""The server process ending under load.

Graceful shutdown: SIGTERM to `racer-profiles serve` during load finishes the
requests already being processed, stops its projector child (which finishes
its current transaction), closes the pools and exits 0 within seconds; nothing is
half-written (the read table has applied every stored event, verify passes).

A crash: kill -9 of `serve` (its projector child then exits by itself) under
load, then a restart on
the same port: every acknowledged change is there; in the long form clients
retry unanswered commands with their Idempotency-Key, and each is applied once."""

from __future__ import annotations

import signal
import statistics
import time
from pathlib import Path

import psycopg
import pytest
from reliability_harness import (
    REPORT,
    SCALE,
    EventIndex,
    Ledger,
    Result,
    Sampler,
    ScenarioRow,
    Workload,
    assert_no_problems,
    conflict_rate,
    describe_counts,
    end_state_problems,
    head_position,
    json_log_lines,
    load_for,
    open_container,
    poll,
    retry_outcomes,
    say,
    seeded_accounts,
    start_server,
    tracking_position,
    unexpected_statuses,
    violation_count,
)

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

WAIT_TIMEOUT = 5
EXIT_BOUND = WAIT_TIMEOUT + 5.0  # the longest request (a command waiting for the read table) plus closing


def test_sigterm_during_load_finishes_in_flight_requests_and_exits_cleanly(
    rel_database: str, rel_logs: Path
) -> None:
    server = start_server(rel_database, rel_logs, WAIT_TIMEOUT=str(WAIT_TIMEOUT))
    container = open_container(rel_database)
    try:
        with seeded_accounts(container, server, SCALE.clients) as (shared, private):
            ledger = Ledger()
            # A connection per request: a refused connection is one the server never
            # accepted, so every other failure is a request it dropped.
            workload = Workload([server], shared, private, ledger, seed=53, fresh_connections=True).start()
            load_for(
                SCALE.shutdown_load_seconds, workload, [server.proc], min_acknowledged=20, max_seconds=60
            )
            signalled = time.monotonic()
            server.proc.process.send_signal(signal.SIGTERM)
            try:
                code = server.proc.process.wait(timeout=60)
            finally:
                workload.stop.set()
            took = time.monotonic() - signalled
            workload.finish()
            say(f"shutdown: exit {code} {took:.2f} s after SIGTERM")
            with psycopg.connect(rel_database, autocommit=True) as conn:
                applied = tracking_position(conn)
            head = head_position(container)
            results = ledger.snapshot()
            index = EventIndex.load(container)
            in_flight = [r for r in results if r.started < signalled < r.ended]
            processed = {
                line["request_id"]: line.get("status")
                for line in json_log_lines(server.proc.log())
                if line.get("logger") == "racer_profiles.access" and line.get("request_id")
            }
            problems: dict[str, list[str]] = {
                "exit": [] if code == 0 else [f"exit status {code}"],
                "slow exit": [] if took <= EXIT_BOUND else [f"{took:.1f} s"],
                # Stopped after its current transaction, having applied every stored event.
                "half-written": [] if applied == head else [f"read table at {applied}, log head at {head}"],
                "5xx": [f"{r.op} {r.path}: {r.status}" for r in results if (r.status or 0) >= 500],
                # Every request the server processed (its access log names it, or its
                # events are stored) got its answer to the client.
                "dropped in-flight requests": [
                    f"{r.op} {r.path}: {r.error}, yet the server logged it ({processed.get(r.request_id)}) "
                    f"or stored its events ({[p for p, _ in index.by_request.get(r.request_id, [])]})"
                    for r in results
                    if r.error and (r.request_id in processed or index.by_request.get(r.request_id))
                ],
                "answers differ from the access log": [
                    f"{r.op} {r.path}: client got {r.status}, server logged {processed[r.request_id]}"
                    for r in results
                    if r.status is not None and processed.get(r.request_id) not in (None, r.status)
                ],
                "log errors": [
                    line.get("message", "")[:300]
                    for line in json_log_lines(server.proc.log())
                    if line.get("level") in ("ERROR", "CRITICAL")
                ]
                + (["a traceback in the log"] if "Traceback" in server.proc.log() else []),
                "application shutdown": []
                if "application shutdown complete" in server.proc.log()
                else ["uvicorn did not run the application's shutdown"],
            }
            problems.update(end_state_problems(container, rel_database, results, None, shared))
            acked = sum(r.acknowledged for r in results)
            answered_in_flight = sum(1 for r in in_flight if r.status is not None)
            say(
                f"shutdown: {len(results)} requests ({describe_counts(results)}); {len(in_flight)} in flight "
                f"at SIGTERM, {answered_in_flight} of them answered"
            )
            REPORT.add(
                ScenarioRow(
                    "SIGTERM under load",
                    acked,
                    conflict_rate(results)[0],
                    sum(1 for r in results if (r.status or 0) >= 500),
                    violation_count(problems),
                    1,
                    [took],
                    note=f"{answered_in_flight}/{len(in_flight)} in-flight answered; recovery = exit time",
                )
            )
    finally:
        container.close()
        server.proc.terminate()
    assert acked >= 20, describe_counts(results)
    assert in_flight, "no request was in flight at SIGTERM: the run proved nothing"
    assert_no_problems(problems)


def test_a_server_killed_under_load_restarts_with_every_acknowledged_change(
    rel_database: str, rel_logs: Path
) -> None:
    server = start_server(rel_database, rel_logs, WAIT_TIMEOUT=str(WAIT_TIMEOUT))
    port = int(server.base_url.rsplit(":", 1)[1])
    container = open_container(rel_database)
    rounds = 1 if SCALE.name == "short" else 3
    retry = 0.0 if SCALE.name == "short" else 60.0  # the idempotency lease is 30 s
    crashes: list[tuple[float, float]] = []
    recoveries: list[float] = []
    try:
        with seeded_accounts(container, server, SCALE.clients) as (shared, private):
            ledger = Ledger()
            sampler = Sampler(rel_database, shared, server, SCALE.sample_pause).start()
            workload = Workload([server], shared, private, ledger, seed=59, retry_seconds=retry).start()
            for round_ in range(rounds):
                load_for(
                    1.5 if SCALE.name == "short" else 8.0,
                    workload,
                    [server.proc],
                    min_acknowledged=10,
                    max_seconds=60,
                )
                killed = time.monotonic()
                server.proc.kill9()
                server = start_server(rel_database, rel_logs, port=port, WAIT_TIMEOUT=str(WAIT_TIMEOUT))
                back = time.monotonic()
                crashes.append((killed, back))

                def answered(after: float = back, killed: float = killed) -> float | None:
                    ok = [r.ended for r in ledger.snapshot() if r.started >= after and r.acknowledged]
                    return min(ok) - killed if ok else None

                took = poll(answered, 60, 0.05)
                assert took is not None, (
                    f"no command succeeded after the restart: {describe_counts(ledger.snapshot())}"
                )
                recoveries.append(took)
                say(
                    f"server crash {round_ + 1}: commands succeed again {took:.2f} s after kill -9 (restart included)"
                )
            load_for(1.0, workload, [server.proc])
            workload.finish(timeout=retry + 60)
            sampler.finish()
            results = ledger.snapshot()
            problems = end_state_problems(container, rel_database, results, sampler, shared, rebuild=True)

            def around_a_crash(r: Result) -> bool:
                return any(r.started <= back and r.ended >= killed for killed, back in crashes)

            # Transport errors only for requests cut by a crash (reads, and commands when
            # clients do not retry); a command retried with its key ends with an answer.
            finals = {r.request_id: r for r in results}  # the last attempt of each request
            problems["unexpected answers"] = [
                line
                for r in finals.values()
                for line in unexpected_statuses([r])
                if not (r.error and around_a_crash(r) and (not retry or r.op == "read"))
            ]
            problems["retried commands left unresolved"], resolve = retry_outcomes(results)
            acked = sum(r.acknowledged for r in results)
            retried = len(resolve)
            if resolve:
                say(
                    f"server crash: a command retried with its Idempotency-Key was answered at most "
                    f"{max(resolve):.1f} s after its first attempt (the idempotency lease is 30 s)"
                )
            say(
                f"server crash: {len(results)} requests ({describe_counts(results)}); {retried} commands retried "
                f"with their key; recovery median {statistics.median(recoveries):.2f} s"
            )
            REPORT.add(
                ScenarioRow(
                    "serve kill -9 + restart",
                    acked,
                    conflict_rate(results)[0],
                    sum(1 for r in results if (r.status or 0) >= 500),
                    violation_count(problems),
                    len(crashes),
                    recoveries,
                    note=f"{retried} retried with Idempotency-Key; recovery: kill -> first 2xx",
                )
            )
    finally:
        container.close()
        server.proc.terminate()
    assert acked >= 20, describe_counts(results)
    assert_no_problems(problems)


def test_a_command_whose_server_died_before_answering_is_answered_on_retry_with_its_position(
    rel_database: str, rel_logs: Path
) -> None:
    """The first request stored its events (its key marked committed in the same
    transaction) and its process died before answering; once the key's lease has
    run out, the retry with the same key answers from the read table, applies
    nothing twice, and carries X-Position like every command's answer."""
    from api.schemas import ProfileCreate
    from domain.service import Cause
    from infrastructure.idempotency import fingerprint

    server = start_server(rel_database, rel_logs, WAIT_TIMEOUT=str(WAIT_TIMEOUT))
    container = open_container(rel_database)
    try:
        new = container.accounts.create("died-before-answering")
        account, key, body = str(new.account_id), "retry-after-a-crash", {"name": "Lost answer"}
        payload = ProfileCreate(**body).model_dump_json(exclude_unset=True).encode()
        assert container.idempotency.reserve(account, key, fingerprint("POST", "/v1/profiles", payload))
        outcome = container.app.create_profile(
            account, body["name"], [], Cause(account, request_id="first-attempt", idempotency=(account, key))
        )
        assert container.idempotency.get(account, key).state == "committed"  # type: ignore[union-attr]
        # The dead process's lease runs out (LEASE_SECONDS, here without the wait).
        with container.datastore.transaction(commit=True) as curs:
            curs.execute(
                "UPDATE idempotency_keys SET lease_until = now() - interval '1 second'"
                " WHERE account_id = %s AND key = %s",
                (account, key),
            )
        head = head_position(container)
        headers = {"Authorization": f"Bearer {new.token}", "Idempotency-Key": key}
        with server.client() as http:
            retried = http.post("/v1/profiles", json=body, headers=headers)
            again = http.post("/v1/profiles", json=body, headers=headers)
        head_after = head_position(container)
    finally:
        container.close()
        server.proc.terminate()
    assert retried.status_code == 201, retried.text
    assert retried.json()["id"] == str(outcome.profile_id)
    assert head_after == head, "the retry applied the command a second time"
    assert again.status_code == 201 and again.json()["id"] == str(outcome.profile_id)
    for answer in (retried, again):
        assert "X-Position" in answer.headers, f"no X-Position on the retry's answer: {dict(answer.headers)}"
        assert int(answer.headers["X-Position"]) >= outcome.position
