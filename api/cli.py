"""The racer-profiles command line: serve, project, accounts, rebuild, verify."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import typer

from infrastructure.container import Container, build, resolve_database
from infrastructure.logs import configure as configure_logging
from infrastructure.settings import Settings

cli = typer.Typer(help="racer-profiles: event-sourced racer profiles.", no_args_is_help=True)
accounts_cli = typer.Typer(help="Accounts and their tokens.", no_args_is_help=True)
cli.add_typer(accounts_cli, name="accounts")


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

    from api.app import create_app
    from api.workers import Projectors, reuse_port_socket, supervise

    if workers > 1:
        settings = resolve_database(Settings())
        build(settings).close()  # tables exist before the workers (which do not create them) start
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
        server.run(sockets=[reuse_port_socket(host, port)] if reuse_port else None)
    finally:
        if projectors is not None:
            projectors.stop()
        container.close()


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
            container.close()
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        logging.getLogger("racer_profiles.projection").warning(
            "skipped the event at position %s without applying it (recorded in racer_profiles_skips)", skip
        )
    runner = container.start_runner()
    received = SignalFlag(signal.SIGTERM, signal.SIGINT)
    try:
        while received.signum is None:
            received.sleep(0.5)
            if parent_pid is not None and os.getppid() != parent_pid:
                break  # started by serve, which died without stopping it (kill -9)
            if runner.status().role == "failed":
                typer.echo(f"projection stopped: {runner.status()}", err=True)
                raise typer.Exit(1)
    finally:
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
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"account {account.account_id} ({account.role}) created; its token:")
        typer.echo(account.token)
    finally:
        container.close()


@cli.command()
def rebuild() -> None:
    """Replays every event into a fresh read table and swaps it in."""
    from infrastructure.rebuild import rebuild_read_table

    container = _container()
    try:
        count = rebuild_read_table(container, progress=True)
        typer.echo(f"rebuilt racer_profiles from {count} events")
    finally:
        container.close()


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
        problems = verify_store(container)
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
    from infrastructure.legacy_import import LegacyImportError, format_report, import_legacy

    container = _container()
    try:
        report = import_legacy(container, legacy_url, account, dry_run=dry_run, progress=not dry_run)
    except LegacyImportError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
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

    from infrastructure.audit import export_record

    container = _container()
    log = container.audit.log
    last = after
    try:
        with (
            out.open("wb") as file,
            typer.progressbar(
                length=max(log.head() - after, 0), label="exporting events", file=sys.stderr
            ) as bar,
        ):
            for logged in log.iterate(after):
                file.write(orjson.dumps(export_record(logged, log.decode(logged))) + b"\n")
                bar.update(logged.position - last)
                last = logged.position
    finally:
        container.close()
    typer.echo(f"last position {last}")


@cli.command()
def replay(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="an export's NDJSON file"),
    into: str = typer.Option(
        ..., "--into", help="URL of the database to load (its event store must be empty)"
    ),
) -> None:
    """Loads an exported log into an empty event store, positions kept."""
    from infrastructure.replay import NotEmpty, replay_file

    container = build(Settings(database_url=into, api_threads=1))
    try:
        count, last = replay_file(file, container.app)
    except (NotEmpty, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
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
    from api.openapi import dumps, offline_document, write

    if check:
        current = out.read_text(encoding="utf-8") if out.exists() else None
        if current != dumps(offline_document()):
            typer.echo(f"{out} is out of date: run `racer-profiles openapi --out {out}`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} is current")
        return
    changed = write(out)
    typer.echo(f"{'wrote' if changed else 'unchanged:'} {out}")


def main() -> None:
    configure_logging()
    cli()
