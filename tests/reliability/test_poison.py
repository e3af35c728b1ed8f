"""A poison event: one the projection cannot apply (a stored event whose state
is not JSON, written through the event store's recorder as a bad deploy or a
hand edit would). The `project` process stops at it with the position and the
error in its log and in /readyz; commands still work (202: stored, the read
table cannot catch up); `racer-profiles project --skip POSITION` (explicit,
recorded) resumes it."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from reliability_harness import (
    LEADER_LINE,
    PROBLEM,
    REPORT,
    ScenarioRow,
    head_position,
    json_log_lines,
    new_accounts,
    open_container,
    poll,
    retry_after_ok,
    run_cli,
    say,
    start_projector,
    start_server,
    wait_for_position,
)

from domain.profile import RacerProfile
from tests.support.operations import verify_store

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]


def test_a_poison_event_stops_the_projector_visibly_and_an_explicit_skip_resumes_it(
    rel_database: str, rel_logs: Path
) -> None:
    server = start_server(rel_database, rel_logs, projector=False, WAIT_TIMEOUT="1")
    container = open_container(rel_database)
    projector = start_projector(rel_database, rel_logs)
    resumed = None
    resumed_exit = None
    acked = 0
    try:
        assert projector.wait_for_log(LEADER_LINE, 45), projector.log()[-3000:]
        (account,) = new_accounts(container, 1, shared=False)
        with server.client() as http:
            before = http.post("/v1/profiles", json={"name": "Before"}, headers=account.auth())
            assert before.status_code == 201, before.text
            acked += 1
            before_id = before.json()["id"]

            poison_id = uuid.uuid4()
            container.app.recorder.insert_events(
                [
                    StoredEvent(
                        originator_id=poison_id,
                        originator_version=1,
                        topic=get_topic(RacerProfile.Renamed),
                        state=b'{"name": "half a JSON',
                    )
                ]
            )
            poison = head_position(container)
            say(f"poison: injected an undecodable event at position {poison}")

            # The runner stops at it: the process ends, naming the position and the error.
            projector.process.wait(timeout=30)
            assert projector.process.returncode == 1, projector.log()[-3000:]
            stops = [
                line
                for line in json_log_lines(projector.log())
                if line.get("level") == "ERROR"
                and f"projection stopped at position {poison}" in line.get("message", "")
            ]
            assert stops, projector.log()[-3000:]
            assert f"--skip {poison}" in stops[0]["message"]  # the log says how to resume
            assert "Failed to deserialise" in stops[0]["message"], stops[0]  # the error itself

            ready = http.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["projection_failed_position"] == poison
            assert ready.json()["projection_error"]

            # Commands still work: stored (202 with the position), the read table waits.
            during = http.post("/v1/profiles", json={"name": "During"}, headers=account.auth())
            assert during.status_code == 202, during.text
            acked += 1
            during_id = during.json()["profile_id"]
            during_position = int(during.headers["X-Position"])
            assert during_position > poison
            renamed = http.patch(
                f"/v1/profiles/{before_id}", json={"name": "Renamed while stopped"}, headers=account.auth()
            )
            assert renamed.status_code == 202, renamed.text
            acked += 1
            listing = http.get("/v1/profiles", headers=account.auth())
            assert listing.status_code == 200 and [p["name"] for p in listing.json()["items"]] == ["Before"]
            waiting = http.get(
                f"/v1/profiles/{during_id}",
                headers={**account.auth(), "X-Min-Position": str(during_position)},
            )
            assert waiting.status_code == 503, waiting.text
            assert waiting.headers["content-type"].startswith(PROBLEM) and retry_after_ok(
                waiting.headers.get("retry-after")
            )

            # A skip must name the position the projection stopped at.
            wrong = run_cli(rel_database, "project", "--skip", str(poison + 1))
            assert wrong.returncode == 2, (wrong.returncode, wrong.stdout, wrong.stderr[-2000:])
            assert f"has not stopped at position {poison + 1}" in wrong.stderr

            # The skip is recorded and the command exits; a projector started again resumes.
            skipped_at = time.monotonic()
            skipped = run_cli(rel_database, "project", "--skip", str(poison))
            assert skipped.returncode == 0, (skipped.stdout, skipped.stderr[-2000:])
            assert f"skipped the event at position {poison}" in skipped.stdout
            resumed = start_projector(rel_database, rel_logs)
            wait_for_position(rel_database, head_position(container), 60)
            recovery = time.monotonic() - skipped_at
            say(
                f"poison: `project --skip {poison}`, then `project`, caught up {recovery:.2f} s after the skip"
            )
            assert poll(lambda: http.get("/readyz").status_code == 200, 15), http.get("/readyz").text
            shown = http.get(f"/v1/profiles/{during_id}", headers=account.auth())
            assert shown.status_code == 200 and shown.json()["name"] == "During"
            again = http.get(f"/v1/profiles/{before_id}", headers=account.auth())
            assert again.json()["name"] == "Renamed while stopped"
            later = http.post("/v1/profiles", json={"name": "After"}, headers=account.auth())
            assert later.status_code == 201, later.text
            acked += 1

        with container.datastore.get_connection() as conn:
            skips = conn.execute("SELECT position, error, skipped_by FROM racer_profiles_skips").fetchall()
        assert [(s["position"], s["skipped_by"]) for s in skips] == [(poison, "cli")]
        assert skips[0]["error"]
        # verify still shows the evidence: the undecodable event, and nothing else (the
        # skip record accounts for the event's absence from the audit index).
        problems = verify_store(container)
        assert problems and all(str(poison_id) in p for p in problems), problems
        REPORT.add(
            ScenarioRow(
                "poison event", acked, 0, 0, 0, 1, [recovery], note=f"stopped at {poison}; resumed by --skip"
            )
        )
    finally:
        projector.terminate()
        if resumed is not None:
            resumed_exit = resumed.terminate()
        container.close()
        server.proc.terminate()
    assert resumed_exit == 0  # SIGTERM stops the resumed runner cleanly
