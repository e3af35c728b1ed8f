"""The view keeps the library's wait contract: an interrupt ends a wait with
WaitInterruptedError, and positions are kept per upstream application name."""

from __future__ import annotations

import threading

import pytest
from eventsourcing.persistence import Tracking, WaitInterruptedError

from infrastructure.container import Container

LONG = 60.0  # a wait that an interrupt must end long before


def test_an_interrupt_already_set_ends_the_wait_at_once(container: Container) -> None:
    view = container.view
    interrupt = threading.Event()
    interrupt.set()
    head = container.app.recorder.max_notification_id() or 0
    with pytest.raises(WaitInterruptedError):
        view.wait(container.app.name, head + 1000, timeout=LONG, interrupt=interrupt)
    view.wait(container.app.name, head, timeout=LONG, interrupt=interrupt)  # reached wins, as in the library


def test_an_interrupt_set_during_the_wait_ends_it(container: Container) -> None:
    view = container.view
    interrupt = threading.Event()
    timer = threading.Timer(0.2, interrupt.set)
    timer.start()
    try:
        with pytest.raises(WaitInterruptedError):
            view.wait(container.app.name, 10**9, timeout=LONG, interrupt=interrupt)
    finally:
        timer.cancel()


def test_positions_are_kept_per_application_name(container: Container) -> None:
    view = container.view
    view.apply([], Tracking("upstream-one", 50))
    view.wait("upstream-one", 50, timeout=LONG)
    assert view.max_tracking_id("upstream-two") is None
    with pytest.raises(TimeoutError):
        view.wait("upstream-two", 10, timeout=0.2)
    view.apply([], Tracking("upstream-two", 10))
    view.wait("upstream-two", 10, timeout=LONG)
    assert not view.has_reached(11, "upstream-two") and view.has_reached(50, "upstream-one")
