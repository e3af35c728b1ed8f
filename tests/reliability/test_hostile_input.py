"""Hostile input to every endpoint: hypothesis-generated bodies (huge strings,
control characters, unicode edge cases, lone surrogates, deeply nested JSON,
NaN, SQL metacharacters, wrong types, raw bytes that are not JSON or not
UTF-8), header values (If-Match, Idempotency-Key, X-Min-Position, X-Reason,
X-Request-ID, Content-Type, Authorization), query parameters and path ids.

Always an answer below 500; every 4xx is an RFC 9457 problem document; and a
refused request leaves the event store exactly as it was. Most examples run
in-process (the ASGI app, fast); a smaller sample goes through the real
uvicorn server."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_harness import (
    PROBLEM,
    REPORT,
    SCALE,
    ScenarioRow,
    create_database,
    drop_database,
    head_position,
    open_container,
    start_server,
)

from api.app import create_app
from infrastructure.container import Container

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

MAX_BODY = 64 * 1024
WAIT_TIMEOUT = 1.0


# --- the service under attack --------------------------------------------------------


@dataclass
class Target:
    container: Container
    owner: str
    auditor: str
    profile: str  # the owner's profile, with a vehicle
    vehicle: str
    foreign: str  # another account's profile
    stats: dict[str, int]


@pytest.fixture(scope="module")
def target(pg_server_url: str) -> Iterator[Target]:
    database = create_database(pg_server_url, "rp_hostile")
    container = open_container(database, api_threads=4, wait_timeout=WAIT_TIMEOUT)
    container.start_runner()
    try:
        owner = container.accounts.create("hostile-owner").token
        other = container.accounts.create("hostile-other")
        auditor = container.accounts.create("hostile-auditor", "auditor").token
        profile = container.app.create_profile(
            str(container.accounts.authenticate(owner).account_id),
            "Target",  # type: ignore[union-attr]
            [{"name": "Kart"}],
            _cause(),
        )
        foreign = container.app.create_profile(str(other.account_id), "Foreign", [], _cause())
        container.view.wait(container.app.name, foreign.position, timeout=30)
        row = container.queries.get(None, profile.profile_id)
        assert row is not None
        yield Target(
            container,
            owner,
            auditor,
            str(profile.profile_id),
            row.vehicles[0]["id"],
            str(foreign.profile_id),
            {},
        )
    finally:
        container.close()
        drop_database(pg_server_url, database)


def _cause() -> Any:
    from domain.service import Cause

    return Cause("hostile-setup")


# --- strategies ----------------------------------------------------------------------

EDGE_TEXT = [
    "",
    " ",
    "\t\n",
    "\x00",
    "a\x00b",
    "\x07bell",
    "\x1b[31mred",
    "\u202eevil",
    "\ufeffbom",
    "\u200b",
    "\ud800",
    "\udfff",
    "\U0010ffff",
    "\uffff",
    "e\u0301" * 40,
    "\U0001d518" * 80,
    "ﷺ" * 81,
    "a" * 81,
    "a" * 5000,
    " padded ",
    "'; DROP TABLE racer_profiles; --",
    "' OR '1'='1",
    "%s%s%s",
    "%(name)s",
    "$1",
    "\\",
    '"',
    "{}",
    "[]",
    "null",
    "NaN",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "1e309",
    "-0",
    "0x10",
    "١٢٣",
    "Ⅻ",
    "\u0000\u0085\u2028\u2029",
]
text = st.one_of(
    st.sampled_from(EDGE_TEXT),
    st.text(max_size=90),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=75, max_size=90),
    st.text(
        alphabet=st.characters(categories=["Cc", "Cf", "Co", "Cs", "Zl", "Zp", "Mn"]), min_size=1, max_size=10
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


def _shaped(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """An object with the endpoint's own fields, each hostile, sometimes with an extra one."""
    return st.fixed_dictionaries({}, optional={**fields, "reason": json_values}).flatmap(
        lambda d: st.one_of(
            st.just(d), st.dictionaries(text, json_values, max_size=2).map(lambda extra: {**d, **extra})
        )
    )


vehicle_body = _shaped({"name": json_values, "vehicle_class": json_values, "race_number": json_values})
BODIES: dict[str, st.SearchStrategy[Any]] = {
    "create": _shaped(
        {
            "name": json_values,
            "vehicles": st.one_of(
                json_values,
                st.lists(vehicle_body, max_size=3),
                st.lists(st.just({"name": "K"}), min_size=51, max_size=52),
            ),
            "details": st.one_of(
                json_values,
                st.dictionaries(text, scalars, max_size=22),
                st.dictionaries(
                    st.from_regex(r"[a-z_]{1,12}", fullmatch=True), scalars, min_size=1, max_size=3
                ),
            ),
        }
    ),
    "set_default": _shaped({"profile_id": st.one_of(json_values, st.uuids().map(str))}),
    "rename": _shaped({"name": json_values}),
    "archive": _shaped({"successor_id": st.one_of(json_values, st.uuids().map(str))}),
    "restore": _shaped({}),
    "add_vehicle": vehicle_body,
    "change_vehicle": vehicle_body,
}


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


def _huge(n: int) -> bytes:
    return b'{"name": "' + b"a" * n + b'"}'


raw_bodies = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"",
            b"{",
            b'{"name": "x"',
            b'{"name": "\xff\xfe"}',
            b"\xc3\x28",
            b"\xed\xa0\x80",
            b'{"name": NaN}',
            b'{"name": "x", "name": "y"}',
            b"[]",
            b"null",
            b"0",
            b'"text"',
            b'{"name": "\\ud800"}',
            b'\xef\xbb\xbf{"name": "bom"}',
            b'{"name": 1e999999}',
            b'{"details": {"x": -Infinity}, "name": "d"}',
        ]
    ),
    st.integers(min_value=10, max_value=30_000).map(_deep),
    st.integers(min_value=MAX_BODY - 20, max_value=1024 * 1024).map(_huge),
)

visible_latin = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
header_text = st.text(alphabet=visible_latin, max_size=300)


@st.composite
def headers(draw: st.DrawFn, t: Target, command: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    token = draw(st.sampled_from(["owner", "owner", "owner", "auditor", "garbage", "none"]))
    if token == "owner":
        out["Authorization"] = f"Bearer {t.owner}"
    elif token == "auditor":
        out["Authorization"] = f"Bearer {t.auditor}"
    elif token == "garbage":
        out["Authorization"] = draw(
            st.one_of(header_text, st.just("Bearer rp_x_y"), st.just("Basic Zm9vOmJhcg=="))
        )
    candidates = {
        "If-Match": st.one_of(
            header_text, st.sampled_from(['"1"', '"999999999"', 'W/"2"', "*", '"-1"', '"1e3"'])
        ),
        "Idempotency-Key": st.one_of(header_text, st.just("k" * 256), st.uuids().map(str)),
        # Positions the log has reached, and values that are no position at all. (A position
        # beyond the log is a documented 503 after WAIT_TIMEOUT: tests/e2e/test_profiles_api.py.)
        "X-Min-Position": st.one_of(
            st.integers(-5, 1).map(str), st.sampled_from(["", "abc", "1.5", "0x10", "٣", " 1"]), header_text
        ),
        "X-Reason": st.one_of(header_text, st.just("r" * 501)),
        "X-Request-ID": header_text,
    }
    for name, strategy in candidates.items():
        if draw(st.integers(0, 3)) == 0:
            out[name] = draw(strategy)
    if command and draw(st.integers(0, 5)) == 0:
        out["Content-Type"] = draw(
            st.one_of(
                header_text,
                st.sampled_from(
                    [
                        "text/plain",
                        "application/json; charset=latin-1",
                        "application/xml",
                        "multipart/form-data",
                    ]
                ),
            )
        )
    # Sent as raw bytes (UTF-8): obs-text is legal on the wire.
    return {k: v.encode("utf-8") for k, v in out.items()}


# Hostile ids percent-encoded, as a client puts them in a path.
path_ids = st.one_of(
    st.uuids().map(str),
    st.just("00000000-0000-0000-0000-000000000000"),
    text.filter(lambda s: s.strip() not in ("", ".", "..")).map(
        lambda s: quote(s.encode("utf-8", "surrogatepass"), safe="")
    ),
)


@st.composite
def requests(draw: st.DrawFn, t: Target) -> tuple[str, str, dict[str, Any], dict[str, Any], bytes | None]:
    """(method, path, query, headers, body bytes or None)."""
    kind = draw(
        st.sampled_from(
            [
                "create",
                "set_default",
                "rename",
                "archive",
                "restore",
                "add_vehicle",
                "change_vehicle",
                "remove_vehicle",
                "list",
                "get_default",
                "get",
                "history",
                "audit_defaults",
                "audit_events",
            ]
        )
    )
    pid = draw(st.one_of(st.just(t.profile), st.just(t.foreign), path_ids))
    vid = draw(st.one_of(st.just(t.vehicle), path_ids))
    method, path = {
        "create": ("POST", "/v1/profiles"),
        "set_default": ("PUT", "/v1/profiles/default"),
        "rename": ("PATCH", f"/v1/profiles/{pid}"),
        "archive": ("POST", f"/v1/profiles/{pid}/archive"),
        "restore": ("POST", f"/v1/profiles/{pid}/restore"),
        "add_vehicle": ("POST", f"/v1/profiles/{pid}/vehicles"),
        "change_vehicle": ("PATCH", f"/v1/profiles/{pid}/vehicles/{vid}"),
        "remove_vehicle": ("DELETE", f"/v1/profiles/{pid}/vehicles/{vid}"),
        "list": ("GET", "/v1/profiles"),
        "get_default": ("GET", "/v1/profiles/default"),
        "get": ("GET", f"/v1/profiles/{pid}"),
        "history": ("GET", f"/v1/profiles/{pid}/history"),
        "audit_defaults": ("GET", "/v1/audit/defaults"),
        "audit_events": ("GET", "/v1/audit/events"),
    }[kind]
    query: dict[str, Any] = {}
    query_values = st.one_of(
        header_text,
        st.integers(-(2**40), 2**40).map(str),
        st.sampled_from(["true", "no", "", "2026-13-45", "1970-01-01T00:00:00"]),
    )
    if method == "GET":
        for name in draw(
            st.lists(
                st.sampled_from(
                    ["include_archived", "cursor", "limit", "version", "as_of", "after", "account_id"]
                ),
                max_size=3,
                unique=True,
            )
        ):
            query[name] = draw(query_values)
    command = method != "GET"
    body: bytes | None = None
    if command and kind in BODIES:
        shape = draw(st.sampled_from(["shaped", "shaped", "any json", "raw"]))
        if shape == "shaped":
            body = json.dumps(draw(BODIES[kind])).encode()
        elif shape == "any json":
            body = json.dumps(draw(json_values)).encode()
        else:
            body = draw(raw_bodies)
    elif command and draw(st.booleans()):
        body = draw(raw_bodies)
    hdrs = draw(headers(t, command))
    if body is not None:
        hdrs.setdefault("Content-Type", b"application/json")
    return method, path, query, hdrs, body


# --- the judgement -------------------------------------------------------------------


def _bad_chars(value: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in value)


def judge(
    t: Target,
    request: tuple[str, str, dict[str, Any], dict[str, Any], bytes | None],
    status: int,
    content_type: str,
    body: bytes,
    head_before: int,
    head_after: int,
) -> None:
    method, path, _, _, sent = request
    where = f"{method} {path} -> {status}"
    t.stats[str(status)] = t.stats.get(str(status), 0) + 1
    assert status < 500, f"{where}: {body[:500]!r}"
    if status >= 400:
        assert content_type.split(";")[0].strip() == PROBLEM, f"{where}: {content_type} {body[:300]!r}"
        problem = json.loads(body)
        assert problem["status"] == status and problem["type"] and problem["title"], problem
        assert "Traceback" not in problem.get("detail", ""), problem
        # Refused: nothing was written.
        assert head_after == head_before, f"{where} wrote events {head_before} -> {head_after}"
    media = {k.lower(): v for k, v in request[3].items()}.get("content-type", b"")
    media = media.encode() if isinstance(media, str) else media
    # Too large and of a media type it refuses anyway: 415 is as right as 413.
    if sent is not None and len(sent) > MAX_BODY and media == b"application/json":
        assert status == 413, f"{where}: a {len(sent)}-byte body was not refused as too large"
    if 200 <= status < 300 and method != "GET" and content_type.startswith("application/json"):
        shown = json.loads(body)
        names = [shown.get("name", "")] + [v["name"] for v in shown.get("vehicles", [])]
        for name in names:
            assert isinstance(name, str) and 0 < len(name) <= 80 and not _bad_chars(name), (
                f"{where}: stored {name!r}"
            )


def hostile_settings(examples: int) -> settings:
    """Hypothesis settings of the hostile runs: no deadline or example database
    (the server is real), reproducible in the short scale, every health check off
    (the strategies are deliberately large and filtered)."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=SCALE.name == "short",
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


@hostile_settings(SCALE.hostile_examples)
@given(data=st.data())
def test_hostile_requests_in_process_get_a_4xx_problem_and_change_nothing(
    target: Target, data: st.DataObject
) -> None:
    request = data.draw(requests(target))
    method, path, query, hdrs, body = request
    client = _asgi_client(target)
    before = head_position(target.container)
    response = client.request(method, path, params=query, headers=hdrs, content=body)
    judge(
        target,
        request,
        response.status_code,
        response.headers.get("content-type", ""),
        response.content,
        before,
        head_position(target.container),
    )


_clients: dict[int, TestClient] = {}


def _asgi_client(t: Target) -> TestClient:
    client = _clients.get(id(t))
    if client is None:
        client = TestClient(create_app(t.container), raise_server_exceptions=False)
        client.__enter__()
        _clients[id(t)] = client
    return client


@pytest.fixture(scope="module", autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    for client in _clients.values():
        client.__exit__(None, None, None)
    _clients.clear()


@pytest.fixture(scope="module")
def live(target: Target, rel_logs: Path) -> Iterator[str]:
    database = target.container.settings.database_url
    assert database
    server = start_server(
        database, rel_logs, projector=False, CREATE_TABLES="false", WAIT_TIMEOUT=str(WAIT_TIMEOUT)
    )
    try:
        yield server.base_url
    finally:
        server.proc.terminate()


@hostile_settings(SCALE.hostile_live_examples)
@given(data=st.data())
def test_hostile_requests_through_uvicorn_get_a_4xx_problem_and_change_nothing(
    target: Target, live: str, data: st.DataObject
) -> None:
    request = data.draw(requests(target))
    method, path, query, hdrs, body = request
    chunked = body is not None and data.draw(st.booleans())
    content: Any = body
    if chunked and body is not None:
        content = iter([body[i : i + 8192] for i in range(0, len(body), 8192)] or [b""])
    # On the wire (h11), a header value cannot start or end with whitespace.
    hdrs = {k: v.strip(b" \t") for k, v in hdrs.items()}
    before = head_position(target.container)
    with httpx.Client(base_url=live, timeout=30) as client:
        response = client.request(method, path, params=query, headers=hdrs, content=content)
    judge(
        target,
        request,
        response.status_code,
        response.headers.get("content-type", ""),
        response.content,
        before,
        head_position(target.container),
    )


# Every run covers these, whatever hypothesis draws: (name, method, path, body, expected status).
KNOWN = [
    ("1 MiB body", "POST", "/v1/profiles", _huge(1024 * 1024), 413),
    ("body just over the limit", "POST", "/v1/profiles", _huge(MAX_BODY), 413),
    ("30000-deep nesting", "POST", "/v1/profiles", _deep(30_000), 422),
    (
        "deep object nesting",
        "POST",
        "/v1/profiles",
        b'{"name": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
        422,
    ),
    ("invalid UTF-8", "POST", "/v1/profiles", b'{"name": "\xff\xfe\xfd"}', 422),
    ("not JSON", "POST", "/v1/profiles", b"name=Alex", 422),
    ("truncated JSON", "POST", "/v1/profiles", b'{"name": "Al', 422),
    ("NaN detail", "POST", "/v1/profiles", b'{"name": "N", "details": {"w": NaN}}', 422),
    ("Infinity detail", "POST", "/v1/profiles", b'{"name": "N", "details": {"w": -Infinity}}', 422),
    ("lone surrogate name", "POST", "/v1/profiles", b'{"name": "\\ud800"}', 422),
    ("NUL in a name", "POST", "/v1/profiles", b'{"name": "A\\u0000B"}', 422),
    ("bidi override in a name", "POST", "/v1/profiles", '{"name": "\u202eevil"}'.encode(), 422),
    ("81-character name", "POST", "/v1/profiles", json.dumps({"name": "a" * 81}).encode(), 422),
    ("name of the wrong type", "POST", "/v1/profiles", b'{"name": 123}', 422),
    ("vehicles of the wrong type", "POST", "/v1/profiles", b'{"name": "V", "vehicles": "kart"}', 422),
    (
        "51 vehicles",
        "POST",
        "/v1/profiles",
        json.dumps({"name": "V", "vehicles": [{"name": "K"}] * 51}).encode(),
        422,
    ),
    ("nested details", "POST", "/v1/profiles", b'{"name": "D", "details": {"x": {"y": 1}}}', 422),
    (
        "detail keys equal once trimmed",
        "POST",
        "/v1/profiles",
        b'{"name": "D", "details": {"a": 1, " a": 2}}',
        422,
    ),
    ("line separator in a name", "POST", "/v1/profiles", json.dumps({"name": "A\u2028B"}).encode(), 422),
    (
        "non-ASCII race number",
        "POST",
        "/v1/profiles",
        json.dumps({"name": "R", "vehicles": [{"name": "K", "race_number": "\u0661\u0662"}]}).encode(),
        422,
    ),
    ("unknown field", "POST", "/v1/profiles", b'{"name": "U", "is_default": true}', 422),
    ("array body", "POST", "/v1/profiles", b"[]", 422),
    ("profile id not a uuid", "PUT", "/v1/profiles/default", b'{"profile_id": "1 OR 1=1"}', 422),
    (
        "SQL in a name is just text",
        "POST",
        "/v1/profiles",
        json.dumps({"name": "x'); DROP TABLE racer_profiles; --"}).encode(),
        201,
    ),
]


@pytest.mark.parametrize("case", KNOWN, ids=[c[0] for c in KNOWN])
def test_known_hostile_payloads(target: Target, case: tuple[str, str, str, bytes, int]) -> None:
    _, method, path, body, expected = case
    client = _asgi_client(target)
    hdrs = {"Authorization": f"Bearer {target.owner}", "Content-Type": "application/json"}
    before = head_position(target.container)
    response = client.request(method, path, headers=hdrs, content=body)
    judge(
        target,
        (method, path, {}, hdrs, body),
        response.status_code,
        response.headers.get("content-type", ""),
        response.content,
        before,
        head_position(target.container),
    )
    assert response.status_code == expected, response.text[:500]
    if expected == 201:  # stored verbatim, and the table is still there
        pid = response.json()["id"]
        shown = client.get(f"/v1/profiles/{pid}", headers={"Authorization": f"Bearer {target.owner}"})
        assert shown.json()["name"] == json.loads(body)["name"]


def test_a_chunked_body_over_the_limit_is_refused_by_uvicorn(target: Target, live: str) -> None:
    """No Content-Length to check up front: the limit applies while reading."""
    before = head_position(target.container)
    chunks = iter([b'{"name": "'] + [b"a" * 65536] * 16 + [b'"}'])
    with httpx.Client(base_url=live, timeout=30) as client:
        r = client.post(
            "/v1/profiles",
            content=chunks,
            headers={"Authorization": f"Bearer {target.owner}", "Content-Type": "application/json"},
        )
    assert r.status_code == 413 and r.headers["content-type"].startswith(PROBLEM), r.text[:300]
    assert head_position(target.container) == before


@pytest.mark.parametrize(
    "number",
    ["18446744073709551616", "-9223372036854775809", "9" * 4000, "9007199254740992", "1e20", "1.797e308"],
    ids=["2^64", "-2^63-1", "4000 digits", "2^53", "1e20", "1.797e308"],
)
def test_a_detail_number_beyond_the_safe_range_is_refused_and_the_account_stays_readable(
    target: Target, number: str
) -> None:
    """JSON allows any number; the responses (orjson) hold 64-bit integers, and jsonb
    gave the float 1e20 back as a 67-bit integer. Stored, such a detail made this
    command answer 500 and every later read of the account too."""
    client = _asgi_client(target)
    token = target.container.accounts.create("hostile-bigint").token
    auth = {"Authorization": f"Bearer {token}"}
    before = head_position(target.container)
    body = b'{"name": "Big", "details": {"laps": ' + number.encode() + b"}}"
    created = client.post("/v1/profiles", content=body, headers={**auth, "Content-Type": "application/json"})
    listed = client.get("/v1/profiles", headers=auth)
    assert (created.status_code, listed.status_code) == (422, 200), (created.text[:300], listed.text[:300])
    assert created.headers["content-type"].startswith(PROBLEM)
    assert created.json()["errors"][0]["field"] == "details.laps", created.text
    assert head_position(target.container) == before, "the refused profile was stored"


def test_summary_row(target: Target) -> None:
    """Adds the hostile-input line to the summary table (after the runs above)."""
    counts = dict(sorted(target.stats.items()))
    total = sum(counts.values())
    REPORT.add(
        ScenarioRow(
            "hostile input",
            0,
            0,
            sum(v for k, v in counts.items() if k.startswith("5")),
            0,
            note=f"{total} requests: {counts}",
        )
    )
    assert total > 0, "no hostile request was sent"


# --- free text: reasons follow the rules of names ---------------------------------------

BAD_REASONS = {
    "NUL": "a\x00b",
    "bidi override": "\u202eevil",
    "ESC": "\x1b[31mred",
    "CR LF": "line\r\nbreak",
    "tab": "tab\there",
    "zero-width space": "zw\u200bj",
    "line separator": "a\u2028b",
    "501 characters": "r" * 501,
}


def _owner(target: Target) -> dict[str, str]:
    return {"Authorization": f"Bearer {target.owner}"}


@pytest.mark.parametrize("reason", list(BAD_REASONS.values()), ids=list(BAD_REASONS))
def test_a_bad_reason_is_refused_in_the_body_and_in_x_reason(target: Target, reason: str) -> None:
    client = _asgi_client(target)
    before = head_position(target.container)
    in_body = client.post("/v1/profiles", json={"name": "R", "reason": reason}, headers=_owner(target))
    in_header = client.post(
        "/v1/profiles", json={"name": "R"}, headers={**_owner(target), "X-Reason": quote(reason)}
    )
    for response, field in ((in_body, "reason"), (in_header, "X-Reason")):
        assert response.status_code == 422, response.text[:300]
        assert response.headers["content-type"].startswith(PROBLEM)
        assert response.json()["errors"][0]["field"] == field, response.text[:300]
    assert head_position(target.container) == before, "a refused reason was stored"


def test_raw_non_ascii_in_x_reason_is_refused_not_stored_as_mojibake(target: Target) -> None:
    client = _asgi_client(target)
    before = head_position(target.container)
    response = client.post(
        "/v1/profiles", json={"name": "R"}, headers={**_owner(target), "X-Reason": "café".encode()}
    )
    assert response.status_code == 422, response.text[:300]
    assert response.json()["errors"][0] == {
        "field": "X-Reason",
        "reason": "must be ASCII: send other characters as percent-encoded UTF-8",
    }
    broken = client.post("/v1/profiles", json={"name": "R"}, headers={**_owner(target), "X-Reason": "%C3%28"})
    assert broken.status_code == 422 and broken.json()["errors"][0]["field"] == "X-Reason", broken.text
    assert head_position(target.container) == before


def test_percent_encoded_utf8_in_x_reason_is_recorded_as_text(target: Target) -> None:
    client = _asgi_client(target)
    reason = "café ✓ 100% sure, the racer's ask"
    created = client.post(
        "/v1/profiles", json={"name": "Reasoned"}, headers={**_owner(target), "X-Reason": quote(reason)}
    )
    assert created.status_code == 201, created.text[:300]
    history = client.get(f"/v1/profiles/{created.json()['id']}/history", headers=_owner(target))
    assert history.status_code == 200, history.text[:300]
    assert history.json()["items"][0]["reason"] == reason
