"""Typed errors, one per kind of problem document (RFC 9457) the API answers.

Every error the service answers is a ProblemError carrying its `problem`;
catch a subclass for the cases a caller handles (NotFound, Conflict, ...)."""

from __future__ import annotations

from pydantic import ValidationError

from racer_profiles_client.models import FieldError, Problem


class ProblemError(Exception):
    """The service answered with a problem document (or an error without one)."""

    def __init__(self, problem: Problem, retry_after: float | None = None) -> None:
        super().__init__(f"{problem.status} {problem.title}: {problem.detail or problem.type}")
        self.problem = problem
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return self.problem.status

    @property
    def kind(self) -> str:
        return self.problem.kind


class Unauthorized(ProblemError):
    """401: the token is missing, unknown, expired or revoked."""


class Forbidden(ProblemError):
    """403: the token's role may not do this (a read-only token on a command)."""


class NotFound(ProblemError):
    """404: no such profile or vehicle in this account."""


class Conflict(ProblemError):
    """409: the profile's state forbids it (kind "illegal-state"), or writers kept colliding."""


class Gone(ProblemError):
    """410: the profile was erased."""


class PreconditionFailed(ProblemError):
    """412: `if_match` named a stale version; `current_version` is the one to send."""

    @property
    def current_version(self) -> int | None:
        return self.problem.current_version


class ValidationFailed(ProblemError):
    """422: a field, header or parameter was refused; `errors` names each field."""

    @property
    def errors(self) -> list[FieldError]:
        return self.problem.errors


class RateLimited(ProblemError):
    """429: too many requests or streams for this token, even after the client's retries."""


class Unavailable(ProblemError):
    """503: the service or its database is out of reach, even after the client's retries."""


class ServiceUnreachable(Unavailable):
    """No answer at all: the connection failed or timed out on every attempt."""


_BY_STATUS: dict[int, type[ProblemError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    412: PreconditionFailed,
    422: ValidationFailed,
    429: RateLimited,
    503: Unavailable,
}


def error_for(status: int, body: bytes, content_type: str, retry_after: float | None) -> ProblemError:
    """The typed error of an error response; a body that is not a problem
    document (a proxy's HTML page, say) still gives one, with the status."""
    problem: Problem | None = None
    if "json" in content_type:
        try:
            problem = Problem.model_validate_json(body)
        except ValidationError:
            problem = None
    if problem is None:
        text = body.decode("utf-8", "replace").strip()[:200]
        problem = Problem(status=status, title=f"HTTP {status}", detail=text or None)
    return _BY_STATUS.get(status, ProblemError)(problem, retry_after)


def unreachable(base_url: str, cause: BaseException) -> ServiceUnreachable:
    problem = Problem(
        type="about:blank",
        title="Service unreachable",
        status=503,
        detail=f"no answer from {base_url}: {type(cause).__name__}: {cause}",
    )
    return ServiceUnreachable(problem)
