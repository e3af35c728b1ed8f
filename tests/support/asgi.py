"""ASGI helpers for tests of the app's own middlewares."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


class Counted:
    """Stands for the app behind a middleware: counts what reaches it."""

    def __init__(self, app: Any) -> None:
        self.app, self.calls = app, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await self.app(scope, receive, send)


def count_behind(client: TestClient, middleware: type) -> Counted:
    """Counts the requests that the client's app's middleware of this type hands on."""
    node: Any = client.app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(node, middleware):
        node = node.app
    node.app = counted = Counted(node.app)
    return counted
