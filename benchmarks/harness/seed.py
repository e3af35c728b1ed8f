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
  (positions in order). Personal fields are sealed per profile
  (infrastructure/sealing.py, the key's id bound into each ciphertext), so a
  copy cannot reuse the template's ciphertext or its key: the template's
  sealed fields are opened once, and each copy seals them again with
  infrastructure.sealing.seal under a fresh data key of its own, whose row is
  written to the key store's table (committed before the events). The copy is
  checked first on the template (the recomputed hashes must equal the stored
  ones) and then on a sample of copies loaded back through the application
  (their values must read as the template's, their data keys must be their
  own, and each stored event's digest and chain link must hold, as
  `racer-profiles verify` checks them). If the template cannot be copied, the
  bulk is made by the domain instead (slower, same events).
"""

from __future__ import annotations

import hashlib
import json
import os
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

from domain.chain import GENESIS, event_digest
from domain.profile import ERASED, RacerProfile
from domain.roster import Roster, roster_id
from domain.values import vehicle_record
from infrastructure.encrypted_app import SEALED_BY
from infrastructure.keys import KEY_BYTES
from infrastructure.keys import TABLE as KEYS_TABLE
from infrastructure.sealing import SEALED, WITHHELD, is_sealed, personal_fields, seal, unseal

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


def _slot(k: int) -> str:
    """Where a copy's k-th ciphertext of an event goes."""
    return f"@@SEALED{k}@@"


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


def _ciphertexts(value: Any) -> list[str]:
    """The ciphertexts of the sealed values in value, in the order
    infrastructure.sealing walks them (maps in key order, lists in order)."""
    if is_sealed(value):
        return [value[SEALED]]
    if isinstance(value, dict):
        return [c for v in value.values() for c in _ciphertexts(v)]
    if isinstance(value, list):
        return [c for v in value for c in _ciphertexts(v)]
    return []


def _opened_values(sealed: Any, opened: Any) -> list[Any]:
    """The plaintexts of the sealed values in sealed, from its opened form."""
    if is_sealed(sealed):
        return [opened]
    if isinstance(sealed, dict):
        return [p for k, v in sealed.items() for p in _opened_values(v, opened[k])]
    if isinstance(sealed, list):
        return [p for v, o in zip(sealed, opened, strict=True) for p in _opened_values(v, o)]
    return []


@dataclass
class _Opened:
    """An event's personal fields, opened once: each copy seals them again
    under its own data key (the key's id is bound into the ciphertext)."""

    key: str  # the identity whose data key seals them: "profile" or "roster"
    plain: dict[str, Any]  # the personal fields in plaintext, in stored order
    values: str  # JSON of the values that were sealed (the fields' structure, vehicle ids say, is not)


@dataclass
class _TemplateEvent:
    aggregate: str  # "profile" | "roster"
    version: int
    topic: str
    text: str  # wire JSON with EH/PH/_slot placeholders and template identities
    canon: str | None  # the bytes event_digest hashes (PH/_slot placeholders), when captured
    opened: _Opened | None  # its sealed fields, when it has any


@dataclass
class Template:
    account_id: str
    profile_id: str
    roster_id: str
    identities: dict[str, str]  # name -> template value (string-replaced in copies)
    timestamps: list[str]  # template iso strings, in event order
    base_time: datetime
    events: list[_TemplateEvent]
    keys: list[str]  # the identities with a data key of their own ("profile", "roster")


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


def _open(container: Any, wire: dict[str, Any], identities: dict[str, str]) -> _Opened:
    """The event's personal fields in plaintext, opened with the template's data key."""
    if SEALED_BY not in wire:
        raise ValueError("sealed fields without the id of their key")
    key_id = UUID(wire[SEALED_BY])
    owners = [name for name in ("profile", "roster") if identities[name] == str(key_id)]
    if not owners:
        raise ValueError(f"fields sealed under the key of {key_id}, neither the profile's nor the roster's")
    fields = {name: wire[name] for name in personal_fields(wire)}
    plain = unseal(fields, lambda: container.keys.for_reading(key_id), key_id)
    values = _opened_values(fields, plain)
    if _ciphertexts(plain) or WITHHELD in values or ERASED in values:
        raise ValueError("a sealed field of the template does not open")
    return _Opened(owners[0], plain, json.dumps(values))


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
        ciphertexts = _ciphertexts({name: wire[name] for name in personal_fields(wire)})
        opened = _open(container, wire, identities) if ciphertexts else None
        for k, ciphertext in enumerate(ciphertexts):
            # Base64, so the same in the wire form and in the canonical text.
            if text.count(ciphertext) != 1:
                raise ValueError("cannot locate a sealed value in the wire form")
            text = text.replace(ciphertext, _slot(k))
            if canon is not None:
                canon = canon.replace(ciphertext, _slot(k)) if canon.count(ciphertext) == 1 else None
        events.append(
            _TemplateEvent(
                "profile" if str(e.originator_id) == profile_id else "roster",
                e.originator_version,
                e.topic,
                text,
                canon,
                opened,
            )
        )
    # Copies change ids and times by string replacement, and seal the plaintext as it is.
    for ev in events:
        values = ev.opened.values if ev.opened else ""
        if any(old in values for old in [*identities.values(), *timestamps]):
            raise ValueError("a sealed value holds an id or a time that copies change")
    keys = sorted({ev.opened.key for ev in events if ev.opened})
    base = datetime.fromisoformat(timestamps[0])
    return Template(account_id, profile_id, rid, identities, timestamps, base, events, keys)


@dataclass
class _Copy:
    account_id: str
    events: list[tuple[UUID, int, str, bytes]]  # rows of the events table, in store order
    keys: list[tuple[UUID, bytes]]  # rows of the key store's table: the copy's own data keys


def _copies(template: Template, n: int, start: datetime) -> Iterable[_Copy]:
    """n copies of the template account.

    Each copy's wire text and, when captured, the canonical text its hash is
    computed from are the template's with every identity string replaced (the
    replaced values are uuids, hex ids and ISO times: no JSON escaping is
    involved) and its personal fields sealed again under the copy's own fresh
    data keys (base64 ciphertexts, no escaping either); without a captured
    canonical text the digest is recomputed with domain.chain.event_digest
    from the parsed copy."""
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
        key_ids = {"profile": profile, "roster": rid}
        keys = {name: os.urandom(KEY_BYTES) for name in template.keys}
        rows = []
        last_hash = {"profile": GENESIS, "roster": GENESIS}
        for ev, in_text, in_canon in zip(template.events, present_text, present_canon, strict=True):
            text = ev.text
            for j in in_text:
                text = text.replace(*mapping[j])
            text = text.replace(PH, last_hash[ev.aggregate])
            sealed: list[str] = []
            if ev.opened is not None:
                owner = ev.opened.key
                sealed = _ciphertexts(seal(ev.opened.plain, keys[owner], key_ids[owner]))
                for k, ciphertext in enumerate(sealed):
                    text = text.replace(_slot(k), ciphertext)
            originator = profile if ev.aggregate == "profile" else rid
            if fast:
                canon = ev.canon  # type: ignore[assignment]
                for j in in_canon:
                    canon = canon.replace(*mapping[j])
                for k, ciphertext in enumerate(sealed):
                    canon = canon.replace(_slot(k), ciphertext)
                digest = sha256(canon.replace(PH, last_hash[ev.aggregate]).encode()).hexdigest()
            else:
                digest = _digest(ev.topic, text, str(originator), ev.version)
            last_hash[ev.aggregate] = digest
            rows.append((originator, ev.version, ev.topic, text.replace(EH, digest).encode()))
        yield _Copy(account_id, rows, [(key_ids[name], secret) for name, secret in keys.items()])


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
    # The key store may be a database of its own (KEYS_DATABASE_URL).
    keys_table = _table(container.keys_datastore.schema, KEYS_TABLE)
    keys_conninfo = container.settings.keys_conninfo()
    with psycopg.connect(**conninfo) as conn, conn.cursor() as cur:
        _account_rows(cur, schema, [template.account_id])
    written, keys_written = len(template.events), len(template.keys)
    sample: list[str] = []
    start = datetime.now(UTC)
    done = 0
    while done < n:
        size = min(chunk, n - done)
        account_ids: list[str] = []
        key_rows: list[tuple[UUID, bytes]] = []
        with psycopg.connect(**conninfo) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(events_table))
            with cur.copy(
                sql.SQL(
                    "COPY {} (originator_id, originator_version, topic, state) FROM STDIN (FORMAT BINARY)"
                ).format(events_table)
            ) as cp:
                cp.set_types(["uuid", "int8", "text", "bytea"])
                for copy in _copies(template, size, start + timedelta(microseconds=10 * done)):
                    for row in copy.events:
                        cp.write_row(row)
                    written += len(copy.events)
                    account_ids.append(copy.account_id)
                    key_rows.extend(copy.keys)
            _account_rows(cur, schema, account_ids)
            # The keys commit first: no committed event is ever without its key.
            _data_key_rows(keys_conninfo, keys_table, key_rows)
        keys_written += len(key_rows)
        done += size
        sample.extend(account_ids[:: max(1, size // 4)])
        progress(f"  copied {done + 1:,}/{n + 1:,} accounts ({written:,} events, {keys_written:,} data keys)")
    _check_copies(app, container, template, sample)
    return written, "copies"


def _data_key_rows(conninfo: dict[str, Any], table: sql.Composable, rows: list[tuple[UUID, bytes]]) -> None:
    """Copies' data keys in the key store's table (infrastructure/keys.py), in a transaction of their own."""
    with (
        psycopg.connect(**conninfo) as conn,
        conn.cursor() as cur,
        cur.copy(sql.SQL("COPY {} (key_id, secret) FROM STDIN (FORMAT BINARY)").format(table)) as cp,
    ):
        cp.set_types(["uuid", "bytea"])
        for row in rows:
            cp.write_row(row)


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


def _readable(profile: Any) -> tuple[Any, ...]:
    """What a profile's sealed fields read as (vehicle ids differ between copies)."""
    vehicles = [{k: v for k, v in vehicle.items() if k != "id"} for vehicle in profile.vehicles]
    return profile.name, vehicles, profile.details


def _chain_holds(app: Any, originator: UUID) -> bool:
    """Each stored event's digest and link, over the form as stored (the
    ciphertext), as infrastructure/chain_check.py walks them for verify."""
    prev = GENESIS
    for stored in app.recorder.select_events(originator):
        state = app.mapper.stored_state(stored)
        if state.get("prev_hash") != prev or event_digest(stored.topic, state) != state.get("event_hash"):
            return False
        prev = state["event_hash"]
    return prev != GENESIS


def _check_copies(app: Any, container: Any, template: Template, account_ids: list[str]) -> None:
    """Loads sampled copies through the application: their profiles must read
    as the template's (their sealed fields open with their own data keys, not
    the template's) and every stored event's digest and chain link must hold;
    raises when a copy is not a valid history."""
    template_profile = UUID(template.profile_id)
    want = _readable(app.get_profile(template_profile))
    key_store = container.keys.store
    template_keys = {key_store.get(UUID(template.identities[name])) for name in template.keys}
    for account_id in account_ids:
        roster = app.get_roster(account_id)
        if roster is None or len(roster.members) != 1 or roster.default is None:
            raise RuntimeError(f"copied account {account_id}: roster does not load as expected")
        profile_id = UUID(roster.default)
        profile = app.get_profile(profile_id)
        if profile.account_id != account_id:
            raise RuntimeError(f"copied account {account_id}: profile belongs to {profile.account_id}")
        if _readable(profile) != want:
            raise RuntimeError(f"copied account {account_id}: reads {_readable(profile)}, not {want}")
        own = {"profile": profile_id, "roster": roster.id}
        if any(key_store.get(own[name]) in template_keys for name in template.keys):
            raise RuntimeError(f"copied account {account_id}: shares a data key with the template")
        for originator in (roster.id, profile_id):
            if not _chain_holds(app, originator):
                raise RuntimeError(f"copied account {account_id}: broken hash chain at {originator}")


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
