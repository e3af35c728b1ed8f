"""The operators' use cases run on a container, with the parts api/cli.py
gives them: the tests call them as `racer-profiles verify` and `rebuild` do."""

from __future__ import annotations

from infrastructure import rebuild, verify
from infrastructure.container import Container


def verify_store(c: Container) -> list[str]:
    return verify.verify_store(c.app, c.view, c.audit, c.projection_status, c.keys.store, c.queries)


def rebuild_read_table(c: Container) -> int:
    return rebuild.rebuild_read_table(c.app, c.datastore, c.view)
