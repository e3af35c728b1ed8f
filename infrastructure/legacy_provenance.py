"""What an import records about where a profile or vehicle came from, and
reading it back: which legacy vehicles a stored profile already holds.

The provenance is the event's `source` (domain/profile.py): for a profile's
Created event {"legacy_profile": 3, "legacy_vehicles": [7, 8]}, for a vehicle
added by a later run {"legacy_profile": 3, "legacy_vehicle": 12}. The reason
says the same for auditors ("legacy import: profile 3, vehicles [7, 8]").

Events written by imports before `source` existed carry the ids only in that
reason: for them alone (actor `import`, no source) the reason is parsed, see
`_ids_in_old_reason`. Pure: no database."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from infrastructure.legacy_rows import key

ACTOR = "import"

_PROFILE_MARK = "legacy import: profile "
_VEHICLE_MARK = re.compile(r"^legacy import: vehicle ")


def profile_source(legacy_id: Any, vehicle_ids: tuple[Any, ...]) -> dict[str, Any]:
    return {"legacy_profile": _json_id(legacy_id), "legacy_vehicles": [_json_id(i) for i in vehicle_ids]}


def vehicle_source(legacy_id: Any, legacy_profile_id: Any) -> dict[str, Any]:
    return {"legacy_profile": _json_id(legacy_profile_id), "legacy_vehicle": _json_id(legacy_id)}


def profile_reason(legacy_id: Any, vehicle_ids: tuple[Any, ...]) -> str:
    return (
        f"{_PROFILE_MARK}{_json_text(legacy_id)}, vehicles [{', '.join(_json_text(i) for i in vehicle_ids)}]"
    )


def vehicle_reason(legacy_id: Any, legacy_profile_id: Any) -> str:
    return f"legacy import: vehicle {_json_text(legacy_id)} of profile {_json_text(legacy_profile_id)}"


def imported_vehicle_keys(event: Any) -> list[str]:
    """The legacy vehicle ids (as keys) a profile's Created or VehicleAdded event
    says the import brought in; none for an event the import did not write."""
    if getattr(event, "actor", None) != ACTOR:
        return []
    source: Mapping[str, Any] | None = getattr(event, "source", None)
    if source is not None:
        if "legacy_vehicles" in source:
            return [key(i) for i in source["legacy_vehicles"]]
        if "legacy_vehicle" in source:
            return [key(source["legacy_vehicle"])]
        return []
    return _ids_in_old_reason(getattr(event, "reason", None) or "")


def _ids_in_old_reason(reason: str) -> list[str]:
    """Fallback for events an import wrote before events had a `source`: the ids
    parsed from the reason it wrote (profile_reason, vehicle_reason)."""
    decoder = json.JSONDecoder()
    try:
        if reason.startswith(_PROFILE_MARK):
            _, end = decoder.raw_decode(reason, len(_PROFILE_MARK))
            if reason.startswith(", vehicles ", end):
                ids, _ = decoder.raw_decode(reason, end + len(", vehicles "))
                return [key(i) for i in ids]
            return []
        match = _VEHICLE_MARK.match(reason)
        if match:
            vid, _ = decoder.raw_decode(reason, match.end())
            return [key(vid)]
    except (ValueError, TypeError):  # not written by an import: names no legacy vehicle
        return []
    return []


def _json_id(value: Any) -> int | str:
    """An id as stored: an integer stays one, any other id is its text."""
    return value if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _json_text(value: Any) -> str:
    return json.dumps(_json_id(value))
