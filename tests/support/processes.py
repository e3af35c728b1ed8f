"""Processes that tests start themselves: waiting on a condition about them, and
the embedded PostgreSQL's processes of a data directory (to check none is left)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psutil


def postgres_of(data_dir: Path) -> list[psutil.Process]:
    """Every postgres process (postmaster and its children) of data_dir."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        try:
            cmdline = process.info["cmdline"] or []
            if (process.info["name"] == "postgres" and str(data_dir) in " ".join(cmdline)) or (
                process.info["name"] == "postgres" and process.ppid() in {p.pid for p in found}
            ):
                found.append(process)
        except psutil.Error:
            continue
    return found


def until(condition: Callable[[], object], timeout: float) -> bool:
    """Whether condition held within timeout (polled every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)  # bounded poll
    return bool(condition())
