"""A rebuild opens the sealed events of every profile in a row: their data keys
are read a page at a time (KeyRing.prefetch), not one query per profile."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from domain.service import Cause
from infrastructure.container import Container
from tests.support.operations import rebuild_read_table


def test_a_rebuild_reads_the_keys_a_page_at_a_time(container: Container, monkeypatch: Any) -> None:
    for _ in range(4):
        account = str(uuid4())
        for name in ("Ada", "Brook", "Cy"):
            container.app.create_profile(
                account, name, [{"name": "Kart"}], Cause(account, reason="new season")
            )
    store: Any = container.keys.store
    calls = {"get": 0, "get_many": 0}
    for name in calls:
        method = getattr(store, name)

        def counted(*args: Any, _name: str = name, _method: Any = method) -> Any:
            calls[_name] += 1
            return _method(*args)

        monkeypatch.setattr(store, name, counted)
    container.keys._cache.clear()  # as in a fresh process
    before = {row.id: row.name for row in container.queries.all_rows()}

    assert rebuild_read_table(container) > 0
    assert {row.id: row.name for row in container.queries.all_rows()} == before
    assert sorted(set(before.values())) == ["Ada", "Brook", "Cy"]
    assert calls == {"get": 0, "get_many": 1}  # 12 profiles' events: one page, one query
    assert all(isinstance(k, UUID) for k in before)
