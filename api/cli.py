"""The racer-profiles command line: serve, project, accounts, rebuild, verify, ...

Every command ends its own way out: one `error: …` line and status 2 for a
database it cannot use (api/cli_errors.py), and the embedded server it started
is stopped on any exit (a signal included: SIGTERM and SIGHUP become an
ordinary exit here; see infrastructure/embedded.py for a SIGKILL)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import typer

from api import cli_db
from api.cli_errors import EXIT_ERROR, database_error
from infrastructure.container import Container, build, resolve_database
from infrastructure.embedded import stop_owned
from infrastructure.logs import configure as configure_logging
from infrastructure.settings import Settings

cli = typer.Typer(help="racer-profiles: event-sourced racer profiles.", no_args_is_help=True)
accounts_cli = typer.Typer(help="Accounts and their tokens.", no_args_is_help=True)
cli.add_typer(accounts_cli, name="accounts")
tokens_cli = typer.Typer(help="Named tokens: create, list, revoke.", no_args_is_help=True)
cli.add_typer(tokens_cli, name="tokens")


def fail(message: str) -> typer.Exit:
    """The one way a command reports a failure it expects: `error: …` on stderr, status 2."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_ERROR)


def _container(*, serving: bool = False) -> Container:
    """A container for a command; only serve needs a pool per request thread."""
    settings = Settings()
    if not serving:
        settings = settings.model_copy(update={"api_threads": 1})
    return build(resolve_database(settings))


@cli.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="port to listen on"),
    projector: bool = typer.Option(True, help="start the projector (a process of its own)"),
    workers: int = typer.Option(
        1, min=1, max=64, help="API processes; with more than one, a standby projector runs too"
    ),
    reuse_port: bool = typer.Option(False, "--reuse-port", hidden=True),
) -> None:
    """Runs the HTTP API and, by default, the projector as a child process
    (api/workers.py says why it is not a thread)."""
    import uvicorn

    from api import running
    from api.app import create_app
    from api.workers import Projectors, settle_heap, supervise

    address = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    # Bound before anything starts, so a port in use is one line, not a log record after start-up.
    sock = _bind(host, port, reuse_port or workers > 1)
    settings = Settings()
    embedded = not settings.database_url
    with running.registered(settings.embedded_data_path, address) if embedded else contextlib.nullcontext():
        if workers > 1:
            sock.close()  # the workers bind their own (SO_REUSEPORT)
            settings = resolve_database(settings)
            build(settings).close()  # tables exist before the workers (which do not create them) start
            typer.echo(f"racer-profiles: serving {address} with {workers} API processes (Ctrl-C stops)")
            raise typer.Exit(supervise(host, port, workers, str(settings.database_url)))
        container = _container(serving=True)  # creates the tables before the projector starts
        projectors = None
        if projector and container.settings.run_projection:
            projectors = Projectors(1, str(container.settings.database_url)).watch()
        try:
            config = uvicorn.Config(
                create_app(container), host=host, port=port, log_config=None, access_log=False
            )
            server = uvicorn.Server(config)
            # uvicorn re-raises the signal that stopped it once it has shut down;
            # with these handlers in place that returns here, so the runner and
            # the pools are closed below and the process exits 0.
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: None)
            # SIGHUP (a closed terminal, `kill -HUP`) shuts down like SIGTERM; uvicorn leaves it alone.
            signal.signal(signal.SIGHUP, server.handle_exit)
            if not reuse_port:  # a worker of serve --workers: the supervisor said where
                _announce_when_started(server, address, container.settings)
            settle_heap()
            server.run(sockets=[sock])
        finally:
            if projectors is not None:
                projectors.stop()
            container.close()


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    from api.workers import reuse_port_socket

    try:
        if reuse_port:
            return reuse_port_socket(host, port)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        return sock
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise fail(
                f"{host}:{port} is already in use (another `make run`? `make stop` stops it; "
                f"or choose another port: `make run PORT={port + 1}`)"
            ) from None
        raise fail(f"cannot listen on {host}:{port}: {e.strerror}") from None


def _announce_when_started(server: Any, address: str, settings: Settings) -> None:
    """One plain line once uvicorn accepts requests (its own INFO lines are silenced)."""
    where = "DATABASE_URL" if settings.database_url and "DATABASE_URL" in os.environ else None
    database = where or f"embedded PostgreSQL in {Settings().embedded_data_path}"

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            typer.echo(f"racer-profiles: serving {address} (database: {database}); Ctrl-C stops it")

    threading.Thread(target=announce, name="announce", daemon=True).start()


@cli.command()
def migrate() -> None:
    """Creates or upgrades every table and index; safe to run twice and on a live
    deployment. With CREATE_TABLES=false, serve and project leave the schema alone."""
    settings = resolve_database(Settings()).model_copy(update={"create_tables": True, "api_threads": 1})
    build(settings).close()
    typer.echo("schema is up to date: event store, racer_profiles (+ tracking), accounts, idempotency keys")


@cli.command()
def project(
    skip: int | None = typer.Option(
        None, "--skip", help="mark the event the projection stopped at as applied, without applying it"
    ),
    parent_pid: int | None = typer.Option(None, "--parent-pid", hidden=True),
) -> None:
    """Runs the projection runner alone (a standby until it holds the leader lock)."""
    from api.workers import SignalFlag

    container = _container()
    if skip is not None:
        from infrastructure.projection_status import CannotSkip

        try:
            container.projection_status.skip(container.view, container.app.name, skip, "cli")
        except CannotSkip as e:
            raise fail(str(e)) from None
        finally:
            container.close()
        # It exits: the running projector (serve's, restarted within 5 s, or a `project`
        # started again) goes on past the skipped event.
        typer.echo(
            f"skipped the event at position {skip} without applying it (recorded in racer_profiles_skips); "
            "start the projector again (serve restarts its own within 5 s)"
        )
        return
    # Handlers first: the runner announces its leadership from its own thread,
    # and a signal sent on that cue must find them in place.
    received = SignalFlag(signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    runner = container.start_runner()
    try:
        while received.signum is None:
            received.sleep(0.5)
            if parent_pid is not None and os.getppid() != parent_pid:
                break  # started by serve, which died without stopping it (kill -9)
            if runner.status().role == "failed":
                typer.echo(f"projection stopped: {runner.status()}", err=True)
                raise typer.Exit(1)
    finally:
        if received.signum is not None:
            received.ignore_more()
        container.close()


@accounts_cli.command("create")
def accounts_create(
    name: str,
    role: str = typer.Option("owner", help="owner, auditor or admin"),
) -> None:
    """Creates an account; its token is printed once, alone on the last line."""
    container = _container()
    try:
        try:
            account = container.accounts.create(name, role)
        except ValueError as e:
            raise fail(str(e)) from None
        typer.echo(f"account {account.account_id} ({account.role}) created; its token:")
        typer.echo(account.token)
    finally:
        container.close()


@accounts_cli.command("erase")
def accounts_erase(
    account_id: str,
    reason: str = typer.Option(None, help="why (recorded on the Erased events, then erased with them)"),
) -> None:
    """Erases an account for good: every profile erased (history kept, personal
    fields erased), its keys destroyed, every token revoked, its name removed."""
    from domain.errors import PlaintextHistory
    from domain.service import Cause
    from infrastructure.account_erasure import NoSuchAccount, erase_account

    container = _container()
    try:
        try:
            done = erase_account(container.app, container.accounts, account_id, Cause("cli", reason))
        except (NoSuchAccount, PlaintextHistory) as e:
            raise fail(str(e)) from None
    finally:
        container.close()
    for profile_id in done.erased:
        typer.echo(f"profile {profile_id} erased")
    for profile_id in done.already:
        typer.echo(f"profile {profile_id} was erased already")
    typer.echo(
        f"account {account_id} erased at position {done.position}: {len(done.erased)} profile(s) erased now,"
        f" {done.tokens_revoked} token(s) revoked, name removed"
    )


class _ProgressBar:
    """typer's progress bar behind the Progress protocol of infrastructure/rebuild.py."""

    def __init__(self, label: str, file: Any = None) -> None:
        self.label, self.file = label, file
        self.bar: Any = None

    def start(self, total: int) -> None:
        self.bar = typer.progressbar(length=total, label=self.label, file=self.file).__enter__()

    def advance(self, steps: int) -> None:
        self.bar.update(steps)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _expiry(expires_in_days: float | None, expires_at: str | None) -> datetime | None:
    if expires_in_days is not None and expires_at is not None:
        raise typer.BadParameter("give --expires-in-days or --expires-at, not both")
    if expires_in_days is not None:
        if expires_in_days <= 0:
            raise typer.BadParameter("--expires-in-days must be positive")
        return datetime.now(UTC) + timedelta(days=expires_in_days)
    if expires_at is None:
        return None
    try:
        return datetime.fromisoformat(expires_at)
    except ValueError:
        raise typer.BadParameter(
            "--expires-at must be an ISO 8601 time with offset, e.g. 2027-01-31T12:00:00+00:00"
        ) from None


@tokens_cli.command("create")
def tokens_create(
    account: str = typer.Option(..., "--account", help="the account id (`accounts create` printed it)"),
    name: str = typer.Option(..., "--name", help="the device or app that will hold the token"),
    expires_in_days: float | None = typer.Option(
        None, "--expires-in-days", help="expires after this many days"
    ),
    expires_at: str | None = typer.Option(
        None, "--expires-at", help="expires at this ISO 8601 time (with offset)"
    ),
) -> None:
    """Issues a named token for an account; printed once, alone on the last line."""
    from infrastructure.accounts import TokenError

    try:
        account_id = UUID(account)
    except ValueError:
        raise typer.BadParameter(f"--account must be an account id (a UUID), not {account!r}") from None
    expiry = _expiry(expires_in_days, expires_at)
    container = _container()
    try:
        token = container.accounts.issue(account_id, name, expiry)
    except TokenError as e:
        raise fail(str(e)) from None
    finally:
        container.close()
    until = f", expires {token.expires_at.isoformat()}" if token.expires_at else ""
    typer.echo(f"token {token.token_id} ({token.name}{until}) created; the token (shown once):")
    typer.echo(token.token)


@tokens_cli.command("list")
def tokens_list(
    account: str | None = typer.Option(None, "--account", help="only this account's tokens"),
    include_revoked: bool = typer.Option(False, "--all", help="revoked tokens too"),
) -> None:
    """Lists tokens: id, account, name, role, created, last used, expiry (never the secret)."""
    if account is not None:
        try:
            UUID(account)
        except ValueError:
            raise typer.BadParameter(f"--account must be an account id (a UUID), not {account!r}") from None
    container = _container()
    try:
        infos = container.accounts.tokens(account, include_revoked=include_revoked)
    finally:
        container.close()

    def when(value: datetime | None, never: str = "-") -> str:
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else never

    rows = [("ID", "ACCOUNT", "NAME", "ROLE", "CREATED", "LAST USED", "EXPIRES", "REVOKED")]
    rows += [
        (
            i.token_id,
            str(i.account_id),
            i.name,
            i.role,
            when(i.created_at),
            when(i.last_used_at, "never"),
            when(i.expires_at, "never"),
            when(i.revoked_at),
        )
        for i in infos
    ]
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@tokens_cli.command("revoke")
def tokens_revoke(
    token: str = typer.Argument(..., help="the token's id (from `tokens list`) or the whole token"),
) -> None:
    """Revokes a token: every running API process refuses it within a second and ends its streams."""
    from infrastructure.accounts import token_id_of

    token_id = token_id_of(token)
    container = _container()
    try:
        revoked = container.accounts.revoke(token_id)
    finally:
        container.close()
    if not revoked:
        raise fail(f"no live token {token_id}")
    typer.echo(f"token {token_id} revoked")


@cli.command()
def rebuild() -> None:
    """Replays every event into a fresh read table and swaps it in."""
    from infrastructure.rebuild import RebuildStopped, rebuild_read_table

    container = _container()
    try:
        with _ProgressBar("replaying events") as bar:
            count = rebuild_read_table(container.app, container.datastore, container.view, progress=bar)
    except RebuildStopped as e:
        raise fail(str(e)) from None
    finally:
        container.close()
    typer.echo(f"rebuilt racer_profiles from {count} events")


@cli.command()
def verify(
    checkpoint: bool = typer.Option(
        False, "--checkpoint", help="print a digest of the log up to --upto (default: the head) instead"
    ),
    upto: int | None = typer.Option(None, help="with --checkpoint: the last position to digest"),
) -> None:
    """Walks every event's hash chain, replays rosters and profiles, and compares
    them with the invariant and the read table, row by row."""
    from infrastructure.chain_check import checkpoint as digest_log
    from infrastructure.verify import verify_store

    container = _container()
    try:
        if checkpoint:
            position, digest = digest_log(container.audit.log, upto)
            typer.echo(f"checkpoint position={position} sha256={digest}")
            return
        problems = verify_store(
            container.app,
            container.view,
            container.audit,
            container.projection_status,
            container.keys.store,
            container.queries,
        )
    finally:
        container.close()
    for line in problems:
        typer.echo(line)
    if problems:
        typer.echo(f"{len(problems)} difference(s) found", err=True)
        raise typer.Exit(1)
    typer.echo("ok: events, invariant and read table agree")


@cli.command("import-legacy")
def import_legacy_command(
    legacy_url: str = typer.Option(
        ..., "--from", help="the legacy dashboard's PostgreSQL URL (only read, never written)"
    ),
    account: str = typer.Option(..., "--account", help="the account id `accounts create` printed"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and write nothing"),
) -> None:
    """Imports a legacy racer_profiles (and vehicles) table into an account; re-runs import only what is new."""
    from api.legacy_report import escaped, format_report
    from infrastructure.legacy_import import LegacyImportError, import_legacy

    container = _container()
    try:
        with _ProgressBar("importing", file=sys.stderr) as bar:
            report = import_legacy(
                container.app, container.accounts, legacy_url, account, dry_run=dry_run, progress=bar
            )
    except LegacyImportError as e:
        raise fail(escaped(str(e))) from None  # it may quote the legacy database's own words
    finally:
        container.close()
    for line in format_report(report):
        typer.echo(line)


@cli.command()
def export(
    out: Path = typer.Option(..., "--out", help="the NDJSON file to write"),
    after: int = typer.Option(0, "--after", help="export events after this position"),
) -> None:
    """Writes the ordered event log as NDJSON (resumable with --after); prints the last position."""
    import orjson

    from infrastructure.audit import UNDECODABLE, export_entry

    container = _container()
    log = container.audit.log
    last = after
    undecodable: list[int] = []
    try:
        with (
            out.open("wb") as file,
            typer.progressbar(
                length=max(log.head() - after, 0), label="exporting events", file=sys.stderr
            ) as bar,
        ):
            for logged in log.iterate(after):
                entry = export_entry(log, logged)
                if UNDECODABLE in entry:
                    undecodable.append(logged.position)
                file.write(orjson.dumps(entry) + b"\n")
                bar.update(logged.position - last)
                last = logged.position
    finally:
        container.close()
    for position in undecodable:
        typer.echo(
            f'warning: the event at position {position} cannot be decoded: written as stored, marked "{UNDECODABLE}"',
            err=True,
        )
    typer.echo(f"last position {last}")


@cli.command()
def replay(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="an export's NDJSON file"),
    into: str = typer.Option(
        ...,
        "--into",
        help="the database to load (its event store must be empty): a URL, or the name of a "
        "database on the server in use (created if missing)",
    ),
) -> None:
    """Loads an exported log into an empty event store, positions kept."""
    from infrastructure.replay import NotEmpty, create_database, replay_file

    if "://" not in into and "=" not in into:
        into = cli_db.with_dbname(str(resolve_database(Settings()).database_url), into)
    if create_database(into):
        typer.echo(f"created the database {Settings(database_url=into).conninfo().get('dbname')}")
    container = build(Settings(database_url=into, api_threads=1))
    try:
        count, last = replay_file(file, container.app)
    except (NotEmpty, ValueError) as e:
        raise fail(str(e)) from None
    finally:
        container.close()
    typer.echo(f"replayed {count} events up to position {last}; now run rebuild and verify there")


@cli.command("openapi")
def openapi_command(
    out: Path = typer.Option(Path("openapi.json"), "--out", help="the file to write"),
    check: bool = typer.Option(
        False, "--check", help="write nothing; exit 1 when the file is not what would be written"
    ),
) -> None:
    """Writes the OpenAPI document (sorted keys, no database needed), as checked in at the repo root."""
    from api.app import offline_document
    from api.openapi import dumps

    text = dumps(offline_document())
    current = out.read_text(encoding="utf-8") if out.exists() else None
    if check:
        if current != text:
            typer.echo(f"{out} is out of date: run `racer-profiles openapi --out {out}`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} is current")
        return
    if current != text:
        out.write_text(text, encoding="utf-8")
    typer.echo(f"{'wrote' if current != text else 'unchanged:'} {out}")


@cli.command()
def stop() -> None:
    """Stops this project's `make run` servers (from any terminal) and an embedded
    PostgreSQL left running by a process that was killed."""
    from api import running
    from infrastructure.embedded import stop_leftover

    data_dir = Settings().embedded_data_path
    servers = running.running(data_dir)
    for server in servers:
        if running.stop(server):
            typer.echo(f"stopped racer-profiles serve on {server.address} (pid {server.pid})")
        else:
            typer.echo(f"racer-profiles serve on {server.address} (pid {server.pid}) is still stopping")
    leftover = stop_leftover(data_dir)
    if leftover is not None:
        typer.echo(
            f"stopped the embedded PostgreSQL in {data_dir} (pid {leftover}), left by a killed process"
        )
    if not servers and leftover is None:
        typer.echo("nothing to stop: no racer-profiles serve of this project is running")


cli_db.register(cli)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds like any exit: pools closed, the embedded server stopped


def main() -> None:
    configure_logging()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    try:
        cli()
    except Exception as e:
        message = database_error(e)
        if message is None:
            raise  # a bug: its traceback is what helps
        typer.echo(f"error: {message}", err=True)
        sys.exit(EXIT_ERROR)
    finally:
        stop_owned()
