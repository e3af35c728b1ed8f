"""Replay an exported NDJSON log into an empty event store, positions kept,
so an auditor can rebuild and verify their own copy."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.sql import SQL, Identifier

from domain.service import ProfilesService
from infrastructure.event_log import continue_positions_after, events_table, insert_with_positions_statement

BATCH = 500


class NotEmpty(Exception):
    """The target event store already holds events."""


def create_database(url: str) -> bool:
    """Creates url's database on its server when it does not exist; True if it did."""
    info = conninfo_to_dict(url)
    name = str(info.get("dbname") or info.get("user") or "postgres")
    try:
        psycopg.connect(url, connect_timeout=10).close()
        return False
    except psycopg.OperationalError as e:
        if f'database "{name}" does not exist' not in str(e):
            raise
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True, connect_timeout=10) as conn:
        conn.execute(SQL("CREATE DATABASE {}").format(Identifier(name)))
    return True


def _rows(lines: Iterable[str]) -> Iterable[tuple[int, UUID, int, str, bytes]]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record: dict[str, Any] = json.loads(line)
            yield (
                int(record["position"]),
                UUID(record["aggregate_id"]),
                int(record["version"]),
                str(record["topic"]),
                base64.b64decode(record["stored_state"], validate=True),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"line {number}: not an exported event ({e})") from None


def replay_file(path: Path, app: ProfilesService) -> tuple[int, int]:
    """Inserts every event of the file; returns (count, last position)."""
    recorder: Any = app.recorder
    datastore = recorder.datastore
    if recorder.max_notification_id():
        raise NotEmpty("the target event store is not empty")
    insert = insert_with_positions_statement(events_table(datastore.schema, recorder.events_table_name))
    count, last = 0, 0
    with path.open(encoding="utf-8") as lines, datastore.transaction(commit=True) as curs:
        batch: list[tuple[int, UUID, int, str, bytes]] = []
        for row in _rows(lines):
            if row[0] <= last:
                raise ValueError(f"position {row[0]} is out of order")
            batch.append(row)
            count, last = count + 1, row[0]
            if len(batch) == BATCH:
                curs.executemany(insert, batch)
                batch.clear()
        if batch:
            curs.executemany(insert, batch)
        if last:
            continue_positions_after(curs, datastore.schema, recorder.events_table_name, last)
    return count, last
