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
from tests.support.service import Service, running_service


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


class PageMaker:
    """Makes pages, each in a browser context of its own (another device: its own
    sessionStorage), and collects the errors the pages raise."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.browser, self.base_url = browser, base_url
        self.contexts: list[Any] = []
        self.errors: list[str] = []

    def __call__(self) -> Any:
        context = self.browser.new_context(viewport=DESKTOP, base_url=self.base_url)
        context.set_default_timeout(10_000)
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def new_page(browser: Any, ui_service: Service) -> Iterator[Callable[[], Any]]:
    maker = PageMaker(browser, ui_service.base_url)
    try:
        yield maker
    finally:
        maker.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Page errors fail the test itself (its call phase), not the fixture's teardown."""
    result = yield
    maker = getattr(item, "funcargs", {}).get("new_page")
    if isinstance(maker, PageMaker) and maker.errors:
        pytest.fail(f"errors in the page: {maker.errors}")
    return result
