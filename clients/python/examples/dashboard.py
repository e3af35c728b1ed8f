"""A small racing dashboard on the profile switcher.

    RACER_PROFILES_TOKEN=rp_... streamlit run clients/python/examples/dashboard.py

The sidebar switches racer profiles; the page shows the active profile's
vehicles and a form to add one. What is typed in the form and not yet added is
the session's own state: switching profiles asks first, then clears it."""

from __future__ import annotations

import streamlit as st
from racer_profiles_client import ProblemError
from racer_profiles_client.streamlit import connect, profile_switcher

st.set_page_config(page_title="Racing dashboard", page_icon="🏁")
st.title("Racing dashboard")
client = connect()
profile = profile_switcher(client, clears="what you typed on this page and did not save", stop_on_error=True)
if client is None:
    st.stop()


def create_profile() -> None:
    try:
        client.create_profile(st.session_state.new_racer)
    except ProblemError as error:
        st.session_state.add_error = error.problem.detail
        return
    st.session_state.new_racer = ""


if error := st.session_state.pop("add_error", None):
    st.error(error)
with st.expander("New racer profile", expanded=profile is None):
    st.text_input("Racer name", key="new_racer")
    st.button("Create profile", on_click=create_profile)
if profile is None:
    st.info("Create a racer profile, or pick one in the sidebar.")
    st.stop()

st.header(profile.name)
if profile.vehicles:
    st.table(
        [
            {"Vehicle": v.name, "Class": v.vehicle_class or "", "Number": v.race_number or ""}
            for v in profile.vehicles
        ]
    )
else:
    st.caption("No vehicles yet.")

st.subheader("Add a vehicle")
st.text_input("Vehicle name", key="new_vehicle_name")
left, right = st.columns(2)
left.text_input("Class", key="new_vehicle_class")
right.text_input("Race number", key="new_vehicle_number")


def add_vehicle() -> None:
    try:
        client.add_vehicle(
            profile.id,
            st.session_state.new_vehicle_name,
            vehicle_class=st.session_state.new_vehicle_class or None,
            race_number=st.session_state.new_vehicle_number or None,
            if_match=profile.etag,
        )
    except ProblemError as error:
        st.session_state.add_error = error.problem.detail
        return
    for key in ("new_vehicle_name", "new_vehicle_class", "new_vehicle_number"):
        st.session_state[key] = ""


st.button("Add vehicle", on_click=add_vehicle)
