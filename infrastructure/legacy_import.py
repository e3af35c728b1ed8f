"""import-legacy: move a racing dashboard's `racer_profiles` (and `vehicles`)
tables into racer-profiles as events with actor `import`.

In four parts, each in its own module:

1. reading: the legacy database is only read, in one READ ONLY, REPEATABLE READ
   transaction, each row shrunk as it streams in (legacy_source.py, legacy_rows.py);
2. the plan, pure: what to create and add, the bad rows, the default (legacy_plan.py),
   from the rows and what earlier runs imported (their events' `source`,
   legacy_provenance.py);
3. writing, here: through the application service only, each profile whole in
   one transaction, then the default unless the account's owner chose one;
4. the report: this module returns it (ImportReport); the CLI prints it.

Every row is validated before anything is written, and a second run finds
what the first wrote (profile ids derive from the legacy ids), so the import
is safe to repeat."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from uuid import UUID

from eventsourcing.utils import get_topic

from domain.errors import ConcurrencyConflict, DomainError, InvalidValue
from domain.profile import RacerProfile
from domain.roster import Roster, roster_id
from domain.service import Cause, ProfilesService
from infrastructure.accounts import Accounts
from infrastructure.event_log import EventLog
from infrastructure.legacy_plan import BadRow, Imported, Plan, candidate_ids, plan
from infrastructure.legacy_provenance import ACTOR, imported_vehicle_keys
from infrastructure.legacy_rows import PROFILES_TABLE, VEHICLES_TABLE, plural, show
from infrastructure.legacy_source import LegacyReadError, read_legacy
from infrastructure.progress import Progress


class LegacyImportError(Exception):
    """The import cannot start (unknown account, unreadable or unsuitable legacy
    database) or cannot go on. Each profile is written whole, in one transaction,
    so running the import again carries on where it stopped."""


@dataclass
class ImportReport(Plan):
    """The plan, and what writing it did."""

    account_id: str = ""
    dry_run: bool = False
    created: list[UUID] = field(default_factory=list)
    vehicles_added: int = 0
    events_written: bool = False

    @property
    def created_vehicles(self) -> int:
        made = set(self.created)
        return sum(len(p.vehicles) for p in self.to_create if p.profile_id in made)


def import_legacy(
    app: ProfilesService,
    accounts: Accounts,
    legacy_url: str,
    account_id: str,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Reads the legacy tables, plans the import, and (unless dry_run) writes it.

    Raises LegacyImportError before writing anything if the account is not an
    owner account of this store or the legacy database cannot be read."""
    account = _check_account(accounts, account_id)
    try:
        legacy = read_legacy(legacy_url)
    except LegacyReadError as e:
        raise LegacyImportError(str(e)) from None
    planned = plan(account, legacy, _imported(app, candidate_ids(account, legacy)))
    report = ImportReport(
        **{f.name: getattr(planned, f.name) for f in fields(Plan)}, account_id=account, dry_run=dry_run
    )
    if not dry_run:
        _write(app, account, report, progress)
    _settle_default(app, account, report)
    return report


def _check_account(accounts: Accounts, account_id: str) -> str:
    try:
        account = str(UUID(account_id.strip()))
    except ValueError:
        raise LegacyImportError(
            f"--account {account_id!r} is not an account id (the uuid `accounts create` prints)"
        ) from None
    role = accounts.role_of(UUID(account))
    if role is None:
        raise LegacyImportError(f"no account {account} in this store; create it with `accounts create`")
    if role != "owner":
        raise LegacyImportError(f"account {account} is an {role} account; profiles belong to owner accounts")
    return account


# --- writing -------------------------------------------------------------


def _write(app: ProfilesService, account: str, report: ImportReport, progress: Progress | None) -> None:
    roster = app.get_roster(account)
    has_default = roster is not None and roster.default is not None
    total = len(report.to_create) + len(report.to_add)
    if progress is not None and total:
        progress.start(total)
    else:
        progress = None
    for p in report.to_create:
        reason = p.reason
        if not has_default and report.default is not None and report.default.profile_id == p.profile_id:
            # This profile joins an empty roster and so becomes the default in
            # the same events: they carry the choice's reason.
            reason += f"; default: {report.default.reason}"
            joins_as_default = True
        else:
            joins_as_default = False
        try:
            app.create_profile(
                account,
                p.name,
                list(p.vehicles),
                Cause(ACTOR, reason),
                profile_id=p.profile_id,
                details=p.details,
                source=p.source,
            )
        except ConcurrencyConflict as e:
            if not _exists(app, p.profile_id):
                raise LegacyImportError(
                    f"stopped after importing {plural(len(report.created), 'profile')}: {e};"
                    " run the import again to finish it"
                ) from e
            report.warnings.append(f"profile {show(p.legacy_id)} was imported meanwhile by another run")
        except InvalidValue as e:  # validated above; kept as a safety net
            report.bad_rows.append(BadRow(PROFILES_TABLE, p.legacy_id, f"{e.field} {e.reason}"))
        else:
            report.created.append(p.profile_id)
            report.events_written = True
            has_default = True
            if joins_as_default and report.default is not None:
                report.default.outcome = "set"
        if progress is not None:
            progress.advance(1)
    for v in report.to_add:
        try:
            app.add_vehicle(account, v.profile_id, v.fields, Cause(ACTOR, v.reason), source=v.source)
        except InvalidValue as e:
            report.bad_rows.append(BadRow(VEHICLES_TABLE, v.legacy_id, f"{e.field} {e.reason}"))
        except DomainError as e:
            report.warnings.append(
                f"vehicle {show(v.legacy_id)} (new since profile {show(v.legacy_profile_id)}"
                f" was imported) not added: {e}"
            )
        else:
            report.vehicles_added += 1
            report.events_written = True
        if progress is not None:
            progress.advance(1)


def _exists(app: ProfilesService, profile_id: UUID) -> bool:
    return bool(app.recorder.select_events(profile_id, limit=1))


def _settle_default(app: ProfilesService, account: str, report: ImportReport) -> None:
    """Applies the legacy default unless someone other than the import chose the
    account's current default: that choice is kept, so a re-run never overrides
    a default the user picked (and a run that stopped half-way is completed)."""
    choice = report.default
    if choice is None:
        return
    roster = app.get_roster(account)
    members = roster.members if roster is not None else {}
    current = roster.default if roster is not None else None
    planned = report.dry_run and any(p.profile_id == choice.profile_id for p in report.to_create)
    if str(choice.profile_id) not in members and not planned:
        state = "archived" if _exists(app, choice.profile_id) else "not imported"
        choice.outcome = f"not applied: that profile is {state} in racer-profiles"
        return
    if current == str(choice.profile_id):
        choice.outcome = choice.outcome or "already the default"
        return
    chooser = _default_chooser(app, account) if current is not None else None
    if current is not None and chooser != ACTOR:
        choice.outcome = f"not applied: the account's default {current} was chosen by {chooser}; kept"
        return
    if report.dry_run:
        choice.outcome = "would be set"
        return
    app.set_default(account, choice.profile_id, Cause(ACTOR, f"legacy import default: {choice.reason}"))
    report.events_written = True
    choice.outcome = "set"


def _default_chooser(app: ProfilesService, account: str) -> str | None:
    """The actor of the roster's latest DefaultChanged event, if any."""
    for event in app.repository.event_store.get(roster_id(account), desc=True):
        if isinstance(event, Roster.DefaultChanged):
            return str(getattr(event, "actor", None))
    return None


# --- what the store already holds --------------------------------------------


def _imported(app: ProfilesService, profile_ids: Sequence[UUID]) -> Imported:
    """For each of these profiles that exists: the legacy vehicle ids imported
    into it; None for an erased profile, into which nothing is imported again."""
    log = EventLog(app)
    created, added = get_topic(RacerProfile.Created), get_topic(RacerProfile.VehicleAdded)
    erased = get_topic(RacerProfile.Erased)
    found: dict[UUID, set[str] | None] = {}
    for chunk in _chunks(profile_ids, 1000):
        for logged in log.of_types(chunk, [created, added, erased]):
            if logged.stored.topic == erased:
                found[logged.aggregate_id] = None
                continue
            ids = found.setdefault(logged.aggregate_id, set())
            if ids is not None:
                ids.update(imported_vehicle_keys(log.decode(logged)))
    return found


def _chunks(items: Sequence[UUID], size: int) -> Iterator[list[UUID]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


__all__ = ["ImportReport", "LegacyImportError", "import_legacy"]
