"""Progress of a long command (rebuild, import-legacy), told to whoever shows it
(api/cli.py draws typer's bar); infrastructure prints nothing itself."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self, steps: int) -> None: ...
