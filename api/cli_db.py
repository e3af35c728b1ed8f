"""The database in use, for people and scripts: `db-url`, and PostgreSQL's own
tools (`psql`, `pg-dump`, `pg-restore`) of the embedded server's version,
pointed at it. The system's pg_dump refuses a newer server (the embedded one is
PostgreSQL 18), and the package's programs are hidden inside the virtualenv."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import typer
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from infrastructure.container import resolve_database
from infrastructure.embedded import bin_dir, running_url
from infrastructure.settings import Settings

PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def with_dbname(url: str, dbname: str) -> str:
    """url naming another database on the same server (URL or key=value form kept)."""
    if url.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(url)
        return urlunsplit(parts._replace(path=f"/{dbname}"))
    return make_conninfo(url, dbname=dbname)


def current_url() -> str | None:
    """DATABASE_URL, else the embedded server's URL if it is running (nothing started)."""
    settings = Settings()
    return settings.database_url or running_url(settings.embedded_data_path)


def libpq_env(url: str) -> dict[str, str]:
    """The PG* variables that point libpq's programs at url."""
    names = {
        "host": "PGHOST",
        "port": "PGPORT",
        "user": "PGUSER",
        "password": "PGPASSWORD",
        "dbname": "PGDATABASE",
    }
    info = conninfo_to_dict(url)
    return {env: str(info[key]) for key, env in names.items() if info.get(key) not in (None, "")}


def run_tool(program: str, args: list[str]) -> int:
    """Runs one of the embedded package's PostgreSQL programs against the database in use."""
    url = str(resolve_database(Settings()).database_url)
    env = {**os.environ, **libpq_env(url)}
    # Ctrl-C is the tool's (psql cancels a query with it); this process just waits.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.call([str(bin_dir() / program), *args], env=env)
    finally:
        signal.signal(signal.SIGINT, previous)


def register(cli: typer.Typer) -> None:
    @cli.command("db-url")
    def db_url(
        dbname: str | None = typer.Option(None, "--dbname", help="another database on the same server"),
    ) -> None:
        """Prints the URL of the database in use: DATABASE_URL, else the running
        embedded server's (a Unix socket in its data directory)."""
        url = current_url()
        if url is None:
            data_dir = Settings().embedded_data_path
            typer.echo(
                f"error: the embedded PostgreSQL ({data_dir}) is not running: start it with `make run`, "
                "or set DATABASE_URL",
                err=True,
            )
            raise typer.Exit(2)
        typer.echo(with_dbname(url, dbname) if dbname else url)

    for command, program, what in (
        ("psql", "psql", "psql (the interactive terminal)"),
        ("pg-dump", "pg_dump", "pg_dump (a backup of one database)"),
        ("pg-restore", "pg_restore", "pg_restore (loads a pg-dump -Fc file)"),
    ):
        cli.command(command, context_settings=PASS_THROUGH)(_tool_command(program, what))


def _tool_command(program: str, what: str) -> Callable[[typer.Context], None]:
    def tool(ctx: typer.Context) -> None:
        raise typer.Exit(run_tool(program, list(ctx.args)))

    tool.__doc__ = (
        f"Runs {what} of the embedded server's PostgreSQL version against the database in use "
        "(PGHOST, PGDATABASE ... set from it); every argument is passed on, e.g. `-d other`."
    )
    return tool
