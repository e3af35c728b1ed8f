"""RFC 9457 problem details for every error the API can produce."""

from __future__ import annotations

import json
import logging
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
    return Problem(503, "unavailable", "Service unavailable", detail, {"Retry-After": str(retry_after)})


def _from_exception(exc: Exception) -> Problem:
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, InvalidValue):
        return Problem(
            422,
            "validation",
            "Invalid request",
            str(exc),
            errors=[{"field": exc.field, "reason": exc.reason}],
        )
    if isinstance(exc, (ProfileNotFound, VehicleNotFound)):
        return Problem(404, "not-found", "Not found", str(exc))
    if isinstance(exc, VersionMismatch):
        return Problem(412, "precondition-failed", "Version mismatch", str(exc), current_version=exc.current)
    if isinstance(exc, ConcurrencyConflict):
        return Problem(409, "conflict", "Concurrent changes", str(exc))
    if isinstance(exc, IllegalState):
        return Problem(409, "illegal-state", "Not allowed in the current state", str(exc))
    if isinstance(exc, UNAVAILABLE):
        return unavailable("the database is not reachable or busy; retry shortly")
    log.exception("unhandled error", exc_info=exc)
    return Problem(500, "internal", "Internal server error", "an unexpected error occurred")


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
    return Problem(422, "validation", "Invalid request", detail, errors=errors)


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered as a problem document."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode()  # "Disallowed CORS origin, method"
        problem = Problem(response.status_code, "cors-refused", "CORS request refused", refused)
        headers = {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}
        return JSONResponse(problem_document(problem), response.status_code, headers, media_type=MEDIA_TYPE)


def _malformed_body() -> Problem:
    reason = "malformed JSON: the body is not valid UTF-8 JSON"
    return Problem(
        422, "validation", "Invalid request", f"body: {reason}", errors=[{"field": "body", "reason": reason}]
    )


def install(app: FastAPI) -> None:
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot decode (e.g. JSON that is not
            # UTF-8): malformed JSON like any other, 422 naming the body.
            return problem_response(_malformed_body(), request)
        kinds = {401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed"}
        problem = Problem(
            exc.status_code,
            kinds.get(exc.status_code, f"http-{exc.status_code}"),
            _TITLES.get(exc.status_code, "Error"),
            str(exc.detail),
            dict(exc.headers or {}),
        )
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


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Content too large",
    415: "Unsupported media type",
}
