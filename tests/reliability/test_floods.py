"""Floods and revocation against real processes (issue 13).

- **wait flood + stream flood**: one token keeps 16 far-future `X-Min-Position`
  queries in flight and 50 SSE streams are open on an account of many large
  profiles (half of them read, half never read a byte); meanwhile another
  account's commands and `/healthz` are timed, and the API process's RSS is
  sampled. The figures go to the summary table; the bounds asserted are
  generous (the 2-core machine is shared), the figures are the point.
- **token revocation**: `serve --workers 2`; a token every worker has cached
  is revoked; every worker answers 401 within 1 s (each probe's worker is
  found by its request id in the JSON access log), and the token's open
  streams end within 5 s."""

from __future__ import annotations

import selectors
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from reliability_harness import (
    REPORT,
    SCALE,
    Proc,
    ScenarioRow,
    free_port,
    json_log_lines,
    open_container,
    poll,
    say,
    service_env,
    start_server,
)

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

FLOOD_WAITS = 16
FLOOD_STREAMS = 50
PROFILES = 1000 if SCALE.name == "long" else 150
VICTIM_COMMANDS = 200 if SCALE.name == "long" else 60


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def big_profile(i: int) -> dict[str, Any]:
    """As in the report: 50 vehicles and 20 details each."""
    return {
        "name": f"Racer {i}",
        "vehicles": [
            {"name": f"Kart {i}-{v} Rotax Max Evo", "vehicle_class": "Senior Max", "race_number": f"{v:02d}"}
            for v in range(50)
        ],
        "details": {f"detail_{d:02d}": f"value {d} of racer {i}, a moderately long text" for d in range(20)},
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_commands(base_url: str, token: str, count: int) -> list[float]:
    """Seconds per command of the victim account (create, then renames)."""
    latencies = []
    with httpx.Client(base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as c:
        created = c.post("/v1/profiles", json={"name": "Victim"})
        assert created.status_code == 201, created.text
        pid = created.json()["id"]
        for i in range(count):
            started = time.perf_counter()
            response = c.patch(f"/v1/profiles/{pid}", json={"name": f"Victim {i}"})
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
    return latencies


def time_health(base_url: str, count: int) -> list[float]:
    latencies = []
    with httpx.Client(base_url=base_url, timeout=30) as c:
        for _ in range(count):
            started = time.perf_counter()
            assert c.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)
    return latencies


class RawStreams:
    """Streams on plain sockets: `reading` of them are drained by one selector
    thread (cheap for the client), the rest never read a byte."""

    def __init__(self, base_url: str, token: str, count: int, reading: int) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        request = (
            f"GET /v1/profiles/stream HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
        self.sockets = []
        for _ in range(count):
            sock = socket.create_connection((host, int(port)))
            sock.sendall(request)
            self.sockets.append(sock)
        self.received = Counter[int]()
        self.statuses: list[bytes] = []
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        for i, sock in enumerate(self.sockets[:reading]):
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, i)
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.2):
                try:
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                if self.received[key.data] == 0:
                    self.statuses.append(data.split(b"\r\n", 1)[0])
                self.received[key.data] += len(data)
                if not data:
                    self._selector.unregister(key.fileobj)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets:
            sock.close()


class WaitFlood:
    """FLOOD_WAITS threads, each always with one far-future X-Min-Position query in flight."""

    def __init__(self, base_url: str, token: str) -> None:
        self.statuses = Counter[int]()
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(base_url, token), daemon=True)
            for _ in range(FLOOD_WAITS)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, base_url: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}", "X-Min-Position": str(10**12)}
        with httpx.Client(base_url=base_url, timeout=30, headers=headers) as c:
            while not self._stop.is_set():
                started = time.perf_counter()
                response = c.get("/v1/profiles")
                self.latencies.append(time.perf_counter() - started)
                self.statuses[response.status_code] += 1
                # The report's attacker sent 1.6 requests/s in all; here each of
                # the 16 slots sends again 250 ms after its answer (about 60/s).
                self._stop.wait(0.25)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def seed(base_url: str, token: str, count: int) -> None:
    def worker(indexes: range) -> None:
        with httpx.Client(base_url=base_url, timeout=60, headers={"Authorization": f"Bearer {token}"}) as c:
            for i in indexes:
                response = c.post("/v1/profiles", json=big_profile(i))
                assert response.status_code in (201, 202), response.text

    threads = [threading.Thread(target=worker, args=(range(k, count, 4),)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_wait_and_stream_floods_leave_other_accounts_alone(rel_database: str, rel_logs: Path) -> None:
    # The per-token stream caps are raised so that all 50 streams really open:
    # the memory bound is what is measured (with the defaults 42 of them get 429).
    server = start_server(
        rel_database,
        rel_logs,
        MAX_STREAMS_PER_TOKEN=str(FLOOD_STREAMS),
        MAX_STREAMS_PER_ACCOUNT=str(FLOOD_STREAMS),
    )
    container = open_container(rel_database)
    try:
        flooder = container.accounts.create(f"flooder-{uuid.uuid4().hex[:6]}")
        victim = container.accounts.create(f"victim-{uuid.uuid4().hex[:6]}")
        started = time.monotonic()
        seed(server.base_url, flooder.token, PROFILES)
        say(f"seeded {PROFILES} profiles of 50 vehicles and 20 details in {time.monotonic() - started:.1f} s")
        pid = server.proc.pid
        idle_rss = rss_mb(pid)

        quiet = time_commands(server.base_url, victim.token, VICTIM_COMMANDS)
        quiet_health = time_health(server.base_url, 50)

        peak = [idle_rss]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak.append(rss_mb(pid))
                sampling.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        streams = RawStreams(server.base_url, flooder.token, FLOOD_STREAMS, reading=FLOOD_STREAMS // 2)
        flood = WaitFlood(server.base_url, flooder.token)
        try:
            # Every reading stream got its whole backlog (the account's size in bytes, at least).
            assert poll(lambda: len(streams.statuses) == FLOOD_STREAMS // 2, 60), streams.statuses
            loaded_health: list[float] = []
            health = threading.Thread(target=lambda: loaded_health.extend(time_health(server.base_url, 100)))
            health.start()
            loaded = time_commands(server.base_url, victim.token, VICTIM_COMMANDS)
            health.join(60)
        finally:
            flood.stop()
            received = sorted(streams.received.values())
            streams.close()
        after_rss = rss_mb(pid)
        sampling.set()
        sampler.join(5)

        assert all(s.startswith(b"HTTP/1.1 200") for s in streams.statuses), Counter(streams.statuses)
        assert set(flood.statuses) <= {422, 429}, flood.statuses  # answered at once, never a held thread
        p99_quiet, p99_loaded = percentile(quiet, 0.99), percentile(loaded, 0.99)
        health_max = max(loaded_health)
        figures = (
            f"{PROFILES} profiles x 50 vehicles; {FLOOD_WAITS} far-future waits in flight"
            f" ({sum(flood.statuses.values())} answered: {dict(flood.statuses)},"
            f" p99 {percentile(flood.latencies, 0.99) * 1000:.0f} ms) + {FLOOD_STREAMS} streams"
            f" (backlog bytes per reading stream min {received[0] if received else 0});"
            f" other account's command p99 {p99_quiet * 1000:.1f} -> {p99_loaded * 1000:.1f} ms"
            f" ({p99_loaded / p99_quiet:.2f}x); /healthz p99 {percentile(quiet_health, 0.99) * 1000:.1f} ->"
            f" {percentile(loaded_health, 0.99) * 1000:.1f} ms (max {health_max * 1000:.1f});"
            f" API RSS idle {idle_rss:.0f} MB, peak {max(peak):.0f} MB, after {after_rss:.0f} MB"
        )
        say(figures)
        REPORT.add(ScenarioRow("wait + stream flood", acknowledged=len(loaded) + 1, note=figures))
        # Generous bounds; the figures above are what the issue's targets compare.
        assert max(peak) < 250, figures
        assert health_max < 1.0, figures
        assert p99_loaded < max(10 * p99_quiet, 1.0), figures
    finally:
        container.close()
        server.proc.terminate()


# --- revocation across `serve --workers 2` -------------------------------------------------


@contextmanager
def workers(database_url: str, log_dir: Path) -> Iterator[tuple[str, Proc]]:
    port = free_port()
    proc = Proc.spawn(
        ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        service_env(database_url),
        log_dir,
        f"workers-{port}",
    )
    base_url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.alive(), proc.log()[-4000:]
            try:
                return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        assert poll(ready, 60, 0.1), proc.log()[-4000:]
        yield base_url, proc
    finally:
        proc.terminate(30)


def probe(base_url: str, token: str) -> tuple[str, int]:
    """One request on a fresh connection (the kernel picks the worker); its request id."""
    request_id = f"probe-{uuid.uuid4().hex[:12]}"
    response = httpx.get(
        f"{base_url}/v1/profiles",
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": request_id, "Connection": "close"},
        timeout=10,
    )
    return request_id, response.status_code


def worker_of(proc: Proc) -> dict[str, int]:
    """request id -> the pid of the worker that answered it (from the JSON access log)."""
    return {
        line["request_id"]: line["pid"]
        for line in json_log_lines(proc.log())
        if line.get("message") == "request" and "request_id" in line and "pid" in line
    }


class StreamWatch:
    """A stream read by a thread; ended_at: when the server closed it."""

    def __init__(self, base_url: str, token: str) -> None:
        self.ended_at: float | None = None
        self.status: int | None = None
        self.request_id = f"stream-{uuid.uuid4().hex[:12]}"
        self._open = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(base_url, token), daemon=True)
        self._thread.start()
        assert self._open.wait(10), "the stream did not open"

    def _run(self, base_url: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": self.request_id}
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=None)) as client,
            client.stream("GET", f"{base_url}/v1/profiles/stream", headers=headers) as response,
        ):
            self.status = response.status_code
            self._open.set()
            for _ in response.iter_bytes():
                pass
        self.ended_at = time.monotonic()


def _both_answered_late(proc: Proc, probes: list[tuple[float, str, int]], pids: set[int]) -> bool:
    """Whether probes sent after 1 s were answered by every worker (the access log says which)."""
    answered = worker_of(proc)
    return {answered.get(r) for sent, r, _ in probes if sent > 1.0} >= pids


def test_a_revoked_token_is_refused_by_every_worker_and_its_streams_end(
    rel_database: str, rel_logs: Path
) -> None:
    container = open_container(rel_database)
    try:
        with workers(rel_database, rel_logs) as (base_url, proc):
            account = container.accounts.create(f"revoked-{uuid.uuid4().hex[:6]}")
            keeper = container.accounts.issue(account.account_id, "keeper")
            # Warm: both workers have looked the token up (it is in their caches).
            warm = [probe(base_url, account.token) for _ in range(30)]
            assert all(status == 200 for _, status in warm), warm
            pids = poll(lambda: {worker_of(proc).get(r) for r, _ in warm} - {None}, 10)
            assert len(pids) == 2, f"the warm-up reached only {pids}"
            streams = [StreamWatch(base_url, account.token) for _ in range(6)]
            kept = StreamWatch(base_url, keeper.token)
            assert all(s.status == 200 for s in [*streams, kept])

            revoked_at = time.monotonic()
            assert container.accounts.revoke(account.token_id)
            probes: list[tuple[float, str, int]] = []
            # Probes for 2 s, and on (up to 10 s) until both workers have answered
            # one sent after 1 s: on a loaded machine a few probes can all land on one.
            while (elapsed := time.monotonic() - revoked_at) < 2.0 or (
                elapsed < 10.0 and not _both_answered_late(proc, probes, pids)
            ):
                sent = time.monotonic() - revoked_at
                request_id, status = probe(base_url, account.token)
                probes.append((sent, request_id, status))
            assert poll(lambda: all(s.ended_at for s in streams), 10), (
                "a revoked token's stream is still open"
            )
            stream_close = max(s.ended_at - revoked_at for s in streams)  # type: ignore[operator]
            assert kept.ended_at is None, "another token's stream ended too"

            answered_by = poll(lambda: (w := worker_of(proc)) and all(r in w for _, r, _ in probes) and w, 10)
            assert answered_by, "probes missing from the access log"
            last_ok = max((sent for sent, _, status in probes if status == 200), default=0.0)
            late = {answered_by[r] for sent, r, status in probes if sent > 1.0 and status == 401}
            stream_pids = {w for s in streams if (w := worker_of(proc).get(s.request_id))}
            figures = (
                f"2 workers; last 200 for the revoked token {last_ok * 1000:.0f} ms after the revocation"
                f" ({len(probes)} probes, 401 from pids {sorted(late)} after 1 s);"
                f" its {len(streams)} streams (on {len(stream_pids)} workers) closed within"
                f" {stream_close:.2f} s; another token's stream kept"
            )
            say(figures)
            REPORT.add(ScenarioRow("token revocation", recovery=[last_ok, stream_close], note=figures))
            assert last_ok < 1.0, figures
            assert late == pids, f"not every worker answered 401 after 1 s: {figures}"
            assert all(status == 401 for sent, _, status in probes if sent > 1.0), figures
            assert stream_close < 5.0, figures
    finally:
        container.close()
