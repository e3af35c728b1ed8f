"""The interface the projection writes to; infrastructure implements it in SQL."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from eventsourcing.persistence import Tracking, TrackingRecorder

from projections.rows import RowChange


class ProfilesView(TrackingRecorder, ABC):
    @abstractmethod
    def apply(self, changes: Sequence[RowChange], tracking: Tracking) -> None:
        """Executes the changes and records the tracking, atomically. A tracking
        position at or below the recorded one raises IntegrityError and changes
        nothing, so a redelivered event is never applied twice."""
