"""serve --workers N: N API processes on one port (SO_REUSEPORT: the kernel
spreads connections) plus a projector and a standby, each its own process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path


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
    they have all ended (non-zero if any failed)."""
    command = [str(Path(sys.argv[0]).resolve())]
    env = {**os.environ, "DATABASE_URL": database_url}
    children = [
        subprocess.Popen([*command, "project"], env=env),
        subprocess.Popen([*command, "project"], env=env),  # the standby
    ]
    children += [
        subprocess.Popen(
            [*command, "serve", "--host", host, "--port", str(port), "--no-projector", "--reuse-port"],
            env={**env, "CREATE_TABLES": "false"},
        )
        for _ in range(workers)
    ]
    stopping = threading.Event()

    def forward(signum: int, _frame: object) -> None:
        stopping.set()
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    while not stopping.is_set():
        if any(child.poll() is not None for child in children):
            forward(signal.SIGTERM, None)  # one died: take the rest down, let a supervisor restart
            break
        stopping.wait(0.5)
    return max((child.wait() or 0) for child in children)
