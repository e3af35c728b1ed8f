"""RFC 9457 problem details for every error the API can produce."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from domain.errors import (
    ConcurrencyConflict,
    DomainError,
    IllegalState,
    InvalidValue,
    PlaintextHistory,
    ProfileErased,
    ProfileNotFound,
    VehicleNotFound,
    VersionMismatch,
)

log = logging.getLogger(__name__)

# The database is out of reach or busy: 503 with Retry-After. The library's
# errors come from the sync event store; psycopg's own from the async read pool
# (PoolTimeout is one of them).
UNAVAILABLE = (
    OperationalError,
    InterfaceError,
    PoolTimeout,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    TimeoutError,
)

PROBLEM_TYPES = "https://racer-profiles.dev/problems/"
MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True)
class Kind:
    status: int
    title: str
    summary: str  # what it means, for the OpenAPI document's table of problem types


# Every kind of problem the service answers with, by its stable type URI suffix:
# the answers (Problem.of) and the OpenAPI document (api/openapi.py) both read it.
KINDS: dict[str, Kind] = {
    "validation": Kind(
        422,
        "Invalid request",
        "invalid input: body, JSON syntax, unknown field, path UUID, query or header; `errors` lists each",
    ),
    "unauthorized": Kind(401, "Unauthorized", "no, a malformed or an unknown bearer token"),
    "forbidden": Kind(403, "Forbidden", "the token's role may only read (auditor, admin)"),
    "not-found": Kind(404, "Not found", "no such profile or vehicle in this account, or no such route"),
    "no-default": Kind(404, "No default profile", "the account has no active profile, hence no default"),
    "cors-refused": Kind(
        400,
        "CORS request refused",
        "a CORS preflight from an origin, or for a method or header, that is not allowed",
    ),
    "method-not-allowed": Kind(
        405, "Method not allowed", "the path exists but not with this method (`Allow` names the methods)"
    ),
    "conflict": Kind(409, "Concurrent changes", "concurrent writers kept winning after the retries"),
    "illegal-state": Kind(
        409,
        "Not allowed in the current state",
        "the profile's state forbids the change (archived, not archived, not active, bad successor)",
    ),
    "idempotency-in-flight": Kind(
        409, "Request in progress", "a request with this Idempotency-Key is still being processed"
    ),
    "plaintext-history": Kind(
        409,
        "Cannot erase completely",
        "the profile has events stored before encryption; erasing it is refused (docs/operators.md)",
    ),
    "erased": Kind(410, "Profile erased", "the profile was erased: its personal data is gone for good"),
    "precondition-failed": Kind(
        412, "Version mismatch", "If-Match names a stale version; `current_version` is the current one"
    ),
    "content-too-large": Kind(
        413, "Content too large", "the body is larger than MAX_BODY_BYTES (64 KiB by default)"
    ),
    "unsupported-media-type": Kind(
        415, "Unsupported media type", "a body that is not application/json (or +json)"
    ),
    "position-ahead": Kind(
        422,
        "Position not reached by the event log",
        "X-Min-Position is past the event log's head (no write has it): answered at once; `head` is the head",
    ),
    "too-many-requests": Kind(
        429,
        "Too many requests",
        "the token has MAX_WAITS_PER_TOKEN X-Min-Position waits, or the token or account as many streams"
        " as allowed, open already; see Retry-After",
    ),
    "unavailable": Kind(
        503,
        "Service unavailable",
        "the database or the read table did not answer in time, or the server serves MAX_STREAMS streams;"
        " see Retry-After",
    ),
    "internal": Kind(
        500, "Internal server error", "an unexpected error (logged with the request id; never shown)"
    ),
}


class Problem(Exception):
    """Raised by endpoints to answer with a problem document."""

    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    @classmethod
    def of(cls, kind: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> Problem:
        """A problem of one of KINDS: its status and title come from the table."""
        known = KINDS[kind]
        return cls(known.status, kind, known.title, detail, headers, **extra)


def not_found(detail: str) -> Problem:
    return Problem.of("not-found", detail)


def invalid(field: str, reason: str, detail: str | None = None) -> Problem:
    """422 naming the field; the detail is "field: reason" unless given."""
    return Problem.of(
        "validation", detail or f"{field}: {reason}", errors=[{"field": field, "reason": reason}]
    )


def problem_document(problem: Problem, path: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPES + problem.kind,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if path is not None:
        body["instance"] = path
    body.update(problem.extra)
    return body


def problem_body(problem: Problem, path: str | None = None) -> bytes:
    return json.dumps(problem_document(problem, path)).encode()


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    body = problem_document(problem, request.url.path if request is not None else None)
    return JSONResponse(body, status_code=problem.status, headers=problem.headers, media_type=MEDIA_TYPE)


def unavailable(detail: str, retry_after: int = 1) -> Problem:
    return Problem.of("unavailable", detail, {"Retry-After": str(retry_after)})


def _from_exception(exc: Exception) -> Problem:
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, InvalidValue):
        return invalid(exc.field, exc.reason, str(exc))
    if isinstance(exc, (ProfileNotFound, VehicleNotFound)):
        return not_found(str(exc))
    if isinstance(exc, VersionMismatch):
        return Problem.of("precondition-failed", str(exc), current_version=exc.current)
    if isinstance(exc, ProfileErased):
        return Problem.of("erased", str(exc))
    if isinstance(exc, PlaintextHistory):
        return Problem.of("plaintext-history", str(exc))
    if isinstance(exc, ConcurrencyConflict):
        return Problem.of("conflict", str(exc))
    if isinstance(exc, IllegalState):
        return Problem.of("illegal-state", str(exc))
    if isinstance(exc, UNAVAILABLE):
        return unavailable("the database is not reachable or busy; retry shortly")
    log.exception("unhandled error", exc_info=exc)
    return internal_error()


def internal_error() -> Problem:
    return Problem.of("internal", "an unexpected error occurred")


def exception_response(exc: Exception, request: Request) -> JSONResponse:
    """The problem response for an exception raised by a command (used where the
    response must be captured, e.g. for idempotent replays)."""
    if isinstance(exc, RequestValidationError):
        return problem_response(_validation_errors(exc), request)
    return problem_response(_from_exception(exc), request)


def _validation_errors(exc: RequestValidationError) -> Problem:
    errors = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            error = (err.get("ctx") or {}).get("error", "invalid JSON")
            errors.append({"field": "body", "reason": f"malformed JSON: {error}"})
            continue
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        errors.append({"field": ".".join(loc) or str(err.get("loc", ["body"])[0]), "reason": err["msg"]})
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
    return Problem.of("validation", detail, errors=errors)


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered as a problem document."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode()  # "Disallowed CORS origin, method"
        problem = Problem(response.status_code, "cors-refused", KINDS["cors-refused"].title, refused)
        headers = {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}
        return JSONResponse(problem_document(problem), response.status_code, headers, media_type=MEDIA_TYPE)


def _malformed_body() -> Problem:
    return invalid("body", "malformed JSON: the body is not valid UTF-8 JSON")


def install(app: FastAPI) -> None:
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot decode (e.g. JSON that is not
            # UTF-8): malformed JSON like any other, 422 naming the body.
            return problem_response(_malformed_body(), request)
        kind = _HTTP_KINDS.get(exc.status_code, f"http-{exc.status_code}")
        title = KINDS[kind].title if kind in KINDS else _HTTP_TITLES.get(exc.status_code, "Error")
        problem = Problem(exc.status_code, kind, title, str(exc.detail), dict(exc.headers or {}))
        return problem_response(problem, request)

    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(_validation_errors(exc), request)

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(_from_exception(exc), request)

    app.add_exception_handler(StarletteHTTPException, on_http)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    # Expected errors get their own handlers so they are answered without
    # being re-raised; Exception is the last resort (500, logged, no trace sent).
    for expected in (Problem, DomainError, *UNAVAILABLE):
        app.add_exception_handler(expected, on_error)
    app.add_exception_handler(Exception, on_error)


# Starlette's own HTTP errors: the statuses that are one of KINDS, and titles for the others.
_HTTP_KINDS = {401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed"}
_HTTP_TITLES = {400: "Bad request", 413: "Content too large", 415: "Unsupported media type"}
