"""Helpers of the browser tests (see conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
NO_CHROMIUM = "Chromium is not installed: browser tests not run; .ci/run installs it"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def sign_in(page: Any, token: str) -> None:
    """Opens `/` and pastes the token into the form, as a user does."""
    page.goto("/")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Use token").click()
    page.locator("#profile-list button").first.wait_for()


def profile_item(page: Any, name: str) -> Any:
    """The sidebar entry of the active profile named exactly name."""
    return page.locator("#profile-list button", has=page.get_by_text(name, exact=True))


def screenshot(page: Any, directory: Path, name: str) -> Path:
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
