"""The example Streamlit dashboard (clients/python/examples/dashboard.py) run by
`streamlit run` against the real server, in headless Chromium: the default
loads, and a switch with unsaved input asks in a dialog first (AppTest cannot
press buttons inside st.dialog). Screenshots go to the test's tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from racer_profiles_client import Client

from tests.browser.ui_helpers import DESKTOP, screenshot
from tests.support.service import Service, free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "clients" / "python" / "examples" / "dashboard.py"
# expect() waits 5 s unless told, not the context's default: a rerun of the dashboard (each
# click, the first load) can take longer on a loaded 2-core machine.
RERUN_MS = 20_000
# Headless and quiet: no browser opened, no usage statistics sent.
STREAMLIT_FLAGS = ["--server.headless", "true", "--browser.gatherUsageStats", "false"]


@pytest.fixture
def dashboard_url(ui_service: Service, token: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "RACER_PROFILES_URL": ui_service.base_url, "RACER_PROFILES_TOKEN": token}
    with (tmp_path / "streamlit.log").open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(DASHBOARD),
                *STREAMLIT_FLAGS,
                "--server.address",
                "127.0.0.1",
                "--server.port",
                str(port),
            ],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process, tmp_path / "streamlit.log")
        yield url
    finally:
        stop_process(process)


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=2).text == "ok":
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)  # the bounded start-up poll
    pytest.fail(f"streamlit did not start:\n{log.read_text()}")


def test_the_dashboard_loads_the_default_and_asks_before_a_switch_clears_input(
    browser: Any, ui_service: Service, token: str, dashboard_url: str, tmp_path: Path
) -> None:
    with Client(ui_service.base_url, token) as client:
        client.create_profile(
            "Alex", vehicles=[{"name": "Rotax Max", "race_number": "07"}, {"name": "Spare"}]
        )
        sam = client.create_profile("Sam", vehicles=[{"name": "Cadet kart", "vehicle_class": "Cadet"}])
        client.set_default(sam.id)
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        page.goto(dashboard_url)
        sidebar = page.get_by_test_id("stSidebar")
        expect(page.get_by_role("heading", name="Sam")).to_be_visible(timeout=RERUN_MS)  # the default, loaded
        expect(sidebar.get_by_role("button", name="Sam · 1 vehicle · ★ default")).to_be_visible(
            timeout=RERUN_MS
        )
        expect(sidebar.get_by_role("button", name="Alex · 2 vehicles")).to_be_visible(timeout=RERUN_MS)
        expect(page.get_by_text("Cadet kart")).to_be_visible(timeout=RERUN_MS)
        screenshot(page, tmp_path, "1-default-loaded")

        # Unsaved input, then a switch: the dialog asks; Cancel keeps everything.
        vehicle_name = page.get_by_label("Vehicle name")
        vehicle_name.fill("Half-typed kart")
        vehicle_name.press("Enter")
        sidebar.get_by_role("button", name="Alex · 2 vehicles").click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text(
            "Switching to Alex clears what you typed on this page and did not save", timeout=RERUN_MS
        )
        screenshot(page, tmp_path, "2-switch-asks")
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_be_hidden(timeout=RERUN_MS)
        expect(page.get_by_role("heading", name="Sam")).to_be_visible(timeout=RERUN_MS)
        expect(page.get_by_label("Vehicle name")).to_have_value("Half-typed kart", timeout=RERUN_MS)

        # Again, confirmed: the input is cleared and Alex is active.
        sidebar.get_by_role("button", name="Alex · 2 vehicles").click()
        dialog.get_by_role("button", name="Switch and clear").click()
        expect(dialog).to_be_hidden(timeout=RERUN_MS)
        expect(page.get_by_role("heading", name="Alex")).to_be_visible(timeout=RERUN_MS)
        expect(page.get_by_text("Rotax Max")).to_be_visible(timeout=RERUN_MS)
        expect(page.get_by_label("Vehicle name")).to_have_value("", timeout=RERUN_MS)
        screenshot(page, tmp_path, "3-switched")

        # Without unsaved input a switch asks nothing.
        sidebar.get_by_role("button", name="Sam · 1 vehicle · ★ default").click()
        expect(page.get_by_role("heading", name="Sam")).to_be_visible(timeout=RERUN_MS)
        expect(dialog).to_have_count(0, timeout=RERUN_MS)
    finally:
        context.close()
    # The log of the dashboard_url fixture's `streamlit run`: no error behind the pages.
    assert "Traceback" not in (tmp_path / "streamlit.log").read_text()
