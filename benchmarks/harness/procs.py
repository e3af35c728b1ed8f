"""Processes the benchmark starts (the service, the hello-world app), their
memory and CPU, and the machine's CPU counters."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- /proc ---------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after it.
    return raw[raw.rindex(")") + 2 :].split()


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (its threads included)."""
    f = _stat_fields(pid)
    if f is None:
        return 0.0
    return (int(f[11]) + int(f[12])) / CLK_TCK


def children_of(pid: int) -> list[int]:
    """Direct and indirect children (uvicorn's workers)."""
    by_parent: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = _stat_fields(int(entry))
            if f is not None:
                by_parent.setdefault(int(f[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# Databases whose backends count as the benchmark's own (set by run.py).
BENCH_DATABASES: set[str] = set()


def postgres_cpu_seconds() -> tuple[float, float]:
    """(CPU of the backends serving the benchmark's databases, CPU of every
    process named postgres): backends' titles name their database."""
    mine = total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() != "postgres":
                continue
            title = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        cpu = proc_cpu_seconds(int(entry))
        total += cpu
        # "postgres: [cluster:] user database host(port) state"
        if any(word in BENCH_DATABASES for word in title.split()[1:5]):
            mine += cpu
    return mine, total


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in parts[:8]]
    total = sum(values)
    idle = values[3] + values[4]  # idle + iowait
    return (total - idle) / CLK_TCK, total / CLK_TCK


@dataclass
class CpuSnapshot:
    at: float
    busy: float
    total: float
    postgres: float
    postgres_all: float
    services: dict[str, float]

    @classmethod
    def take(cls, services: dict[str, list[int]]) -> CpuSnapshot:
        busy, total = machine_cpu()
        mine, everything = postgres_cpu_seconds()
        return cls(
            at=time.monotonic(),
            busy=busy,
            total=total,
            postgres=mine,
            postgres_all=everything,
            services={name: sum(proc_cpu_seconds(p) for p in pids) for name, pids in services.items()},
        )


def cpu_report(before: CpuSnapshot, after: CpuSnapshot, loadgen_cpu: float) -> dict[str, Any]:
    """Shares of the machine's CPU capacity (wall x cores) over an interval;
    "cores" is CPU seconds per wall second. "background" is what the rest of
    the machine used: busy minus the load generator, the started services and
    the PostgreSQL backends of the benchmark's databases."""
    wall = max(after.at - before.at, 1e-9)
    capacity = max(after.total - before.total, 1e-9)  # = wall x cores
    busy = after.busy - before.busy
    services = {name: value - before.services.get(name, 0.0) for name, value in after.services.items()}
    postgres = after.postgres - before.postgres
    background = max(0.0, busy - loadgen_cpu - sum(services.values()) - postgres)
    report: dict[str, Any] = {
        "wall_s": round(wall, 3),
        "machine_busy_share": round(busy / capacity, 3),
        "loadgen_cpu_s": round(loadgen_cpu, 3),
        "loadgen_share": round(loadgen_cpu / capacity, 3),
        "loadgen_cores": round(loadgen_cpu / wall, 3),
        "postgres_bench_cores": round(postgres / wall, 3),
        "postgres_all_cores": round((after.postgres_all - before.postgres_all) / wall, 3),
        "background_cores": round(background / wall, 3),
        "background_share": round(background / capacity, 3),
    }
    for name, value in services.items():
        report[f"{name}_cores"] = round(value / wall, 3)
    return report


def busy_share(seconds: float = 1.0) -> float:
    """The machine's CPU use over the next seconds, as a share of its capacity."""
    b0, t0 = machine_cpu()
    time.sleep(seconds)
    b1, t1 = machine_cpu()
    return (b1 - b0) / max(t1 - t0, 1e-9)


# --- HTTP ----------------------------------------------------------------


def http_request(
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
    timeout: float = 10.0,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, dict[str, str], bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload
    finally:
        if own:
            conn.close()


# --- started processes ----------------------------------------------------


@dataclass
class Started:
    """A process group the benchmark started; stopped by its own group id."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    cwd: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, ready_path: str, timeout: float = 90.0, ready_check: Any = None) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} while starting; log: {self.log_path}\n"
                    + self.log_tail()
                )
            try:
                status, _, body = http_request(self.port, "GET", ready_path, timeout=2)
                last = f"{status} {body[:200]!r}"
                if status == 200 and (ready_check is None or ready_check(body)):
                    return
            except OSError as e:
                last = repr(e)
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout}s ({last}); log: {self.log_path}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid, *children_of(self.proc.pid)]

    def rss_mb(self) -> float:
        """Resident memory of the process and its children (workers, serve's
        projector), in MB."""
        return sum(rss_kb(p) for p in self.pids()) / 1024

    def own_rss_mb(self) -> float:
        """Resident memory of the process alone (serve: the API process), in MB."""
        pids = self.pids()
        return rss_kb(pids[0]) / 1024 if pids else 0.0

    def stop(self, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the group this benchmark created
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
