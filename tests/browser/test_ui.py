"""The reference UI in headless Chromium against the real server. Each test
saves screenshots under its tmp_path."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from playwright.sync_api import expect

from tests.browser.ui_helpers import PHONE, profile_item, screenshot, sign_in
from tests.e2e.e2e_helpers import auth, create, default_id, list_all

NewPage = Callable[[], Any]
LIVE = 1_000  # ms: another device's change shows within a second


def set_default(api: httpx.Client, token: str, profile_id: str) -> None:
    response = api.put("/v1/profiles/default", json={"profile_id": profile_id}, headers=auth(token))
    assert response.status_code == 200, response.text


def expect_default(page: Any, name: str, timeout: float = 5_000) -> None:
    expect(profile_item(page, name)).to_have_attribute("data-default", "true", timeout=timeout)
    expect(page.locator('#profile-list button[data-default="true"]')).to_have_count(1, timeout=timeout)


def expect_active(page: Any, name: str) -> None:
    expect(profile_item(page, name)).to_have_attribute("aria-current", "true")
    expect(page.locator('#profile-list button[aria-current="true"]')).to_have_count(1)
    expect(page.locator("#profile-title")).to_have_text(name)


def test_load_with_a_token_makes_the_default_active(
    new_page: NewPage, api: httpx.Client, token: str, tmp_path: Path
) -> None:
    create(api, token, "Alex", vehicles=[{"name": "Rotax Max", "race_number": "07"}, {"name": "Spare"}])
    sam = create(api, token, "Sam")
    set_default(api, token, sam["id"])
    page = new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    page.goto("/")
    expect(page.get_by_label("Access token")).to_be_visible()
    screenshot(page, tmp_path, "token-form")
    sign_in(page, token)

    expect_active(page, "Sam")  # the default auto-loads on start-up
    expect_default(page, "Sam")
    expect(profile_item(page, "Alex")).to_contain_text("2 vehicles")
    expect(profile_item(page, "Alex")).not_to_have_attribute("aria-current", "true")
    expect(page.locator("#live")).to_have_text("Live")
    assert page.evaluate("sessionStorage.getItem('racer-profiles-token')") == token
    screenshot(page, tmp_path, "desktop")

    # The token is kept for the tab: a reload asks for nothing.
    page.reload()
    expect_active(page, "Sam")
    expect(page.get_by_label("Access token")).to_be_hidden()

    # Nothing is loaded from another host.
    origin = page.evaluate("location.origin")
    assert requested and all(url.startswith(origin + "/") for url in requested), requested

    # Every control has a label.
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('input, select, textarea')]
             .filter((c) => !c.labels.length && !c.getAttribute('aria-label')).map((c) => c.id)"""
    )
    assert unlabelled == []

    # Keyboard: one tab stop in the sidebar (the active profile), arrows move, Enter switches.
    sam_button = profile_item(page, "Sam")
    sam_button.focus()
    page.keyboard.press("ArrowUp")
    expect(profile_item(page, "Alex")).to_be_focused()
    page.keyboard.press("Enter")
    expect_active(page, "Alex")
    page.keyboard.press("End")
    expect(profile_item(page, "Sam")).to_be_focused()

    # Phone width: one column, nothing wider than the screen, the switcher on top.
    page.set_viewport_size(PHONE)
    expect(profile_item(page, "Sam")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, tmp_path, "phone")


def test_switching_with_unsaved_state_warns_cancel_keeps_confirm_clears(
    new_page: NewPage, api: httpx.Client, token: str, tmp_path: Path
) -> None:
    create(api, token, "Alex")
    create(api, token, "Sam")
    page = new_page()
    sign_in(page, token)
    expect_active(page, "Alex")
    notes = page.get_by_label("Race-day notes (not saved to the server)")
    notes.fill("Tyres: 12 psi front")
    page.get_by_label("New name").fill("Alexander")

    profile_item(page, "Sam").click()
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Switching to Sam clears your unsaved changes for Alex")
    screenshot(page, tmp_path, "warning")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect_active(page, "Alex")
    expect(notes).to_have_value("Tyres: 12 psi front")
    expect(page.get_by_label("New name")).to_have_value("Alexander")

    # Escape cancels too.
    profile_item(page, "Sam").click()
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect_active(page, "Alex")
    expect(notes).to_have_value("Tyres: 12 psi front")

    profile_item(page, "Sam").click()
    dialog.get_by_role("button", name="Switch and clear").click()
    expect(dialog).to_be_hidden()
    expect_active(page, "Sam")
    expect(notes).to_have_value("")
    expect(page.get_by_label("New name")).to_have_value("")

    # Nothing unsaved now: switching back asks nothing, and Alex's notes are gone.
    profile_item(page, "Alex").click()
    expect_active(page, "Alex")
    expect(dialog).to_be_hidden()
    expect(notes).to_have_value("")
    screenshot(page, tmp_path, "after-switch")


def test_set_default_moves_the_mark_and_survives_a_reload(
    new_page: NewPage, api: httpx.Client, token: str, tmp_path: Path
) -> None:
    create(api, token, "Alex")
    sam = create(api, token, "Sam")
    page = new_page()
    sign_in(page, token)
    expect_default(page, "Alex")

    profile_item(page, "Sam").click()
    expect_active(page, "Sam")
    page.get_by_role("button", name="Set as default").click()
    expect_default(page, "Sam")
    expect(page.get_by_role("button", name="Set as default")).to_be_hidden()
    expect(page.locator("#default-badge")).to_be_visible()
    assert default_id(api, token) == sam["id"]

    page.reload()
    expect_default(page, "Sam")
    expect_active(page, "Sam")
    screenshot(page, tmp_path, "after-reload")


def test_another_device_changes_show_up_live(
    new_page: NewPage, api: httpx.Client, token: str, tmp_path: Path
) -> None:
    alex = create(api, token, "Alex")
    create(api, token, "Sam")
    here, there = new_page(), new_page()
    sign_in(here, token)
    sign_in(there, token)
    expect(here.locator("#live")).to_have_text("Live")

    # The other browser sets Sam as the default: this one moves the mark within a second.
    profile_item(there, "Sam").click()
    there.get_by_role("button", name="Set as default").click()
    expect_default(there, "Sam")
    expect_default(here, "Sam", timeout=LIVE)
    expect_active(here, "Alex")  # what the user looks at stays put

    # The other browser adds a profile.
    there.get_by_label("New profile name").fill("Kim")
    there.get_by_role("button", name="Create profile").click()
    expect(profile_item(there, "Kim")).to_be_visible()
    expect(profile_item(here, "Kim")).to_be_visible(timeout=LIVE)

    # A device without a browser (plain API) adds a vehicle.
    response = api.post(
        f"/v1/profiles/{alex['id']}/vehicles",
        json={"name": "Rotax Max"},
        headers=auth(token, **{"If-Match": f'"{alex["version"]}"'}),
    )
    assert response.status_code == 201, response.text
    expect(profile_item(here, "Alex")).to_contain_text("1 vehicle", timeout=LIVE)
    expect(here.locator("#vehicle-list")).to_contain_text("Rotax Max", timeout=LIVE)
    screenshot(here, tmp_path, "live")


def test_a_refused_action_shows_the_problem_detail(
    new_page: NewPage, api: httpx.Client, token: str, tmp_path: Path
) -> None:
    alex = create(api, token, "Alex")
    refused = api.post(
        f"/v1/profiles/{alex['id']}/vehicles",
        json={"name": "Kart", "race_number": "#7!"},
        headers=auth(token),
    )
    assert refused.status_code == 422
    detail = refused.json()["detail"]

    page = new_page()
    sign_in(page, token)
    page.get_by_label("Vehicle name").fill("Kart")
    page.get_by_label("Race number").fill("#7!")
    page.get_by_role("button", name="Add vehicle").click()
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text(detail)
    expect(page.get_by_label("Race number")).to_have_value("#7!")  # the input is kept to fix
    expect(profile_item(page, "Alex")).to_contain_text("0 vehicles")
    screenshot(page, tmp_path, "refused")

    # The next action clears the message.
    page.get_by_label("Race number").fill("7")
    page.get_by_role("button", name="Add vehicle").click()
    expect(alert).to_be_hidden()
    expect(profile_item(page, "Alex")).to_contain_text("1 vehicle")

    # A refused token is said so, and asked for again.
    other = new_page()
    other.goto("/")
    other.get_by_label("Access token").fill("rp_not-a-token")
    other.get_by_role("button", name="Use token").click()
    expect(other.get_by_role("alert")).to_contain_text("invalid token")
    expect(other.get_by_label("Access token")).to_be_visible()


def test_profile_actions_send_if_match_and_one_idempotency_key_per_action(
    new_page: NewPage, api: httpx.Client, token: str, tmp_path: Path
) -> None:
    create(api, token, "Alex")
    create(api, token, "Sam")
    create(api, token, "Kim")
    page = new_page()
    commands: list[dict[str, str]] = []
    page.on(
        "request",
        lambda r: (
            commands.append({"method": r.method, "url": r.url, **r.headers}) if r.method != "GET" else None
        ),
    )
    sign_in(page, token)

    # The first answer to "Create profile" is lost after the server applied it:
    # the retry carries the same key, so the profile exists once.
    lost: list[str] = []

    def lose_first_answer(route: Any) -> None:
        if route.request.method == "POST" and not lost:
            lost.append(route.request.headers["idempotency-key"])
            route.fetch()
            route.abort()
        else:
            route.continue_()

    page.route(re.compile(r".*/v1/profiles$"), lose_first_answer)
    page.get_by_label("New profile name").fill("Lee")
    page.get_by_role("button", name="Create profile").click()
    expect(page.get_by_label("New profile name")).to_have_value("")  # the action succeeded
    expect(profile_item(page, "Lee")).to_be_visible()
    expect(page.get_by_role("alert")).to_be_hidden()
    page.unroute(re.compile(r".*/v1/profiles$"))
    assert [p["name"] for p in list_all(api, token)].count("Lee") == 1
    creates = [c for c in commands if c["method"] == "POST" and c["url"].endswith("/v1/profiles")]
    assert len(creates) == 2 and {c["idempotency-key"] for c in creates} == set(lost)

    # Rename, vehicles, archive the default with a successor, restore; the history says so.
    page.get_by_label("New name").fill("Alex Jr")
    page.get_by_role("button", name="Rename").click()
    expect(page.locator("#profile-title")).to_have_text("Alex Jr")
    page.get_by_label("Vehicle name").fill("Rotax Max")
    page.get_by_role("button", name="Add vehicle").click()
    expect(profile_item(page, "Alex Jr")).to_contain_text("1 vehicle")
    page.get_by_role("button", name="Remove Rotax Max").click()
    expect(profile_item(page, "Alex Jr")).to_contain_text("0 vehicles")
    expect(page.locator("#history")).to_contain_text("Renamed to “Alex Jr”")
    expect(page.locator("#history")).to_contain_text("Added vehicle “Rotax Max”")

    page.get_by_label("New default after archiving").select_option(label="Kim")
    page.get_by_role("button", name="Archive profile").click()
    expect(profile_item(page, "Alex Jr")).to_have_count(0)
    expect_default(page, "Kim")
    expect_active(page, "Kim")
    expect(page.locator("#archived-count")).to_have_text("1")
    page.locator("#archived summary").click()
    screenshot(page, tmp_path, "archived")
    page.get_by_role("button", name="Restore Alex Jr").click()
    expect(profile_item(page, "Alex Jr")).to_be_visible()
    expect_default(page, "Kim")
    expect(page.locator("#archived-count")).to_have_text("0")

    changes = [c for c in commands if "/v1/profiles" in c["url"]]
    assert {c["method"] for c in changes} == {"POST", "PATCH", "DELETE"}
    for change in changes:
        UUID(change["idempotency-key"])
        if not change["url"].endswith("/v1/profiles"):
            assert re.fullmatch(r'"\d+"', change["if-match"]), change
    keys = [c["idempotency-key"] for c in changes]
    assert len(set(keys)) == len(keys) - 1  # only the retried create repeats its key


def test_set_default_sends_the_roster_etag(new_page: NewPage, api: httpx.Client, token: str) -> None:
    create(api, token, "Alex")
    create(api, token, "Sam")
    roster_etag = api.get("/v1/profiles/default", headers=auth(token)).headers["ETag"]
    page = new_page()
    sign_in(page, token)
    with page.expect_request(lambda r: r.method == "PUT") as put:
        profile_item(page, "Sam").click()
        page.get_by_role("button", name="Set as default").click()
    assert put.value.headers["if-match"] == roster_etag
    UUID(put.value.headers["idempotency-key"])
    expect_default(page, "Sam")
