"""Browser tests: the reference UI at `/`, served by the real `racer-profiles
serve` (as in tests/e2e), driven by Playwright in Debian's headless Chromium.

Chromium must be /usr/bin/chromium (`.ci/run` installs it); without it every
browser test is skipped with one plain reason, and that is the only skip.
`playwright install` is never needed: the system browser is launched."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.browser.ui_helpers import CHROMIUM, DESKTOP, LAUNCH_ARGS, NO_CHROMIUM
from tests.e2e.conftest import Service, running_service


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope: Playwright's sync API must be gone before other tests run
    # their own event loops in this thread.
    if not CHROMIUM.exists():
        pytest.skip(NO_CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def ui_service(
    browser: Any, pg_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """The server on a database of its own (browser first: no server without Chromium)."""
    with running_service(pg_server_url, tmp_path_factory.mktemp("ui-server-logs")) as running:
        yield running


@pytest.fixture
def api(ui_service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ui_service.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def token(ui_service: Service) -> str:
    """An owner token of a brand-new account (made by `racer-profiles accounts create`)."""
    return ui_service.new_token()


@pytest.fixture
def new_page(browser: Any, ui_service: Service) -> Iterator[Callable[[], Any]]:
    """Pages, each in a browser context of its own (another device: its own
    sessionStorage); page errors fail the test."""
    contexts: list[Any] = []
    errors: list[str] = []

    def make() -> Any:
        context = browser.new_context(viewport=DESKTOP, base_url=ui_service.base_url)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"errors in the page: {errors}"
