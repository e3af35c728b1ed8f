"""The racer-profiles command line: serve, project, accounts, rebuild, verify."""

from __future__ import annotations

import logging
import signal
import sys
import threading

import typer

from infrastructure.container import Container, build, resolve_database
from infrastructure.settings import Settings

cli = typer.Typer(help="racer-profiles: event-sourced racer profiles.", no_args_is_help=True)
accounts_cli = typer.Typer(help="Accounts and their tokens.", no_args_is_help=True)
cli.add_typer(accounts_cli, name="accounts")


def _container() -> Container:
    return build(resolve_database(Settings()))


@cli.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="port to listen on"),
    projector: bool = typer.Option(True, help="run the projection runner in this process"),
) -> None:
    """Runs the HTTP API (one worker) and, by default, the projection runner."""
    import uvicorn

    from api.app import create_app

    container = _container()
    if projector and container.settings.run_projection:
        container.start_runner()
    try:
        uvicorn.run(create_app(container), host=host, port=port, workers=1, log_level="info")
    finally:
        container.close()


@cli.command()
def project() -> None:
    """Runs the projection runner alone (a standby until it holds the leader lock)."""
    container = _container()
    runner = container.start_runner()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
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
def verify() -> None:
    """Replays rosters and profiles and compares them with the read table and the invariant."""
    from infrastructure.verify import verify_store

    container = _container()
    try:
        problems = verify_store(container)
    finally:
        container.close()
    for line in problems:
        typer.echo(line)
    if problems:
        typer.echo(f"{len(problems)} difference(s) found", err=True)
        raise typer.Exit(1)
    typer.echo("ok: events, invariant and read table agree")


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    cli()
