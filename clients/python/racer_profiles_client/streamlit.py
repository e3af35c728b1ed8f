"""The profile switcher for Streamlit dashboards (`pip install 'racer-profiles-client[streamlit]'`).

    client = connect()                      # RACER_PROFILES_URL / RACER_PROFILES_TOKEN
    profile = profile_switcher(client)      # the sidebar; the active Profile or None

The switcher owns the session-state keys that start with its `key`; every
other key is the app's own state, which a switch clears (after asking)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError

from racer_profiles_client.client import Client
from racer_profiles_client.errors import (
    Forbidden,
    ProblemError,
    ServiceUnreachable,
    Unauthorized,
    Unavailable,
)
from racer_profiles_client.models import Profile

DEFAULT_URL = "http://127.0.0.1:8000"
URL_SETTING = "RACER_PROFILES_URL"
TOKEN_SETTING = "RACER_PROFILES_TOKEN"


def _setting(name: str) -> str | None:
    """st.secrets first (.streamlit/secrets.toml), then the environment."""
    try:
        value = st.secrets.get(name)
    except StreamlitSecretNotFoundError:  # no secrets file at all: Streamlit raises, not None
        value = None
    return str(value) if value else os.environ.get(name) or None


@st.cache_resource(show_spinner=False)
def _client(base_url: str, token: str) -> Client:
    return Client(base_url, token)


def connect(base_url: str | None = None, token: str | None = None) -> Client | None:
    """A Client for the service named by RACER_PROFILES_URL and RACER_PROFILES_TOKEN
    (in st.secrets or the environment), shared by the sessions of this app;
    None, with a message in the sidebar, when no token is set."""
    base_url = base_url or _setting(URL_SETTING) or DEFAULT_URL
    token = token or _setting(TOKEN_SETTING)
    if not token:
        st.sidebar.error(
            f"No access token: set {TOKEN_SETTING} in .streamlit/secrets.toml or in the environment"
            " (`racer-profiles accounts create NAME` prints one)."
        )
        return None
    return _client(base_url, token)


class _Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.active = f"{prefix}:active"
        self.pending = f"{prefix}:pending"
        self.ask = f"{prefix}:ask"
        self.notice = f"{prefix}:notice"

    def pick(self, profile: Profile) -> str:
        return f"{self.prefix}:pick:{profile.id}"


def _app_keys(keys: _Keys, app_state: Iterable[str] | None) -> list[str]:
    if app_state is not None:
        return [k for k in app_state if k in st.session_state]
    return [k for k in st.session_state if not str(k).startswith(keys.prefix + ":")]


def _holds_state(keys: _Keys, app_state: Iterable[str] | None) -> bool:
    """Unsaved work: an app key with a value (an empty text or list is no work)."""
    return any(st.session_state[k] not in (None, "", [], {}, ()) for k in _app_keys(keys, app_state))


def profile_switcher(
    client: Client | None,
    *,
    label: str = "Racer profiles",
    key: str = "racer_profiles",
    app_state: Iterable[str] | None = None,
    clears: str = "the unsaved input on this page",
    stop_on_error: bool = False,
) -> Profile | None:
    """Renders the profiles in a sidebar expander and returns the active one.

    On a session's first run the account's default is active. Choosing another
    profile while the session holds app state (`app_state` names its keys;
    by default every key not starting with `key`) first asks in a dialog, then
    clears that state and switches. "Set as default" makes the active profile
    the account's default. When the service cannot be reached or refuses the
    token, the sidebar says so and the result is None (or, with
    `stop_on_error`, the app's run stops there: st.stop)."""
    if client is None:
        return None
    keys = _Keys(key)
    try:
        return _render(client, keys, label, app_state, clears)
    except ProblemError as error:
        _report(client, error)
    if stop_on_error:
        st.stop()
    return None


def _report(client: Client, error: ProblemError) -> None:
    """One plain sentence in the sidebar: what went wrong and what to do."""
    if isinstance(error, Unauthorized | Forbidden):
        message = (
            f"The profile service refused the token ({error.status}): check {TOKEN_SETTING}. "
            f"{error.problem.detail or ''}"
        )
    elif isinstance(error, ServiceUnreachable):
        message = (
            f"The profile service at {client.base_url} cannot be reached. Is it running? "
            "Reload the page to try again."
        )
    elif isinstance(error, Unavailable):
        message = f"The profile service is unavailable for now: {error.problem.detail}. Try again shortly."
    else:
        message = f"The profile service answered {error.status}: {error.problem.detail}"
    st.sidebar.error(message)


def _render(
    client: Client, keys: _Keys, label: str, app_state: Iterable[str] | None, clears: str
) -> Profile | None:
    profiles = list(client.list_profiles())
    by_id = {str(p.id): p for p in profiles}
    if st.session_state.get(keys.active) not in by_id:
        # A session's first run (or its profile was archived elsewhere): the default.
        default = next((p for p in profiles if p.is_default), None)
        st.session_state[keys.active] = str(default.id) if default else None
    active = by_id.get(st.session_state[keys.active] or "")

    def pick(profile_id: str) -> None:
        if profile_id == st.session_state[keys.active]:
            return
        if _holds_state(keys, app_state):
            st.session_state[keys.pending] = profile_id
            st.session_state[keys.ask] = True
        else:
            st.session_state[keys.active] = profile_id

    with st.sidebar.expander(label, expanded=True):
        if not profiles:
            st.info("This account has no active profile yet.")
        for profile in profiles:
            is_active = active is not None and profile.id == active.id
            st.button(
                _caption(profile),
                key=keys.pick(profile),
                on_click=pick,
                args=(str(profile.id),),
                type="primary" if is_active else "secondary",
                width="stretch",
            )
        set_default = f"{keys.prefix}:set-default"
        if active is not None and st.button("Set as default", key=set_default, disabled=active.is_default):
            client.set_default(active.id)
            st.session_state[keys.notice] = f"{active.name} is now the default profile."
            st.rerun()
        notice = st.session_state.pop(keys.notice, None)
        if notice:
            st.success(notice)

    if st.session_state.pop(keys.ask, False) and st.session_state.get(keys.pending) in by_id:
        _confirm(by_id[st.session_state[keys.pending]], keys, app_state, clears)
    return active


_EMPTY = (str, bool, list, tuple, dict, set)


def _clear(key: str) -> None:
    """Empties a text, flag or list (a widget's shown value follows only an
    assignment: a deleted key would come back from the browser); removes the rest."""
    value = st.session_state[key]
    if type(value) in _EMPTY:
        st.session_state[key] = type(value)()
    else:
        del st.session_state[key]


def _caption(profile: Profile) -> str:
    count = f"{profile.vehicle_count} vehicle" + ("" if profile.vehicle_count == 1 else "s")
    return f"{profile.name} · {count}" + (" · ★ default" if profile.is_default else "")


def _confirm(target: Profile, keys: _Keys, app_state: Iterable[str] | None, clears: str) -> None:
    def switch() -> None:
        for k in _app_keys(keys, app_state):
            _clear(k)
        st.session_state[keys.active] = str(target.id)
        st.session_state.pop(keys.pending, None)

    def cancel() -> None:
        st.session_state.pop(keys.pending, None)

    _dialog(target, clears, switch, cancel)


@st.dialog("Switch profile?")
def _dialog(target: Profile, clears: str, switch: Callable[[], Any], cancel: Callable[[], Any]) -> None:
    st.warning(f"Switching to **{target.name}** clears {clears}.")
    left, right = st.columns(2)
    # Callbacks: they run before the next run draws the app's widgets, the only
    # time their state may be reset. The full rerun (scope "app") closes the dialog.
    if left.button("Switch and clear", type="primary", width="stretch", on_click=switch):
        st.rerun()
    if right.button("Cancel", width="stretch", on_click=cancel):
        st.rerun()
