"""What an answer reads after a write, or before a query: the read table's view
and its queries, how long to wait for the view to show a position, and, when
queries go to a read replica, the primary's head (a replica lags it, so only
the primary can say that a position was never written)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from infrastructure.profile_queries import ProfileQueries
from infrastructure.profiles_view import PostgresProfilesView


@dataclass(frozen=True)
class ReadYourWrites:
    view: PostgresProfilesView
    queries: ProfileQueries
    application_name: str
    wait_timeout: float
    primary_head: Callable[[], int] | None = None  # set when queries go to a replica

    def wait(self, position: int) -> None:
        """Blocks until the view has applied position; TimeoutError after wait_timeout."""
        self.view.wait(self.application_name, position, timeout=self.wait_timeout)
