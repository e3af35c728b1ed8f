"""The `serve` processes of this project's embedded setup (`make run`), so that
`racer-profiles stop` (`make stop`) can find and end them from another terminal.

Each such serve leaves a small file beside the embedded data directory while it
runs (pid, the process's start time, its address); a file whose process is gone
(killed) is ignored and removed. Servers on a DATABASE_URL are deployments,
stopped by whatever runs them, and leave no file."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class Running:
    pid: int
    address: str
    file: Path


def _files(data_dir: Path) -> list[Path]:
    return sorted(data_dir.parent.glob(f".{data_dir.name}.serve-*.json"))


@contextmanager
def registered(data_dir: Path, address: str) -> Iterator[None]:
    me = psutil.Process()
    file = data_dir.parent / f".{data_dir.name}.serve-{me.pid}.json"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps({"pid": me.pid, "started": me.create_time(), "address": address}))
    try:
        yield
    finally:
        file.unlink(missing_ok=True)


def running(data_dir: Path) -> list[Running]:
    """The live serves of data_dir; stale files removed."""
    found = []
    for file in _files(data_dir):
        try:
            record = json.loads(file.read_text())
            process = psutil.Process(int(record["pid"]))
            if abs(process.create_time() - float(record["started"])) < 1.0 and process.is_running():
                found.append(Running(process.pid, str(record["address"]), file))
                continue
        except (OSError, ValueError, KeyError, TypeError, psutil.Error):
            pass
        file.unlink(missing_ok=True)
    return found


def stop(server: Running, timeout: float = 30.0) -> bool:
    """SIGTERM (serve finishes its requests, stops its projector and the embedded
    server it started), then waits; True when it has ended."""
    try:
        process = psutil.Process(server.pid)
        os.kill(server.pid, signal.SIGTERM)
    except (psutil.NoSuchProcess, ProcessLookupError):
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # Exited, or exited and not yet reaped by its parent (make, a shell, a test).
            if process.status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    else:
        return False
    server.file.unlink(missing_ok=True)
    return True
