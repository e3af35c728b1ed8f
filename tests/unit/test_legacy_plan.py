"""The import-legacy plan (infrastructure/legacy_plan.py) on legacy rows made in
memory: bad rows and their reasons, the default, vehicles, re-runs, and the
provenance an import records and reads back. No database."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest

from domain.values import VEHICLES_MAX
from infrastructure.legacy_plan import Imported, Plan, legacy_profile_id, plan
from infrastructure.legacy_provenance import ACTOR, imported_vehicle_keys
from infrastructure.legacy_rows import (
    MAX_NESTING,
    LegacyTables,
    RawJson,
    profile_shrinker,
    vehicle_shrinker,
)

ACCOUNT = "6f1c2a4e-8d2b-4c3f-9a57-0b8e4f1d2c3a"
PROFILE_COLUMNS = ["id", "name", "created_at", "updated_at", "is_default"]
VEHICLE_COLUMNS = ["id", "profile_id", "name", "class", "number"]


def profile(
    id: Any, name: Any, updated: str | None = None, default: Any = False, **extra: Any
) -> dict[str, Any]:
    return {
        "id": id,
        "name": name,
        "created_at": datetime(2024, 1, 1, tzinfo=UTC),
        "updated_at": datetime.fromisoformat(updated) if updated else None,
        "is_default": default,
        **extra,
    }


def vehicle(id: Any, profile_id: Any, name: Any, cls: Any = None, number: Any = None) -> dict[str, Any]:
    return {"id": id, "profile_id": profile_id, "name": name, "class": cls, "number": number}


def tables(
    profiles: list[dict[str, Any]],
    vehicles: list[dict[str, Any]] | None = None,
    profile_columns: list[str] | None = None,
    vehicle_columns: list[str] | None = VEHICLE_COLUMNS,
) -> LegacyTables:
    """The tables as the reader hands them to the plan: each row shrunk (rows in created order)."""
    columns = profile_columns or PROFILE_COLUMNS + [c for c in profiles[0] if c not in PROFILE_COLUMNS]
    shrink_profile = profile_shrinker(columns)
    shrink_vehicle = vehicle_shrinker(vehicle_columns or [])
    return LegacyTables(
        columns,
        [shrink_profile(p) for p in profiles],
        vehicle_columns,
        [shrink_vehicle(v) for v in vehicles or []],
    )


def pid(legacy_id: Any) -> UUID:
    return legacy_profile_id(ACCOUNT, legacy_id)


def planned(legacy: LegacyTables, imported: Imported | None = None) -> Plan:
    return plan(ACCOUNT, legacy, imported or {})


def reasons(result: Plan) -> dict[tuple[str, Any], str]:
    return {(b.table, b.legacy_id): b.reason for b in result.bad_rows}


# --- bad rows --------------------------------------------------------------------------


def test_bad_rows_are_skipped_whole_with_their_reasons() -> None:
    legacy = tables(
        [
            profile(10, "Good"),
            profile(11, "   "),
            profile(12, None),
            profile(None, "No id"),
            profile(13, "Bad vehicle"),
            profile(16, "Twin"),
            profile(16, "Twin again"),
            profile(18, ""),
        ],
        [
            vehicle(100, 10, "Kart"),
            vehicle(101, 13, "Fine car", number="8"),
            vehicle(102, 13, "Bad car", number="#7"),
            vehicle(103, 99, "Orphan"),
            vehicle(104, None, "Nobody's"),
            vehicle(105, 18, "Kart"),
            vehicle(106, 10, "Same id"),
            vehicle(106, 10, "Same id again"),
        ],
        profile_columns=PROFILE_COLUMNS,
    )

    result = planned(legacy)

    assert reasons(result) == {
        ("racer_profiles", None): 'row named "No id" has no id',
        (
            "racer_profiles",
            10,
        ): "vehicle 106 id appears 2 times in vehicles; vehicle 106 id appears 2 times in"
        " vehicles (skipped with its 3 vehicles)",
        ("racer_profiles", 11): "name must not be blank",
        ("racer_profiles", 12): "name is missing",
        ("racer_profiles", 13): "vehicle 102 race_number must contain only ASCII letters and digits"
        " (skipped with its 2 vehicles)",
        ("racer_profiles", 16): "id appears 2 times in racer_profiles",
        ("racer_profiles", 18): "name must not be blank (skipped with its 1 vehicle)",
        ("vehicles", 103): "profile_id 99 is not a profile in racer_profiles",
        ("vehicles", 104): "has no profile_id",
    }
    # Profiles first, then vehicles; nothing bad is planned.
    assert [b.table for b in result.bad_rows][-2:] == ["vehicles", "vehicles"]
    assert result.to_create == [] and result.default is None
    assert str(result.bad_rows[0]).startswith("profile ")


def test_a_profile_with_too_many_vehicles_or_too_deep_json_is_a_bad_row() -> None:
    deep = RawJson("[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1))
    legacy = tables(
        [
            profile(1, "Crowded", prefs=None),
            profile(2, "Deep", prefs=deep),
            profile(3, "Fine", prefs=RawJson("{}")),
        ],
        [vehicle(i, 1, f"Kart {i}") for i in range(1, VEHICLES_MAX + 2)],
    )

    result = planned(legacy)

    assert reasons(result) == {
        ("racer_profiles", 1): f"has {VEHICLES_MAX + 1} vehicles; at most {VEHICLES_MAX} per profile"
        f" (skipped with its {VEHICLES_MAX + 1} vehicles)",
        ("racer_profiles", 2): f"column prefs holds JSON nested deeper than {MAX_NESTING} levels",
    }
    assert [p.legacy_id for p in result.to_create] == [3]
    assert result.to_create[0].details == {"prefs": "{}"}


def test_extra_columns_become_details_and_changed_values_are_warned_about() -> None:
    legacy = tables(
        [profile(1, "Alex", team="Apex\x07Karting", rating=7.5), profile(2, "Sam", team=None, rating=None)],
        [vehicle(1, 1, "Kart", number=7)],
        vehicle_columns=[*VEHICLE_COLUMNS, "colour"],
    )

    result = planned(legacy)

    assert result.detail_columns == ["team", "rating"]
    assert result.unused_columns == ["vehicles.colour"]
    assert result.to_create[0].details == {"team": "Apex Karting", "rating": 7.5}
    assert result.warnings == ["details.team: control characters replaced by spaces for 1 profile(s) (1)"]


# --- vehicles ----------------------------------------------------------------------------


def test_vehicles_are_attached_to_their_profiles_in_id_order() -> None:
    legacy = tables(
        [profile(1, "Alex"), profile(2, "Sam"), profile(3, "Kim")],
        [
            vehicle(7, 1, "Rotax Max", "Senior Max", 42),
            vehicle(8, 1, " Spare chassis ", " ", None),
            vehicle(9, 2, "Formula Ford", "FF1600", "7"),
        ],
    )

    result = planned(legacy)

    alex, sam, kim = result.to_create
    assert (alex.profile_id, alex.name, alex.vehicle_ids) == (pid(1), "Alex", (7, 8))
    assert alex.vehicles == (
        {"name": "Rotax Max", "vehicle_class": "Senior Max", "race_number": "42"},
        {"name": "Spare chassis", "vehicle_class": None, "race_number": None},
    )
    assert sam.vehicle_ids == (9,) and sam.vehicles[0]["race_number"] == "7"
    assert kim.vehicles == () and kim.vehicle_ids == ()
    assert result.vehicles_to_create == 3
    assert (result.legacy_profiles, result.legacy_vehicles) == (3, 3)


def test_without_a_vehicles_table_profiles_come_alone() -> None:
    result = planned(tables([profile("a-1", "Alex")], vehicle_columns=None))

    assert not result.has_vehicles_table
    assert [(p.legacy_id, p.profile_id, p.vehicles) for p in result.to_create] == [("a-1", pid("a-1"), ())]


# --- the default ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marked", "updated", "expected", "reason"),
    [
        pytest.param(
            [],
            {1: "2024-06-01", 2: "2024-05-01"},
            1,
            "no row is marked is_default; legacy profile 1 is the most recently updated (2024-06-01T00:00:00)",
            id="zero-marked",
        ),
        pytest.param(
            [], {}, 1, "no row is marked is_default and no profile has an updated_at", id="zero-undated"
        ),
        pytest.param([3], {}, 3, "legacy profile 3 is the only row marked is_default", id="one-marked"),
        pytest.param(
            [2, 3],
            {3: "2024-06-01", 2: "2024-01-01"},
            3,
            "2 rows are marked is_default (2, 3); chose 3, the most recently updated of them",
            id="two-marked-by-update",
        ),
        pytest.param(
            [2, 3],
            {},
            2,
            "2 rows are marked is_default (2, 3); chose 2, the earliest created of them",
            id="two-marked-undated",
        ),
    ],
)
def test_the_default_follows_the_is_default_column(
    marked: list[int], updated: dict[int, str], expected: int, reason: str
) -> None:
    legacy = tables(
        [profile(i, f"P{i}", updated.get(i), default="yes" if i in marked else "no") for i in (1, 2, 3)]
    )

    result = planned(legacy)

    assert result.default is not None
    assert (result.default.legacy_id, result.default.profile_id) == (expected, pid(expected))
    assert result.default.name == f"P{expected}"
    assert result.default.reason.startswith(reason), result.default.reason
    several = [w for w in result.warnings if "legacy profiles are marked is_default" in w]
    assert len(several) == (1 if len(marked) > 1 else 0)


def test_without_is_default_or_updated_at_columns_the_earliest_created_is_the_default() -> None:
    legacy = tables([profile(5, "First"), profile(4, "Second")], profile_columns=["id", "name", "created_at"])

    result = planned(legacy)

    assert result.default is not None and result.default.legacy_id == 5
    assert result.default.reason == (
        "no is_default column and no updated_at column; legacy profile 5 is the earliest created"
    )


def test_a_marked_row_that_is_bad_is_warned_about_and_not_the_default() -> None:
    legacy = tables([profile(1, "Good", "2024-01-01"), profile(2, "", default=True)])

    result = planned(legacy)

    assert result.default is not None and result.default.legacy_id == 1
    assert "marked is_default but skipped as a bad row: profile 2" in result.warnings


# --- re-runs -----------------------------------------------------------------------------------


def test_a_re_run_plans_only_what_is_new() -> None:
    legacy = tables(
        [profile(1, "Alex", default=True), profile(2, "Sam"), profile(3, "Kim")],
        [vehicle(7, 1, "Kart"), vehicle(8, 1, "Rain kart"), vehicle(9, 3, "Radical")],
    )
    imported: Imported = {pid(1): {"7"}, pid(2): set()}

    result = planned(legacy, imported)

    assert result.already_imported == [1, 2]
    assert [p.legacy_id for p in result.to_create] == [3]
    assert [(v.legacy_id, v.legacy_profile_id, v.profile_id) for v in result.to_add] == [(8, 1, pid(1))]
    assert result.to_add[0].fields == {"name": "Rain kart", "vehicle_class": None, "race_number": None}
    # The default is still chosen among every valid row, imported before or not.
    assert result.default is not None and result.default.legacy_id == 1


def test_an_erased_profile_gets_nothing_again_and_an_invalid_imported_row_is_left_alone() -> None:
    legacy = tables(
        [profile(1, "Gone"), profile(2, "  ")], [vehicle(7, 1, "New kart"), vehicle(8, 2, "Kart")]
    )

    result = planned(legacy, {pid(1): None, pid(2): {"8"}})

    assert (result.to_create, result.to_add, result.bad_rows) == ([], [], [])
    assert result.already_imported == [1, 2]
    assert result.warnings == [
        "profile 1 was erased in racer-profiles: nothing of it is imported again",
        "profile 2 was imported before but is now invalid (name must not be blank); left as imported",
    ]


# --- provenance ----------------------------------------------------------------------------------


def test_what_is_planned_carries_its_provenance_as_data_and_as_a_reason() -> None:
    legacy = tables(
        [profile(3, "Alex"), profile("x-9", "Sam")], [vehicle(7, 3, "Kart"), vehicle(8, 3, "Buggy")]
    )
    result = planned(legacy)
    alex, sam = result.to_create

    assert alex.source == {"legacy_profile": 3, "legacy_vehicles": [7, 8]}
    assert alex.reason == "legacy import: profile 3, vehicles [7, 8]"
    assert sam.source == {"legacy_profile": "x-9", "legacy_vehicles": []}
    assert sam.reason == 'legacy import: profile "x-9", vehicles []'

    again = planned(tables([profile(3, "Alex")], [vehicle(12, 3, "Rain kart")]), {pid(3): set()})
    (added,) = again.to_add
    assert added.source == {"legacy_profile": 3, "legacy_vehicle": 12}
    assert added.reason == "legacy import: vehicle 12 of profile 3"


def event(actor: str = ACTOR, source: Any = None, reason: str | None = None) -> Any:
    return SimpleNamespace(actor=actor, source=source, reason=reason)


def test_the_imported_vehicles_are_read_from_the_events_source() -> None:
    assert imported_vehicle_keys(event(source={"legacy_profile": 3, "legacy_vehicles": [7, "a"]})) == [
        "7",
        "a",
    ]
    assert imported_vehicle_keys(event(source={"legacy_profile": 3, "legacy_vehicle": 12})) == ["12"]
    # The source wins over the reason, whatever the reason says.
    assert (
        imported_vehicle_keys(
            event(
                source={"legacy_profile": 3, "legacy_vehicles": []},
                reason="legacy import: profile 3, vehicles [7]",
            )
        )
        == []
    )
    assert imported_vehicle_keys(event(actor="owner", source={"legacy_vehicles": [7]})) == []


@pytest.mark.parametrize(
    ("reason", "keys"),
    [
        ("legacy import: profile 3, vehicles [7, 8]", ["7", "8"]),
        ('legacy import: profile "x-9", vehicles ["v-1"]; default: legacy profile ...', ["v-1"]),
        ("legacy import: profile 3, vehicles []", []),
        ("legacy import: vehicle 12 of profile 3", ["12"]),
        ("legacy import: profile [unparseable", []),
        ("renamed by hand", []),
        (None, []),
    ],
)
def test_events_written_before_the_source_existed_are_read_from_their_reason(
    reason: str | None, keys: list[str]
) -> None:
    assert imported_vehicle_keys(event(reason=reason)) == keys
    # Only the import's own events are read so.
    assert imported_vehicle_keys(event(actor="owner", reason=reason)) == []


def test_the_plan_imports_nothing_of_the_database() -> None:
    modules = ("infrastructure.legacy_plan", "infrastructure.legacy_rows", "infrastructure.legacy_provenance")
    code = (
        f"import sys; import {', '.join(modules)}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg_pool', 'sqlalchemy')"
        " or m.startswith('eventsourcing.postgres') or m == 'infrastructure.container'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
