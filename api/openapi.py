"""The OpenAPI document: response and header building blocks for the routes,
the parts every operation shares (problem schema, bearer security,
X-Request-ID), and the deterministic export `racer-profiles openapi` writes.

Routes declare their own status codes with the helpers below; `install`
completes the document once, when it is first asked for."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.problems import KINDS, PROBLEM_TYPES
from api.problems import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from api.schemas import Accepted, ExportedEvent, Problem

PROBLEM_REF = "#/components/schemas/Problem"
BEARER = "bearerAuth"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
COMMAND_METHODS = ("post", "put", "patch", "delete")

# --- response headers -----------------------------------------------------------------

HEADERS: dict[str, dict[str, Any]] = {
    "ETag": {
        "description": 'The version as a strong entity tag, `"<version>"`; send it back in If-Match.',
        "schema": {"type": "string", "pattern": r'^"\d+"$', "examples": ['"3"']},
    },
    "RosterETag": {
        "description": (
            'The version of the account\'s roster (its set of active profiles and its default), `"<version>"`;'
            " send it in If-Match on PUT /v1/profiles/default to refuse overriding a default chosen elsewhere."
        ),
        "schema": {"type": "string", "pattern": r'^"\d+"$', "examples": ['"12"']},
    },
    "Location": {
        "description": "The URL path of the created or changed resource.",
        "schema": {"type": "string", "examples": ["/v1/profiles/6f1c2a4e-8d2b-4c3f-9a57-0b8e4f1d2c3a"]},
    },
    "X-Position": {
        "description": (
            "The position of the command's last event; a later query with `X-Min-Position` set to it"
            " sees the change (read-your-writes on another connection or replica)."
        ),
        "schema": {"type": "string", "pattern": r"^\d+$", "examples": ["1042"]},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored response of an earlier request with the same Idempotency-Key.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "string", "pattern": r"^\d+$", "examples": ["1"]},
    },
    "WWW-Authenticate": {
        "description": "The bearer challenge.",
        "schema": {"type": "string", "examples": ['Bearer realm="racer-profiles"']},
    },
    "X-Request-ID": {
        "description": (
            "The request's id: the client's X-Request-ID when well-formed, else a generated one;"
            " recorded on every event the request causes."
        ),
        "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN},
    },
}


def header(name: str, *, required: bool = False, as_name: str | None = None) -> dict[str, dict[str, Any]]:
    spec = dict(HEADERS[name])
    if required:
        spec["required"] = True
    return {as_name or name: spec}


# --- problems -------------------------------------------------------------------------

# An example detail (and extra members) per kind; status and title come from KINDS.
_EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "validation": (
        "name: must be at most 80 characters after trimming",
        {"errors": [{"field": "name", "reason": "must be at most 80 characters after trimming"}]},
    ),
    "unauthorized": ("missing bearer token", {}),
    "forbidden": ("a auditor token cannot change profiles", {}),
    "not-found": ("no profile 6f1c2a4e-8d2b-4c3f-9a57-0b8e4f1d2c3a in this account", {}),
    "no-default": ("this account has no active profile", {}),
    "conflict": ("concurrent changes kept winning; retry", {}),
    "illegal-state": (
        "profile 6f1c2a4e-8d2b-4c3f-9a57-0b8e4f1d2c3a is archived; restore it first",
        {},
    ),
    "plaintext-history": (
        "profile 6f1c2a4e-8d2b-4c3f-9a57-0b8e4f1d2c3a has events stored before personal data was encrypted",
        {},
    ),
    "erased": ("profile 6f1c2a4e-8d2b-4c3f-9a57-0b8e4f1d2c3a was erased", {}),
    "idempotency-in-flight": (
        "a request with this Idempotency-Key is still being processed",
        {},
    ),
    "precondition-failed": (
        "expected version 2, current version is 3",
        {"current_version": 3},
    ),
    "content-too-large": ("request bodies are limited to 65536 bytes", {}),
    "unsupported-media-type": ("request bodies must be application/json", {}),
    "unavailable": ("the read table has not reached position 1042 yet", {}),
    "position-ahead": (
        "X-Min-Position 99999 is past the event log's head (1042): no write has it yet",
        {
            "errors": [{"field": "X-Min-Position", "reason": "is past the event log's head (1042)"}],
            "head": 1042,
        },
    ),
    "too-many-requests": (
        "this token already has 4 requests waiting for a position (MAX_WAITS_PER_TOKEN)",
        {},
    ),
}

_DESCRIPTIONS = {
    401: "Missing, malformed or unknown bearer token.",
    403: "The token's role may only read (auditor, admin).",
    404: "No such profile (or vehicle) in this account.",
    409: (
        "The profile's state forbids the change (`illegal-state`), concurrent writers kept winning"
        " (`conflict`), or a request with the same Idempotency-Key is still running (`idempotency-in-flight`)."
    ),
    410: "The profile was erased (`erased`): its personal data is gone for good.",
    412: "If-Match names a stale version; `current_version` in the body is the current one.",
    413: "The body is larger than the limit (MAX_BODY_BYTES).",
    415: "The body is not application/json.",
    422: (
        "Invalid input (malformed JSON, an unknown or wrongly typed field, a bad UUID in the path, an"
        " out-of-range query parameter or header, an Idempotency-Key reused with another body, an"
        " X-Min-Position past the event log's head); `errors` lists each field and reason."
    ),
    429: (
        "This token already has as many X-Min-Position waits (MAX_WAITS_PER_TOKEN) open as allowed;"
        " retry after Retry-After seconds."
    ),
    503: "The database or the read table did not answer in time; retry after Retry-After seconds.",
}

_KINDS_BY_STATUS = {
    401: ["unauthorized"],
    403: ["forbidden"],
    404: ["not-found"],
    409: ["illegal-state", "conflict", "idempotency-in-flight", "plaintext-history"],
    410: ["erased"],
    412: ["precondition-failed"],
    413: ["content-too-large"],
    415: ["unsupported-media-type"],
    422: ["validation", "position-ahead"],
    429: ["too-many-requests"],
    503: ["unavailable"],
}


def _example(kind: str, path: str = "/v1/profiles/6f1c2a4e-8d2b-4c3f-9a57-0b8e4f1d2c3a") -> dict[str, Any]:
    detail, extra = _EXAMPLES[kind]
    value = {
        "type": PROBLEM_TYPES + kind,
        "title": KINDS[kind].title,
        "status": KINDS[kind].status,
        "detail": detail,
        "instance": path,
    }
    return {"summary": KINDS[kind].summary, "value": {**value, **extra}}


RESPONSE_NAMES = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Gone",
    412: "PreconditionFailed",
    413: "ContentTooLarge",
    415: "UnsupportedMediaType",
    422: "InvalidRequest",
    429: "TooManyRequests",
    503: "Unavailable",
}
RESPONSES_REF = "#/components/responses/"


def problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    """A problem+json response object of the given status, with an example per kind."""
    response: dict[str, Any] = {
        "description": description or _DESCRIPTIONS[status],
        "content": {
            PROBLEM_MEDIA_TYPE: {
                "schema": {"$ref": PROBLEM_REF},
                "examples": {kind: _example(kind) for kind in _KINDS_BY_STATUS[status]},
            }
        },
    }
    if status == 401:
        response["headers"] = header("WWW-Authenticate", required=True)
    if status in (409, 503):
        response["headers"] = header("Retry-After")
    if status == 429:
        response["headers"] = header("Retry-After", required=True)
    return response


def problem(status: int, description: str | None = None) -> dict[str, Any]:
    """For a route's `responses`: the shared component, or, with a description of its own, inline."""
    if description is None:
        return {"$ref": RESPONSES_REF + RESPONSE_NAMES[status]}
    return problem_response(status, description)


def problems(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """Problem responses; `described` overrides a description: problems(404, s404="...")."""
    return {status: problem(status, described.get(f"s{status}")) for status in statuses}


# --- success responses ----------------------------------------------------------------


def profile_ok(description: str, *, etag: str = "ETag") -> dict[str, Any]:
    return {"description": description, "headers": header(etag, required=True, as_name="ETag")}


def command_ok(
    description: str,
    *,
    etag: str = "ETag",
    location: bool | str = False,
    links: dict[str, Any] | None = None,
) -> dict[str, Any]:
    headers = {
        **header(etag, required=True, as_name="ETag"),
        **header("X-Position", required=True),
        **header("Idempotent-Replayed"),
    }
    if location:
        headers.update(header("Location", required=location == "required"))
    response: dict[str, Any] = {"description": description, "headers": headers}
    if links:
        response["links"] = links
    return response


def _link(operation_id: str, description: str, *, body: Any = None, **parameters: str) -> dict[str, Any]:
    link: dict[str, Any] = {"operationId": operation_id, "description": description}
    if body is not None:
        link["requestBody"] = body
    else:
        link["parameters"] = {"profile_id": "$response.body#/id", **parameters}
    return link


_GUARDED = {"header.If-Match": "$response.header.ETag"}

# What a client can do next with the profile a command answered with (OpenAPI links:
# the id from the body, the ETag as If-Match).
PROFILE_LINKS: dict[str, Any] = {
    "GetProfile": _link("get_profile", "Read the profile back."),
    "RenameProfile": _link("rename_profile", "Rename it, guarded by its ETag.", **_GUARDED),
    "ArchiveProfile": _link("archive_profile", "Archive it, guarded by its ETag.", **_GUARDED),
    "RestoreProfile": _link("restore_profile", "Restore it once archived."),
    "AddVehicle": _link("add_vehicle", "Add a vehicle, guarded by its ETag.", **_GUARDED),
    "ProfileHistory": _link("profile_history", "Its history."),
    "MakeDefault": _link("set_default", "Make it the default.", body={"profile_id": "$response.body#/id"}),
    "EraseProfile": _link("erase_profile", "Erase it for good, guarded by its ETag.", **_GUARDED),
}
VEHICLE_LINKS: dict[str, Any] = {
    **PROFILE_LINKS,
    "ChangeVehicle": _link(
        "change_vehicle",
        "Change its first vehicle, guarded by its ETag.",
        vehicle_id="$response.body#/vehicles/0/id",
        **_GUARDED,
    ),
    "RemoveVehicle": _link(
        "remove_vehicle",
        "Remove its first vehicle, guarded by its ETag.",
        vehicle_id="$response.body#/vehicles/0/id",
        **_GUARDED,
    ),
}


ACCEPTED: dict[str, Any] = {
    "model": Accepted,
    "description": (
        "The change is stored but the read table did not show it within WAIT_TIMEOUT: the body names"
        " the profile and the position to wait for (X-Min-Position)."
    ),
    "headers": {
        **header("X-Position", required=True),
        **header("Location", required=True),
        **header("Idempotent-Replayed"),
    },
}


def command_responses(
    success: int,
    description: str,
    *,
    etag: str = "ETag",
    location: bool | str = False,
    if_match: bool = True,
    not_found: bool = True,
    links: dict[str, Any] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """Every status a command can answer with."""
    # A command on one profile meets an erased one: 410.
    statuses = [401, 403] + ([404, 410] if not_found else []) + [409] + ([412] if if_match else [])
    return {
        success: command_ok(description, etag=etag, location=location, links=links),
        202: ACCEPTED,
        **problems(*statuses, 413, 415, 422, 503),
    }


# --- request parameters ---------------------------------------------------------------

IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes the command safe to retry: the first request's response (status, body, headers) is"
        " stored with its events; a retry with the same key and body gets it back with"
        " `Idempotent-Replayed: true` and writes nothing; the same key with another body is 422,"
        " a retry while the first is still running is 409. Keys are per account and expire after"
        " IDEMPOTENCY_TTL_SECONDS (24 h by default)."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": IDEMPOTENCY_KEY_PATTERN},
    "example": "3f0c1e52-2b1d-4c8e-9a0f-5d6e7f809a1b",
}

REQUEST_ID: dict[str, Any] = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": (
        "Your id for the request (1-64 of A-Z a-z 0-9 . _ : -): echoed in the response and recorded"
        " on every event the request causes; another value is replaced by a generated id."
    ),
    "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN},
    "example": "checkout-7f3a",
}

COMMAND_EXTRA: dict[str, Any] = {"parameters": [IDEMPOTENCY_KEY]}

# Header parameters as the routes declare them (FastAPI lower-cases the names),
# by their canonical spelling, with the format the dependency checks.
HEADER_PARAMETERS: dict[str, tuple[str, dict[str, Any]]] = {
    "if-match": ("If-Match", {"pattern": r'^(\*|(W/)?"\d{1,9}")$', "examples": ['"3"']}),
    "x-reason": (
        "X-Reason",
        {"pattern": r"^[\x20-\x7e]*$", "examples": ["fixing a typo the racer reported", "caf%C3%A9 owner"]},
    ),
    "x-min-position": ("X-Min-Position", {"examples": [1042]}),
    "last-event-id": ("Last-Event-ID", {}),
}


# --- the whole document ---------------------------------------------------------------


def _problem_types_table() -> str:
    rows = "\n".join(
        f"| `{PROBLEM_TYPES}{kind}` | {known.status} | {known.summary} |"
        for kind, known in sorted(KINDS.items(), key=lambda item: (item[1].status, item[0]))
    )
    return (
        "\n\n## Errors\n\nEvery error is an RFC 9457 problem document (`application/problem+json`,"
        " schema `Problem`) whose `type` is stable per kind:\n\n| type | status | when |\n| --- | --- | --- |\n"
        + rows
    )


HEADERS_GUIDE = """

## Headers

- `Authorization: Bearer <token>` on every `/v1` operation.
- `ETag` / `If-Match`: profile responses carry `ETag: "<version>"`; commands on a profile take
  `If-Match` and answer 412 (with `current_version`) when it is stale; without If-Match a command
  applies to the latest state. `GET /v1/profiles/default`'s ETag is the roster's version, which
  `PUT /v1/profiles/default` takes in If-Match.
- `Idempotency-Key` on every command (POST, PUT, PATCH, DELETE): see the parameter.
- `X-Request-ID` (echoed; recorded on events), `X-Reason` (why; recorded on events; ASCII, with
  other characters as percent-encoded UTF-8, e.g. `caf%C3%A9`; raw non-ASCII bytes are refused, 422),
  `X-Min-Position` (queries wait until the read table reaches it, at most WAIT_TIMEOUT, then 503 with
  Retry-After; a position past the event log's head is refused at once with 422 `position-ahead`;
  at most MAX_WAITS_PER_TOKEN waits per token at once, more are 429 with Retry-After).
- Limits: 429 `too-many-requests` and 503 `unavailable` always carry `Retry-After` (seconds).
- Commands answer from the read table once it shows the change, with its position in `X-Position`;
  should the read table lag past WAIT_TIMEOUT, the stored change answers 202 with `Accepted`.
- Lists page with an opaque `cursor` and `limit` (1-200); the response's `next_cursor` is null on
  the last page. Pages are keyset-based: no entry is skipped or repeated while others write."""


def build_document(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        summary=app.summary,
        description=(app.description or "") + HEADERS_GUIDE + _problem_types_table(),
        routes=app.routes,
        tags=app.openapi_tags,
        servers=app.servers,
        separate_input_output_schemas=app.separate_input_output_schemas,
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (Problem, ExportedEvent):  # referenced by hand (problem+json, NDJSON lines)
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    components["responses"] = {name: problem_response(status) for status, name in RESPONSE_NAMES.items()}
    components["securitySchemes"] = {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from `racer-profiles accounts create` (owner, auditor or admin).",
        }
    }
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            _complete(path, method, operation)
    for response in components["responses"].values():
        response["headers"] = {**response.get("headers", {}), **header("X-Request-ID", required=True)}
    if "HTTPValidationError" in schemas and "HTTPValidationError" not in json.dumps(document["paths"]):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return document


def _complete(path: str, method: str, operation: dict[str, Any]) -> None:
    parameters = operation.setdefault("parameters", [])
    for parameter in parameters:
        _not_null(parameter["schema"])
        canonical = HEADER_PARAMETERS.get(parameter["name"]) if parameter.get("in") == "header" else None
        if canonical is not None:
            parameter["name"] = canonical[0]
            _constrain(parameter["schema"], canonical[1])
    if (
        method in COMMAND_METHODS
        and path.startswith("/v1/profiles")
        and not any(p["name"] == IDEMPOTENCY_KEY["name"] for p in parameters)
    ):
        parameters.append(IDEMPOTENCY_KEY)
    parameters.append(REQUEST_ID)
    responses = operation.setdefault("responses", {})
    if path.startswith("/v1/"):
        operation["security"] = [{BEARER: []}]
        for status in (401, 503):
            responses.setdefault(str(status), problem(status))
        if len(parameters) > 1:  # more than X-Request-ID: a value may be invalid
            responses.setdefault("422", problem(422))
        if any(p["name"] == "X-Min-Position" for p in parameters):
            responses.setdefault("429", problem(429))
    for response in responses.values():
        if "$ref" in response:  # a shared component: FastAPI added a description beside the $ref
            response.pop("description", None)
            continue
        content = response.get("content", {})
        problem_content = content.get(PROBLEM_MEDIA_TYPE)
        if problem_content is not None and "schema" not in problem_content:
            problem_content["schema"] = {"$ref": PROBLEM_REF}
        response.setdefault("headers", {}).update(header("X-Request-ID", required=True))


def _not_null(schema: dict[str, Any]) -> None:
    """An optional parameter is one that is left out: a header or query value
    cannot be null, so the `anyOf [X, null]` FastAPI writes becomes X."""
    branches = schema.get("anyOf")
    if branches and len(branches) == 2 and {"type": "null"} in branches:
        (kept,) = [b for b in branches if b != {"type": "null"}]
        del schema["anyOf"]
        schema.update(kept)


def _constrain(schema: dict[str, Any], constraints: dict[str, Any]) -> None:
    """Adds constraints to a parameter's schema (to the non-null branch of an optional one)."""
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"] or [schema]
    for branch in branches:
        branch.update(constraints)


def install(app: FastAPI) -> None:
    """Serves the completed document at /openapi.json (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def dumps(document: dict[str, Any]) -> str:
    """The exported form: sorted keys, two-space indent, one trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
