"""The processes of `serve`: the projector always runs as a process of its own
(`racer-profiles project`), next to one API process or, with --workers N, N
API processes on one port (SO_REUSEPORT: the kernel spreads connections).

Why a process and not a thread of the API: under command load the API's
request threads hold the GIL, and the runner waited for it at every step of a
batch. Measured with benchmarks/run.py --quick on the 2-core machine, as a
thread: read-your-writes lag p50 15 ms, p99 30 ms, 179 commands/s; as a
process: p50 1.9 ms, p99 7 ms, 304 commands/s. The API hears the projector's
commits through the change feed's LISTEN (infrastructure/change_feed.py)."""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

RESTART_PAUSE = 5.0  # seconds before a stopped projector is started again
# Objects allocated between two collections of the youngest generation (CPython: 700).
GC_YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """For an API process about to serve. Streams' backlogs allocate tens of
    thousands of dicts a second (each page's profiles, decoded and re-shaped):
    with CPython's default thresholds that was some 50 collections a second and,
    every few seconds, a full one that traversed every object of the process,
    pausing every request in flight (up to 200 ms, measured under the flood of
    tests/reliability/test_floods.py). The objects that exist now (modules, the
    app, its routes, the pools) live as long as the process: frozen, full
    collections skip them; a larger young generation lets a page's objects die
    before a collection promotes them."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    sys.setswitchinterval(0.001)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class SignalFlag:
    """What a signal handler may safely do: set plain attributes. An Event's
    lock is not reentrant: a second signal arriving while the handler is inside
    Event.set() deadlocks the process (seen: a projector hung for good after two
    SIGTERMs in quick succession). The main loop polls the flag instead."""

    def __init__(self, *signums: int) -> None:
        self.signum: int | None = None
        self.signums = signums
        for signum in signums:
            signal.signal(signum, self._handle)

    def ignore_more(self) -> None:
        """For a process that is stopping: Python's finalisation puts the default
        handlers back, and a signal arriving then would kill the process (exit
        143) instead of letting it finish its clean stop."""
        for signum in self.signums:
            signal.signal(signum, signal.SIG_IGN)

    def _handle(self, signum: int, _frame: object) -> None:
        self.signum = signum

    def sleep(self, seconds: float) -> None:
        """Sleeps up to seconds, less once a signal came."""
        deadline = time.monotonic() + seconds
        while self.signum is None and time.monotonic() < deadline:
            time.sleep(0.05)


def _command() -> list[str]:
    return [str(Path(sys.argv[0]).resolve())]


class Projectors:
    """`racer-profiles project` children (the first to take the leader lock
    leads, the others stand by). A projector that stops (at a poison event,
    say) is started again after a pause while the API keeps serving: every
    /readyz reports the recorded stop meanwhile. The children exit by
    themselves if this process dies without stopping them (--parent-pid)."""

    def __init__(self, count: int, database_url: str) -> None:
        self.env = {**os.environ, "DATABASE_URL": database_url, "CREATE_TABLES": "false"}
        self.children = [self._start() for _ in range(count)]
        self._restart_at: dict[int, float] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([*_command(), "project", "--parent-pid", str(os.getpid())], env=self.env)

    def restart_stopped(self) -> None:
        for i, child in enumerate(self.children):
            if child.poll() is not None and not self._stopping.is_set():
                due = self._restart_at.setdefault(i, time.monotonic() + RESTART_PAUSE)
                if time.monotonic() >= due:
                    self.children[i] = self._start()
                    del self._restart_at[i]

    def watch(self) -> Projectors:
        """Restarts stopped projectors from a thread of this process (serve)."""

        def run() -> None:
            while not self._stopping.wait(0.5):
                self.restart_stopped()

        self._thread = threading.Thread(target=run, name="projectors", daemon=True)
        self._thread.start()
        return self

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signals each child once (SIGTERM or SIGINT: it finishes its current
        transaction and exits) and waits for them; the worst exit status."""
        self._stopping.set()
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signum)
        if self._thread is not None:
            self._thread.join(5)
        status = 0
        for child in self.children:
            try:
                status = max(status, child.wait(timeout) or 0)
            except subprocess.TimeoutExpired:
                child.kill()
                status = max(status, child.wait() or 1)
        return status


def supervise(host: str, port: int, workers: int, database_url: str) -> int:
    """Starts the processes, stops them (SIGTERM) on SIGTERM, SIGINT or SIGHUP, and
    returns when they have all ended (non-zero if any failed)."""
    projectors = Projectors(2, database_url)  # the leader and a standby
    api = [
        subprocess.Popen(
            [*_command(), "serve", "--host", host, "--port", str(port), "--no-projector", "--reuse-port"],
            env={**os.environ, "DATABASE_URL": database_url, "CREATE_TABLES": "false"},
        )
        for _ in range(workers)
    ]
    received = SignalFlag(signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    while received.signum is None:
        if any(child.poll() is not None for child in api):
            received.signum = signal.SIGTERM  # an API worker died: take the rest down
            break
        projectors.restart_stopped()
        received.sleep(0.5)
    # SIGTERM, whatever came: after a Ctrl-C the children already have the terminal's
    # SIGINT, and a second SIGINT makes uvicorn force its exit, cancelling the
    # lifespan's shutdown half-way (CancelledError tracebacks in the log).
    for child in api:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    return max(projectors.stop(signal.SIGTERM), *((child.wait() or 0) for child in api))
