"""Seeding, in-process through the project's own code (HTTP would be far too
slow for 100,000 accounts).

* Accounts and tokens: rows in the accounts tables with the token format and
  hash of infrastructure/accounts.py, written with COPY; a sample is checked
  with Accounts.authenticate, else the harness falls back to Accounts.create.
* Profiles: real domain aggregates (RacerProfile.start, Roster.open/join,
  archive/leave, rename), stored with the application's save(), many
  aggregates per save (one transaction each), snapshots included.
* The bulk of the 100,000-account stage: one account's events are made by the
  domain and stored by save(); each further account is a copy of those events
  with fresh ids (account, profile, roster = roster_id(account), vehicle,
  request id) and fresh timestamps, its hash chain recomputed with
  domain.chain.event_digest, written with COPY under the event table's lock
  (positions in order). The copy is checked first on the template (the
  recomputed hashes must equal the stored ones) and then on a sample of copies
  loaded back through the application's mapper (each event's digest and
  chain). If either check fails, the bulk is made by the domain instead
  (slower, same events).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from domain.chain import GENESIS, digest_of, event_digest
from domain.profile import RacerProfile
from domain.roster import Roster, roster_id
from domain.values import vehicle_record

Progress = Callable[[str], None]


@dataclass
class Account:
    account_id: str
    token: str
    profiles: list[UUID] = field(default_factory=list)


def _table(schema: str, name: str) -> sql.Composable:
    return (
        sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        if schema
        else sql.Identifier(name)
    )


# --- accounts ---------------------------------------------------------------


def _token_hash(secret: str) -> bytes:
    try:
        from infrastructure.accounts import _hash  # the project's own hash

        return _hash(secret)
    except ImportError:
        return hashlib.sha256(secret.encode()).digest()


def create_accounts(container: Any, n: int, name: str, *, check: bool = True) -> list[Account]:
    """n owner accounts with tokens, written with COPY in one transaction."""
    schema = container.datastore.schema
    rows = []
    accounts = []
    for i in range(n):
        account_id = uuid.uuid4()
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        rows.append((account_id, f"{name} {i}", token_id, _token_hash(secret)))
        accounts.append(Account(str(account_id), f"rp_{token_id}_{secret}"))
    try:
        with psycopg.connect(**container.settings.conninfo()) as conn, conn.cursor() as cur:
            with cur.copy(
                sql.SQL("COPY {} (id, name, role) FROM STDIN").format(_table(schema, "accounts"))
            ) as cp:
                for account_id, label, _, _ in rows:
                    cp.write_row((account_id, label, "owner"))
            with cur.copy(
                sql.SQL("COPY {} (token_id, account_id, secret_hash) FROM STDIN").format(
                    _table(schema, "api_tokens")
                )
            ) as cp:
                for account_id, _, token_id, secret_hash in rows:
                    cp.write_row((token_id, account_id, secret_hash))
        ok = not check or all(
            (p := container.accounts.authenticate(a.token)) is not None and p.account_id == a.account_id
            for a in accounts[:: max(1, n // 5)]
        )
    except psycopg.Error:
        ok = False
    if ok:
        return accounts
    # The accounts schema or token format changed: the project's own (slower) path.
    return [
        Account(str(new.account_id), new.token)
        for new in (container.accounts.create(f"{name} {i}") for i in range(n))
    ]


# --- profiles through the domain -----------------------------------------------


def _vehicle(k: int) -> dict[str, Any]:
    return vehicle_record(str(uuid.uuid4()), {"name": "Rotax Max", "race_number": f"{k:02d}"})


def seed_profiles(app: Any, accounts: Iterable[Account], per_account: int, batch_events: int = 3000) -> int:
    """per_account profiles (one vehicle each) on each new account, the first
    the default; many accounts per save(). Returns the number of events."""
    pending: list[Any] = []
    pending_events = 0
    total = 0
    for account in accounts:
        actor = account.account_id
        request_id = uuid.uuid4().hex
        roster = Roster.open(account.account_id, actor, None, request_id)
        aggregates: list[Any] = []
        for k in range(per_account):
            profile = RacerProfile.start(
                uuid.uuid4(),
                account.account_id,
                f"Racer {k + 1}",
                [_vehicle(k + 1)],
                actor,
                None,
                {},
                request_id,
            )
            roster.join(profile.id, profile.created_at.isoformat(), actor, None, request_id)
            account.profiles.append(profile.id)
            aggregates.append(profile)
        aggregates.append(roster)
        pending.extend(aggregates)
        pending_events += sum(len(a.pending_events) for a in aggregates)
        if pending_events >= batch_events:
            app.save(*pending)
            total += pending_events
            pending, pending_events = [], 0
    if pending:
        app.save(*pending)
        total += pending_events
    return total


def seed_long_history(app: Any, account: Account, events: int, batch_events: int = 1000) -> int:
    """Grows an account (its two profiles seeded, the first the default) to
    `events` events the way a long-lived account grows: profiles are created
    and archived again (4 events each: Created, MemberAdded, Archived,
    MemberRemoved), then the first profile is renamed for the remainder. The
    roster ends with about half the events (save() snapshots it every 100
    versions); each read-table row changes only a few times, so a rebuild of
    this history stays linear. Returns the account's event count."""
    actor = account.account_id
    roster = app.get_roster(account.account_id)
    first = app.get_profile(account.profiles[0])
    count = roster.version + first.version + app.get_profile(account.profiles[1]).version
    pending: list[Any] = []
    pending_events = 0
    while count + 4 <= events:
        request_id = uuid.uuid4().hex
        profile = RacerProfile.start(
            uuid.uuid4(), account.account_id, "Short-lived", [], actor, None, {}, request_id
        )
        roster.join(profile.id, profile.created_at.isoformat(), actor, None, request_id)
        profile.archive(actor, None, request_id)
        roster.leave(profile.id, None, actor, None, request_id)
        pending.append(profile)
        count += 4
        pending_events += 4
        if pending_events >= batch_events:
            app.save(roster, *pending)
            pending, pending_events = [], 0
    while count < events:
        first.rename(
            "Long history" if first.name != "Long history" else "Long history 2",
            actor,
            None,
            uuid.uuid4().hex,
        )
        count += 1
    app.save(roster, first, *pending)
    return count


# --- bulk copies ------------------------------------------------------------

EH = "@@EH@@"
PH = "@@PH@@"


def _unwrap(value: Any) -> Any:
    """The transcoder's wire form to the values event_digest sees."""
    if isinstance(value, dict):
        if value.get("_type_") == "datetime_iso":
            return value["_data_"]
        if "_type_" in value:
            raise ValueError(f"unknown wire type {value['_type_']}")
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


@dataclass
class _TemplateEvent:
    aggregate: str  # "profile" | "roster"
    version: int
    topic: str
    text: str  # wire JSON with EH/PH placeholders and template identities
    canon: str | None  # the bytes event_digest hashes (PH placeholder), when captured


@dataclass
class Template:
    account_id: str
    profile_id: str
    roster_id: str
    identities: dict[str, str]  # name -> template value (string-replaced in copies)
    timestamps: list[str]  # template iso strings, in event order
    base_time: datetime
    events: list[_TemplateEvent]


def _digest_state(text: str, originator_id: str, version: int) -> dict[str, Any]:
    state = _unwrap(json.loads(text))
    state.pop("event_hash", None)
    state["originator_id"] = originator_id
    state["originator_version"] = version
    return state


def _digest(topic: str, text: str, originator_id: str, version: int) -> str:
    return event_digest(topic, _digest_state(text, originator_id, version))


def _captured_canonical(topic: str, state: dict[str, Any]) -> tuple[str, str] | None:
    """(the exact text domain.chain.event_digest hashes, its digest), captured
    by watching its hashlib.sha256 call; None when that cannot be done."""
    import domain.chain as chain

    real = getattr(chain, "hashlib", None)
    if real is None:
        return None
    captured: list[bytes] = []

    class _Capture:
        @staticmethod
        def sha256(data: bytes = b"", *args: Any, **kwargs: Any) -> Any:
            captured.append(bytes(data))
            return real.sha256(data, *args, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    chain.hashlib = _Capture()  # type: ignore[assignment]
    try:
        digest = event_digest(topic, state)
    finally:
        chain.hashlib = real
    if len(captured) != 1 or hashlib.sha256(captured[0]).hexdigest() != digest:
        return None
    try:
        return captured[0].decode(), digest
    except UnicodeDecodeError:
        return None


def make_template(app: Any, container: Any) -> Template:
    """One account made by the domain and save(); its stored events are the template."""
    account_id = str(uuid.uuid4())
    account = Account(account_id, "")
    seed_profiles(app, [account], 1)
    profile_id = str(account.profiles[0])
    rid = str(roster_id(account_id))
    recorder = app.recorder
    stored = list(recorder.select_events(UUID(profile_id))) + list(recorder.select_events(UUID(rid)))
    # Store order: save(profile, roster) writes the profile's events first.
    stored.sort(key=lambda e: (0 if str(e.originator_id) == profile_id else 1, e.originator_version))
    identities: dict[str, str] = {"account": account_id, "profile": profile_id, "roster": rid}
    timestamps: list[str] = []
    events: list[_TemplateEvent] = []
    for e in stored:
        text = bytes(e.state).decode()
        wire = json.loads(text)  # ValueError: not plain JSON (compressed, encrypted)
        if str(e.originator_id) == profile_id and e.originator_version == 1:
            for n, v in enumerate(wire.get("vehicles", [])):
                identities[f"vehicle{n}"] = v["id"]
        if wire.get("request_id"):
            identities["request"] = wire["request_id"]
        ts = wire.get("timestamp")
        if isinstance(ts, dict) and ts.get("_data_") not in timestamps:
            timestamps.append(ts["_data_"])
        # Check: the digest recomputed from the wire form equals the stored one.
        state = _digest_state(text, str(e.originator_id), e.originator_version)
        if event_digest(e.topic, state) != wire["event_hash"]:
            raise ValueError("recomputed event hash differs from the stored one")
        canon = None
        captured = _captured_canonical(e.topic, state)
        prev_field = f'"prev_hash":"{wire["prev_hash"]}"'
        if captured is not None and captured[1] == wire["event_hash"] and captured[0].count(prev_field) == 1:
            canon = captured[0].replace(prev_field, f'"prev_hash":"{PH}"')
        text = text.replace(f'"event_hash":"{wire["event_hash"]}"', f'"event_hash":"{EH}"')
        text = text.replace(prev_field, f'"prev_hash":"{PH}"')
        if EH not in text or PH not in text:
            raise ValueError("cannot locate the hash fields in the wire form")
        events.append(
            _TemplateEvent(
                "profile" if str(e.originator_id) == profile_id else "roster",
                e.originator_version,
                e.topic,
                text,
                canon,
            )
        )
    base = datetime.fromisoformat(timestamps[0])
    return Template(account_id, profile_id, rid, identities, timestamps, base, events)


def _copies(
    template: Template, n: int, start: datetime
) -> Iterable[tuple[str, tuple[UUID, int, str, bytes]]]:
    """Yields (account_id, row) for n copies of the template account.

    Each copy's wire text and, when captured, the canonical text its hash is
    computed from are the template's with every identity string replaced (the
    replaced values are uuids, hex ids and ISO times: no JSON escaping is
    involved); without a captured canonical text the digest is recomputed
    with domain.chain.event_digest from the parsed copy."""
    offsets = [datetime.fromisoformat(t) - template.base_time for t in template.timestamps]
    step = timedelta(microseconds=10)
    fast = all(ev.canon is not None for ev in template.events)
    sha256 = hashlib.sha256
    ids = template.identities
    vehicles = [v for k, v in ids.items() if k.startswith("vehicle")]
    # The template strings in mapping order (below), and which occur in each event.
    olds = [
        ids["account"],
        ids["profile"],
        ids["roster"],
        *vehicles,
        *([ids["request"]] if "request" in ids else []),
        *template.timestamps,
    ]
    present_text = [[j for j, o in enumerate(olds) if o in ev.text] for ev in template.events]
    present_canon = [[j for j, o in enumerate(olds) if o in (ev.canon or "")] for ev in template.events]
    for i in range(n):
        account = uuid.uuid4()
        profile = uuid.uuid4()
        account_id = str(account)
        rid = roster_id(account_id)
        mapping = [(ids["account"], account_id), (ids["profile"], str(profile)), (ids["roster"], str(rid))]
        mapping += [(v, str(uuid.uuid4())) for v in vehicles]
        if "request" in ids:
            mapping.append((ids["request"], uuid.uuid4().hex))
        at = start + step * i
        mapping += [
            (old, (at + off).isoformat()) for old, off in zip(template.timestamps, offsets, strict=True)
        ]
        last_hash = {"profile": GENESIS, "roster": GENESIS}
        for ev, in_text, in_canon in zip(template.events, present_text, present_canon, strict=True):
            text = ev.text
            for j in in_text:
                text = text.replace(*mapping[j])
            text = text.replace(PH, last_hash[ev.aggregate])
            originator = profile if ev.aggregate == "profile" else rid
            if fast:
                canon = ev.canon  # type: ignore[assignment]
                for j in in_canon:
                    canon = canon.replace(*mapping[j])
                digest = sha256(canon.replace(PH, last_hash[ev.aggregate]).encode()).hexdigest()
            else:
                digest = _digest(ev.topic, text, str(originator), ev.version)
            last_hash[ev.aggregate] = digest
            yield account_id, (originator, ev.version, ev.topic, text.replace(EH, digest).encode())


def copy_accounts(
    app: Any, container: Any, n: int, progress: Progress, chunk: int = 20000
) -> tuple[int, str]:
    """n more accounts, each with one profile (one vehicle) and its roster.
    Returns (events written, method)."""
    if n <= 0:
        return 0, "none"
    # The template is the first of the n accounts (made before any check can fail).
    try:
        template = make_template(app, container)
    except (ValueError, KeyError, UnicodeDecodeError) as e:
        progress(f"  bulk copies not possible ({e}); seeding through the domain instead")
        return 4 + _domain_bulk(app, container, n - 1, progress), "domain"
    n -= 1
    recorder = app.recorder
    schema = recorder.datastore.schema
    events_table = _table(schema, recorder.events_table_name)
    conninfo = container.settings.conninfo()
    with psycopg.connect(**conninfo) as conn, conn.cursor() as cur:
        _account_rows(cur, schema, [template.account_id])
    written = len(template.events)
    sample: list[str] = []
    start = datetime.now(UTC)
    done = 0
    while done < n:
        size = min(chunk, n - done)
        account_ids: list[str] = []
        with psycopg.connect(**conninfo) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(events_table))
            with cur.copy(
                sql.SQL(
                    "COPY {} (originator_id, originator_version, topic, state) FROM STDIN (FORMAT BINARY)"
                ).format(events_table)
            ) as cp:
                cp.set_types(["uuid", "int8", "text", "bytea"])
                last_account = None
                for account_id, row in _copies(template, size, start + timedelta(microseconds=10 * done)):
                    cp.write_row(row)
                    written += 1
                    if account_id != last_account:
                        account_ids.append(account_id)
                        last_account = account_id
            _account_rows(cur, schema, account_ids)
        done += size
        sample.append(account_ids[0])
        progress(f"  copied {done + 1:,}/{n + 1:,} accounts ({written:,} events)")
    _check_copies(app, sample)
    return written, "copies"


def _account_rows(cur: Any, schema: str, account_ids: list[str]) -> None:
    """Rows in the accounts tables for copied accounts (their tokens are never used)."""
    with cur.copy(sql.SQL("COPY {} (id, name, role) FROM STDIN").format(_table(schema, "accounts"))) as cp:
        for account_id in account_ids:
            cp.write_row((account_id, "bulk", "owner"))
    with cur.copy(
        sql.SQL("COPY {} (token_id, account_id, secret_hash) FROM STDIN").format(_table(schema, "api_tokens"))
    ) as cp:
        for account_id in account_ids:
            cp.write_row((secrets.token_hex(8), account_id, _token_hash(secrets.token_urlsafe(32))))


def _check_copies(app: Any, account_ids: list[str]) -> None:
    """Loads sampled copies through the application and checks every event's
    digest and chain link; raises when a copy is not a valid history."""
    for account_id in account_ids:
        roster = app.get_roster(account_id)
        if roster is None or len(roster.members) != 1 or roster.default is None:
            raise RuntimeError(f"copied account {account_id}: roster does not load as expected")
        for originator in (roster.id, UUID(roster.default)):
            prev = GENESIS
            for event in app.events.get(originator):
                if digest_of(event) != event.event_hash or event.prev_hash != prev:
                    raise RuntimeError(f"copied account {account_id}: broken hash chain at {originator}")
                prev = event.event_hash
        profile = app.get_profile(UUID(roster.default))
        if profile.account_id != account_id:
            raise RuntimeError(f"copied account {account_id}: profile belongs to {profile.account_id}")


def _domain_bulk(app: Any, container: Any, n: int, progress: Progress, chunk: int = 5000) -> int:
    written = 0
    done = 0
    while done < n:
        size = min(chunk, n - done)
        accounts = [Account(str(uuid.uuid4()), "") for _ in range(size)]
        written += seed_profiles(app, accounts, 1)
        schema = container.datastore.schema
        with psycopg.connect(**container.settings.conninfo()) as conn, conn.cursor() as cur:
            _account_rows(cur, schema, [a.account_id for a in accounts])
        done += size
        progress(f"  seeded {done:,}/{n:,} accounts ({written:,} events)")
    return written


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t
