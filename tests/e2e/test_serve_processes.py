"""`racer-profiles serve` runs the projector as a child process (api/workers.py
says why): it is started with the API, restarted when it dies, and never
outlives a serve that was killed."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.service import running_service

pytestmark = pytest.mark.postgres

WAIT = 20.0  # seconds; covers api/workers.py's 5 s restart pause


def projector_children(serve_pid: int) -> list[int]:
    listing = subprocess.run(
        ["ps", "-ww", "-o", "pid=,args=", "--ppid", str(serve_pid)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [
        int(line.split()[0]) for line in listing.splitlines() if f" project --parent-pid {serve_pid}" in line
    ]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its new parent) counts as gone.
    state = (
        Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if Path(f"/proc/{pid}").exists()
        else "X"
    )
    return state not in ("Z", "X")


def until(condition, timeout: float = WAIT):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.1)  # bounded poll
    return value


def test_serve_restarts_its_projector_and_takes_it_down_with_it(pg_server_url: str, e2e_logs: Path) -> None:
    with running_service(pg_server_url, e2e_logs) as service:
        serve = service.process.pid
        children = until(lambda: projector_children(serve))
        assert len(children) == 1, children
        token = service.new_token()
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=service.base_url, headers=headers, timeout=30) as client:
            assert client.post("/v1/profiles", json={"name": "Before"}).status_code == 201
            ready = client.get("/readyz").json()
            assert ready["projection"] == "leader" and ready["lag"] == 0, ready

            # The projector is killed: commands are stored meanwhile (202 once the
            # wait times out), and a new projector applies them.
            os.kill(children[0], signal.SIGKILL)
            assert until(lambda: not alive(children[0]))
            stored = client.post("/v1/profiles", json={"name": "While"})
            assert stored.status_code in (201, 202), stored.text
            position = int(stored.headers["X-Position"])
            restarted = until(lambda: [p for p in projector_children(serve) if p != children[0]])
            assert restarted, service.log()[-3000:]

            # The new process exists, but it still has to start, lead and catch up:
            # until then the documented answer is 503 + Retry-After (WAIT_TIMEOUT is
            # 1 s here), so ask again, as a client does, within the test's bound.
            def caught_up() -> httpx.Response | None:
                r = client.get("/v1/profiles", headers={"X-Min-Position": str(position)})
                return None if r.status_code == 503 else r

            listed = until(caught_up) or client.get("/v1/profiles", headers={"X-Min-Position": str(position)})
            assert listed.status_code == 200, listed.text
            assert [p["name"] for p in listed.json()["items"]] == ["Before", "While"]

        # serve dies without a chance to stop its child: the child notices and exits.
        service.process.kill()
        service.process.wait(10)
        assert until(lambda: not alive(restarted[0])), "the projector outlived its serve"


def test_a_burst_of_signals_stops_a_projector_cleanly(pg_server_url: str, e2e_logs: Path) -> None:
    """SIGTERM from serve and SIGINT from the terminal's process group can
    arrive together: a handler that set a threading.Event deadlocked on the
    second one (the Event's lock is not reentrant) and the projector hung."""
    from tests.support.databases import create_database, drop_database
    from tests.support.service import CLI, ROOT, service_env

    database_url = create_database(pg_server_url, "rp_e2e")
    log = e2e_logs / f"project-{time.monotonic_ns()}.log"
    try:
        for _ in range(5):
            with log.open("wb") as out:
                project = subprocess.Popen(
                    [str(CLI), "project"],
                    env=service_env(database_url),
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            assert until(lambda: "projection runner is the leader" in log.read_text(errors="replace")), (
                log.read_text(errors="replace")[-3000:]
            )
            # A stream of both signals (the same signal pending twice counts once).
            subprocess.run(
                [
                    "bash",
                    "-c",
                    f"for i in $(seq 3000); do kill -TERM {project.pid} 2>/dev/null;"
                    f" kill -INT {project.pid} 2>/dev/null || break; done",
                ],
                check=False,
                timeout=60,
            )
            try:
                code = project.wait(15)
            except subprocess.TimeoutExpired:
                project.kill()
                pytest.fail("the projector hung after a burst of SIGTERMs")
            assert code == 0, log.read_text(errors="replace")[-3000:]
    finally:
        drop_database(pg_server_url, database_url)
