"""The load generators: wrk (HTTP) and pgbench (SQL), each run as a child
whose own CPU time comes from wait4(), so its share of the 2 cores is exact."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.procs import NCPU, CpuSnapshot, cpu_report

HERE = Path(__file__).resolve().parent.parent
WRK_SCRIPT = HERE / "wrk" / "bench.lua"
PGBENCH_DIR = HERE / "pgbench"

INSTALL_HINT = {
    "wrk": "wrk is missing: install it from Debian's packages with\n"
    "    apt-get update && apt-get install -y wrk\n",
    "pgbench": "pgbench is missing: install it with\n"
    "    apt-get update && apt-get install -y postgresql-client  (or postgresql-contrib)\n",
}


def find_tool(name: str, default: str) -> str | None:
    return shutil.which(name) or (default if Path(default).exists() else None)


def _run_child(
    argv: list[str], services: dict[str, list[int]], env: dict[str, str] | None = None
) -> tuple[int, str, dict[str, Any]]:
    """Runs argv to completion; returns (exit code, output, CPU report)."""
    with tempfile.TemporaryFile(mode="w+b") as out:
        before = CpuSnapshot.take(services)
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        after = CpuSnapshot.take(services)
        out.seek(0)
        text = out.read().decode(errors="replace")
    return proc.returncode, text, cpu_report(before, after, usage.ru_utime + usage.ru_stime)


@dataclass
class WrkResult:
    rps: float
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[int, int]
    errors: dict[str, int]
    cpu: dict[str, Any]

    def count(self, status: int) -> int:
        return self.statuses.get(status, 0)

    def non_2xx(self) -> int:
        return sum(n for code, n in self.statuses.items() if not 200 <= code < 300)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rps": round(self.rps, 2),
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "p50_ms": round(self.p50_ms, 3),
            "p90_ms": round(self.p90_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors,
            "cpu": self.cpu,
        }


def wrk(
    wrk_bin: str,
    port: int,
    method: str,
    path: str,
    *,
    connections: int,
    duration_s: int,
    tokens_file: Path | None = None,
    body_file: Path | None = None,
    services: dict[str, list[int]] | None = None,
    timeout_s: int = 10,
) -> WrkResult:
    threads = max(1, min(connections, NCPU))
    argv = [
        wrk_bin,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s}s",
        f"--timeout={timeout_s}s",
        "--latency",
        "-s",
        str(WRK_SCRIPT),
        f"http://127.0.0.1:{port}",
        "--",
        method,
        path,
        str(tokens_file or "-"),
        str(threads),
        str(body_file or "-"),
    ]
    code, text, cpu = _run_child(argv, services or {})
    match = re.search(r"^WRKJSON (\{.*\})$", text, re.MULTILINE)
    if code != 0 or not match:
        raise RuntimeError(f"wrk failed ({code}): {' '.join(argv)}\n{text[-2000:]}")
    data = json.loads(match.group(1))
    duration = data["duration_us"] / 1e6
    lat = data["latency_us"]
    return WrkResult(
        rps=data["requests"] / duration if duration else 0.0,
        requests=data["requests"],
        duration_s=duration,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        statuses={int(k): v for k, v in data["statuses"].items()},
        errors=data["errors"],
        cpu=cpu,
    )


def pgbench(
    pgbench_bin: str,
    conninfo: dict[str, Any],
    script: str,
    *,
    clients: int,
    duration_s: int,
) -> dict[str, Any]:
    """tps of a custom script; prepared statements, no vacuum, clients threads <= cores."""
    argv = [
        pgbench_bin,
        "-n",
        "-M",
        "prepared",
        f"-c{clients}",
        f"-j{max(1, min(clients, NCPU))}",
        f"-T{duration_s}",
        "-f",
        str(PGBENCH_DIR / script),
        "-h",
        str(conninfo.get("host", "127.0.0.1")),
        "-p",
        str(conninfo.get("port", 5432)),
        "-U",
        str(conninfo.get("user", "postgres")),
        str(conninfo["dbname"]),
    ]
    env = dict(os.environ)
    if conninfo.get("password"):
        env["PGPASSWORD"] = str(conninfo["password"])
    code, text, cpu = _run_child(argv, {}, env)
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    lat = re.search(r"latency average = ([0-9.]+) ms", text)
    if code != 0 or not match:
        raise RuntimeError(f"pgbench failed ({code}): {' '.join(argv)}\n{text[-2000:]}")
    return {
        "tps": float(match.group(1)),
        "latency_avg_ms": float(lat.group(1)) if lat else None,
        "failed": int(failed.group(1)) if failed else 0,
        "cpu": cpu,
    }


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0] if text else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def now() -> float:
    return time.monotonic()
