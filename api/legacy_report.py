"""The import-legacy report as the lines the CLI prints (api/cli.py).

Legacy column names and values reach the report, so every line is escaped:
an operator's terminal never receives a control or bidi character from them."""

from __future__ import annotations

import unicodedata

from infrastructure.legacy_import import ImportReport
from infrastructure.legacy_rows import plural, show


def format_report(report: ImportReport) -> list[str]:
    """The report as the lines the CLI prints."""
    r = report
    yes = {True: "yes", False: "no"}
    lines = [
        f"legacy database: {plural(r.legacy_profiles, 'profile')}, {plural(r.legacy_vehicles, 'vehicle')}"
        f" (is_default column: {yes[r.has_is_default]}, updated_at column: {yes[r.has_updated_at]}"
        + ("" if r.has_vehicles_table else ", no vehicles table")
        + ")",
    ]
    if r.detail_columns:
        lines.append(f"kept as details: {', '.join(r.detail_columns)}")
    if r.unused_columns:
        lines.append(f"not imported: {', '.join(r.unused_columns)}")
    lines.append(
        f"plan: {plural(len(r.to_create), 'new profile')} with {plural(r.vehicles_to_create, 'vehicle')},"
        f" {plural(len(r.to_add), 'new vehicle')} for profiles imported before;"
        f" {plural(len(r.already_imported), 'profile')} already imported"
    )
    if r.bad_rows:
        lines.append(f"problems: {plural(len(r.bad_rows), 'bad row')} skipped, none of them written")
        lines.extend(f"  {bad}" for bad in r.bad_rows)
    lines.extend(f"warning: {w}" for w in r.warnings)
    if r.default is None:
        lines.append("default: none (no profile to import)")
    else:
        d = r.default
        lines.append(f'default: legacy profile {show(d.legacy_id)} "{d.name}" ({d.profile_id}): {d.outcome}')
        lines.append(f"  reason: {d.reason}")
    if r.dry_run:
        lines.append("dry run: nothing written")
    elif r.events_written:
        lines.append(
            f"imported {plural(len(r.created), 'profile')} with {plural(r.created_vehicles, 'vehicle')}"
            f" and {plural(r.vehicles_added, 'new vehicle')} into account {r.account_id}"
        )
    else:
        lines.append("nothing written: the account is up to date")
    return [escaped(line) for line in lines]


# Control, format (bidi), surrogate, private-use and unassigned characters and line separators.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def escaped(text: str) -> str:
    """Text safe for an operator's terminal: every unprintable character as a Python escape
    (ESC as \\x1b, a bidi override as \\u202e); legacy column names and values reach the report."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in _UNPRINTABLE else ch
        for ch in text
    )
