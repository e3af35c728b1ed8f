"""serve --workers N: N API processes on one port (SO_REUSEPORT: the kernel
spreads connections) plus a projector and a standby, each its own process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


RESTART_PAUSE = 5.0  # seconds before a stopped projector is started again


def reuse_port_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def supervise(host: str, port: int, workers: int, database_url: str) -> int:
    """Starts the processes, forwards SIGTERM/SIGINT to them, and returns when
    they have all ended (non-zero if any failed). A projector that stops (at a
    poison event, say) is restarted after a pause while the API keeps serving:
    every /readyz reports the recorded stop meanwhile."""
    command = [str(Path(sys.argv[0]).resolve())]
    env = {**os.environ, "DATABASE_URL": database_url}

    def projector() -> subprocess.Popen[bytes]:
        return subprocess.Popen([*command, "project"], env=env)

    projectors = [projector(), projector()]  # the leader and a standby
    api = [
        subprocess.Popen(
            [*command, "serve", "--host", host, "--port", str(port), "--no-projector", "--reuse-port"],
            env={**env, "CREATE_TABLES": "false"},
        )
        for _ in range(workers)
    ]
    restart_at: dict[int, float] = {}
    stopping = threading.Event()

    def forward(signum: int, _frame: object) -> None:
        stopping.set()
        for child in projectors + api:
            if child.poll() is None:
                child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    while not stopping.is_set():
        if any(child.poll() is not None for child in api):
            forward(signal.SIGTERM, None)  # an API worker died: take the rest down
            break
        for i, child in enumerate(projectors):
            if child.poll() is not None:
                due = restart_at.setdefault(i, time.monotonic() + RESTART_PAUSE)
                if time.monotonic() >= due:
                    projectors[i] = projector()
                    del restart_at[i]
        stopping.wait(0.5)
    return max((child.wait() or 0) for child in projectors + api)
