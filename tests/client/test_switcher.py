"""The Streamlit switcher, through the example dashboard, in Streamlit's
AppTest against the real server. (AppTest cannot press buttons inside
st.dialog: the confirmed switch is tested in Chromium, tests/browser.)"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from racer_profiles_client import Client, Profile
from streamlit.testing.v1 import AppTest

from tests.support.service import Service, free_port

DASHBOARD = Path(__file__).resolve().parents[2] / "clients" / "python" / "examples" / "dashboard.py"


@pytest.fixture
def dashboard(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], AppTest]:
    def start(base_url: str, token: str) -> AppTest:
        monkeypatch.setenv("RACER_PROFILES_URL", base_url)
        monkeypatch.setenv("RACER_PROFILES_TOKEN", token)
        app = AppTest.from_file(str(DASHBOARD), default_timeout=30)
        app.run()
        assert not app.exception, app.exception
        return app

    return start


@pytest.fixture
def family(client: Client) -> Iterator[tuple[Profile, Profile]]:
    alex = client.create_profile(
        "Alex", vehicles=[{"name": "Rotax Max", "race_number": "07"}, {"name": "Spare"}]
    )
    sam = client.create_profile("Sam", vehicles=[{"name": "Cadet kart"}])
    client.set_default(sam.id)
    yield alex, sam


def picker(app: AppTest, name: str) -> object:
    return next(b for b in app.sidebar.button if b.label.startswith(f"{name} ·"))


def test_the_default_loads_on_the_first_run(
    service: Service, token: str, family: tuple[Profile, Profile], dashboard: Callable[[str, str], AppTest]
) -> None:
    app = dashboard(service.base_url, token)
    assert [h.value for h in app.header] == ["Sam"]
    labels = [b.label for b in app.sidebar.button]
    assert labels == ["Alex · 2 vehicles", "Sam · 1 vehicle · ★ default", "Set as default"]
    assert app.sidebar.expander[0].label == "Racer profiles"
    assert app.table[0].value["Vehicle"].tolist() == ["Cadet kart"]


def test_a_switch_without_unsaved_input_is_immediate(
    service: Service, token: str, family: tuple[Profile, Profile], dashboard: Callable[[str, str], AppTest]
) -> None:
    app = dashboard(service.base_url, token)
    picker(app, "Alex").click().run()  # type: ignore[attr-defined]
    assert not app.exception
    assert [h.value for h in app.header] == ["Alex"]
    assert app.table[0].value["Vehicle"].tolist() == ["Rotax Max", "Spare"]


def test_a_switch_with_unsaved_input_asks_first_and_keeps_it(
    service: Service, token: str, family: tuple[Profile, Profile], dashboard: Callable[[str, str], AppTest]
) -> None:
    app = dashboard(service.base_url, token)
    app.text_input(key="new_vehicle_name").input("Half-typed kart").run()
    picker(app, "Alex").click().run()  # type: ignore[attr-defined]
    assert not app.exception
    assert [h.value for h in app.header] == ["Sam"]  # not switched: the dialog asks first
    assert app.session_state["racer_profiles:pending"] == str(family[0].id)
    assert app.text_input(key="new_vehicle_name").value == "Half-typed kart"  # nothing cleared yet


def test_set_as_default(
    service: Service,
    token: str,
    client: Client,
    family: tuple[Profile, Profile],
    dashboard: Callable[[str, str], AppTest],
) -> None:
    alex, _ = family
    app = dashboard(service.base_url, token)
    picker(app, "Alex").click().run()  # type: ignore[attr-defined]
    set_default = app.sidebar.button(key="racer_profiles:set-default")
    assert not set_default.disabled
    set_default.click().run()
    assert not app.exception
    assert client.get_default().id == alex.id  # type: ignore[union-attr]
    assert "Alex · 2 vehicles · ★ default" in [b.label for b in app.sidebar.button]
    assert app.sidebar.button(key="racer_profiles:set-default").disabled
    assert [s.value for s in app.sidebar.success] == ["Alex is now the default profile."]


def test_the_service_down_or_the_token_refused_is_a_message_not_a_traceback(
    service: Service, dashboard: Callable[[str, str], AppTest]
) -> None:
    app = dashboard(f"http://127.0.0.1:{free_port()}", "rp_any")
    errors = [e.value for e in app.sidebar.error]
    assert len(errors) == 1 and "cannot be reached" in errors[0], errors
    assert not app.exception
    assert not app.text_input  # the dashboard stops: no form to fill for a service that is away

    app = dashboard(service.base_url, "rp_not_a_token")
    errors = [e.value for e in app.sidebar.error]
    assert len(errors) == 1 and "refused the token (401)" in errors[0], errors
    assert not app.exception


def test_no_token_says_where_to_put_one(dashboard: Callable[[str, str], AppTest]) -> None:
    app = dashboard("http://127.0.0.1:9", "")
    assert "RACER_PROFILES_TOKEN" in app.sidebar.error[0].value


def test_the_minimal_app_of_the_client_authors_guide_works_as_written(
    service: Service, token: str, family: tuple[Profile, Profile], client: Client, tmp_path: Path
) -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "client-authors.md").read_text()
    # Its fence says `python not-run: ...` (the docs test cannot run a Streamlit app; this test does).
    match = re.search(r"```python[^\n]*\n# app.py\n(.*?)```", guide, re.S)
    assert match, "the guide's app.py example"
    source = match.group(1)
    assert 15 <= len(source.strip().splitlines()) <= 25  # "about 20 lines"
    (tmp_path / "app.py").write_text(source)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RACER_PROFILES_URL", service.base_url)
        env.setenv("RACER_PROFILES_TOKEN", token)
        app = AppTest.from_file(str(tmp_path / "app.py"), default_timeout=30).run()
        assert [h.value for h in app.header] == ["Sam: 1 vehicles"]
        app.text_input(key="kart").input("Rotax").run()
        next(b for b in app.button if b.label == "Add").click().run()
        assert not app.exception
        assert [v.name for v in client.get_profile(family[1].id).vehicles] == ["Cadet kart", "Rotax"]
        assert app.text_input(key="kart").value == ""
        assert [h.value for h in app.header] == ["Sam: 2 vehicles"]


def test_the_token_and_address_may_come_from_st_secrets(
    service: Service, token: str, family: tuple[Profile, Profile], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RACER_PROFILES_URL", raising=False)
    monkeypatch.delenv("RACER_PROFILES_TOKEN", raising=False)
    app = AppTest.from_file(str(DASHBOARD), default_timeout=30)
    app.secrets["RACER_PROFILES_URL"] = service.base_url
    app.secrets["RACER_PROFILES_TOKEN"] = token
    app.run()
    assert not app.exception and not app.sidebar.error
    assert [h.value for h in app.header] == ["Sam"]
